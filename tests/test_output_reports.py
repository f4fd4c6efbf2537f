"""Reports for the renderer tests, built from the corpus's reference outputs.

The renderers are pure, so their tests build `Report`s by hand. To keep those realistic,
connections come from Zeek's conn.log baselines (endpoints, packets, bytes, conn_state,
history) and capture summaries from `capinfos`, for the same corpus captures. This module
also holds the Zeek TSV reader the tests use (it reads logs the way zeek-cut does: by
the `#separator` and `#fields` header lines) and checks it against every corpus baseline.
"""

from __future__ import annotations

import calendar
import re
import time
from pathlib import Path
from typing import Any

import pytest

from tcpanalyze.report import (
    PACKET_CLASSES,
    CaptureSummary,
    ConnectionSummary,
    Finding,
    Report,
)

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus"  # ../shared
if not CORPUS.is_dir():
    CORPUS = Path("/work/shared/corpus")
ZEEK = CORPUS / "zeek"

needs_corpus = pytest.mark.skipif(not ZEEK.is_dir(), reason="shared corpus not present")


# -- a Zeek TSV log reader (zeek-cut's view of a log) -----------------------------------


def _unescape(value: str) -> str:
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), value)


def read_zeek_log(text: str) -> dict[str, Any]:
    """Parse a Zeek ASCII log: returns {'meta': {...}, 'fields': [...], 'types': [...],
    'rows': [dict]}. Unset values become None, the empty marker ''. Lines starting with
    '#' that are not header lines (e.g. btest's '###' banner) are skipped, like zeek-cut."""
    sep = "\t"
    meta: dict[str, str] = {}
    fields: list[str] = []
    types: list[str] = []
    rows: list[dict[str, str | None]] = []
    for line in text.splitlines():
        if line.startswith("#separator"):
            sep = _unescape(line.split(" ", 1)[1])
            meta["separator"] = sep
            continue
        if line.startswith("#"):
            name, _, value = line[1:].partition(sep)
            if name == "fields":
                fields = value.split(sep)
            elif name == "types":
                types = value.split(sep)
            elif name in ("set_separator", "empty_field", "unset_field", "path", "open", "close"):
                meta[name] = value
            continue
        if not fields or not line:
            continue
        values = line.split(sep)
        assert len(values) == len(fields), f"{len(values)} values for {len(fields)} fields"
        unset = meta.get("unset_field", "-")
        empty = meta.get("empty_field", "(empty)")
        row: dict[str, str | None] = {}
        for name, value in zip(fields, values, strict=True):
            if value == unset:
                row[name] = None
            elif value == empty:
                row[name] = ""
            else:
                row[name] = _unescape(value)
        rows.append(row)
    return {"meta": meta, "fields": fields, "types": types, "rows": rows}


def corpus_conn_logs() -> list[Path]:
    """The corpus conn.log baselines that are whole logs (with a #fields header)."""
    return sorted(
        p for p in ZEEK.glob("*/zeek-conn*.log") if "#fields" in p.read_text(errors="replace")
    )


# -- reports from corpus items ---------------------------------------------------------


def _capinfos(item: Path) -> dict[str, str]:
    out = {}
    for line in (item / "capinfos.txt").read_text().splitlines():
        key, sep, value = line.partition(":")
        if sep and not line.startswith(" "):
            out[key.strip()] = value.strip()
    return out


def _epoch(text: str) -> float:
    # capinfos prints local time of the machine that ran it; the corpus was made in UTC
    date, _, frac = text.partition(".")
    whole = calendar.timegm(time.strptime(date, "%Y-%m-%d %H:%M:%S"))
    return whole + float("0." + (frac or "0"))


def endpoint(host: str, port: str) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# What each side's final state plausibly is for a Zeek conn_state; and the finding a
# detector would attach. Only used to make hand-built reports look like real ones.
_STATES = {
    "SF": ("TIME_WAIT", "CLOSED", None),
    "REJ": ("CLOSED", "LISTEN", ("connection_refused", "medium")),
    "RSTO": ("CLOSED", "CLOSED", ("rst_teardown", "low")),
    "RSTR": ("CLOSED", "CLOSED", ("rst_teardown", "low")),
    "RSTRH": ("CLOSED", "CLOSED", ("rst_teardown", "low")),
    "S0": ("SYN_SENT", "CLOSED", ("half_open", "medium")),
    "S1": ("ESTABLISHED", "ESTABLISHED", None),
    "SH": ("FIN_WAIT_1", "CLOSED", ("half_open", "medium")),
    "OTH": ("ESTABLISHED", "ESTABLISHED", None),
}


