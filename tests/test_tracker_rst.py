"""RSTs, SYN-ACKs and segments the receiver would not accept, checked against what the
packets of the corpus captures show (tcpdump -nr / tshark -V), and against hand-built
segments of the same shape."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from test_tracker_paths import CI, SI, Wire, run, states

from tcpanalyze.analysis import analyze
from tcpanalyze.segment import ACK, FIN, PSH, RST, SYN
from tcpanalyze.settings import Settings
from tcpanalyze.tracker import Connection, Note

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(),
                                  reason="../shared/corpus is not beside the repo")


def notes(wire: Wire) -> list[Note]:
    """Every note the tracker makes, fed the wire's segments as one connection."""
    first = wire.segments[0]
    conn = Connection(1, first, True, Settings())
    out: list[Note] = []
    for seg in wire.segments:
        out.extend(conn.step(seg)[1])
    return out


def corpus(item: str):  # type: ignore[no-untyped-def]
    return analyze(str(next((CORPUS / item).glob("capture.pcap*"))))


# -- 1. an ignored RST is no earlier teardown ---------------------------------------------

def _rst_inject() -> Wire:
    # zeek/rst-inject: frame 2 is a RST-ACK (seq 0, ack = the SYN's own seq, not past it)
    # that does not acknowledge the SYN; frame 7 is the server's real RST-ACK in
    # ESTABLISHED (seq = its ISN + 1, ack = all the client's data).
    w = Wire().c(SYN, CI).s(RST | ACK, 0, CI)
    w.s(SYN | ACK, SI, CI + 1, dt=1.0).c(ACK, CI + 1, SI + 1)
    w.c(ACK | PSH, CI + 1, SI + 1, 25).s(ACK, SI + 1, CI + 26, dt=1.5)
    w.s(RST | ACK, SI + 1, CI + 26)
    return w


def test_an_ignored_rst_does_not_hide_the_real_teardown() -> None:
    w = _rst_inject()
    a = run(w)
    assert states(a) == ("CLOSED", "CLOSED")
    teardowns = [f for f in a.findings if f.kind == "rst_teardown"]
    assert [f.frames for f in teardowns] == [[7]]
    assert teardowns[0].details["sender"] == "server"
    ignored = [n for n in notes(w) if n.kind == "rst_ignored"]
    assert [n.frame for n in ignored] == [2]


@needs_corpus
def test_rst_inject_capture_reports_the_frame_7_reset() -> None:
    report = corpus("zeek/rst-inject")
    (conn,) = report.connections
    assert (conn.client_state, conn.server_state) == ("CLOSED", "CLOSED")
    closed = [(ch.frame, ch.endpoint) for ch in conn.timeline if ch.new == "CLOSED"]
    assert sorted(closed) == [(7, "client"), (7, "server")]
    assert [(f.kind, f.frames) for f in report.findings] == [("rst_teardown", [7])]


# -- 4. SYN-ACK retransmissions are counted per ISN -----------------------------------------

A, B = 3212050950, 97572840  # the two ISNs of suricata-verify/tfo-synack-data-ignored


def test_synack_retransmissions_are_counted_per_isn() -> None:
    # Two ISNs answer one SYN; the client takes B (its data acks B + 1), yet B's SYN-ACK
    # comes again after that data: the third ACK was lost, and B was resent twice
    # (frames 6 and 8). A's SYN-ACKs (frames 2, 3, 5, 9) are not B's retransmissions.
    w = Wire().c(SYN, CI)
    w.s(SYN | ACK, A, CI + 1).s(SYN | ACK, A, CI + 1, dt=0.5)       # 2, 3
    w.s(SYN | ACK, B, CI + 1).s(SYN | ACK, A, CI + 1)               # 4, 5
    w.s(SYN | ACK, B, CI + 1, dt=0.5)                               # 6
    w.c(ACK | PSH, CI + 1, B + 1, 100)                              # 7
    w.s(SYN | ACK, B, CI + 1, dt=1.0).s(SYN | ACK, A, CI + 1)       # 8, 9
    w.c(ACK | PSH, CI + 1, B + 1, 100, dt=0.3).s(ACK, B + 1, CI + 101)  # 10, 11
    a = run(w)
    assert states(a) == ("ESTABLISHED", "ESTABLISHED")
    (finding,) = [f for f in a.findings if f.kind == "missing_third_ack"]
    assert "retransmitted its SYN-ACK 2 time(s)" in finding.summary
    assert finding.frames == [6, 8]
    # A's SYN-ACK after the handshake chose B moves nothing
    assert [ch.frame for ch in a.connections[0].timeline if ch.endpoint == "server"] == \
        [2, 7, 8, 10]


