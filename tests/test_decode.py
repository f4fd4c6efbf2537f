"""decode.py: TCP segments and frame classes checked against tshark on real captures, plus
corner cases made by mutating real frames."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from tcpanalyze.capture import Frame, open_capture
from tcpanalyze.decode import MAX_EXAMPLES, Decoder
from tcpanalyze.report import PACKET_CLASSES
from tcpanalyze.segment import Segment

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
SAMPLES = ROOT / "sample_pcaps"
CORPUS = ROOT.parent / "shared" / "corpus"
if not CORPUS.is_dir():
    CORPUS = Path("/work/shared/corpus")

needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not present")
needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None,
                                  reason="tshark is not installed (apt-get install tshark)")

# Items where our TCP frames differ from tshark's list, and why.
TCP_DIFFERENCES = {
    # tshark reassembles the three IPv4 fragments and shows the SYN on the last one;
    # we never reassemble: all three are 'fragment'.
    "ppp-frag-syn": ({3}, "fragment"),
}


def corpus_captures() -> list[Path]:
    return sorted(CORPUS.glob("*/*/capture.pcap*"))


def decode_file(path: Path, verify: bool = False) -> tuple[Decoder, list[Frame],
                                                            dict[int, Segment]]:
    decoder = Decoder(verify_checksums=verify)
    reader = open_capture(str(path))
    frames = list(reader)
    assert reader.error is None
    segments = {}
    for frame in frames:
        segment = decoder.decode(frame)
        if segment is not None:
            segments[frame.number] = segment
    return decoder, frames, segments


def tshark_fields(path: Path, *fields: str, options: tuple[str, ...] = (),
                  display: str = "") -> list[list[str]]:
    args = ["tshark", "-r", str(path), "-T", "fields", *options]
    if display:
        args += ["-Y", display]
    for name in fields:
        args += ["-e", name]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=60).stdout
    return [line.split("\t") for line in out.splitlines()]


def classes_by_frame(path: Path) -> dict[int, str]:
    decoder = Decoder()
    out = {}
    for frame in open_capture(str(path)):
        before = dict(decoder.counts)
        decoder.decode(frame)
        (out[frame.number],) = [c for c in decoder.counts if decoder.counts[c] != before[c]]
    return out


# -- the corpus: TCP frames against tshark's list ------------------------------------------

@needs_corpus
@pytest.mark.parametrize("capture", corpus_captures(), ids=lambda p: p.parent.name)
def test_tcp_frames_match_tsharks_list(capture: Path) -> None:
    rows = (capture.parent / "tshark-fields.tsv").read_text().splitlines()
    expected = {int(row.split("\t")[0]) for row in rows}
    decoder, frames, segments = decode_file(capture)
    assert sum(decoder.counts.values()) == len(frames)  # each frame counted exactly once
    assert decoder.counts["tcp"] == len(segments)
    assert decoder.counts["bad_checksum"] == 0  # never judged unless asked
    missing, cls = TCP_DIFFERENCES.get(capture.parent.name, (set(), ""))
    assert set(segments) == expected - missing
    if missing:
        assert all(number in {n for n, _ in decoder.examples[cls]} for number in missing)


# tshark's `tcp.flags` includes the three reserved bits (rst-inject sets them); a Segment
# keeps FIN..CWR and NS only.
FLAG_MASK = 0x1FF

SPOT_CHECK = [
    "zeek/http-get", "zeek/vlan-mpls", "zeek/pppoe-qinq", "zeek/cisco-fabric-path-syns",
    "zeek/ldap-gap-multi-if-pcapng", "zeek/tcp-syslog-rawip", "zeek/nflog-http",
    "zeek/ftp-ipv6", "zeek/tcp-padding", "zeek/rst-inject", "zeek/redis-django-pcapng",
    "zeek/vlan-pcp-dei-pcapng", "zeek/teredo", "suricata-verify/ips-no-stream-events",
    "suricata-verify/sll2", "suricata-verify/cisco-hdlc", "suricata-verify/ipv6-flows",
    "suricata-verify/syn-retransmit-ts-vlan", "tcpdump/handshake-nano-sll",
    "tcpdump/rst-payload-null", "tcpdump/pptp-big-endian", "tcpdump/all-eight-flags",
    "tcpdump/tso-oversized", "dpkt/http",
]
TCP_FIELDS = ("frame.number", "tcp.srcport", "tcp.dstport", "tcp.seq_raw", "tcp.ack_raw",
              "tcp.flags", "tcp.len", "tcp.window_size_value", "tcp.hdr_len")


def assert_segments_match_tshark(path: Path, segments: dict[int, Segment]) -> int:
    rows = tshark_fields(path, *TCP_FIELDS, display="tcp")
    checked = 0
    for number, sport, dport, seq, ack, flags, length, window, hdr_len in rows:
        segment = segments[int(number)]
        assert (segment.sport, segment.dport, segment.seq, segment.ack, segment.window) == (
            int(sport), int(dport), int(seq), int(ack), int(window)), number
        assert segment.flags == int(flags, 16) & FLAG_MASK, number
        assert len(segment.options) == int(hdr_len) - 20, number
        if length:  # tshark leaves it empty for a header cut short by its trailer guess
            assert segment.payload_len == int(length), number
        checked += 1
    return checked


@needs_tshark
@needs_corpus
@pytest.mark.parametrize("item", SPOT_CHECK)
def test_corpus_segments_match_tshark_fields(item: str) -> None:
    capture = next((CORPUS / item).glob("capture.pcap*"))
    _, _, segments = decode_file(capture)
    assert assert_segments_match_tshark(capture, segments) == len(segments)


@needs_tshark
@pytest.mark.parametrize("name", ["eth-nano.pcap", "eth-nano.pcap.gz", "eth-snap110.pcap",
                                  "sll.pcap", "sll2.pcap", "multi.pcapng",
                                  "crafted-2sections.pcapng"])
def test_made_captures_segments_match_tshark(name: str) -> None:
    _, _, segments = decode_file(DATA / name)
    assert assert_segments_match_tshark(DATA / name, segments) == len(segments) >= 20


# -- classes on real captures ------------------------------------------------------------

@needs_corpus
def test_teredo_and_gre_are_tunnels() -> None:
    decoder, _, _ = decode_file(CORPUS / "zeek/teredo/capture.pcap")
    # tshark's frame.protocols has udp:teredo on frames 6, 7, 30, 31
    assert decoder.counts["tunnel"] == 4
    assert [n for n, _ in decoder.examples["tunnel"]] == [6, 7, 30, 31]
    decoder, _, _ = decode_file(CORPUS / "tcpdump/pptp-big-endian/capture.pcap")
    assert decoder.counts["tunnel"] == 1  # the one GRE frame (PPP LCP inside)


@needs_tshark
@pytest.mark.parametrize("name", ["tunnel-gre.pcap", "tunnel-vxlan.pcap"])
def test_lab_tunnel_captures_are_tunnel_frames(name: str) -> None:
    path = SAMPLES / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    decoder, _, segments = decode_file(path)
    protocols = [row[0] for row in tshark_fields(path, "frame.protocols")]
    tunnelled = sum(1 for p in protocols if ":gre:" in p or ":vxlan:" in p)
    assert tunnelled > 20
    assert decoder.counts["tunnel"] == tunnelled
    assert not segments  # the inner TCP is not opened by this decoder


@needs_corpus
def test_fragmented_syn_is_never_tcp() -> None:
    decoder, _, segments = decode_file(CORPUS / "suricata-verify/ppp-frag-syn/capture.pcap")
    assert not segments
    assert decoder.counts["fragment"] == 3  # the first fragment holds the whole TCP header


def test_made_capture_classes() -> None:
    """The script's traffic: 2 IPv4 + 2 IPv6 fragments, ARP request/reply, TCP over IPv4
    with options and over IPv6 with hop-by-hop and destination-options headers."""
    decoder, frames, segments = decode_file(DATA / "eth-nano.pcap")
    assert decoder.counts["fragment"] == 4
    assert decoder.counts["non_ip"] == 2
    assert decoder.counts["tcp"] == 20
    v4 = [s for s in segments.values() if len(s.src) == 4]
    v6 = [s for s in segments.values() if len(s.src) == 16]
    assert len(v4) == len(v6) == 10
    assert {s.payload_len for s in segments.values()} == {0, 200}
    # the client's IPv4 packets carry 4 option bytes (IHL 6): not the fast path, same result
    by_frame = {f.number: f for f in frames}
    assert any(by_frame[s.frame].data[14] == 0x46 for s in v4)


@needs_tshark
def test_snaplen_cut_inside_the_tcp_header_is_truncated() -> None:
    # -s 60: every TCP segment here has a 32- or 40-byte header (timestamps), so
    # Ethernet + IPv4 + TCP needs at least 66 bytes
    classes = classes_by_frame(DATA / "eth-snap60.pcap")
    assert "tcp" not in classes.values()
    tcp_in_tshark = {int(r[0]) for r in tshark_fields(DATA / "eth-snap60.pcap", "frame.number",
                                                      display="tcp")}
    assert tcp_in_tshark
    assert all(classes[n] == "truncated" for n in tcp_in_tshark)
    # the 10 IPv6 TCP frames are cut inside their extension headers (tshark shows no TCP)
    assert sum(1 for c in classes.values() if c == "truncated") >= 20


@needs_tshark
def test_snaplen_cut_payload_keeps_its_true_length() -> None:
    full = {(r[0], r[1], r[2], r[3]): int(r[4]) for r in tshark_fields(
        DATA / "eth-nano.pcap", "tcp.srcport", "tcp.seq_raw", "tcp.ack_raw", "tcp.flags",
        "tcp.len", display="tcp")}
    _, frames, segments = decode_file(DATA / "eth-snap110.pcap")
    cut = 0
    for segment in segments.values():
        key = (str(segment.sport), str(segment.seq), str(segment.ack), f"0x{segment.flags:04x}")
        assert segment.payload_len == full[key]
        frame = frames[segment.frame - 1]
        cut += frame.wirelen > len(frame.data)
    assert cut == 4  # the four 200-byte data segments were cut at 110 bytes


# -- checksums -----------------------------------------------------------------------------

CHECKSUM_ITEMS = [
    "zeek/localhost-bad-chksum", "zeek/syn-bad-checksum", "zeek/retransmit-fast",
    "zeek/ssh-password-guessing", "zeek/tcp-padding", "zeek/vlan-mpls", "zeek/pppoe-qinq",
    "zeek/nflog-http", "suricata-verify/ipv6-flows", "suricata-verify/tfo-synack-data-ignored",
    "tcpdump/rst-payload-null", "zeek/http-get",
]


@needs_tshark
@needs_corpus
@pytest.mark.parametrize("item", CHECKSUM_ITEMS)
def test_checksum_verdicts_match_tshark(item: str) -> None:
    capture = next((CORPUS / item).glob("capture.pcap*"))
    plain, _, all_segments = decode_file(capture)
    checked, _, segments = decode_file(capture, verify=True)
    rows = tshark_fields(capture, "frame.number", "tcp.checksum.status", "ip.checksum.status",
                         options=("-o", "tcp.check_checksum:TRUE", "-o",
                                  "ip.check_checksum:TRUE"), display="tcp")
    bad = {int(r[0]) for r in rows if "0" in r[1].split(",") or "0" in r[2].split(",")}
    assert set(all_segments) - set(segments) == bad
    assert checked.counts["bad_checksum"] == len(bad)
    assert checked.counts["tcp"] + len(bad) == plain.counts["tcp"]


@needs_corpus
def test_tso_frame_is_not_judged() -> None:
    # IPv4 total length 0: the NIC fills in lengths and checksums later
    capture = CORPUS / "tcpdump/tso-oversized/capture.pcap"
    decoder, frames, segments = decode_file(capture, verify=True)
    assert decoder.counts["tcp"] == 1
    frame = frames[0]
    (segment,) = segments.values()
    ihl = (frame.data[14] & 15) * 4
    thl = (frame.data[14 + ihl + 12] >> 4) * 4
    assert segment.payload_len == frame.wirelen - 14 - ihl - thl


@needs_tshark
def test_snaplen_cut_frames_are_not_called_bad() -> None:
    # captured on the sending veth: offloaded checksums are wrong in whole frames, but the
    # four cut data segments cannot be judged (tshark says 'unverified' too)
    path = DATA / "eth-snap110.pcap"
    _, frames, segments = decode_file(path, verify=True)
    rows = tshark_fields(path, "frame.number", "tcp.checksum.status", options=(
        "-o", "tcp.check_checksum:TRUE"), display="tcp")
    bad = {int(r[0]) for r in rows if r[1] == "0"}
    unverified = {int(r[0]) for r in rows if r[1] == "2"}
    cut = {int(r[0]) for r in rows if frames[int(r[0]) - 1].wirelen > len(
        frames[int(r[0]) - 1].data)}
    assert len(cut) == 4 and cut == unverified
    assert cut <= set(segments)
    assert bad and not bad & set(segments)
    assert set(segments) == {int(r[0]) for r in rows} - bad


# -- corner cases, made by mutating a real frame -----------------------------------------------

@pytest.fixture(scope="module")
def syn() -> Frame:
    """Frame 13 of eth-nano.pcap: Ethernet, IPv4 with 4 option bytes, the client's SYN."""
    frames = list(open_capture(str(DATA / "eth-nano.pcap")))
    frame = next(f for f in frames if f.data[12:14] == b"\x08\x00" and f.data[23] == 6)
    assert frame.data[14] == 0x46
    return frame


