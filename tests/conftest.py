"""Which tcpanalyze the tests run.

By default the source tree, pure Python (an editable install: what a developer edits is
what runs). With TCPANALYZE_CORE_DIR set, a compiled build installed into that directory
(`pip install --target DIR .`: setup.py compiles the per-segment core with mypyc):
scripts/test.sh runs the whole suite both ways. The compiled package is put first on
this process's path and on its subprocesses' (`python -m tcpanalyze` from any cwd:
PYTHONSAFEPATH keeps the cwd, often the source tree, from coming first), and the tree
stays on the path after it for `lab`, `fuzz` and `tests`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_core_dir = os.environ.get("TCPANALYZE_CORE_DIR")
if _core_dir:
    CORE_DIR: Path | None = Path(_core_dir).resolve()
    if "tcpanalyze" in sys.modules:
        raise RuntimeError("tcpanalyze was imported before tests/conftest.py chose it")
    sys.path.insert(0, str(CORE_DIR))
    os.environ["PYTHONSAFEPATH"] = "1"
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(CORE_DIR), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
else:
    CORE_DIR = None
