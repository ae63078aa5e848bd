"""What ``status``, ``apply`` and ``metrics`` know about processes and their
sockets, as typed records; the JSON output is built from them (``to_json``)."""

from __future__ import annotations

from dataclasses import dataclass, field

#: Where the keepalive values of a socket come from, as far as can be told:
#: "program" (it set them itself, or an earlier ``apply`` did), "library" (one of
#: our preload libraries is mapped in the process), "cgroup" (our cgroup program
#: on the process's cgroup or an ancestor: the values are its values), "none"
#: (keepalive off), "unknown" (the options could not be read).
SOURCES = ("program", "library", "cgroup", "none", "unknown")



@dataclass
class Endpoint:
    """One row of a network namespace's TCP table (sock_diag or /proc/net/tcp)."""

    inode: int
    protocol: str  # "tcp" or "mptcp"
    state: str
    local: str
    remote: str
    timer: str | None
    expires_in: float | None  # seconds
    loopback: bool


@dataclass
class Library:
    """One of our libraries mapped in a process; ``replaced``: the file at
    ``path`` was replaced or deleted since (an upgrade)."""

    name: str
    path: str
    replaced: bool

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "path": self.path, "replaced": self.replaced}


@dataclass
class CgroupProgram:
    """Our cgroup program on the process's cgroup or an ancestor
    (``keepalive_preload.cgroup.covering``); ``effective``: its values are
    the ones the connections of ``decides`` get (the nearest of ours wins)."""

    cgroup: str
    prog_id: int
    values: dict[str, int]
    scope: str
    force: bool
    effective: bool
    #: The directions ("outbound", "accepted") whose connections get its values.
    decides: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {"cgroup": self.cgroup, "prog_id": self.prog_id, "values": self.values,
                "scope": self.scope, "force": self.force, "effective": self.effective,
                "decides": list(self.decides)}


@dataclass
class Socket:
    """One TCP (or MPTCP) socket a process holds, with the options read from
    it (None: could not be read) and where they come from."""

    fd: int
    endpoint: Endpoint
    options: dict[str, int] | None = None
    source: str = "unknown"

    @property
    def state(self) -> str:
        return self.endpoint.state

    @property
    def lacks_keepalive(self) -> bool:
        """An established connection without keepalive: from the value read
        from the socket, else from the timer (idle with keepalive on, the
        keepalive timer is armed; with data in flight the retransmit timer
        is, so only "no timer at all" counts)."""
        if self.endpoint.state != "ESTABLISHED":
            return False
        if self.options is not None:
            return not self.options["keepalive"]
        # An MPTCP socket's timers are its subflows': its own tell nothing.
        return self.endpoint.timer is None and self.endpoint.protocol == "tcp"

    @property
    def keepalive(self) -> bool | None:
        """Whether keepalive is on: read, else judged from the timer (None:
        cannot tell)."""
        if self.options is not None:
            return bool(self.options["keepalive"])
        if self.endpoint.protocol != "tcp":
            return None
        if self.endpoint.timer == "keepalive":
            return True
        if self.endpoint.timer is None and self.endpoint.state == "ESTABLISHED":
            return False
        return None

    def to_json(self) -> dict[str, object]:
        e = self.endpoint
        return {"fd": self.fd, "protocol": e.protocol, "state": e.state, "local": e.local,
                "remote": e.remote, "loopback": e.loopback, "timer": e.timer,
                "expires_in": e.expires_in, "options": self.options, "source": self.source}


@dataclass
class ProcessStatus:
    """One process as ``status`` reads it."""

    pid: int
    command: str
    sockets: list[Socket] = field(default_factory=list)
    libraries: list[Library] | None = None
    libraries_error: str | None = None
    options_error: str | None = None
    cgroup: str | None = None
    cgroup_programs: list[CgroupProgram] | None = None
    cgroup_error: str | None = None

    @property
    def preloaded(self) -> list[str] | None:
        if self.libraries is None:
            return None
        return sorted({lib.name for lib in self.libraries})

    def without_keepalive(self, include_loopback: bool = True) -> int:
        return sum(s.lacks_keepalive and (include_loopback or not s.endpoint.loopback)
                   for s in self.sockets)

    def to_json(self, include_loopback: bool = True) -> dict[str, object]:
        programs = self.cgroup_programs
        return {"pid": self.pid, "command": self.command, "preloaded": self.preloaded,
                "libraries": None if self.libraries is None else
                [lib.to_json() for lib in self.libraries],
                "libraries_error": self.libraries_error,
                "cgroup": self.cgroup,
                "cgroup_programs": None if programs is None else [p.to_json() for p in programs],
                "cgroup_error": self.cgroup_error,
                "options_error": self.options_error,
                "sockets": [s.to_json() for s in self.sockets],
                "without_keepalive": self.without_keepalive(include_loopback)}


@dataclass
class Unreadable:
    """A process ``status --all`` could not read, and why."""

    pid: int
    command: str
    error: str

    def to_json(self, include_loopback: bool = True) -> dict[str, object]:
        return {"pid": self.pid, "command": self.command, "error": self.error}


@dataclass
class Applied:
    """What ``apply`` did (or, with --dry-run, would do) to one socket.

    ``action``: "set", "would set", "unchanged" (it already had the values),
    "kept" (every option it would change was set by someone else: ``kept``
    says by whom), "skipped" (``reason``), "failed" (``errors``)."""

    fd: int
    state: str
    local: str
    remote: str
    role: str
    action: str = "skipped"
    reason: str | None = None
    before: dict[str, int] | None = None
    set: dict[str, int] = field(default_factory=dict)
    #: The options left as someone set them (``by``: who, as far as can be told).
    kept: dict[str, int] = field(default_factory=dict)
    by: str | None = None
    not_set: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    after: dict[str, int] | None = None

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"fd": self.fd, "state": self.state, "local": self.local,
                                  "remote": self.remote, "role": self.role,
                                  "action": self.action, "before": self.before}
        if self.reason is not None:
            out["reason"] = self.reason
        for name in ("set", "kept", "not_set", "errors"):
            value = getattr(self, name)
            if value or (name == "set" and self.action in ("set", "would set")):
                out[name] = value
        if self.by is not None:
            out["by"] = self.by
        if self.after is not None:
            out["after"] = self.after
        return out


@dataclass
class ApplyReport:
    """``apply`` on one process: every socket it looked at, in order, and
    ``error`` if it stopped before the end (what it did so far is kept)."""

    pid: int
    command: str | None  # None: the process could not be read at all
    sockets: list[Applied] = field(default_factory=list)
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None or any(a.action == "failed" for a in self.sockets)

    def to_json(self) -> dict[str, object]:
        if self.command is None:
            return {"pid": self.pid, "error": self.error}
        out: dict[str, object] = {"pid": self.pid, "command": self.command,
                                  "sockets": [a.to_json() for a in self.sockets]}
        if self.error is not None:
            out["error"] = self.error
            out["stopped"] = True
        return out