@needs_corpus
def test_tfo_synack_retransmissions_of_the_chosen_isn_only() -> None:
    # tcpdump -nr: SYN-ACKs at frames 2, 4, 12, 15, 22, 52 carry ISN 3212050950 and at
    # 14, 17, 20 ISN 97572840, the one the client acknowledges (frame 18, ack 97572841);
    # 20 comes after that ACK. Frame 52 follows the client's RSTs (49, 50).
    report = corpus("suricata-verify/tfo-synack-data-ignored")
    (finding,) = [f for f in report.findings if f.kind == "missing_third_ack"]
    assert "retransmitted its SYN-ACK 2 time(s)" in finding.summary
    assert finding.frames == [17, 20]


# -- 2. segments a SYN_SENT endpoint discards for their timestamp echo (Linux PAWS) -------

def ts(val: int, ecr: int) -> bytes:
    return b"\x01\x01\x08\x0a" + struct.pack("!II", val, ecr)


def _ts_evasion(echo: int) -> Wire:
    # suricata-verify/ts-evasion-linux: after the SYN (TSval 1821165629), a RST-ACK (2)
    # and a FIN-ACK (3), both seq 0 and acking the SYN but echoing TSval 100; the client
    # answers the FIN with RST seq = its ack (4); then the real SYN-ACK (5), the third
    # ACK (6), a GET (7) and its answer (8, 9), acknowledged (10).
    tv = 1821165629
    w = Wire().c(SYN, CI, options=ts(tv, 0))
    w.s(RST | ACK, 0, CI + 1, options=ts(100, echo)).s(FIN | ACK, 0, CI + 1, options=ts(100, echo))
    w.c(RST, CI + 1, window=0)
    w.s(SYN | ACK, SI, CI + 1, options=ts(555, tv)).c(ACK, CI + 1, SI + 1, options=ts(tv + 64, 555))
    w.c(ACK | PSH, CI + 1, SI + 1, 338, options=ts(tv + 64, 555))
    w.s(ACK, SI + 1, CI + 339, dt=0.1).s(ACK | PSH, SI + 1, CI + 339, 79)
    w.c(ACK, CI + 339, SI + 80)
    return w


def test_segments_with_a_foreign_timestamp_echo_do_not_reset_syn_sent() -> None:
    w = _ts_evasion(echo=100)
    a = run(w)
    assert states(a) == ("ESTABLISHED", "ESTABLISHED")
    assert not a.findings  # not refused, no data after a FIN that was never accepted
    client = [(ch.frame, ch.new) for ch in a.connections[0].timeline
              if ch.endpoint == "client"]
    assert client == [(1, "SYN_SENT"), (5, "ESTABLISHED")]
    by_kind = {(n.kind, n.frame) for n in notes(w)}
    assert {("rst_ignored", 2), ("segment_rejected", 3), ("rst_reply", 4)} <= by_kind


def test_a_rst_echoing_the_syns_timestamp_still_refuses() -> None:
    # the same RST-ACK, echoing the SYN's TSval: Linux accepts it (the SYN is refused)
    w = Wire().c(SYN, CI, options=ts(1821165629, 0))
    w.s(RST | ACK, 0, CI + 1, options=ts(100, 1821165629))
    a = run(w)
    assert states(a) == ("CLOSED", "CLOSED")
    assert {f.kind for f in a.findings} == {"connection_refused"}


@needs_corpus
def test_ts_evasion_capture_keeps_the_connection() -> None:
    report = corpus("suricata-verify/ts-evasion-linux")
    (conn,) = report.connections
    assert (conn.client_state, conn.server_state) == ("ESTABLISHED", "ESTABLISHED")
    assert [(ch.frame, ch.endpoint, ch.new) for ch in conn.timeline] == [
        (1, "client", "SYN_SENT"), (5, "server", "SYN_RCVD"), (5, "client", "ESTABLISHED"),
        (6, "server", "ESTABLISHED")]
    assert not report.findings