@pytest.fixture(scope="module")
def plain_syn() -> Frame:
    """The server's SYN-ACK: IPv4 without options (the fast path)."""
    frames = list(open_capture(str(DATA / "eth-nano.pcap")))
    return next(f for f in frames if f.data[12:14] == b"\x08\x00" and f.data[23] == 6
                and f.data[14] == 0x45)


@pytest.fixture(scope="module")
def data_segment() -> Frame:
    """The server's 200-byte IPv4 data segment (no IP options)."""
    frames = list(open_capture(str(DATA / "eth-nano.pcap")))
    return next(f for f in frames if f.data[12:14] == b"\x08\x00" and f.data[23] == 6
                and f.data[14] == 0x45 and len(f.data) > 200)


def with_data(frame: Frame, data: bytes, linktype: int | None = None,
              wirelen: int | None = None) -> Frame:
    return frame._replace(data=data, linktype=frame.linktype if linktype is None else linktype,
                          wirelen=len(data) if wirelen is None else wirelen)


def patch(data: bytes, at: int, value: bytes) -> bytes:
    return data[:at] + value + data[at + len(value):]


def classify(frame: Frame, verify: bool = False) -> tuple[str, Segment | None, str]:
    decoder = Decoder(verify_checksums=verify)
    segment = decoder.decode(frame)
    (cls,) = [c for c, n in decoder.counts.items() if n]
    reason = decoder.examples[cls][0][1] if decoder.examples[cls] else ""
    return cls, segment, reason


