"""Build: the per-segment core compiled with mypyc where it can be, else pure Python.

The same source runs either way. Compiled (tcpanalyze.COMPILED_MODULES: every module a
segment passes through, from the record walk to the analysis loop), one process analyses
the bench capture about 2.2x faster (bench/RESULTS.md). Compiling needs a C compiler and the
Python headers (Debian: gcc, python3-dev) and takes under a minute. Without them, with
TCPANALYZE_PURE=1, or for an editable install (`pip install -e .`: the source tree must
stay what runs, so an edit is never hidden by a stale compiled module), the package is
pure Python. `tcpanalyze --version` says which one is installed.
"""

from __future__ import annotations

import os
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

sys.path.insert(0, str(Path(__file__).parent))
from tcpanalyze import COMPILED_MODULES  # (__init__ imports nothing at import time)

COMPILED = [f"tcpanalyze/{name}.py" for name in COMPILED_MODULES]


def _say(message: str) -> None:
    print(f"tcpanalyze build: {message}", file=sys.stderr)


def _forget_earlier_builds() -> None:
    """setuptools packs what build/lib* holds: compiled modules left there by an earlier
    build (of a module no longer compiled, or before a pure build) would go into the
    wheel beside the new ones, and fail to import."""
    for path in Path(__file__).parent.glob("build/lib*/**/*"):
        if path.name.endswith(tuple(EXTENSION_SUFFIXES)):
            path.unlink()


def _extensions() -> list:
    if "editable_wheel" in sys.argv:
        _say("editable install: pure Python (the source tree is what runs)")
        return []
    if not {"bdist_wheel", "build", "build_ext", "install"} & set(sys.argv):
        return []  # (metadata only: pip asks for it before the build)
    _forget_earlier_builds()
    if os.environ.get("TCPANALYZE_PURE"):
        _say("TCPANALYZE_PURE is set: pure Python")
        return []
    try:
        from mypyc.build import mypycify
    except ImportError as exc:
        _say(f"mypyc not available ({exc}): pure Python")
        return []
    try:
        return mypycify(COMPILED, opt_level="3", group_name="tcpanalyze")
    except (Exception, SystemExit) as exc:  # mypyc exits on a type error
        _say(f"mypyc could not translate the core ({exc!r}): pure Python")
        return []


class OptionalBuildExt(build_ext):
    """All or nothing: the compiled modules share one runtime library, so if any of
    them fails to compile (no compiler, no Python headers), none is installed."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # CompileError, LinkError, a missing compiler...
            for output in self.get_outputs():
                Path(output).unlink(missing_ok=True)
            self.extensions = []
            _say(f"compiling failed ({exc}): pure Python")


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
