"""The options the preload libraries read and the variants that read them.

Both come from ``_table``, which CMake writes at build time from
``src/c/options.def`` and ``src/c/variants.def``: the C libraries, this
package, the command line and the tests' expectations share one table.
"""

from __future__ import annotations

from . import _table

#: The variants, by the name of the call each interposes.
VARIANTS = tuple(row[0] for row in _table.VARIANTS)
#: The library file of each variant.
LIBRARIES = {row[0]: row[1] for row in _table.VARIANTS}
#: The command line's word for each variant (``--client``, ``path client``).
WORDS = {row[0]: row[2] for row in _table.VARIANTS}
#: What each variant reaches, in words.
REACHES = {row[0]: row[3] for row in _table.VARIANTS}

_METAVARS = {"seconds": "S", "ms": "MS", "probes": "N", "retries": "N", "bytes": "BYTES"}
_SPECIAL_WORDS = {-1: "-1 (derive)", 0: "0 (system default)"}


def _whole_number(text: str) -> bool:
    """An optional "-" and ASCII decimal digits only, as the libraries parse."""
    digits = text[1:] if text.startswith("-") else text
    return digits.isascii() and digits.isdigit()


def variant_name(name: str) -> str:
    """The variant ``name`` means: a call name (``connect``) or the command
    line's word for it (``client``). Raises ``ValueError`` listing both."""
    if name in LIBRARIES:
        return name
    for variant, word in WORDS.items():
        if name == word:
            return variant
    valid = ", ".join(f"{WORDS[v]} ({v})" for v in VARIANTS)
    raise ValueError(f"unknown variant {name!r}; expected one of: {valid}")


class Option:
    """One environment variable the libraries read (a row of options.def)."""

    __slots__ = ("alias", "bpf_at", "bpf_since", "default", "flag", "help", "live", "maximum",
                 "metavar", "minimum", "name", "ruled", "special", "unit", "variable", "variants")

    def __init__(
        self,
        name: str,
        variable: str,
        alias: str | None,
        minimum: int,
        maximum: int,
        special: int,
        default: int,
        unit: str,
        variants: tuple[str, ...] | None,
        ruled: bool,
        live: tuple[str, ...],
        bpf_at: str | None,
        bpf_since: str | None,
        help: str,
    ) -> None:
        self.name = name
        self.variable = variable
        self.alias = alias
        self.flag = "--" + name.replace("_", "-")
        self.minimum = minimum
        self.maximum = maximum
        #: The values accepted outside minimum..maximum: 0, and the row's special one.
        self.special = (special, 0) if special else (0,)
        self.default = default
        self.unit = unit
        self.metavar = _METAVARS[unit]
        self.variants = VARIANTS if variants is None else variants
        #: The precedence rule covers it: the program's own value wins (KEEPALIVE=on).
        self.ruled = ruled
        #: Socket states ``apply`` may set it on: "listen", "connecting" (SYN-SENT),
        #: "connected" (ESTABLISHED, SYN-RECV).
        self.live = live
        #: The sock_ops callback where the cgroup program sets it ("established",
        #: "connect": outbound only), or None: bpf_setsockopt refuses it.
        self.bpf_at = bpf_at
        #: The first kernel whose bpf_setsockopt accepts it, as (major, minor), or None.
        self.bpf_since = (None if bpf_since is None else
                          (int(bpf_since.split(".")[0]), int(bpf_since.split(".")[1])))
        self.help = help

    def allowed(self) -> str:
        """The accepted values, in words: ``0 (system default) or 1..32767``."""
        words = ", ".join(_SPECIAL_WORDS[v] for v in self.special)
        return f"{words} or {self.minimum}..{self.maximum}"

    def describe_default(self) -> str:
        """The default, in words: ``15``, ``-1 (derive)`` or ``system``."""
        if self.default == 0:
            return "system"
        return _SPECIAL_WORDS.get(self.default, str(self.default))

    @property
    def optname(self) -> int:
        """The IPPROTO_TCP socket option it sets, which its variable names
        (TCP_KEEPIDLE): the number from the socket module."""
        import socket

        return int(getattr(socket, self.variable))

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
        if not _whole_number(text) or not self.in_range(int(text)):
            raise ValueError(f"{text!r} is not valid; expected {self.allowed()} {self.unit}")
        return int(text)


_INT_MAX = 2**31 - 1

OPTIONS = tuple(Option(*row) for row in _table.OPTIONS)
BY_NAME = {option.name: option for option in OPTIONS}
BY_VARIABLE = {option.variable: option for option in OPTIONS}


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
