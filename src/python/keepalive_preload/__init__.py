"""Locate the keepalive-preload libraries and build environments that use them.

>>> import keepalive_preload
>>> keepalive_preload.path()                       # doctest: +SKIP
'/.../site-packages/keepalive_preload/lib/libkeepalive.so'
>>> env = keepalive_preload.environ("socket", idle=30)   # for subprocess.run(..., env=env)
"""

from __future__ import annotations

import errno
import os

from ._options import BY_NAME, LIBRARIES, OPTIONS, VARIANTS, variant_name
from ._version import __version__

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["LIBRARIES", "VARIANTS", "__version__", "environ", "path"]

try:
    # The system packages' copy (keepalive-preload .deb/.rpm): the libraries
    # of libkeepalive-preload, /usr/lib or /usr/lib64 (packaging/build_packages.py
    # writes _paths.py there; a wheel has none).
    from ._paths import LIB_DIR as _LIB_DIR
    from ._paths import REINSTALL as _REINSTALL
except ImportError:
    # A wheel: the libraries beside the package.
    _LIB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib")
    _REINSTALL = ("pip install --force-reinstall with the wheel it came from (built by "
                  "packaging/build-all into dist/), or from a source tree: pip install .")


def path(variant: str = "connect") -> str:
    """Return the absolute path of the library for ``variant``: the wheel's
    own copy, or with the system packages the one in the library directory.

    ``variant`` is one of ``VARIANTS`` (the interposed call: ``"connect"``,
    ``"listen"``, ``"socket"``) or the command line's word for it
    (``"client"``, ``"server"``, ``"all"``); ``LIBRARIES`` names the files.

    Raises ``ValueError`` for an unknown variant and ``FileNotFoundError`` when
    the installation has lost the file.
    """
    library = os.path.join(_LIB_DIR, LIBRARIES[variant_name(variant)])
    if not os.path.isfile(library):
        raise FileNotFoundError(
            errno.ENOENT,
            f"{library} is missing: this keepalive-preload installation is broken; "
            f"reinstall it: {_REINSTALL}",
            library,
        )
    return library


def _preload(current: str, library: str) -> str:
    """``current`` (an LD_PRELOAD value) with ``library`` added once: entries
    that are not ours are kept in their order, our other libraries (any path
    with one of our file names) are replaced."""
    if any(ch in library for ch in " :\t\n"):
        raise ValueError(
            f"LD_PRELOAD cannot carry the path {library!r}: it contains a space or colon; "
            "install keepalive-preload in a directory without them"
        )
    ours = set(LIBRARIES.values())
    entries = current.replace(":", " ").split()
    kept = [e for e in entries if e == library or os.path.basename(e) not in ours]
    if kept == entries:  # nothing else of ours: keep the value as it was written
        if library in entries:
            return current
        return f"{current}:{library}" if entries else library
    return ":".join([e for e in kept if e != library] + [library])


def environ(
    variant: str = "connect",
    *,
    debug: bool = False,
    force: bool = False,
    base: Mapping[str, str] | None = None,
    **options: int | None,
) -> dict[str, str]:
    # The options are the table's rows (idle=, interval=, ...: see the
    # docstring), taken by name so that a row added to the table is accepted
    # here without another edit.
    for name in options:
        if name not in BY_NAME:
            raise TypeError(f"environ() got an unexpected keyword argument {name!r}")
    values = {o.name: options.get(o.name) for o in OPTIONS}
    symbol = variant_name(variant)
    library = path(symbol)
    env = dict(os.environ if base is None else base)
    for name, value in values.items():
        if value is None:
            continue
        option = BY_NAME[name]
        option.check(value)
        if symbol not in option.variants:
            raise ValueError(
                f"{name} ({option.variable}) has no effect with the {symbol!r} variant; "
                f"it applies to: {', '.join(option.variants)}"
            )
        env[option.variable] = str(value)
    if debug:
        env["LIBKEEPALIVE_DEBUG"] = "1"
    if force:
        env["KEEPALIVE"] = "force"
    env["LD_PRELOAD"] = _preload(env.get("LD_PRELOAD", ""), library)
    return env


environ.__doc__ = """Return a copy of ``base`` (default: ``os.environ``) that preloads ``variant``.

    ``variant`` is named as for ``path()``. The library is added to
    ``LD_PRELOAD``: entries already there are kept, our other libraries are
    replaced, and it is not added twice. Each option that is not ``None`` is
    set in its environment variable (0 leaves the system default):

""" + "".join(
    f"    - ``{o.name}`` (``{o.variable}``, {o.unit}, {o.allowed()}; default "
    f"{o.describe_default()}): {o.help}\n" for o in OPTIONS
) + """
    ``debug`` sets ``LIBKEEPALIVE_DEBUG=1``. ``force`` sets ``KEEPALIVE=force``:
    the library's values then win over those a program sets itself (by
    default the program's own keepalive settings win).

    Raises ``ValueError`` for an unknown variant, a value out of range (the
    message names the variable and the range) or an option that the variant
    does not apply.
    """
