#!/usr/bin/env bash
# The whole test suite, from a fresh clone: system tools (tshark, tcpdump, ...) when we
# can install them, a virtualenv with the package and its test extras, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for tool in tshark tcpdump dumpcap iptables tcptrace ethtool ip ss; do
  command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing system tools for: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends \
      tshark tcpdump iptables tcptrace ethtool iproute2 >/dev/null
  else
    echo "warning: missing ${need[*]} (not root or no apt-get): tests that need them skip"
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e '.[test,lab]'
exec .venv/bin/python -m pytest -q "$@"
