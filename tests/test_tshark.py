"""The tshark decoder: tunnels opened to the innermost TCP, frame classes, stdin, errors.

Evidence: the tunnel captures made by lab/make_tunnel_samples.py (their truth files name
the inner connections and how each ended) and the corpus's `tshark-fields.tsv`, written
by tshark 4.0.17 with default preferences (our run switches analysis, reassembly and
defragmentation off, so agreement there shows the speed-ups change no TCP field).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tcpanalyze import tshark as ts
from tcpanalyze.capture import open_capture
from tcpanalyze.decode import Decoder
from tcpanalyze.segment import ACK, FIN, RST, SYN, Segment, format_endpoint

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_pcaps"
CORPUS = ROOT.parent / "shared" / "corpus"
if not CORPUS.is_dir():
    CORPUS = Path("/work/shared/corpus")

_skip_without_tshark = pytest.mark.skipif(
    not ts.tshark_available(), reason="tshark is not installed (apt-get install tshark)")


def needs_tshark(test: Callable[..., None]) -> Callable[..., None]:
    return pytest.mark.tshark(_skip_without_tshark(test))
TUNNELS = ("gre", "vxlan")


def corpus_captures() -> list[Path]:
    return sorted(p for p in CORPUS.glob("*/*/capture.pcap*"))


# -- without tshark ------------------------------------------------------------------------

def test_missing_tshark_says_how_to_install(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    monkeypatch.setenv("TCPANALYZE_TSHARK", str(tmp_path / "no-such-tshark"))
    assert not ts.tshark_available()
    with pytest.raises(ts.TsharkMissing, match="apt-get install tshark"):
        list(ts.tshark_segments(str(SAMPLES / "tunnel-gre.pcap")))


def test_argv_is_a_list_with_the_file_as_one_element() -> None:
    argv = ts.build_argv("/usr/bin/tshark", "a file; rm -rf x.pcap")
    assert argv[argv.index("-r") + 1] == "a file; rm -rf x.pcap"
    fields = [argv[i + 1] for i, a in enumerate(argv) if a == "-e"]
    assert fields == list(ts.FIELDS)
    assert "-l" not in argv  # per-packet flushing only for a live pipe
    assert "-l" in ts.build_argv("/usr/bin/tshark", "-")


def _line(**values: str) -> str:
    row = dict.fromkeys(ts.FIELDS, "")
    row.update({"frame.number": "7", "frame.time_epoch": "1700000000.123456000",
                "ip.flags.mf": "0", "ip.frag_offset": "0"})
    for key, value in values.items():
        row[key.replace("__", ".")] = value
    return "\t".join(row[f] for f in ts.FIELDS) + "\n"


TCP_FIELDS = {"tcp__srcport": "80,1234", "tcp__dstport": "443,5678", "tcp__seq_raw": "1,99",
              "tcp__ack_raw": "2,100", "tcp__flags": "0x0010,0x0912",
              "tcp__window_size_value": "5,64240", "tcp__len": "0,12",
              "tcp__options": "020405b4"}


def test_innermost_layer_of_a_tunnel_is_taken() -> None:
    # a (made-up) TCP-in-GRE frame: tshark prints each repeated field outer,inner
    d = ts.TsharkDecoder("x", tshark_path="/bin/true")
    seg = d._parse(_line(frame__protocols="eth:ethertype:ip:gre:ip:tcp",
                         ip__src="192.0.2.1,10.78.1.1", ip__dst="192.0.2.2,10.78.1.2",
                         ip__flags__mf="0,0", ip__frag_offset="0,0", **TCP_FIELDS))
    assert seg == Segment(7, 1700000000.123456, bytes([10, 78, 1, 1]), bytes([10, 78, 1, 2]),
                          1234, 5678, 99, 100, 0x112, 64240, 12, bytes.fromhex("020405b4"))
    assert d.tunnelled == 1 and d.counts["tcp"] == 1


def test_ipv6_inside_ipv4_takes_the_ipv6_addresses() -> None:
    d = ts.TsharkDecoder("x", tshark_path="/bin/true")
    seg = d._parse(_line(frame__protocols="eth:ethertype:ip:udp:teredo:ipv6:tcp",
                         ip__src="192.0.2.1", ip__dst="192.0.2.2", ipv6__src="fd78::1",
                         ipv6__dst="fd78::2", **TCP_FIELDS))
    assert seg is not None
    assert format_endpoint(seg.src, seg.sport) == "[fd78::1]:1234"
    assert format_endpoint(seg.dst, seg.dport) == "[fd78::2]:5678"


@pytest.mark.parametrize(("protocols", "extra", "cls"), [
    ("eth:ethertype:arp", {}, "non_ip"),
    ("eth:ethertype:ip:udp:dns", {}, "other_ip"),
    ("eth:ethertype:ip:icmp:ip:tcp", TCP_FIELDS, "other_ip"),  # header quoted in an error
    ("ppp:ip:tcp", {"ip__flags__mf": "1", **TCP_FIELDS}, "fragment"),
    ("eth:ethertype:ip:data", {"ip__frag_offset": "185"}, "fragment"),
    ("eth:ethertype:ip:tcp", {"tcp__srcport": "1", "tcp__dstport": "2"}, "malformed"),
])
def test_frames_that_give_no_segment_are_classed(protocols: str, extra: dict[str, str],
                                                 cls: str) -> None:
    d = ts.TsharkDecoder("x", tshark_path="/bin/true")
    assert d._parse(_line(frame__protocols=protocols, **extra)) is None
    assert d.counts[cls] == 1 and sum(d.counts.values()) == 1


# -- with tshark: the tunnel captures ------------------------------------------------------

def truth(kind: str) -> dict:
    return json.loads((SAMPLES / f"tunnel-{kind}.truth.json").read_text())


@needs_tshark
@pytest.mark.parametrize("kind", TUNNELS)
def test_tunnel_capture_shows_the_inner_connections(kind: str) -> None:
    facts = truth(kind)
    decoder = ts.TsharkDecoder(str(SAMPLES / facts["capture"]))
    segments = list(decoder)
    assert decoder.error is None
    by_conn: dict[frozenset[str], list[Segment]] = {}
    for seg in segments:
        key = frozenset((format_endpoint(seg.src, seg.sport),
                         format_endpoint(seg.dst, seg.dport)))
        by_conn.setdefault(key, []).append(seg)
    expected = {frozenset((c["client"], c["server"])): c for c in facts["connections"]}
    assert set(by_conn) == set(expected)  # no outer (underlay) address shows as TCP
    assert decoder.tunnelled == len(segments) == decoder.counts["tcp"]
    for key, conn in expected.items():
        segs = by_conn[key]
        first = segs[0]
        assert format_endpoint(first.src, first.sport) == conn["client"]
        assert first.flags & (SYN | ACK) == SYN  # the client's SYN opens it
        assert segs[1].flags & (SYN | ACK) == SYN | ACK
        assert segs[1].ack == (first.seq + 1) & 0xFFFFFFFF
        from_server = [s for s in segs if format_endpoint(s.src, s.sport) == conn["server"]]
        from_client = [s for s in segs if s not in from_server]
        if conn["ends"].startswith("server RST"):
            assert from_server[-1].flags & RST and not any(s.flags & FIN for s in segs)
            assert conn["client_state"] == conn["server_state"] == "CLOSED"
        else:
            # the client closed first: its FIN precedes the server's, and ss saw TIME_WAIT
            fin_c = next(s.frame for s in from_client if s.flags & FIN)
            fin_s = next(s.frame for s in from_server if s.flags & FIN)
            assert fin_c < fin_s and conn["client_state"] == "TIME_WAIT"
            # the scenario sends 300 bytes up and 5000 down (lab/make_tunnel_samples.py)
            assert sum(s.payload_len for s in from_client) == 300
            assert sum(s.payload_len for s in from_server) == 5000


@needs_tshark
@pytest.mark.parametrize("kind", TUNNELS)
def test_dpkt_decoder_leaves_the_same_frames_as_tunnel(kind: str) -> None:
    path = str(SAMPLES / f"tunnel-{kind}.pcap")
    dpkt = Decoder()
    assert all(dpkt.decode(frame) is None for frame in open_capture(path))
    tshark_frames = [seg.frame for seg in ts.tshark_segments(path)]
    # every TCP segment tshark found sits in a frame the dpkt decoder counted as a tunnel
    # (VXLAN also carries the inner ARP, so the tunnel count can be larger)
    assert dpkt.counts["tcp"] == 0
    assert dpkt.counts["tunnel"] >= len(tshark_frames) > 0


# -- with tshark: the corpus ---------------------------------------------------------------

def flags_from_str(text: str) -> int:
    """tshark's tcp.flags.str ('·······A··S·', 12 places, bit 11 first) -> our flags."""
    return sum(1 << (11 - i) for i, c in enumerate(text) if c != "·") & 0x1FF