def test_fast_and_general_paths_agree(plain_syn: Frame, syn: Frame) -> None:
    fast = classify(plain_syn)[1]
    # the same frame behind a VLAN tag takes the general path
    tagged = plain_syn.data[:12] + b"\x81\x00\x00\x4f" + plain_syn.data[12:]
    general = classify(with_data(plain_syn, tagged))[1]
    assert fast is not None and general is not None
    assert fast.vlan == 0 and general.vlan == 0x4F  # the tag's id is kept
    assert fast == general._replace(vlan=0)
    assert classify(syn)[0] == "tcp"


@pytest.mark.parametrize("mutate, cls, why", [
    (lambda d: patch(d, 14, b"\x44"), "malformed", "IPv4 header length 16"),
    # IHL 60: the header swallows the TCP header's place in a 64-byte datagram
    (lambda d: patch(d, 14, b"\x4f"), "malformed", "IP length leaves 4 bytes"),
    (lambda d: patch(d, 14 + 24 + 12, b"\x40"), "malformed", "data offset 4"),
    (lambda d: patch(d, 14 + 24 + 12, b"\xf0"), "malformed", "beyond the IP payload"),
    (lambda d: patch(d, 20, b"\x20\x00"), "fragment", "offset 0"),  # MF on a first fragment
    (lambda d: patch(d, 20, b"\x00\x10"), "fragment", "offset 128"),
    (lambda d: patch(d, 23, b"\x2f"), "tunnel", "GRE"),
    (lambda d: patch(d, 23, b"\x04"), "tunnel", "IPv4-in-IP"),
    (lambda d: patch(d, 23, b"\x29"), "tunnel", "6in4"),
    (lambda d: patch(d, 23, b"\x01"), "other_ip", "IP protocol 1"),
    (lambda d: patch(d, 12, b"\x08\x06"), "non_ip", "EtherType 0x0806"),
    (lambda d: patch(d, 14, b"\x65"), "malformed", "IP version 6"),
])
def test_header_faults(syn: Frame, mutate, cls: str, why: str) -> None:  # type: ignore[no-untyped-def]
    got, segment, reason = classify(with_data(syn, mutate(syn.data)))
    assert (got, segment) == (cls, None)
    assert why in reason


