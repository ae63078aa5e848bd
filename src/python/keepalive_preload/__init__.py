"""Locate the keepalive-preload libraries and build environments that use them.

>>> import keepalive_preload
>>> keepalive_preload.path()                       # doctest: +SKIP
'/.../site-packages/keepalive_preload/lib/libkeepalive.so'
>>> env = keepalive_preload.environ("socket", idle=30)   # for subprocess.run(..., env=env)
"""

from __future__ import annotations

import errno
import os

from ._options import BY_NAME, VARIANTS
from ._version import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["LIBRARIES", "VARIANTS", "__version__", "environ", "path"]

#: The library file of each variant: what it interposes and where it applies.
LIBRARIES = {
    "connect": "libkeepalive.so",  # connect(2): outbound connections
    "listen": "libkeepalive_listen.so",  # listen(2): every accepted connection
    "socket": "libkeepalive_socket.so",  # socket(2): every TCP socket
}

_LIB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib")


def _check_variant(variant: str) -> str:
    if variant not in LIBRARIES:
        raise ValueError(
            f"unknown variant {variant!r}; expected one of: {', '.join(VARIANTS)}"
        )
    return LIBRARIES[variant]


def path(variant: str = "connect") -> str:
    """Return the absolute path of the bundled library for ``variant``.

    ``variant`` is ``"connect"`` (``libkeepalive.so``), ``"listen"``
    (``libkeepalive_listen.so``) or ``"socket"`` (``libkeepalive_socket.so``).

    Raises ``ValueError`` for an unknown variant and ``FileNotFoundError`` when
    the installation has lost the file.
    """
    library = os.path.join(_LIB_DIR, _check_variant(variant))
    if not os.path.isfile(library):
        raise FileNotFoundError(
            errno.ENOENT,
            f"{library} is missing: this keepalive-preload installation is broken; "
            "reinstall it with: pip install --force-reinstall keepalive-preload",
            library,
        )
    return library


def _preload(current: str, library: str) -> str:
    """``current`` (an LD_PRELOAD value) with ``library`` appended once."""
    if any(ch in library for ch in " :\t\n"):
        raise ValueError(
            f"LD_PRELOAD cannot carry the path {library!r}: it contains a space or colon; "
            "install keepalive-preload in a directory without them"
        )
    entries = current.replace(":", " ").split()
    if library in entries:
        return current
    return f"{current}:{library}" if entries else library


def environ(
    variant: str = "connect",
    *,
    idle: int | None = None,
    interval: int | None = None,
    count: int | None = None,
    user_timeout: int | None = None,
    syn_count: int | None = None,
    defer_accept: int | None = None,
    maxseg: int | None = None,
    window_clamp: int | None = None,
    debug: bool = False,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Return a copy of ``base`` (default: ``os.environ``) that preloads ``variant``.

    The library is appended to ``LD_PRELOAD`` (entries already there are kept,
    and it is not added twice). Each option that is not ``None`` is set in its
    environment variable: ``idle`` (``TCP_KEEPIDLE``, s), ``interval``
    (``TCP_KEEPINTVL``, s), ``count`` (``TCP_KEEPCNT``), ``user_timeout``
    (``TCP_USER_TIMEOUT``, ms; -1 derives it), ``syn_count`` (``TCP_SYNCNT``),
    ``defer_accept`` (``TCP_DEFER_ACCEPT``, s), ``maxseg`` (``TCP_MAXSEG``),
    ``window_clamp`` (``TCP_WINDOW_CLAMP``). 0 leaves the system default.
    ``debug`` sets ``LIBKEEPALIVE_DEBUG=1``.

    Raises ``ValueError`` for an unknown variant, a value out of range (the
    message names the variable and the range) or an option that the variant
    does not apply.
    """
    values = {
        "idle": idle, "interval": interval, "count": count, "user_timeout": user_timeout,
        "syn_count": syn_count, "defer_accept": defer_accept, "maxseg": maxseg,
        "window_clamp": window_clamp,
    }
    library = path(variant)
    env = dict(os.environ if base is None else base)
    for name, value in values.items():
        if value is None:
            continue
        option = BY_NAME[name]
        option.check(value)
        if variant not in option.variants:
            raise ValueError(
                f"{name} ({option.variable}) has no effect with the {variant!r} variant; "
                f"it applies to: {', '.join(option.variants)}"
            )
        env[option.variable] = str(value)
    if debug:
        env["LIBKEEPALIVE_DEBUG"] = "1"
    env["LD_PRELOAD"] = _preload(env.get("LD_PRELOAD", ""), library)
    return env
