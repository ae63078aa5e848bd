"""The cgroup mode: an eBPF sock_ops program that sets the options on every
TCP connection of a cgroup v2.

``asm`` (the instruction builder), ``program`` (the program, from the option
table), ``loader`` (the bpf(2) commands, ctypes), ``attach`` (mount, resolve,
attach, detach, show). For ``status`` and ``metrics``: ``covering(cgroup_dir)``
-> ``list[Attached]``. Importing this package imports ctypes (the loader's
kernel structs); ``import keepalive_preload`` does not import it.
"""

from __future__ import annotations

from .attach import Attached, CgroupError, covering

__all__ = ["Attached", "CgroupError", "covering"]