@pytest.mark.parametrize("port, name", [(4789, "VXLAN"), (2152, "GTP-U"), (3544, "Teredo")])
def test_udp_tunnels(syn: Frame, port: int, name: str) -> None:
    data = patch(syn.data, 23, b"\x11")
    data = patch(data, 14 + 24 + 2, struct.pack("!H", port))
    cls, _, reason = classify(with_data(syn, data))
    assert cls == "tunnel" and name in reason


def test_ethernet_padding_is_ignored(plain_syn: Frame) -> None:
    padded = classify(with_data(plain_syn, plain_syn.data + b"\0" * 12))[1]
    assert padded == classify(plain_syn)[1]


def test_total_length_zero_means_tso(plain_syn: Frame) -> None:
    big = plain_syn.data + b"x" * 3000
    segment = classify(with_data(plain_syn, patch(big, 16, b"\x00\x00")))[1]
    thl = (plain_syn.data[14 + 20 + 12] >> 4) * 4
    assert segment is not None and segment.payload_len == len(big) - 34 - thl


def test_snaplen_cuts(data_segment: Frame) -> None:
    data, wire = data_segment.data, len(data_segment.data)
    # cut inside the TCP header: truncated; the same bytes without a cut: a lie
    assert classify(with_data(data_segment, data[:50], wirelen=wire))[0] == "truncated"
    assert classify(with_data(data_segment, data[:50]))[0] == "malformed"
    assert classify(with_data(data_segment, data[:20], wirelen=wire))[0] == "truncated"
    # cut after the header: still TCP, with the length from the IP header
    full = classify(data_segment)[1]
    assert full is not None and full.payload_len == 200
    thl = (data[14 + 20 + 12] >> 4) * 4
    cut = classify(with_data(data_segment, data[:34 + thl + 10], wirelen=wire))[1]
    assert cut == full._replace(payload_cut=True) and not full.payload_cut