# Frames tshark-fields.tsv lists as TCP that our decoder deliberately yields no segment for.
NOT_SEGMENTS = {
    # the reference ran with defragmentation on and shows the reassembled SYN in the last
    # fragment; we keep it off (as decode.py does), so all three frames are fragments
    "ppp-frag-syn": ({3}, "fragments are never taken for a whole segment"),
    "cisco-fabric-path-syns": (set(range(34, 65, 2)),
                               "tshark's FabricPath dissector strips a 4-byte FCS the "
                               "frames lack, so their TCP header is short"),
}


@needs_tshark
def test_corpus_frames_and_flags_match_tsharks_reference_output() -> None:
    checked = 0
    for capture in corpus_captures():
        reference = capture.parent / "tshark-fields.tsv"
        if not reference.exists():
            continue
        ref_flags = {}
        for line in reference.read_text().splitlines():
            cols = line.split("\t")
            if cols[0] and cols[2]:
                ref_flags[int(cols[0])] = flags_from_str(cols[2])
        decoder = ts.TsharkDecoder(str(capture))
        ours = {seg.frame: seg.flags for seg in decoder}
        skipped, reason = NOT_SEGMENTS.get(capture.parent.name, (set(), ""))
        assert set(ref_flags) - set(ours) == skipped, (capture, reason)
        assert set(ours) <= set(ref_flags), capture
        assert {f: ref_flags[f] for f in ours} == ours, capture
        assert sum(decoder.counts.values()) == decoder.frames_read
        checked += 1
    assert checked >= 60


