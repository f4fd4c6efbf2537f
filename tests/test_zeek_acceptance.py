"""Issue 8 acceptance: on the Zeek captures, the Zeek records tcpanalyze writes (its
`--format zeek` conn.log: the product's decoder, flow table and Zeek view) agree with
Zeek's baseline conn.log on conn_state for at least 95% of connections; every
disagreement is listed here with its reason, so a new one fails."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tcpanalyze.analysis import analyze

sys.path.insert(0, str(Path(__file__).parent))
from zeek_corpus import parse_conn_log

ZEEK = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "zeek"

# (item, n-th baseline row) -> why we differ
DISAGREEMENTS = {
    ("syn-bad-checksum", 0): "Zeek validated checksums (OTH 'C'); we do not by default",
    ("localhost-bad-chksum", 0): "Zeek validated checksums (OTH 'C'); we do not by default",
    ("localhost-bad-chksum", 1): "Zeek's second record exists only because it dropped the "
                                 "bad-checksum SYN",
    ("teredo", 9): "the IPv6 connection inside Teredo (UDP 3544): the dpkt decoder counts "
                   "it as 'tunnel' and does not open it (tshark, by default, does not either)",
}


def endpoints_match(row, record: dict) -> bool:
    def split(text: str) -> tuple[str, int]:
        host, _, port = text.rpartition(":")
        return host.strip("[]"), int(port)

    ends = {split(record["orig"]), split(record["resp"])}
    hosts = {h for h, _ in ends}
    ports = {p for _, p in ends}
    return all(v is None or v in hosts for v in (row.orig_h, row.resp_h)) and all(
        v is None or v in ports for v in (row.orig_p, row.resp_p))


def comparisons() -> list[tuple[str, int, str, str | None]]:
    out = []
    for item in sorted(p for p in ZEEK.iterdir() if (p / "zeek-conn.log").exists()):
        rows = [r for r in parse_conn_log(item / "zeek-conn.log") if r.conn_state]
        report = analyze(str(next(item.glob("capture.pcap*"))), zeek_records=True)
        records = [r for c in report.connections for r in c.zeek_records]
        records.sort(key=lambda r: r["start"])
        used: set[int] = set()
        for n, row in enumerate(rows):
            match = next((i for i, r in enumerate(records)
                          if i not in used and endpoints_match(row, r)), None)
            if match is not None:
                used.add(match)
            ours = records[match]["conn_state"] if match is not None else None
            out.append((item.name, n, row.conn_state, ours))
    return out


@pytest.mark.skipif(not ZEEK.is_dir(), reason="../shared/corpus is not beside the repo")
def test_conn_state_agrees_with_zeek_baselines() -> None:
    results = comparisons()
    wrong = {(item, n): (zeek, ours) for item, n, zeek, ours in results if zeek != ours}
    assert set(wrong) == set(DISAGREEMENTS), {k: wrong.get(k) for k in
                                              set(wrong) ^ set(DISAGREEMENTS)}
    agreement = 1 - len(wrong) / len(results)
    assert agreement >= 0.95, agreement