def test_ip_total_length_beyond_the_frame_is_clipped(plain_syn: Frame) -> None:
    # like tshark ("IPv4 total length exceeds packet length"): believe the frame
    data = patch(plain_syn.data, 16, struct.pack("!H", len(plain_syn.data) - 14 + 6))
    segment = classify(with_data(plain_syn, data))[1]
    assert segment is not None and segment.payload_len == 0
    # Zeek believes the header: 6 bytes of payload, none of them captured
    assert segment.ip_short == 6 and segment.payload_cut


def ipv6_frame(syn6: Frame, chain: list[tuple[int, bytes]]) -> Frame:
    """Rebuild an IPv6 TCP frame with the given extension headers before TCP."""
    data = syn6.data
    tcp = data[14 + 40:]
    assert data[20] == 6, "expects a frame without extension headers"
    out = b""
    for i, (_kind, body) in enumerate(chain):
        nxt = chain[i + 1][0] if i + 1 < len(chain) else 6
        out += bytes([nxt]) + body
    first = chain[0][0] if chain else 6
    payload = out + tcp
    head = data[:14] + data[14:18] + struct.pack("!HBB", len(payload), first, data[21]) + \
        data[22:54]
    return with_data(syn6, head + payload)


@pytest.fixture(scope="module")
def syn6() -> Frame:
    """The server's IPv6 SYN-ACK (no extension headers)."""
    frames = list(open_capture(str(DATA / "eth-nano.pcap")))
    return next(f for f in frames if f.data[12:14] == b"\x86\xdd" and f.data[20] == 6)


def test_ipv6_extension_chains(syn6: Frame) -> None:
    plain = classify(syn6)[1]
    assert plain is not None
    pad = b"\x00\x01\x04\x00\x00\x00\x00"  # length 0 (8 bytes), PadN
    for chain in ([(0, pad)], [(0, pad), (60, pad)], [(43, pad), (60, pad)],
                  [(44, b"\x00\x00\x00\x00\x00\x00\x01")],  # atomic fragment: whole packet
                  [(51, b"\x04" + b"\x00" * 22)]):  # AH, (4 + 2) * 4 = 24 bytes
        cls, segment, _ = classify(ipv6_frame(syn6, chain))
        assert cls == "tcp", chain
        assert segment == plain, chain
    frag = [(44, b"\x00\x00\x01\x00\x00\x00\x01")]  # offset 0, more fragments
    assert classify(ipv6_frame(syn6, frag))[0] == "fragment"
    frag = [(44, b"\x00\x05\x78\x00\x00\x00\x01")]  # offset 1400, last
    assert classify(ipv6_frame(syn6, frag))[0] == "fragment"
    # 40 hop-by-hop headers: the bounded walk gives up instead of looping
    cls, _, reason = classify(ipv6_frame(syn6, [(0, pad)] * 40))
    assert cls == "malformed" and "extension headers" in reason
    # an extension header that claims to run past the payload
    cls, _, reason = classify(ipv6_frame(syn6, [(60, b"\xff" + pad[1:])]))
    assert cls == "malformed"


