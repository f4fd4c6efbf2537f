"""Terminal tables: 80 columns, plain when NO_COLOR or not a terminal, content."""

from __future__ import annotations

import dataclasses
import io

import pytest
from rich.console import Console
from test_output_reports import corpus_report, flood_finding, needs_corpus, scan_finding

from tcpanalyze.gate import parse_fail_on
from tcpanalyze.output import terminal
from tcpanalyze.report import Report

pytestmark = needs_corpus


def _print(report: Report, **kwargs) -> str:
    out = io.StringIO()
    console = Console(width=80, file=out, color_system=None)
    terminal.print_report(report, console, **kwargs)
    return out.getvalue()


@pytest.mark.parametrize("item", ["pop3-rejects", "ftp-ipv6", "ssh-half-duplex-client",
                                  "http-get", "modbus-502-resets"])
def test_fits_80_columns(item: str) -> None:
    report = corpus_report(item)
    report.findings += [flood_finding("[2001:db8:ffff:ffff:ffff:ffff:ffff:1]:443"),
                        scan_finding()]
    for text in (_print(report), terminal.render(report), terminal.render_flows(report)):
        assert max(len(line) for line in text.splitlines()) <= 80


def test_states_side_by_side_and_verdict() -> None:
    report = corpus_report("pop3-rejects")
    text = _print(report, policy=parse_fail_on(["medium"]))
    row = next(line for line in text.splitlines() if "192.168.0.4:26242" in line)
    # client state, server state and conn_state on one line, in that order
    assert row.index("CLOSED") < row.index("LISTEN") < row.index("REJ")
    assert text.count("-> 212.227.15.1") == 6  # only the six refused connections
    assert text.rstrip().splitlines()[-1].startswith("FAIL: 6 of 6 findings")


def test_summary_shows_packets_by_class_and_read_error() -> None:
    report = corpus_report("http-get")
    report.captures[0] = dataclasses.replace(
        report.capture, packets=20, tcp_segments=14,
        skipped={**report.capture.skipped, "other_ip": 4, "fragment": 2},
        error="capture.pcap: frame 21 (byte offset 9000): record cut short")
    text = _print(report)
    assert "20 (tcp 14, other_ip 4, fragment 2)" in text
    assert "record cut short" in text
    assert "OK: no findings in 1 connection" in text


def test_aggregates_show_their_numbers() -> None:
    report = corpus_report("http-get")
    report.findings += [flood_finding(), scan_finding()]
    text = _print(report)
    assert "syns 2400" in text and "sources 1830" in text
    assert "ports 1000" in text and "22, 80, 443" in text


def test_many_findings_are_capped() -> None:
    report = corpus_report("ssh-half-duplex-client")
    text = _print(report, max_rows=5)
    assert text.count("... and 20 more") == 2  # connections table and findings table


def test_plain_when_not_a_terminal_and_with_no_color(monkeypatch) -> None:
    report = corpus_report("pop3-rejects")
    out = io.StringIO()
    terminal.print_report(report, terminal.make_console(out, width=80))
    assert "\x1b[" not in out.getvalue()  # a StringIO is not a terminal
    assert out.getvalue().isascii()  # and gets ASCII boxes and arrows
    monkeypatch.setenv("NO_COLOR", "1")
    out = io.StringIO()
    console = terminal.make_console(out, width=80)
    assert console.color_system is None  # whatever the terminal could do
    terminal.print_report(report, console)
    assert "\x1b[" not in out.getvalue()


def test_colour_when_forced() -> None:
    out = io.StringIO()
    terminal.print_report(corpus_report("pop3-rejects"),
                          terminal.make_console(out, width=80, color=True))
    assert "\x1b[" in out.getvalue()


def test_flows_table_columns() -> None:
    report = corpus_report("pop3-rejects")
    text = terminal.render_flows(report, width=120)
    line = next(x for x in text.splitlines() if "26272" in x)
    # connection 7 starts 3.0 s after the first packet (builder: 0.5 s apart);
    # 6 and 6 packets: Zeek's orig_pkts/resp_pkts, and tshark-conv.txt's frames each way
    assert "3.000" in line and "SAF" in line
    assert report.connections[6].packets_client == 6
    assert "6|6" in line.replace(" ", "")
