# Cross-compile with `zig cc` (PyPI: ziglang, pinned in packaging/requirements-release.txt):
# one x86_64 host builds for old glibc and for musl, on x86_64 and aarch64.
#
#   cmake -DCMAKE_TOOLCHAIN_FILE=packaging/toolchains/zig.cmake \
#         -DKEEPALIVE_ZIG_TARGET=x86_64-linux-gnu.2.17 ...
#
# KEEPALIVE_ZIG_TARGET is a zig target triple; packaging/targets.py lists the
# release targets. The zig executable is -DZIG=..., else what
# `python3 packaging/targets.py zig` finds: $ZIG, the ziglang package, `zig` on PATH.

if(NOT KEEPALIVE_ZIG_TARGET)
  message(FATAL_ERROR "zig.cmake: set KEEPALIVE_ZIG_TARGET to a zig target triple, "
                      "e.g. -DKEEPALIVE_ZIG_TARGET=x86_64-linux-gnu.2.17 (packaging/targets.py)")
endif()
set(CMAKE_SYSTEM_NAME Linux)
string(REGEX MATCH "^[^-]+" CMAKE_SYSTEM_PROCESSOR "${KEEPALIVE_ZIG_TARGET}")

if(NOT ZIG)
  # One way to find zig, for the build scripts and the tests too: targets.zig().
  execute_process(
    COMMAND python3 "${CMAKE_CURRENT_LIST_DIR}/../targets.py" zig
    OUTPUT_VARIABLE ZIG OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE found
    ERROR_VARIABLE why ERROR_STRIP_TRAILING_WHITESPACE)
  if(NOT found EQUAL 0)
    message(FATAL_ERROR "zig.cmake: ${why}")
  endif()
endif()
set(ZIG "${ZIG}" CACHE FILEPATH "zig executable" FORCE)

# CMake wants one executable per tool: small wrappers carry the subcommand and target.
set(_kp_bin "${CMAKE_BINARY_DIR}/zig-${KEEPALIVE_ZIG_TARGET}")
file(MAKE_DIRECTORY "${_kp_bin}")
foreach(_kp_tool cc ar ranlib)
  set(_kp_args "${_kp_tool}")
  if(_kp_tool STREQUAL "cc")
    set(_kp_args "cc -target ${KEEPALIVE_ZIG_TARGET}")
  endif()
  file(WRITE "${_kp_bin}/${_kp_tool}" "#!/bin/sh\nexec \"${ZIG}\" ${_kp_args} \"$@\"\n")
  file(CHMOD "${_kp_bin}/${_kp_tool}" PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE
       GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
endforeach()
set(CMAKE_C_COMPILER "${_kp_bin}/cc")
set(CMAKE_AR "${_kp_bin}/ar" CACHE FILEPATH "" FORCE)
set(CMAKE_RANLIB "${_kp_bin}/ranlib" CACHE FILEPATH "" FORCE)
# The host's strip may not know the target's ELF machine: strip when linking
# instead, and make `cmake --install --strip` a no-op.
set(CMAKE_MODULE_LINKER_FLAGS_INIT "-s -Wl,--as-needed")
set(CMAKE_STRIP "/bin/true" CACHE FILEPATH "" FORCE)
set(CMAKE_TRY_COMPILE_PLATFORM_VARIABLES KEEPALIVE_ZIG_TARGET ZIG)

# DT_NEEDED names that CMakeLists.txt renames after linking (replace_needed.py):
# - musl: zig links musl's libc as "libc.so"; musllinux wheels (and Alpine's
#   own builds) name it libc.musl-<arch>.so.1. musl's loader takes any libc.*
#   for itself, so both load.
# - glibc before 2.34: zig's libpthread stub comes first and defines
#   __errno_location (and write), which glibc's libc.so.6 has always defined
#   too, with the same versions. Loading libpthread.so.0 costs every
#   preloaded process about ten system calls; renaming the entry (in place:
#   the new name is shorter) binds them to libc.so.6 (already loaded: a
#   second entry for it costs nothing).
if(KEEPALIVE_ZIG_TARGET MATCHES "-musl")
  set(KEEPALIVE_REPLACE_NEEDED "libc.so=libc.musl-${CMAKE_SYSTEM_PROCESSOR}.so.1")
elseif(KEEPALIVE_ZIG_TARGET MATCHES "-gnu")
  set(KEEPALIVE_REPLACE_NEEDED "libpthread.so.0=libc.so.6")
endif()

set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
