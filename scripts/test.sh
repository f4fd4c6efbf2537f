#!/usr/bin/env bash
# The whole test suite, from a fresh clone: system tools (tshark, tcpdump, ...) when we
# can install them, a virtualenv with the package and its test extras, then pytest on
# the pure-Python tree and on the compiled build.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for tool in tshark tcpdump dumpcap iptables tcptrace ethtool ip ss gcc; do
  command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
# the compiled core's build (setup.py) needs the headers of the Python that runs it
PY=${PYTHON:-python3}
"$PY" -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(
  os.path.join(sysconfig.get_paths()["include"], "Python.h")))' || need+=(python3-dev)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing system tools for: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends \
      tshark tcpdump iptables tcptrace ethtool iproute2 gcc python3-dev >/dev/null
  else
    echo "warning: missing ${need[*]} (not root or no apt-get): tests that need them skip"
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e '.[test,lab]'

# Twice: the tree itself (pure Python, editable), then the package as README's `pip
# install .` builds it on a new machine, the per-segment core compiled with mypyc
# (setup.py): built by pip from a new, empty venv (so nothing installed here, numpy
# say, helps the build) and installed into build/core; tests/conftest.py puts it first
# (TCPANALYZE_CORE_DIR) and tests/test_core.py fails if it did not compile.
echo "== pure Python (the source tree)"
.venv/bin/python -m pytest -q "$@"
echo "== compiled core (build/core)"
rm -rf build/core build/core-venv
"$PY" -m venv build/core-venv
build/core-venv/bin/python -m pip install -q --no-deps --target build/core .
rm -rf build/core-venv
TCPANALYZE_CORE_DIR=build/core exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
