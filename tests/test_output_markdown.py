"""Markdown step summary."""

from __future__ import annotations

from test_output_reports import corpus_report, flood_finding, needs_corpus

from tcpanalyze.gate import parse_fail_on
from tcpanalyze.output import markdown
from tcpanalyze.report import Finding, Report

pytestmark = needs_corpus


def _table_rows(text: str, header_start: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    return rows


def test_verdict_counts_and_findings() -> None:
    report = corpus_report("pop3-rejects")
    report.findings.append(flood_finding())
    text = markdown.render(report, parse_fail_on(["high"]))
    assert text.startswith("## tcpanalyze: FAIL\n")
    counts = _table_rows(text, "| kind |")
    assert counts == ["| `syn_flood` | 1 | 0 | 0 | 0 | 1 |",
                      "| `connection_refused` | 0 | 6 | 0 | 0 | 6 |"]
    rows = _table_rows(text, "|  | severity |")
    assert len(rows) == 7
    assert rows[0].startswith("| fail | high | `syn_flood` |")  # most severe first
    assert all(r.startswith("|  | medium |") for r in rows[1:])
    assert "125 packets" in text


def test_pass_when_nothing_crosses_the_threshold() -> None:
    text = markdown.render(corpus_report("pop3-rejects"), parse_fail_on(["high"]))
    assert text.startswith("## tcpanalyze: PASS\n")


def test_no_findings() -> None:
    text = markdown.render(corpus_report("http-get"))
    assert "## tcpanalyze: PASS" in text and "No findings." in text
    assert "| kind |" not in text


def test_rows_are_capped_with_and_n_more() -> None:
    report = corpus_report("ssh-half-duplex-client")  # 25 half_open findings (S0 and SH)
    assert len(report.findings) == 25
    text = markdown.render(report, max_rows=10)
    assert len(_table_rows(text, "|  | severity |")) == 10
    assert "... and 15 more" in text


def test_cells_cannot_break_the_table() -> None:
    report = Report([], [], [Finding("invalid_flags", "high", "a|b\nc <script> `x`", 1.0,
                                     [1], 1, "[fd00::1]:1 -> [fd00::2]:80")])
    text = markdown.render(report)
    (row,) = _table_rows(text, "|  | severity |")
    assert row.count("|") - row.count("\\|") == 7  # 6 cells
    assert "a\\|b c \\<script> \\`x\\`" in row
    assert "\\[fd00::1\\]:1" in row
    assert text.isascii()
