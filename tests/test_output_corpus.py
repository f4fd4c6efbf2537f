"""Every renderer on real analyses of the corpus captures (the whole pipeline's output).

Skipped when the analysis core is not importable. The checks compare with references
made by other tools (capinfos packet counts, Zeek's conn.log baselines) or with facts
the report itself states (finding counts), never with our own earlier output.
"""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest
from test_output_reports import CORPUS, ZEEK, needs_corpus, read_zeek_log

from tcpanalyze import output
from tcpanalyze.gate import parse_fail_on
from tcpanalyze.report import FINDING_KINDS, Report

analysis = pytest.importorskip("tcpanalyze.analysis")

pytestmark = needs_corpus

CAPTURES = sorted(CORPUS.glob("*/*/capture.pcap*"))
SCHEMA = json.loads((Path(__file__).parent / "data/sarif-schema-2.1.0.json").read_text())
POLICY = parse_fail_on(["medium"])

_cache: dict[Path, Report] = {}


def _report(path: Path) -> Report:
    if path not in _cache:
        _cache[path] = analysis.analyze(str(path))
    return _cache[path]


def _capinfos_packets(path: Path) -> int:
    for line in (path.parent / "capinfos.txt").read_text().splitlines():
        if line.startswith("Number of packets:"):
            return int(line.split(":")[1])
    raise AssertionError("no packet count")


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.parent.name)
def test_every_format_on_a_real_capture(path: Path) -> None:
    report = _report(path)
    options = output.RenderOptions(policy=POLICY)
    rendered = {fmt: output.render(fmt, report, options) for fmt in output.FORMATS}

    # terminal: 80 columns, ASCII, and the packet count capinfos reports
    text = rendered["terminal"]
    assert max(len(line) for line in text.splitlines()) <= 80
    assert text.isascii()
    assert f"packets      {_capinfos_packets(path)} " in text

    jsonschema.Draft4Validator(SCHEMA).validate(json.loads(rendered["sarif"]))
    assert len(json.loads(rendered["sarif"])["runs"][0]["results"]) == len(report.findings)

    root = ET.fromstring(rendered["junit"])
    failing_kinds = {f.kind for f in report.findings if POLICY.fails(f)}
    assert root.get("tests") == str(len(FINDING_KINDS))
    assert root.get("failures") == str(len(failing_kinds))

    lines = rendered["ndjson"].splitlines()
    assert len(lines) == len(report.findings) + 1
    assert json.loads(lines[-1])["packets"] == _capinfos_packets(path)

    rows = list(csv.DictReader(io.StringIO(rendered["csv"])))
    assert len(rows) == len(report.connections)
    assert len(read_zeek_log(rendered["zeek"])["rows"]) == len(report.connections)


# items where the tracker's conn_state/history agree with Zeek (tests/test_zeek.py lists
# the disagreements, e.g. modbus-502-resets and pppoe-qinq)
@pytest.mark.parametrize("item", ["http-get", "pop3-rejects", "ftp-ipv6", "tcp-padding",
                                  "wikipedia"])
def test_zeek_log_of_a_real_analysis_matches_zeek(item: str) -> None:
    """Our conn.log for the capture, read like zeek-cut reads logs, agrees with the
    conn.log Zeek wrote for it: endpoints, conn_state, history, packets per side."""
    ours = read_zeek_log(output.render("zeek", _report(ZEEK / item / "capture.pcap")))["rows"]
    theirs = read_zeek_log((ZEEK / item / "zeek-conn.log").read_text())["rows"]
    theirs = [r for r in theirs if r["proto"] == "tcp"]
    keys = ("id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "conn_state", "history",
            "orig_pkts", "resp_pkts")

    def key(row: dict) -> tuple:
        return tuple(row[k] for k in keys)

    assert sorted(map(key, ours)) == sorted(map(key, theirs))
