"""Written by packaging/build_packages.py into the system packages' copy only."""

LIB_DIR: str
REINSTALL: str