@needs_tshark
def test_standard_input_gives_the_same_segments_as_the_file() -> None:
    path = CORPUS / "zeek" / "pppoe-qinq" / "capture.pcap"  # PPPoE in QinQ: tunnelled
    by_path = list(ts.tshark_segments(str(path)))
    with path.open("rb") as f:  # a real file descriptor goes straight to tshark
        by_fd = list(ts.tshark_segments("-", stdin=f))
    in_memory = list(ts.tshark_segments("-", stdin=io.BytesIO(path.read_bytes())))
    assert len(by_path) == 86  # tshark-fields.tsv lists 86 TCP frames
    assert by_fd == by_path == in_memory


@needs_tshark
def test_not_a_capture_raises_tshark_error(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.pcap"
    bogus.write_text("this is not a capture\n" * 10)
    with pytest.raises(ts.TsharkError, match=r"notes\.pcap"):
        list(ts.tshark_segments(str(bogus)))


@needs_tshark
def test_a_cut_capture_yields_what_is_there_and_sets_error(tmp_path: Path) -> None:
    whole = (CORPUS / "zeek" / "http-get" / "capture.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(whole[: len(whole) - 30])  # the last record loses its end
    decoder = ts.TsharkDecoder(str(cut))
    segments = list(decoder)
    assert len(segments) == 13  # 14 TCP frames in the whole file
    assert decoder.error is not None and "cut.pcap" in decoder.error


@needs_tshark
def test_stopping_early_ends_tshark() -> None:
    gen = ts.tshark_segments(str(CORPUS / "zeek" / "ssh-half-duplex-client" / "capture.pcap"))
    first = [next(gen) for _ in range(3)]
    gen.close()  # must not hang waiting for tshark to print the other 835
    assert [s.frame for s in first] == sorted(s.frame for s in first)


@needs_tshark
def test_version_is_read_through_pyshark() -> None:
    version = ts.tshark_version()
    assert version[0].isdigit() and "." in version


@needs_tshark
@pytest.mark.parametrize("kind", TUNNELS)
def test_analysis_through_tshark_matches_the_kernels_states(kind: str) -> None:
    # read_tshark_into is what `--decoder tshark` runs; the truth is ss at capture stop
    from tcpanalyze.analysis import analyze

    facts = truth(kind)
    report = analyze(str(SAMPLES / facts["capture"]), decoder="tshark")
    summary = report.captures[0]
    assert summary.decoder == "tshark" and summary.error is None
    assert summary.packets == sum(summary.skipped.values()) + summary.tcp_segments
    states = {(c.client, c.server): (c.client_state, c.server_state)
              for c in report.connections}
    assert states == {(c["client"], c["server"]): (c["client_state"], c["server_state"])
                      for c in facts["connections"]}
    assert sorted((f.kind, f.server) for f in report.findings) == sorted(
        (f["kind"], f["server"]) for f in facts["expected_findings"])
