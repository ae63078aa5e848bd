"""The configuration parsers under libFuzzer: fuzz/parse_fuzz.c (values) and
fuzz/conf_fuzz.c (the configuration file's lines).

Builds each fuzz target with clang, replays its corpus (fuzz/corpus,
fuzz/conf-corpus), then fuzzes for $KEEPALIVE_FUZZ_SECONDS (60 in CI, 10
elsewhere) from a copy of it. A mutant parser that accepts "+15", and a
mutant file parser that gets the TCP_*-over-alias rule wrong, are caught, so
the oracles can fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from support import IN_CI, ROOT, need_tool, unavailable

SECONDS = int(os.environ.get("KEEPALIVE_FUZZ_SECONDS", "60" if IN_CI else "10"))


#: Each fuzz target and its corpus.
TARGETS = {"parse_fuzz": "corpus", "conf_fuzz": "conf-corpus"}


def build_fuzzer(source: Path, build: Path, target: str = "parse_fuzz") -> Path:
    if not (source / "fuzz" / "parse_fuzz.c").exists():
        unavailable("runs from a source checkout (fuzz/)")
    cmake = need_tool("cmake")
    clang = need_tool("clang")
    configured = subprocess.run(
        [cmake, "-S", str(source), "-B", str(build), f"-DCMAKE_C_COMPILER={clang}",
         "-DKEEPALIVE_FUZZ=ON", "-DKEEPALIVE_WERROR=ON"],
        capture_output=True, text=True, timeout=300)
    assert configured.returncode == 0, configured.stderr
    built = subprocess.run([cmake, "--build", str(build), "--target", target],
                           capture_output=True, text=True, timeout=600)
    if built.returncode != 0 and "fuzzer" in built.stdout + built.stderr:
        unavailable(f"clang cannot link libFuzzer (libclang-rt-dev missing?): {built.stdout}")
    assert built.returncode == 0, built.stdout + built.stderr
    return build / target


@pytest.fixture(scope="module")
def fuzz_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-build")


@pytest.fixture(scope="module", params=list(TARGETS))
def fuzzer(request: pytest.FixtureRequest, fuzz_build: Path) -> tuple[Path, str]:
    return build_fuzzer(ROOT, fuzz_build, request.param), TARGETS[request.param]


def test_corpus_replays_clean(fuzzer: tuple[Path, str]) -> None:
    program, corpus_name = fuzzer
    corpus = sorted((ROOT / "fuzz" / corpus_name).iterdir())
    assert len(corpus) >= 15
    result = subprocess.run([str(program), *map(str, corpus)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]


def test_bounded_fuzz_run(fuzzer: tuple[Path, str], tmp_path: Path) -> None:
    program, corpus_name = fuzzer
    corpus = tmp_path / "corpus"
    shutil.copytree(ROOT / "fuzz" / corpus_name, corpus)
    result = subprocess.run([str(program), f"-max_total_time={SECONDS}", "-timeout=5",
                             "-rss_limit_mb=1024", str(corpus)],
                            capture_output=True, text=True, timeout=SECONDS + 120,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Done" in result.stderr


def copy_source(tmp_path: Path) -> Path:
    source = tmp_path / "src"
    for part in ("CMakeLists.txt", "src/c", "fuzz", "src/python/keepalive_preload/_table.py.in"):
        target = source / part
        if (ROOT / part).is_dir():
            shutil.copytree(ROOT / part, target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / part, target)
    return source


@pytest.mark.parametrize(
    ("target", "file", "original", "mutant", "witness"),
    [
        ("parse_fuzz", "parse.c", "bool negative = (*p == '-');\n    if (negative)",
         "bool negative = (*p == '-');\n    if (negative || *p == '+')", "corpus/idle-plus"),
        ("conf_fuzz", "conffile.c", "strcmp(name, alias) == 0 && state->named[i]",
         "strcmp(name, alias) == 0 && !state->named[i]", "conf-corpus/alias-only"),
    ],
)
def test_oracle_catches_a_mutant_parser(tmp_path: Path, target: str, file: str, original: str,
                                        mutant: str, witness: str) -> None:
    source = copy_source(tmp_path)
    path = source / "src" / "c" / file
    text = path.read_text()
    assert original in text
    path.write_text(text.replace(original, mutant))
    fuzzer = build_fuzzer(source, tmp_path / "build", target)
    result = subprocess.run([str(fuzzer), str(source / "fuzz" / witness)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "deadly signal" in result.stderr or "ABRT" in result.stderr
