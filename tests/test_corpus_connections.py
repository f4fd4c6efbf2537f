"""Issue 2 acceptance: every corpus capture is read without error, and its number of TCP
connections equals the rows of `tshark -q -z conv,tcp` (stored beside it), or the
difference is explained here."""

from __future__ import annotations

from pathlib import Path

import pytest

from tcpanalyze.analysis import analyze

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
ITEMS = sorted(p.parent for p in CORPUS.glob("*/*/capture.pcap*"))

# item -> (our connections, why it differs from tshark's conversation rows)
EXPLAINED = {
    "ppp-frag-syn": (0, "its only TCP segment is split into IP fragments: counted as "
                        "'fragment' (we do not reassemble); tshark reassembles it"),
    "syn-flood-3whs": (1, "tshark starts a new stream at every SYN with a new ISN; we keep "
                          "SYNs sent before any answer in one connection attempt"),
    "pop3-rejects": (11, "each SYN retried after a refusing RST is a new connection (port "
                         "reuse), as Zeek logs it (11 records); tshark has one row per tuple"),
    "teredo": (6, "packets arriving after a connection was reset and closed start a new "
                  "record on the same tuple, as in Zeek (which logs 9); tshark keeps one"),
}


def tshark_rows(item: Path) -> int:
    text = (item / "tshark-conv.txt").read_text()
    return sum(1 for line in text.splitlines() if "<->" in line)


@pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus is not beside the repo")
@pytest.mark.parametrize("item", ITEMS, ids=[p.name for p in ITEMS])
def test_connections_match_tshark_conversations(item: Path) -> None:
    capture = next(item.glob("capture.pcap*"))
    report = analyze(str(capture))
    assert report.capture.error is None
    summary = report.capture
    assert summary.packets == summary.tcp_segments + sum(summary.skipped.values())
    ours = len(report.connections)
    if item.name in EXPLAINED:
        expected, _why = EXPLAINED[item.name]
        assert ours == expected
        assert ours != tshark_rows(item)  # still a difference worth explaining
    else:
        assert ours == tshark_rows(item)


@pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus is not beside the repo")
def test_every_packet_counted_against_capinfos() -> None:
    for item in ITEMS:
        capture = next(item.glob("capture.pcap*"))
        info = (item / "capinfos.txt").read_text()
        line = next(ln for ln in info.splitlines() if ln.startswith("Number of packets"))
        packets = int(line.split(":")[1].strip().split()[0].replace(",", ""))
        assert analyze(str(capture)).capture.packets == packets, item.name


# --- VLAN tags and the connection key --------------------------------------------------
# The key is the five-tuple without VLAN ids, as in Zeek's default key and tshark's
# tcp.stream. The captures below are read with dpkt here, not with our decoder.

def _tagged_frames(capture: Path) -> list[tuple[int, tuple[int, ...], bytes]]:
    """(frame number, VLAN ids outer first, bytes from the IP header on) per frame."""
    import dpkt

    out = []
    with capture.open("rb") as f:
        reader = dpkt.pcapng.Reader(f) if capture.suffix == ".pcapng" else dpkt.pcap.Reader(f)
        for number, (_, data) in enumerate(reader, 1):
            at, tags = 14, []
            etype = int.from_bytes(data[12:14], "big")
            while etype in (0x8100, 0x88A8, 0x9100):
                tags.append(int.from_bytes(data[at:at + 2], "big") & 0x0FFF)
                etype = int.from_bytes(data[at + 2:at + 4], "big")
                at += 4
            out.append((number, tuple(tags), data[at:]))
    return out


@pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus is not beside the repo")
def test_vlan_collisions_is_one_connection_copied_on_three_vlans() -> None:
    import dpkt

    item = CORPUS / "zeek" / "vlan-collisions"
    frames = _tagged_frames(item / "capture.pcap")
    by_tags: dict[tuple[int, ...], list[bytes]] = {}
    for _, tags, ip in frames:
        by_tags.setdefault(tags, []).append(ip)
    # untagged, VLAN 42, QinQ 10/20: the same 14 IP packets each (IP ids, sequence
    # numbers and TTLs included), i.e. one connection's packets three times
    assert sorted(by_tags) == [(), (10, 20), (42,)]
    assert by_tags[()] == by_tags[(42,)] == by_tags[(10, 20)]
    assert len(by_tags[()]) == 14
    # The key ignores VLAN ids: one connection of 21 + 21 packets, Zeek's default-key
    # record (zeek-conn.log; the VLAN-aware key's log has three records of 7 + 7).
    rows = [ln.split("\t") for ln in (item / "zeek-conn.log").read_text().splitlines()
            if ln[:1].isdigit() or ln.startswith("XXXX")]
    assert [(r[-3], r[-2]) for r in rows] == [("21", "21")]
    report = analyze(str(item / "capture.pcap"))
    (conn,) = report.connections
    assert (conn.packets_client, conn.packets_server) == (21, 21)
    # Merged, the VLAN 42 copy's SYN-ACK looks like a retransmission (the third ACK
    # lost) and that copy's request like the data that completed the handshake. The
    # finding says when the server went back to SYN_RCVD and left it, not that it
    # stays there (the server ends CLOSED).
    tcp = [(n, tags, dpkt.ip.IP(ip).data) for n, tags, ip in frames]
    synacks = [n for n, _, t in tcp if t.flags & 0x12 == 0x12]
    again = synacks[1]
    left = next(n for n, _, t in tcp if n > again and t.dport == 80 and len(t.data))
    (finding,) = [f for f in report.findings if f.kind == "missing_third_ack"]
    assert conn.server_state != "SYN_RCVD"
    assert finding.summary.endswith(
        f"which went back to SYN_RCVD at frame {again} and left it at frame {left} "
        "(its SYN-ACK was acknowledged by a data segment).")


@pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus is not beside the repo")
@pytest.mark.parametrize("item, client_tags, server_tags", [
    # Suricata's test runs with vlan.use-for-tracking=false to see one flow (closed)
    ("suricata-verify/syn-retransmit-ts-vlan", (3136,), ()),
    # Zeek logs one record, history ShADadgtFr
    ("zeek/ldap-gap-multi-if-pcapng", (81,), (80,)),
])
def test_one_connection_whose_directions_have_different_vlans(
        item: str, client_tags: tuple[int, ...], server_tags: tuple[int, ...]) -> None:
    # A key with VLAN ids would split these into two one-sided connections.
    capture = next((CORPUS / item).glob("capture.pcap*"))
    frames = _tagged_frames(capture)
    import dpkt

    ip_class = {4: dpkt.ip.IP, 6: dpkt.ip6.IP6}
    sides = {}
    for _, tags, ip in frames:
        tcp = ip_class[ip[0] >> 4](ip).data
        sides.setdefault(tcp.sport, set()).add(tags)
    report = analyze(str(capture))
    (conn,) = report.connections
    client_port = int(conn.client.rsplit(":", 1)[1])
    server_port = int(conn.server.rsplit(":", 1)[1])
    assert sides == {client_port: {client_tags}, server_port: {server_tags}}
    assert conn.packets_client and conn.packets_server


def test_each_end_gets_its_own_retransmission_finding() -> None:
    # zeek/pppoe-qinq: tshark (tshark-fields.tsv, and -T fields -e ip.src) marks frames 13,
    # 15, 16, 25 (from the server 2.2.2.2:443) and 28, 29, 31, 32, 46 (from the client
    # 1.1.1.1:20394) as retransmissions; Zeek's history has a T for each side. One finding
    # per kind per connection used to keep only one side's.
    item = CORPUS / "zeek" / "pppoe-qinq"
    marked = set()
    for line in (item / "tshark-fields.tsv").read_text().splitlines():
        cols = line.split("\t")
        if "retransmission" in cols[-1]:
            marked.add(int(cols[0]))
    report = analyze(str(item / "capture.pcap"))
    by_end = {f.summary.split(" ", 1)[0]: f for f in report.findings
              if f.kind == "retransmission"}
    assert set(by_end) == {"client", "server"}
    assert by_end["server"].summary.startswith("server 2.2.2.2:443 ")
    assert by_end["client"].summary.startswith("client 1.1.1.1:20394 ")
    assert by_end["server"].frames[:4] == [13, 15, 16, 25]
    assert by_end["client"].frames[:5] == [28, 29, 31, 32, 46]
    assert {13, 15, 16, 25, 28, 29, 31, 32, 46} <= marked
    (conn,) = report.connections
    assert conn.findings.count("retransmission") == 1  # the connection lists kinds once


def test_finding_texts_agree_with_the_packets_and_the_states() -> None:
    # suricata-verify/tls-last-ack (tcpdump -nr): the client's FIN is frame 18, the
    # server's FIN frame 19, sent again as frames 21-29 and never acknowledged (the
    # client's ACKs stay at 4580); the FINs crossed
    report = analyze(str(CORPUS / "suricata-verify" / "tls-last-ack" / "capture.pcap"))
    (conn,) = report.connections
    found = {f.kind: f for f in report.findings}
    assert "sent at frame 19 but never acknowledged" in found["fin_wait_2_stuck"].summary
    assert "never came" not in found["fin_wait_2_stuck"].summary
    close = found["simultaneous_close"]
    assert close.frames == [18, 19]
    assert f"client {conn.client_state}, server {conn.server_state} as seen" in close.summary
    assert "both went through CLOSING to TIME_WAIT" not in close.summary
