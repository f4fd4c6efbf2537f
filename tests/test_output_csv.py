"""CSV: one row per connection."""

from __future__ import annotations

import csv
import io

from test_output_reports import ZEEK, corpus_report, needs_corpus, read_zeek_log

from tcpanalyze.output import csv as csv_out
from tcpanalyze.report import Report

pytestmark = needs_corpus


def _rows(report: Report) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(csv_out.render(report))))


def test_columns_and_values_follow_the_connections() -> None:
    report = corpus_report("pop3-rejects")
    rows = _rows(report)
    assert list(rows[0]) == list(csv_out.COLUMNS)
    assert len(rows) == 11
    # Zeek: six REJ attempts answered 'Sr', five POP3 sessions 'ShAdDafF'
    assert [r["conn_state"] for r in rows].count("REJ") == 6
    assert {r["history"] for r in rows} == {"Sr", "ShAdDafF"}
    refused = [r for r in rows if r["conn_state"] == "REJ"]
    assert all(r["findings"] == "connection_refused" for r in refused)
    assert all(r["capture"].endswith("pop3-rejects/capture.pcap") for r in rows)
    first = read_zeek_log((ZEEK / "pop3-rejects/zeek-conn.log").read_text())["rows"][0]
    assert rows[0]["client"] == f"{first['id.orig_h']}:{first['id.orig_p']}"
    assert int(rows[0]["packets_client"]) == int(first["orig_pkts"])


def test_ipv6_and_joined_findings_survive_quoting() -> None:
    report = corpus_report("ftp-ipv6")
    report.connections[0].findings = ["retransmission", "zero_window"]
    rows = _rows(report)
    assert rows[0]["client"].startswith("[2001:470:1f11:81f:")
    assert rows[0]["findings"] == "retransmission;zero_window"
    assert float(rows[0]["end"]) >= float(rows[0]["start"])


def test_empty_report_has_only_the_header() -> None:
    assert csv_out.render(Report([], [], [])) == ",".join(csv_out.COLUMNS) + "\n"
