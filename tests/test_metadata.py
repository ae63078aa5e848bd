"""The installed distribution's metadata names where the project lives."""

from __future__ import annotations

from importlib import metadata


def test_project_urls() -> None:
    urls = dict(entry.split(", ", 1) for entry in
                metadata.metadata("keepalive-preload").get_all("Project-URL") or [])
    assert urls["Homepage"] == "https://pypi.org/project/keepalive-preload/"
    assert urls["Documentation"].startswith("https://pypi.org/project/keepalive-preload/")
