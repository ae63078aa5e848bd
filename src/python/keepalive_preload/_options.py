"""The options the preload libraries read, with their ranges: one table that
the API and the command line both validate against.

The C libraries keep the same table in ``src/c/options.def``;
``tests/test_options_agree.py`` checks that the two agree.
"""

from __future__ import annotations

import re

VARIANTS = ("connect", "listen", "socket")

_WHOLE_NUMBER = re.compile(r"-?[0-9]+\Z")
_METAVARS = {"seconds": "S", "ms": "MS", "probes": "N", "retries": "N", "bytes": "BYTES"}


class Option:
    """One environment variable the libraries read."""

    __slots__ = ("default", "flag", "help", "maximum", "metavar", "minimum", "name", "special",
                 "unit", "variable", "variants")

    def __init__(
        self,
        name: str,
        variable: str,
        minimum: int,
        maximum: int,
        unit: str,
        default: int,
        help: str,
        special: tuple[int, ...] = (0,),
        variants: tuple[str, ...] = VARIANTS,
    ) -> None:
        self.name = name
        self.variable = variable
        self.flag = "--" + name.replace("_", "-")
        self.minimum = minimum
        self.maximum = maximum
        self.unit = unit
        self.default = default
        self.metavar = _METAVARS[unit]
        self.help = help
        self.special = special
        self.variants = variants

    def allowed(self) -> str:
        """The accepted values, in words: ``0 (system default) or 1..32767``."""
        words = {-1: "-1 (derive)", 0: "0 (system default)"}
        return ", ".join(words[v] for v in self.special) + f" or {self.minimum}..{self.maximum}"

    def in_range(self, value: int) -> bool:
        return value in self.special or self.minimum <= value <= self.maximum

    def check(self, value: int) -> int:
        """Return ``value`` if the libraries accept it, else raise ``ValueError``."""
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{self.name} ({self.variable}) must be an int, not {value!r}")
        if not self.in_range(value):
            raise ValueError(
                f"{self.name} ({self.variable}) must be {self.allowed()} {self.unit}, not {value}"
            )
        return value

    def parse(self, text: str) -> int:
        """Parse ``text`` as the libraries do: an optional '-' and decimal digits only;
        raise ``ValueError`` saying what is expected."""
        if not _WHOLE_NUMBER.match(text) or not self.in_range(int(text)):
            raise ValueError(f"{text!r} is not valid; expected {self.allowed()} {self.unit}")
        return int(text)


_INT_MAX = 2**31 - 1

OPTIONS = (
    Option("idle", "TCP_KEEPIDLE", 1, 32767, "seconds", 15,
           "idle time before the first keepalive probe (default 15)"),
    Option("interval", "TCP_KEEPINTVL", 1, 32767, "seconds", 15,
           "time between unanswered probes (default 15)"),
    Option("count", "TCP_KEEPCNT", 1, 127, "probes", 9,
           "unanswered probes before the connection is dropped (default 9)"),
    Option("user_timeout", "TCP_USER_TIMEOUT", 1, _INT_MAX, "ms", -1,
           "how long sent data may stay unacknowledged; -1 derives it as "
           "(idle + interval * count) * 1000 (default -1)", special=(-1, 0)),
    Option("syn_count", "TCP_SYNCNT", 1, 127, "retries", 0,
           "SYN retransmissions before connect gives up (default: system)",
           variants=("connect", "socket")),
    Option("defer_accept", "TCP_DEFER_ACCEPT", 1, _INT_MAX, "seconds", 0,
           "wake the server only when data arrives, waiting up to this long (default: off)",
           variants=("listen", "socket")),
    Option("maxseg", "TCP_MAXSEG", 88, 32767, "bytes", 0,
           "maximum segment size (default: system)"),
    Option("window_clamp", "TCP_WINDOW_CLAMP", 1, _INT_MAX, "bytes", 0,
           "bound on the advertised window (default: system)"),
)

BY_NAME = {option.name: option for option in OPTIONS}


def effective(values: dict[str, int | None]) -> dict[str, int]:
    """What the libraries set, by option name, given the values the user chose
    (``None``: not given): the defaults filled in and TCP_USER_TIMEOUT -1
    derived as ``(idle + interval * count) * 1000`` ms (saturating at INT_MAX;
    0 if any of the three is 0). 0 means "leave the system default"."""
    out = {o.name: o.default if values.get(o.name) is None else int(values[o.name] or 0)
           for o in OPTIONS}
    if out["user_timeout"] == -1:
        idle, interval, count = out["idle"], out["interval"], out["count"]
        derived = (idle + interval * count) * 1000 if idle and interval and count else 0
        out["user_timeout"] = min(derived, _INT_MAX)
    return out
