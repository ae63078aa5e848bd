"""Type stub: _version.py is written at build time from CMakeLists.txt."""

__version__: str
