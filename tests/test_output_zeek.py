"""The Zeek conn.log writer: header layout, field names/types as Zeek's, round trip."""

from __future__ import annotations

import pytest
from test_output_reports import (
    ZEEK,
    corpus_conn_logs,
    corpus_report,
    endpoint,
    needs_corpus,
    read_zeek_log,
)

from tcpanalyze.output import zeek
from tcpanalyze.report import ConnectionSummary, Report

pytestmark = needs_corpus


def test_header_lines_in_zeek_order() -> None:
    text = zeek.render(corpus_report("http-get"))
    lines = text.splitlines()
    assert lines[0] == "#separator \\x09"
    assert [line.split("\t")[0] for line in lines[1:8]] == [
        "#set_separator",
        "#empty_field",
        "#unset_field",
        "#path",
        "#open",
        "#fields",
        "#types",
    ]
    assert lines[4] == "#path\tconn"
    assert lines[-1].startswith("#close\t")
    # #open is 'YYYY-MM-DD-HH-MM-SS' (UTC), the capture's first packet by default;
    # capinfos: First packet time 2013-03-07 21:42:06.869344
    assert lines[5] == "#open\t2013-03-07-21-42-06"


@pytest.mark.parametrize("log", corpus_conn_logs(), ids=lambda p: p.parent.name + "/" + p.name)
def test_fields_and_types_agree_with_real_conn_logs(log) -> None:
    # every field we write is in Zeek's conn.log, in the same order and with the same type
    ours = read_zeek_log(zeek.render(Report([], [], [])))
    theirs = read_zeek_log(log.read_text())
    their_types = dict(zip(theirs["fields"], theirs["types"], strict=True))
    assert ours["fields"] == [name for name in theirs["fields"] if name in ours["fields"]]
    for name, kind in zip(ours["fields"], ours["types"], strict=True):
        assert their_types[name] == kind, name


@pytest.mark.parametrize("item", ["http-get", "pop3-rejects", "modbus-502-resets", "ftp-ipv6",
                                  "ssh-half-duplex-client", "teredo"])
def test_round_trip_reproduces_the_baseline(item: str) -> None:
    """Connections built from Zeek's own conn.log, written by us and read back like
    zeek-cut, give Zeek's values again (IPv6 without brackets, ports, counts, states)."""
    baseline = read_zeek_log((ZEEK / item / "zeek-conn.log").read_text())["rows"]
    baseline = [r for r in baseline if r["proto"] == "tcp"]
    ours = read_zeek_log(zeek.render(corpus_report(item)))["rows"]
    assert len(ours) == len(baseline)
    for mine, theirs in zip(ours, baseline, strict=True):
        for name in ("id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "orig_bytes",
                     "resp_bytes", "conn_state", "history", "orig_pkts", "resp_pkts"):
            if theirs[name] is None and name.endswith("_bytes"):
                # Zeek leaves byte counts unset for one-packet connections; ours are 0
                assert mine[name] == "0", (item, name)
            else:
                assert mine[name] == theirs[name], (item, name)
        if theirs["duration"] is not None:
            assert float(mine["duration"]) == pytest.approx(float(theirs["duration"]), abs=1e-6)
        assert mine["uid"].startswith("C") and mine["uid"].isalnum()
        assert mine["service"] is None and mine["tunnel_parents"] is None


def test_uids_are_unique_and_stable() -> None:
    report = corpus_report("ssh-half-duplex-client")
    first = [r["uid"] for r in read_zeek_log(zeek.render(report))["rows"]]
    again = [r["uid"] for r in read_zeek_log(zeek.render(report))["rows"]]
    assert first == again
    assert len(set(first)) == len(first) == 25  # README: SH x20, S0 x5


def _conn(history: str, client: str = "10.0.0.1:40000") -> ConnectionSummary:
    return ConnectionSummary(1, client, "10.0.0.2:80", 1.5, 2.0, 1, 0, 0, 0,
                             "SYN_SENT", "CLOSED", "S0", history)


def test_escaping_and_unset_markers() -> None:
    rows = read_zeek_log(zeek.render(Report([], [_conn("S\tx"), _conn("")], [])))["rows"]
    assert rows[0]["history"] == "S\tx"  # tab escaped as \x09 and read back
    assert rows[1]["history"] is None  # unknown history is '-', not an empty field
    text = zeek.render(Report([], [_conn("-")], []))
    assert "\t\\x2d\t" in text  # a literal '-' must not read back as unset


def test_empty_report_is_a_valid_log() -> None:
    parsed = read_zeek_log(zeek.render(Report([], [], [])))
    assert parsed["rows"] == [] and parsed["fields"][0] == "ts"
    assert "close" in parsed["meta"]


def test_ipv6_endpoint_split() -> None:
    assert zeek.split_host_port("[2001:db8::1]:443") == ("2001:db8::1", "443")
    assert zeek.split_host_port("192.0.2.1:80") == ("192.0.2.1", "80")
    assert zeek.split_host_port("2001:db8::1") == ("2001:db8::1", None)
    assert endpoint("2001:db8::1", "443") == "[2001:db8::1]:443"


def test_output_is_ascii() -> None:
    assert zeek.render(corpus_report("ftp-ipv6")).isascii()
