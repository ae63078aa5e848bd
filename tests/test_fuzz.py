"""The configuration parser under libFuzzer (fuzz/parse_fuzz.c).

Builds the fuzz target with clang, replays the corpus in fuzz/corpus, then
fuzzes for $KEEPALIVE_FUZZ_SECONDS (60 in CI, 10 elsewhere) from a copy of it.
A mutant parser that accepts "+15" is caught, so the oracle can fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from support import IN_CI, ROOT, need_tool, unavailable

SECONDS = int(os.environ.get("KEEPALIVE_FUZZ_SECONDS", "60" if IN_CI else "10"))


def build_fuzzer(source: Path, build: Path) -> Path:
    if not (source / "fuzz" / "parse_fuzz.c").exists():
        unavailable("runs from a source checkout (fuzz/)")
    cmake = need_tool("cmake")
    clang = need_tool("clang")
    configured = subprocess.run(
        [cmake, "-S", str(source), "-B", str(build), f"-DCMAKE_C_COMPILER={clang}",
         "-DKEEPALIVE_FUZZ=ON", "-DKEEPALIVE_WERROR=ON"],
        capture_output=True, text=True, timeout=300)
    assert configured.returncode == 0, configured.stderr
    built = subprocess.run([cmake, "--build", str(build), "--target", "parse_fuzz"],
                           capture_output=True, text=True, timeout=600)
    if built.returncode != 0 and "fuzzer" in built.stdout + built.stderr:
        unavailable(f"clang cannot link libFuzzer (libclang-rt-dev missing?): {built.stdout}")
    assert built.returncode == 0, built.stdout + built.stderr
    return build / "parse_fuzz"


@pytest.fixture(scope="module")
def fuzzer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fuzzer(ROOT, tmp_path_factory.mktemp("fuzz-build"))


def test_corpus_replays_clean(fuzzer: Path) -> None:
    corpus = sorted((ROOT / "fuzz" / "corpus").iterdir())
    assert len(corpus) >= 20
    result = subprocess.run([str(fuzzer), *map(str, corpus)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]


def test_bounded_fuzz_run(fuzzer: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(ROOT / "fuzz" / "corpus", corpus)
    result = subprocess.run([str(fuzzer), f"-max_total_time={SECONDS}", "-timeout=5",
                             "-rss_limit_mb=1024", str(corpus)],
                            capture_output=True, text=True, timeout=SECONDS + 120,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Done" in result.stderr


def test_oracle_catches_a_mutant_parser(tmp_path: Path) -> None:
    source = tmp_path / "src"
    for part in ("CMakeLists.txt", "src/c", "src/python/keepalive_preload/_table.py.in", "fuzz"):
        target = source / part
        if (ROOT / part).is_dir():
            shutil.copytree(ROOT / part, target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / part, target)
    parse = source / "src" / "c" / "parse.c"
    original = parse.read_text()
    mutant = original.replace("bool negative = (*p == '-');\n    if (negative)",
                              "bool negative = (*p == '-');\n    if (negative || *p == '+')")
    assert mutant != original
    parse.write_text(mutant)
    fuzzer = build_fuzzer(source, tmp_path / "build")
    result = subprocess.run([str(fuzzer), str(source / "fuzz" / "corpus" / "idle-plus")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "deadly signal" in result.stderr or "ABRT" in result.stderr
