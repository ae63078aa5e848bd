"""The text ``status`` and ``apply`` print, from the records. Everything
another user controls (process names, paths, cgroup names) goes through
``escape``: no terminal control byte from another process reaches the
reader's terminal."""

from __future__ import annotations

from .proc import escape
from .records import ApplyReport, ProcessStatus, Unreadable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from .records import Applied, CgroupProgram, Socket


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def _libraries_line(report: ProcessStatus) -> str:
    if report.libraries is None:
        return f"preloaded: cannot tell ({report.libraries_error})"
    if not report.libraries:
        return "preloaded: none of ours"
    words = []
    for lib in report.libraries:
        if lib.replaced:
            words.append(f"{lib.name} (file replaced or deleted since it was loaded: "
                         f"{escape(lib.path)}; the process still runs the old one)")
        else:
            words.append(lib.name)
    return "preloaded: " + ", ".join(words)


def _values(values: dict[str, int]) -> str:
    return " ".join(f"{name}={value}" for name, value in values.items())


def _program(p: CgroupProgram) -> str:
    gets = (f"applies to {' and '.join(p.decides)} connections" if p.decides
            else "overridden by a nearer one")
    return (f"cgroup program {p.prog_id} on {escape(p.cgroup)} ({p.scope}"
            f"{', force' if p.force else ''}; {_values(p.values)}): {gets}")


def _cgroup_lines(report: ProcessStatus) -> list[str]:
    if report.cgroup_programs is None:
        if report.cgroup_error and report.cgroup is not None:
            return [f"cgroup programs: cannot tell ({report.cgroup_error})"]
        return []
    if not report.cgroup_programs:
        return ["cgroup programs: none of ours"]
    return [_program(p) for p in report.cgroup_programs]


def _timer(sock: Socket) -> str:
    e = sock.endpoint
    return f"{e.timer}:{e.expires_in:g}s" if e.timer and e.expires_in is not None else (
        e.timer or "-")


def format_status(report: ProcessStatus) -> str:
    """The text ``status PID`` prints for one process."""
    lines = [f"PID {report.pid} ({escape(report.command)}): {_libraries_line(report)}"]
    lines.extend(_cgroup_lines(report))
    if report.options_error:
        lines.append(f"options not read: {report.options_error}; showing the timers only")
    if not report.sockets:
        lines.append("no TCP sockets")
        return "\n".join(lines)
    with_options = report.options_error is None
    head: tuple[str, ...] = ("FD", "STATE", "LOCAL", "REMOTE", "TIMER")
    if with_options:
        head += ("KEEPALIVE", "IDLE(s)", "INTVL(s)", "CNT", "USER_TIMEOUT(ms)", "SOURCE")
    rows: list[tuple[str, ...]] = [head]
    for s in report.sockets:
        e = s.endpoint
        remote = "*" if e.state == "LISTEN" else e.remote
        state = e.state if e.protocol == "tcp" else f"{e.state}(mptcp)"
        row: tuple[str, ...] = (str(s.fd), state, e.local, remote, _timer(s))
        if with_options:
            o = s.options
            if o is None:
                row += ("?",) * 5 + (s.source,)
            else:
                row += ("on" if o["keepalive"] else "off", str(o.get("idle", "?")),
                        str(o.get("interval", "?")), str(o.get("count", "?")),
                        str(o.get("user_timeout", "?")), s.source)
        rows.append(row)
    lines.extend(_table(rows))
    return "\n".join(lines)


def format_all(reports: Sequence[ProcessStatus | Unreadable], include_loopback: bool) -> str:
    """The text ``status --all`` prints."""
    if not reports:
        return "no process holds a TCP socket"
    rows: list[tuple[str, ...]] = [("PID", "COMMAND", "ESTABLISHED", "WITHOUT_KEEPALIVE")]
    details: dict[int, list[str]] = {}
    for r in reports:
        if isinstance(r, Unreadable):
            rows.append((str(r.pid), escape(r.command), "?", f"? {r.error}"))
            continue
        established = sum(s.state == "ESTABLISHED" for s in r.sockets)
        rows.append((str(r.pid), escape(r.command), str(established),
                     str(r.without_keepalive(include_loopback))))
        details[len(rows) - 1] = [
            f"    fd {s.fd}  {s.endpoint.local} -> {s.endpoint.remote}"
            for s in r.sockets
            if s.lacks_keepalive and (include_loopback or not s.endpoint.loopback)]
    lines = []
    for i, line in enumerate(_table(rows)):
        lines.append(line)
        lines.extend(details.get(i, []))
    return "\n".join(lines)


def _describe(entry: Applied) -> str:
    where = entry.local if entry.state == "LISTEN" else f"{entry.local} -> {entry.remote}"
    head = f"  fd {entry.fd}  {entry.state}  {where}  ({entry.role}): {entry.action}"
    parts = []
    if entry.set:
        parts.append(_values(entry.set))
    if entry.kept and entry.action != "kept":
        parts.append(f"kept {_values(entry.kept)}, set by {entry.by}")
    for name, why in entry.not_set.items():
        parts.append(f"{name} not set: {why}")
    for name, why in entry.errors.items():
        parts.append(f"{name} failed: {why}")
    if entry.reason is not None:
        return f"{head}: " + "; ".join([entry.reason, *parts])
    return f"{head} " + "; ".join(parts) if parts else head


def format_apply(report: ApplyReport) -> str:
    """The text ``apply`` prints for one process."""
    if report.command is None:
        return f"PID {report.pid}: {report.error}"
    lines = [f"PID {report.pid} ({escape(report.command)}):"]
    if not report.sockets and report.error is None:
        lines.append("  no TCP sockets")
    lines.extend(_describe(e) for e in report.sockets)
    if report.error is not None:
        lines.append(f"  STOPPED: {report.error}")
    return "\n".join(lines)
