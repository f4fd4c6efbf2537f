"""JSON and NDJSON renderers."""

from __future__ import annotations

import io
import json

from test_output_reports import corpus_report, flood_finding, needs_corpus

from tcpanalyze.output import json as json_out
from tcpanalyze.output import ndjson
from tcpanalyze.report import Finding, Report

pytestmark = needs_corpus


def test_json_is_the_report_contract_in_its_key_order() -> None:
    report = corpus_report("modbus-502-resets")
    text = json_out.render(report)
    data = json.loads(text)
    assert data == json.loads(json.dumps(report.to_dict()))
    assert list(data) == list(report.to_dict())  # not re-sorted
    assert list(data["connections"][0]) == list(report.connections[0].to_dict())
    assert text.endswith("\n") and text.isascii()


def test_json_indent_and_timeline_options() -> None:
    report = corpus_report("http-get")
    assert "\n" not in json_out.render(report, indent=None).rstrip("\n")
    compact = json.loads(json_out.render(report, timeline=False))
    assert "timeline" not in compact["connections"][0]


def test_json_escapes_non_ascii_summaries() -> None:
    report = corpus_report("http-get")
    report.findings.append(Finding("rst_teardown", "low", "reset \u2192 closed", 1.0))
    text = json_out.render(report)
    assert text.isascii()
    assert json.loads(text)["findings"][-1]["summary"] == "reset \u2192 closed"


def test_ndjson_one_line_per_finding_then_summary() -> None:
    report = corpus_report("pop3-rejects")
    report.findings.append(flood_finding())
    lines = ndjson.render(report).splitlines()
    assert len(lines) == len(report.findings) + 1
    records = [json.loads(line) for line in lines]
    assert [r["type"] for r in records] == ["finding"] * 7 + ["summary"]
    assert records[0]["kind"] == "connection_refused"
    assert records[6]["details"]["syns"] == 2400
    summary = records[-1]
    assert summary["findings"] == 7 and summary["connections"] == 11
    assert summary["packets"] == 125
    assert summary["by_kind"] == {"syn_flood": 1, "connection_refused": 6}
    assert summary["by_severity"] == {"high": 1, "medium": 6, "low": 0, "info": 0}


def test_ndjson_empty_report_is_just_the_summary() -> None:
    lines = ndjson.render(Report([], [], [])).splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["findings"] == 0


def test_write_finding_flushes_each_line() -> None:
    class Recorder(io.StringIO):
        flushes = 0

        def flush(self) -> None:
            self.flushes += 1
            super().flush()

    stream = Recorder()
    ndjson.write_finding(flood_finding(), stream)
    ndjson.write_finding(flood_finding("10.1.0.3:443"), stream)
    assert stream.flushes == 2
    assert [json.loads(x)["subject"] for x in stream.getvalue().splitlines()] == [
        "10.1.0.2:80", "10.1.0.3:443"]


def test_streamed_json_is_the_same_text_on_real_captures() -> None:
    import io
    from pathlib import Path

    from tcpanalyze.analysis import analyze
    from tcpanalyze.output import json as json_output

    samples = Path(__file__).resolve().parents[1] / "sample_pcaps"
    for capture in sorted(samples.glob("*.pcap*"))[:12]:
        report = analyze(str(capture))
        for timeline in (True, False):
            out = io.StringIO()
            json_output.write(report, out, 2, timeline)
            assert out.getvalue() == json_output.render(report, 2, timeline), capture.name
