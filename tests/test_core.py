"""The compiled core (setup.py, mypyc) and the pure-Python one: which one runs, that the
build falls back to pure Python where it cannot compile, and that both give the same
reports on every capture we have."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest
from conftest import CORE_DIR

import tcpanalyze
from tcpanalyze import COMPILED_MODULES, core

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"


def test_the_core_under_test_is_the_one_asked_for() -> None:
    """The pure pass runs the tree; the compiled pass (TCPANALYZE_CORE_DIR) runs every
    listed module compiled, from that directory, not a pure copy that shadowed it."""
    if CORE_DIR is None:
        assert core() == "pure Python"
        assert Path(tcpanalyze.__file__).resolve().parent == ROOT / "tcpanalyze"
    else:
        assert core() == "compiled"
        assert Path(tcpanalyze.__file__).resolve().parent == CORE_DIR / "tcpanalyze"
        for name in COMPILED_MODULES:
            module = importlib.import_module(f"tcpanalyze.{name}")
            assert module.__file__ is not None and module.__file__.endswith(".so"), name


def test_a_subprocess_runs_the_same_core() -> None:
    """Tests that run `python -m tcpanalyze` (from the tree as cwd) test the same build."""
    proc = subprocess.run([sys.executable, "-m", "tcpanalyze", "--version"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.strip() == f"tcpanalyze {tcpanalyze.__version__} ({core()} core)"


def _wheel(tmp_path: Path, **env: str) -> tuple[list[str], str]:
    """Build a wheel from a copy of the package's sources, with a compiled module an
    earlier build left in build/, using this venv's setuptools and mypy (nothing
    downloaded); returns the names in the wheel and the build's messages."""
    source = tmp_path / "source"
    shutil.copytree(ROOT / "tcpanalyze", source / "tcpanalyze",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, source / name)
    # compiled modules an earlier build left where setuptools gathers a wheel's files
    # (build/lib for a pure one, build/lib.<platform>-<python> for one with extensions)
    plat = f"lib.{sysconfig.get_platform()}-{sys.implementation.cache_tag}"
    for lib in ("lib", plat):
        old = source / "build" / lib / "tcpanalyze"
        old.mkdir(parents=True)
        (old / f"batch{EXTENSION_SUFFIXES[0]}").write_bytes(b"\x7fELF left over")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-v", "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=600, env={**os.environ, **env})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist(), proc.stdout + proc.stderr


@pytest.mark.skipif(CORE_DIR is not None, reason="the build is tested once, in the pure pass")
def test_the_build_is_pure_python_where_it_cannot_compile(tmp_path: Path) -> None:
    """No C compiler (CC fails): the wheel is still built, with no compiled module, so
    the package works, pure Python; and TCPANALYZE_PURE asks for that directly, even
    where an earlier build left compiled modules in build/."""
    names, log = _wheel(tmp_path / "nocc", CC="false")
    assert "tcpanalyze/tracker.py" in names
    assert not [n for n in names if n.endswith(".so")]
    assert "compiling failed" in log
    names, log = _wheel(tmp_path / "asked", TCPANALYZE_PURE="1")
    assert "tcpanalyze/tracker.py" in names
    assert not [n for n in names if n.endswith(".so")]
    assert "TCPANALYZE_PURE is set" in log


_REPORTS = r"""
import hashlib, json, sys
from click.testing import CliRunner
from tcpanalyze import core
from tcpanalyze.cli import main
runner = CliRunner()
out = {"core": core()}
for path in sys.argv[1:]:
    for fmt in ("json", "ndjson", "zeek", "csv"):
        r = runner.invoke(main, ["report", "--format", fmt, "--jobs", "1", path])
        out[f"{path} {fmt}"] = [r.exit_code, hashlib.sha256(r.stdout_bytes).hexdigest()]
print(json.dumps(out))
"""


def _captures() -> list[str]:
    paths = [p for p in (ROOT / "sample_pcaps").iterdir() if ".pcap" in p.name]
    paths += [p for p in (ROOT / "tests" / "data").rglob("*") if ".pcap" in p.name]
    if CORPUS.is_dir():
        paths += [p for p in CORPUS.rglob("*") if ".pcap" in p.name or p.suffix == ".cap"]
    return sorted(str(p) for p in paths if p.is_file())


def _reports(python_path: Path, captures: list[str]) -> dict[str, object]:
    env = {**os.environ, "PYTHONSAFEPATH": "1", "PYTHONPATH": str(python_path)}
    proc = subprocess.run([sys.executable, "-c", _REPORTS, *captures], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=900, check=True)
    return json.loads(proc.stdout)


@pytest.mark.skipif(CORE_DIR is None,
                    reason="compares the compiled build with the tree: the compiled pass")
def test_compiled_and_pure_reports_are_identical() -> None:
    """Every sample, test and corpus capture, in four formats: the compiled core's
    output is byte for byte the pure one's (mypyc has its own int and float handling,
    which a different number in a report would show)."""
    assert CORE_DIR is not None
    captures = _captures()
    assert len(captures) >= 100
    pure = _reports(ROOT, captures)
    compiled = _reports(CORE_DIR, captures)
    assert (pure.pop("core"), compiled.pop("core")) == ("pure Python", "compiled")
    assert len(pure) == 4 * len(captures)
    differ = sorted(k for k in pure if pure[k] != compiled[k])
    assert not differ, differ[:20]
    # (and the reports are reports: most captures give exit code 0 and some output)
    empty = hashlib.sha256(b"").hexdigest()
    assert sum(code == 0 and digest != empty for code, digest in pure.values()) > 300
