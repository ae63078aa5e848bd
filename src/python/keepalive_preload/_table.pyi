# The types of _table.py, which CMake writes at build time from src/c/*.def.
OPTIONS: tuple[
    tuple[str, str, str | None, int, int, int, int, str, tuple[str, ...] | None, bool,
          tuple[str, ...], str | None, str | None, str],
    ...,
]
VARIANTS: tuple[tuple[str, str, str, str], ...]
