"""Findings checked against what the packets show (an audit of the report against
tcpdump -nr / tshark on the corpus and samples), and hand-built segments of the same
shape."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_tracker_paths import CI, SI, Wire, run, states

from tcpanalyze.analysis import analyze
from tcpanalyze.segment import ACK, SYN

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "corpus"
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(),
                                  reason="../shared/corpus is not beside the repo")
TS_SYN = b"\x02\x04\x05\xb4\x01\x01\x08\x0a\x00\x00\x00\x64\x00\x00\x00\x00"  # MSS, TS 100


def _tshark_rows(item: Path) -> list[list[str]]:
    # frame, tcp.stream, flags, analysis flags, expert messages (see corpus README)
    return [line.split("\t") for line in (item / "tshark-fields.tsv").read_text().splitlines()]


# -- A. a SYN captured twice is one SYN ---------------------------------------------------

@needs_corpus
def test_fabric_path_copies_are_one_syn_each() -> None:
    # zeek/cisco-fabric-path-syns: each SYN is on the wire twice about 1 ms apart, the
    # plain frame and its FabricPath-encapsulated copy (tcpdump -nr -v: same seq 0, win
    # 8192, IP id 1, TCP checksum); tshark groups each pair in one stream and marks no
    # retransmission; Zeek's history is a single S (2 orig packets).
    item = CORPUS / "zeek" / "cisco-fabric-path-syns"
    pairs: dict[str, list[int]] = {}
    for row in _tshark_rows(item):
        assert "retransmission" not in row[-1].lower()
        pairs.setdefault(row[1], []).append(int(row[0]))
    assert all(len(frames) == 2 for frames in pairs.values())
    first_frames = sorted(min(frames) for frames in pairs.values())
    report = analyze(str(item / "capture.pcap"))
    assert len(report.connections) == len(pairs) == 16
    assert all(c.packets_client == 2 and c.packets_server == 0 for c in report.connections)
    assert not [f for f in report.findings if f.kind == "syn_retransmission"]
    half_open = [f for f in report.findings if f.kind == "half_open"]
    assert sorted(f.frames[0] for f in half_open) == first_frames
    for f in half_open:
        assert len(f.frames) == 1
        assert " sent 1 SYN(s) " in f.summary
        # the whole capture lasts 28 ms: far too soon to call the SYNs unanswered
        assert f.severity == "info" and "too soon to tell" in f.summary


def test_an_identical_syn_a_millisecond_later_is_a_copy() -> None:
    w = Wire().c(SYN, CI, options=TS_SYN).c(SYN, CI, dt=0.001, options=TS_SYN)
    a = run(w)
    assert not [f for f in a.findings if f.kind == "syn_retransmission"]
    (half_open,) = [f for f in a.findings if f.kind == "half_open"]
    assert half_open.frames == [1] and " sent 1 SYN(s) " in half_open.summary
    assert a.connections[0].packets_client == 2


def test_the_same_syn_after_the_initial_rto_is_a_retransmission() -> None:
    w = Wire().c(SYN, CI).c(SYN, CI, dt=1.0).c(SYN, CI, dt=2.0)
    a = run(w)
    (rexmit,) = [f for f in a.findings if f.kind == "syn_retransmission"]
    assert rexmit.frames == [1, 2, 3] and rexmit.details["count"] == 3
    (half_open,) = [f for f in a.findings if f.kind == "half_open"]
    assert half_open.severity == "high"  # 3 s without an answer, after two RTOs


def test_a_syn_copy_after_the_synack_does_not_undo_the_handshake() -> None:
    # the copy from a second capture point may land after the SYN-ACK (a fast LAN): it
    # is no sign that the SYN-ACK was lost
    w = Wire().c(SYN, CI).s(SYN | ACK, SI, CI + 1, dt=0.0003).c(SYN, CI, dt=0.0004)
    w.c(ACK, CI + 1, SI + 1, dt=0.0001)
    a = run(w)
    assert states(a) == ("ESTABLISHED", "ESTABLISHED")
    assert not [f for f in a.findings if f.kind == "syn_retransmission"]
    client = [ch.new for ch in a.connections[0].timeline if ch.endpoint == "client"]
    assert client == ["SYN_SENT", "ESTABLISHED"]


def test_half_open_severity_follows_the_time_waited_not_the_syn_count() -> None:
    # three SYNs 0.1 s apart (a stack or tool with a short SYN timer), capture over
    # 0.2 s after the first: nothing can be concluded about the path yet
    w = Wire().c(SYN, CI).c(SYN, CI, dt=0.1).c(SYN, CI, dt=0.1)
    a = run(w)
    (half_open,) = [f for f in a.findings if f.kind == "half_open"]
    assert half_open.severity == "info" and " sent 3 SYN(s) " in half_open.summary


# -- D. a SYN+FIN probe opens no connection --------------------------------------------

def test_invalid_flags_sample_has_no_half_open_attempt() -> None:
    # sample_pcaps/invalid-flags.pcap (tcpdump -nr): frame 3 is a crafted SYN+FIN from
    # 10.77.3.2:51000 to the listening port 8080, never answered (Linux's listener
    # discards SYN+FIN); frame 8 the same to the closed port 8099, answered by the RST-ACK
    # at frame 9. The truth file expects invalid_flags for each of the ten probes (and
    # the closed port's refusals as incidental), no connection attempt.
    report = analyze(str(ROOT / "sample_pcaps" / "invalid-flags.pcap"))
    assert not [f for f in report.findings if f.kind == "half_open"]
    invalid = {f.frames[0]: f for f in report.findings if f.kind == "invalid_flags"}
    assert len(invalid) == 10
    assert "(SYN+FIN)" in invalid[3].summary and "(SYN+FIN)" in invalid[8].summary


def test_a_syn_fin_probe_and_a_real_syn() -> None:
    from tcpanalyze.segment import FIN
    a = run(Wire().c(SYN | FIN, CI))
    assert {f.kind for f in a.findings} == {"invalid_flags"}
    # a real SYN on the same tuple afterwards is an attempt again
    a = run(Wire().c(SYN | FIN, CI).c(SYN, CI + 7, dt=2.0))
    assert " sent 1 SYN(s) " in next(f.summary for f in a.findings if f.kind == "half_open")


# -- C. texts the rest of the connection contradicts -----------------------------------

@needs_corpus
def test_syn_retransmissions_that_were_answered_say_so() -> None:
    # zeek/ssh-half-duplex-client, 192.168.1.31:51489 -> 192.168.1.32:22 (tcpdump -nr
    # 'tcp port 51489'): only the client's side is captured; SYNs at frames 419, 420,
    # 421 (same seq 1131424221, TS val 1332349783, ...895, ...996: three transmissions),
    # then at 422 an ACK of 3695444946 (the server's SYN-ACK, not captured), data and a
    # FIN (Zeek: history SADF)
    report = analyze(str(CORPUS / "zeek" / "ssh-half-duplex-client" / "capture.pcap"))
    conn = next(c for c in report.connections if c.client.endswith(":51489"))
    (f,) = [f for f in report.findings
            if f.connection == conn.id and f.kind == "syn_retransmission"]
    assert f.frames == [419, 420, 421] and f.details["count"] == 3
    assert "giving up" not in f.summary
    assert "before getting an answer" in f.summary


# -- B. a vanished peer's finding shows the unanswered retransmissions -----------------

@needs_corpus
def test_peer_vanished_frames_are_the_unanswered_retransmissions() -> None:
    # zeek/pppoe-qinq (tshark -T fields -e tcp.seq -e tcp.len): the client's last
    # segment is its FIN at frame 80; the server's FIN with 31 bytes (seq 4954, ack
    # 11353) is frame 82, sent again at 83, 84, 85, 86 (tshark: retransmission) and never
    # acknowledged. The server's earlier retransmissions (13, 15, 16, 25, 39, 52, 55, 66,
    # 73) were all acknowledged by the client's later ACKs: no proof of a vanished peer.
    item = CORPUS / "zeek" / "pppoe-qinq"
    marked = {int(row[0]) for row in _tshark_rows(item) if "retransmission" in row[-1]}
    assert {83, 84, 85, 86} <= marked
    report = analyze(str(item / "capture.pcap"))
    (f,) = [f for f in report.findings if f.kind == "half_open"]
    assert f.summary.startswith("server 2.2.2.2:443 retransmitted the same data 4 times")
    assert f.frames == [83, 84, 85, 86]


def test_peer_vanished_frames_start_at_the_run() -> None:
    # data 1 is retransmitted once and acknowledged; data 2 is sent again 3 times unanswered
    w = Wire().c(SYN, CI).s(SYN | ACK, SI, CI + 1).c(ACK, CI + 1, SI + 1)
    w.c(ACK, CI + 1, SI + 1, 100).c(ACK, CI + 1, SI + 1, 100, dt=0.3)  # 4, 5
    w.s(ACK, SI + 1, CI + 101)
    w.c(ACK, CI + 101, SI + 1, 100)  # 7
    for dt in (0.3, 0.6, 1.2):
        w.c(ACK, CI + 101, SI + 1, 100, dt=dt)  # 8, 9, 10
    a = run(w)
    (f,) = [f for f in a.findings if f.kind == "half_open"]
    assert f.frames == [8, 9, 10]


# -- C. a RST after the close is no teardown -------------------------------------------

@needs_corpus
def test_a_rst_after_both_fins_is_no_teardown() -> None:
    # zeek/teredo, 192.168.2.16:1577 -> 75.126.203.78:80 (tshark -T fields): the server's
    # FIN at 4 is acked at 5, the client's FIN at 8 acked at 10 (Zeek: SF); 16 s later
    # the server sends a RST-ACK (frame 50, seq 2 ack 2). Both FINs were acknowledged:
    # the client was CLOSED, the server in TIME_WAIT, nothing left to tear down.
    report = analyze(str(CORPUS / "zeek" / "teredo" / "capture.pcap"))
    conn = next(c for c in report.connections
                if c.client.endswith(":1577") and c.conn_state == "SF")
    assert not [f for f in report.findings
                if f.connection == conn.id and f.kind == "rst_teardown"]
    # the RSTs of connections still open stay teardowns: 1578's at frame 20 (ESTABLISHED)
    assert [20] in [f.frames for f in report.findings if f.kind == "rst_teardown"]


def test_rst_from_time_wait_after_a_complete_close() -> None:
    from tcpanalyze.segment import FIN, RST
    w = Wire().c(SYN, CI).s(SYN | ACK, SI, CI + 1).c(ACK, CI + 1, SI + 1)
    w.s(FIN | ACK, SI + 1, CI + 1).c(ACK, CI + 1, SI + 2)  # server closes first
    w.c(FIN | ACK, CI + 1, SI + 2).s(ACK, SI + 2, CI + 2)  # client LAST_ACK -> CLOSED
    w.s(RST | ACK, SI + 2, CI + 2, dt=5.0)
    a = run(w)
    assert "rst_teardown" not in {f.kind for f in a.findings}


# -- C. a stuck-state finding made at a sweep, after the wait ended --------------------

@needs_corpus
def test_fin_wait_2_finding_says_how_the_wait_ended() -> None:
    # zeek/teredo, 192.168.2.16:1576 -> 75.126.130.163:80 (tshark -T fields): the server's
    # FIN at frame 2 is acked at 3; the client's next segment is its RST-ACK at frame 18
    # (10.3 s later), which ended the server's FIN_WAIT_2. The finding, made while the
    # server waited, said the client 'has been silent since'.
    report = analyze(str(CORPUS / "zeek" / "teredo" / "capture.pcap"))
    conn = next(c for c in report.connections if c.client.endswith(":1576")
                and c.conn_state == "RSTO")
    (f,) = [f for f in report.findings
            if f.connection == conn.id and f.kind == "fin_wait_2_stuck"]
    assert conn.server_state == "CLOSED"
    assert "silent since" not in f.summary and "has waited" not in f.summary
    assert "left FIN_WAIT_2 at frame 18" in f.summary
    assert f.frames == [2]
