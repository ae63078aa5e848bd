#!/usr/bin/env python3
"""Rename DT_NEEDED entries of a shared object after linking.

    python3 replace_needed.py LIBRARY OLD=NEW [OLD=NEW ...]

CMakeLists.txt runs this for the renames a toolchain file asks for in
KEEPALIVE_REPLACE_NEEDED (packaging/toolchains/zig.cmake). A name that fits
in the old one's place (libpthread.so.0 -> libc.so.6) is overwritten in
.dynstr, in place: the symbol-version requirement that names the same string
follows, and the file keeps its layout. patchelf would move .dynstr into a
new PT_LOAD segment, which costs every process that loads the library one
more mmap. A longer name (libc.so -> libc.musl-x86_64.so.1) is left to
patchelf (on PATH, or $PATCHELF).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys

PT_LOAD, PT_DYNAMIC = 1, 2
DT_NULL, DT_NEEDED, DT_STRTAB = 0, 1, 5


def needed_offsets(elf: bytes) -> tuple[int, dict[str, list[int]]]:
    """The file offset of .dynstr and, per DT_NEEDED name, its string offsets."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    headers = [struct.unpack_from("<IIQQQQQQ", elf, phoff + i * phentsize) for i in range(phnum)]
    loads = [(h[3], h[2], h[5]) for h in headers if h[0] == PT_LOAD]  # vaddr, offset, filesz
    (dynamic,) = [h for h in headers if h[0] == PT_DYNAMIC]
    entries = []
    for at in range(dynamic[2], dynamic[2] + dynamic[5], 16):
        tag, value = struct.unpack_from("<qQ", elf, at)
        if tag == DT_NULL:
            break
        entries.append((tag, value))
    (strtab,) = [value for tag, value in entries if tag == DT_STRTAB]
    (base,) = [offset + strtab - vaddr for vaddr, offset, size in loads
               if vaddr <= strtab < vaddr + size]
    names: dict[str, list[int]] = {}
    for tag, value in entries:
        if tag == DT_NEEDED:
            end = elf.index(b"\0", base + value)
            names.setdefault(elf[base + value:end].decode(), []).append(value)
    return base, names


def replace_needed(path: str, old: str, new: str) -> None:
    with open(path, "rb") as f:
        elf = bytearray(f.read())
    base, names = needed_offsets(bytes(elf))
    if old not in names:
        raise SystemExit(f"replace_needed: {path} does not need {old}")
    if len(new) > len(old):
        patchelf = os.environ.get("PATCHELF") or shutil.which("patchelf")
        if patchelf is None:
            raise SystemExit(f"replace_needed: patchelf is needed to rename {old} to {new}")
        subprocess.run([patchelf, "--replace-needed", old, new, path], check=True)
        return
    for value in names[old]:
        start = base + value
        elf[start:start + len(old)] = new.encode().ljust(len(old), b"\0")
    with open(path, "r+b") as f:
        f.write(elf)


def main() -> None:
    if len(sys.argv) < 3 or not all("=" in pair for pair in sys.argv[2:]):
        raise SystemExit(__doc__)
    for pair in sys.argv[2:]:
        old, _, new = pair.partition("=")
        replace_needed(sys.argv[1], old, new)


if __name__ == "__main__":
    main()
