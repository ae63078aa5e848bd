# aarch64-linux-musl with zig cc; see zig.cmake.
set(KEEPALIVE_ZIG_TARGET aarch64-linux-musl)
include(${CMAKE_CURRENT_LIST_DIR}/zig.cmake)