def test_link_types(plain_syn: Frame, syn6: Frame) -> None:
    expect4, expect6 = classify(plain_syn)[1], classify(syn6)[1]
    ip4, ip6 = plain_syn.data[14:], syn6.data[14:]
    cases: list[tuple[int, bytes, Segment | None]] = []
    for linktype in (101, 12, 14):
        cases += [(linktype, ip4, expect4), (linktype, ip6, expect6)]
    cases += [(228, ip4, expect4), (229, ip6, expect6)]
    # BSD NULL: host byte order; LOOP: network byte order; every AF_INET6 value
    cases += [(0, struct.pack("<I", 2) + ip4, expect4), (0, struct.pack(">I", 2) + ip4, expect4),
              (108, struct.pack(">I", 2) + ip4, expect4)]
    for family in (24, 28, 30, 10, 23):
        cases += [(0, struct.pack("<I", family) + ip6, expect6),
                  (108, struct.pack(">I", family) + ip6, expect6)]
    # PPP with and without HDLC address/control, compressed protocol field
    cases += [(9, b"\xff\x03\x00\x21" + ip4, expect4), (9, b"\x00\x57" + ip6, expect6),
              (9, b"\x21" + ip4, expect4), (50, b"\xff\x03\x00\x21" + ip4, expect4)]
    cases += [(104, b"\x0f\x00\x08\x00" + ip4, expect4), (104, b"\x0f\x00\x86\xdd" + ip6, expect6)]
    # SLL v1 / v2
    cases += [(113, b"\x00\x04\x00\x01\x00\x06" + b"\x00" * 8 + b"\x08\x00" + ip4, expect4),
              (276, b"\x86\xdd\x00\x00" + b"\x00" * 16 + ip6, expect6)]
    # Ethernet: QinQ (0x88a8 + 0x8100), old 0x9100, MPLS two labels, PPPoE, LLC/SNAP
    macs = plain_syn.data[:12]
    cases += [
        (1, macs + b"\x88\xa8\x00\x0a\x81\x00\x00\x14\x08\x00" + ip4, expect4),
        (1, macs + b"\x91\x00\x00\x0a\x86\xdd" + ip6, expect6),
        (1, macs + b"\x88\x47\x00\x01\x00\x40\x00\x02\x01\x40" + ip4, expect4),
        (1, macs + b"\x88\x64\x11\x00\x00\x01" + struct.pack("!H", len(ip6) + 2) + b"\x00\x57"
         + ip6, expect6),
        (1, macs + struct.pack("!H", len(ip4) + 8) + b"\xaa\xaa\x03\x00\x00\x00\x08\x00" + ip4,
         expect4),
    ]
    for linktype, data, expect in cases:
        segment = classify(with_data(plain_syn, data, linktype=linktype))[1]
        assert segment is not None and expect is not None
        # all but frame, ts and the VLAN ids (QinQ 10/20: 10 << 12 | 20; 0x9100: 10)
        assert segment._replace(vlan=0)[2:] == expect[2:], (linktype, data[:24].hex())
        assert segment.vlan == {b"\x88\xa8": 10 << 12 | 20, b"\x91\x00": 10}.get(
            data[12:14] if linktype == 1 else b"", 0), (linktype, data[:24].hex())
    assert classify(with_data(plain_syn, b"\x00" * 60, linktype=147))[0] == "unsupported_link"
    assert classify(with_data(plain_syn, struct.pack("<I", 7) + ip4, linktype=0))[0] == "non_ip"
    assert classify(with_data(plain_syn, ip6, linktype=228))[0] == "malformed"


def test_examples_are_bounded_and_counts_cover_every_class(plain_syn: Frame) -> None:
    decoder = Decoder()
    assert set(decoder.counts) == set(PACKET_CLASSES) == set(decoder.examples)
    arp = with_data(plain_syn, patch(plain_syn.data, 12, b"\x08\x06"))
    for n in range(1, 20):
        assert decoder.decode(arp._replace(number=n)) is None
    assert decoder.counts["non_ip"] == 19
    assert decoder.examples["non_ip"] == [(n, "EtherType 0x0806") for n in
                                          range(1, MAX_EXAMPLES + 1)]