def corpus_report(name: str, source: str = "zeek", log: str = "zeek-conn.log") -> Report:
    """A report for corpus item `name`: capture summary from capinfos, one connection per
    Zeek conn.log row, and the findings those conn_states imply."""
    item = CORPUS / source / name
    info = _capinfos(item)
    packets = int(info["Number of packets"])
    first = _epoch(info["First packet time"])
    last = _epoch(info["Last packet time"])
    capture_file = next(item.glob("capture.pcap*"))
    capture = CaptureSummary(
        path=str(capture_file),
        format="pcapng" if capture_file.suffix == ".pcapng" else "pcap",
        linktypes=[info["File encapsulation"]],
        packets=packets,
        tcp_segments=packets,
        skipped={k: 0 for k in PACKET_CLASSES if k != "tcp"},
        first_ts=first,
        last_ts=last,
    )
    parsed = read_zeek_log((item / log).read_text())
    connections: list[ConnectionSummary] = []
    findings: list[Finding] = []
    rows = [r for r in parsed["rows"] if r["proto"] == "tcp"]
    for i, row in enumerate(rows, start=1):
        client = endpoint(row["id.orig_h"] or "", row["id.orig_p"] or "")
        server = endpoint(row["id.resp_h"] or "", row["id.resp_p"] or "")
        start = first + (i - 1) * 0.5  # the baseline's ts is masked (XXXXXXXXXX.XXXXXX)
        duration = float(row["duration"] or 0)
        conn_state = row["conn_state"] or ""
        client_state, server_state, finding = _STATES.get(conn_state, ("CLOSED", "CLOSED", None))
        kinds: list[str] = []
        if finding is not None:
            kind, severity = finding
            kinds.append(kind)
            findings.append(
                Finding(
                    kind=kind,
                    severity=severity,
                    summary=f"{server} and {client}: Zeek conn_state {conn_state}, "
                    f"history {row['history']}.",
                    time=start,
                    frames=[i, i + 1],
                    connection=i,
                    subject=f"{client} -> {server}",
                    server=server,
                )
            )
        connections.append(
            ConnectionSummary(
                id=i,
                client=client,
                server=server,
                start=start,
                end=start + duration,
                packets_client=int(row["orig_pkts"] or 0),
                packets_server=int(row["resp_pkts"] or 0),
                bytes_client=int(row["orig_bytes"] or 0),
                bytes_server=int(row["resp_bytes"] or 0),
                client_state=client_state,
                server_state=server_state,
                conn_state=conn_state,
                history=row["history"] or "",
                findings=kinds,
                flags_seen="SAF" if "F" in (row["history"] or "") else "SA",
            )
        )
    return Report(captures=[capture], connections=connections, findings=findings)


def flood_finding(subject: str = "10.1.0.2:80") -> Finding:
    """An aggregate as the SYN-flood detector reports one (numbers in details)."""
    return Finding(
        kind="syn_flood",
        severity="high",
        summary=f"SYN flood against {subject}: 2400 SYNs from 1830 sources in 10 s, "
        "3% of handshakes completed.",
        time=1_700_000_000.25,
        frames=list(range(1, 41)),
        connection=None,
        subject=subject,
        details={"syns": 2400, "sources": 1830, "rate": 240.0, "completion": 0.03},
    )


def scan_finding() -> Finding:
    return Finding(
        kind="port_scan",
        severity="medium",
        summary="10.1.0.9 probed 1000 ports on 10.1.0.2; 2 handshakes completed.",
        time=1_700_000_001.0,
        frames=[100, 101, 102],
        connection=None,
        subject="10.1.0.9",
        details={"ports": 1000, "hosts": 1, "completed": 2, "top_ports": [22, 80, 443]},
    )


# -- the reader and builders checked against the corpus --------------------------------


@needs_corpus
def test_reader_reads_every_corpus_conn_log() -> None:
    logs = corpus_conn_logs()
    assert len(logs) >= 15
    for path in logs:
        parsed = read_zeek_log(path.read_text())
        assert parsed["meta"]["separator"] == "\t", path
        assert parsed["meta"]["path"] == "conn", path
        assert len(parsed["types"]) == len(parsed["fields"]), path
        assert parsed["rows"], path
        for row in parsed["rows"]:
            assert row["proto"] in ("tcp", "udp", "icmp", "unknown_transport"), path


@needs_corpus
def test_reader_values_match_the_corpus_readme() -> None:
    # README: http-get is `SF, ShADadFf`; pop3-rejects has REJ x6 (Sr) and SF x5.
    http = read_zeek_log((ZEEK / "http-get/zeek-conn.log").read_text())["rows"]
    assert [(r["conn_state"], r["history"]) for r in http] == [("SF", "ShADadFf")]
    assert http[0]["id.resp_p"] == "80" and http[0]["service"] == "http"
    pop3 = read_zeek_log((ZEEK / "pop3-rejects/zeek-conn.log").read_text())["rows"]
    states = [r["conn_state"] for r in pop3]
    assert states.count("REJ") == 6 and states.count("SF") == 5
    # an unset field ('-') reads as None, not as the string '-'
    bad = read_zeek_log((ZEEK / "localhost-bad-chksum/zeek-conn.log").read_text())["rows"]
    assert bad[0]["duration"] is None and bad[0]["history"] == "C"


@needs_corpus
def test_corpus_report_matches_capinfos_and_conn_log() -> None:
    report = corpus_report("pop3-rejects")
    assert report.capture.packets == 125  # capinfos: Number of packets: 125
    assert report.capture.last_ts - report.capture.first_ts == pytest.approx(151.441516)
    assert len(report.connections) == 11
    assert sum(f.kind == "connection_refused" for f in report.findings) == 6
    ipv6 = corpus_report("ftp-ipv6")
    assert all(c.client.startswith("[2001:470:") for c in ipv6.connections)
