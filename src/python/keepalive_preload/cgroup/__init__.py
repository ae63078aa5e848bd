"""The cgroup mode: an eBPF sock_ops program that sets the options on every
TCP connection of a cgroup v2.

``asm`` (the instruction builder), ``program`` (the program, from the option
table), ``loader`` (the bpf(2) commands), ``attach`` (mount, resolve, attach,
detach, show). For ``status`` and ``metrics``: ``covering(cgroup_dir)``, which
imports the kernel-facing modules (ctypes) only when called.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .attach import Attached

__all__ = ["covering"]


def covering(cgroup_dir: str) -> list[Attached]:
    """Our programs on the cgroup ``cgroup_dir`` (a directory under the cgroup2
    mount) and on its ancestors, nearest first: each an ``Attached`` with
    ``.cgroup``, ``.prog_id``, ``.values`` (option name -> value; 0 leaves the
    system's default), ``.scope`` ("client", "server", "all"), ``.force``, and
    ``.effective`` (with ``.decides``: "outbound", "accepted"), whether a
    connection of ``cgroup_dir`` gets its values. Read once per cgroup and
    cached for the life of the process. Raises ``attach.CgroupError`` (not
    root: reading programs needs CAP_SYS_ADMIN)."""
    # Imported here, not at the top: importing the package stays cheap (no ctypes)
    # for the commands that never look at a cgroup.
    from .attach import covering as _covering
    from .attach import explained

    with explained(cgroup_dir):
        return _covering(cgroup_dir)
