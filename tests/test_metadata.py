"""The installed distribution's metadata claims no address the project cannot
back: nothing is published on PyPI and there is no public repository yet."""

from __future__ import annotations

from importlib import metadata


def test_no_project_urls() -> None:
    meta = metadata.metadata("keepalive-preload")
    assert meta.get_all("Project-URL") is None
    assert meta.get_all("Home-page") is None
