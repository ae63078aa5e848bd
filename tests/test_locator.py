"""The Python API: path(), VARIANTS, environ(), __version__ and their errors."""

from __future__ import annotations

import os
import shutil
from importlib import metadata
from pathlib import Path

import pytest

import keepalive_preload
from keepalive_preload import _options


def test_variants() -> None:
    assert keepalive_preload.VARIANTS == ("connect", "listen", "socket")


@pytest.mark.parametrize(
    ("variant", "name"),
    [("connect", "libkeepalive.so"), ("listen", "libkeepalive_listen.so"),
     ("socket", "libkeepalive_socket.so")],
)
def test_path(variant: str, name: str) -> None:
    found = keepalive_preload.path(variant)
    assert os.path.isabs(found)
    assert os.path.basename(found) == name
    assert os.path.isfile(found)


def test_path_default_is_connect() -> None:
    assert keepalive_preload.path() == keepalive_preload.path("connect")


def test_path_is_in_the_installed_distribution() -> None:
    files = metadata.files("keepalive-preload") or []
    installed = {os.path.realpath(str(f.locate())) for f in files}
    for variant in keepalive_preload.VARIANTS:
        assert os.path.realpath(keepalive_preload.path(variant)) in installed


def test_version_matches_metadata() -> None:
    assert keepalive_preload.__version__ == metadata.version("keepalive-preload")


def test_unknown_variant() -> None:
    with pytest.raises(ValueError, match=r"'udp'.*client \(connect\), server \(listen\), "
                                         r"all \(socket\)"):
        keepalive_preload.path("udp")


def test_missing_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(keepalive_preload, "_LIB_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"libkeepalive_listen\.so.*reinstall") as info:
        keepalive_preload.path("listen")
    assert info.value.filename == str(tmp_path / "libkeepalive_listen.so")


def test_environ_sets_preload_and_options() -> None:
    env = keepalive_preload.environ("socket", idle=30, interval=5, count=3, user_timeout=0,
                                    maxseg=1400, window_clamp=1 << 20, syn_count=2,
                                    defer_accept=4, debug=True, base={"HOME": "/h"})
    assert env == {
        "HOME": "/h",
        "LD_PRELOAD": keepalive_preload.path("socket"),
        "TCP_KEEPIDLE": "30", "TCP_KEEPINTVL": "5", "TCP_KEEPCNT": "3",
        "TCP_USER_TIMEOUT": "0", "TCP_MAXSEG": "1400", "TCP_WINDOW_CLAMP": "1048576",
        "TCP_SYNCNT": "2", "TCP_DEFER_ACCEPT": "4", "LIBKEEPALIVE_DEBUG": "1",
    }


def test_environ_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KP_TEST_MARKER", "x")
    env = keepalive_preload.environ()
    assert env["KP_TEST_MARKER"] == "x"
    assert "KP_TEST_MARKER" in os.environ  # a copy: os.environ is not changed
    assert os.environ.get("LD_PRELOAD") != env["LD_PRELOAD"]


def test_environ_does_not_modify_base() -> None:
    base = {"LD_PRELOAD": "libfoo.so"}
    keepalive_preload.environ(base=base, idle=3)
    assert base == {"LD_PRELOAD": "libfoo.so"}


@pytest.mark.parametrize(
    ("existing", "expected"),
    [
        ("", "{lib}"),
        ("   ", "{lib}"),
        ("libfoo.so", "libfoo.so:{lib}"),
        ("libfoo.so libbar.so", "libfoo.so libbar.so:{lib}"),
        ("{lib}", "{lib}"),
        ("libfoo.so:{lib}", "libfoo.so:{lib}"),
        ("{lib} libfoo.so", "{lib} libfoo.so"),
        # Our other libraries are replaced, wherever they come from.
        ("/opt/x/libkeepalive_socket.so libfoo.so", "libfoo.so:{lib}"),
        ("libkeepalive_listen.so:{lib}:libfoo.so", "libfoo.so:{lib}"),
    ],
)
def test_environ_keeps_preload_entries_replaces_ours(existing: str, expected: str) -> None:
    lib = keepalive_preload.path()
    env = keepalive_preload.environ(base={"LD_PRELOAD": existing.format(lib=lib)})
    assert env["LD_PRELOAD"] == expected.format(lib=lib)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("idle", 0, None), ("idle", 32767, None), ("idle", 32768, r"TCP_KEEPIDLE.*1\.\.32767"),
        ("idle", -1, "TCP_KEEPIDLE"), ("count", 128, r"TCP_KEEPCNT.*1\.\.127"),
        ("interval", 40000, "TCP_KEEPINTVL"), ("user_timeout", -1, None),
        ("user_timeout", -2, r"TCP_USER_TIMEOUT.*-1 \(derive\)"),
        ("user_timeout", 2**31, "TCP_USER_TIMEOUT"), ("maxseg", 87, r"TCP_MAXSEG.*88\.\.32767"),
        ("syn_count", 128, "TCP_SYNCNT"), ("window_clamp", -1, "TCP_WINDOW_CLAMP"),
        ("defer_accept", -1, "TCP_DEFER_ACCEPT"), ("idle", True, "must be an int"),
        ("idle", "15", "must be an int"), ("idle", 1.5, "must be an int"),
    ],
)
def test_environ_validates(option: str, value: object, message: str | None) -> None:
    variant = "socket"
    if message is None:
        env = keepalive_preload.environ(variant, base={}, **{option: value})  # type: ignore[arg-type]
        assert env[_options.BY_NAME[option].variable] == str(value)
    else:
        with pytest.raises(ValueError, match=message):
            keepalive_preload.environ(variant, base={}, **{option: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(("variant", "option"), [("listen", "syn_count"),
                                                 ("connect", "defer_accept")])
def test_environ_rejects_option_the_variant_ignores(variant: str, option: str) -> None:
    with pytest.raises(ValueError, match=f"no effect with the '{variant}' variant"):
        keepalive_preload.environ(variant, base={}, **{option: 1})  # type: ignore[arg-type]


def test_environ_unknown_variant() -> None:
    with pytest.raises(ValueError, match="unknown variant"):
        keepalive_preload.environ("udp", base={})


@pytest.mark.parametrize("directory", ["with space", "with:colon"])
def test_environ_rejects_path_ld_preload_cannot_carry(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, directory: str) -> None:
    libdir = tmp_path / directory
    libdir.mkdir()
    shutil.copy(keepalive_preload.path(), libdir / "libkeepalive.so")
    monkeypatch.setattr(keepalive_preload, "_LIB_DIR", str(libdir))
    assert keepalive_preload.path() == str(libdir / "libkeepalive.so")  # path() still works
    with pytest.raises(ValueError, match="LD_PRELOAD cannot carry"):
        keepalive_preload.environ(base={})


def test_import_is_cheap() -> None:
    import subprocess
    import sys

    code = ("import sys; before = set(sys.modules); import keepalive_preload; "
            "print(sorted(set(sys.modules) - before))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    loaded = set(eval(out))
    assert not loaded & {"subprocess", "pathlib", "importlib.metadata", "dataclasses",
                         "typing", "argparse", "json"}
