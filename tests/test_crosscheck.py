"""Crosscheck: the comparison itself (synthetic segments), then the dpkt decoder against
tshark over every real capture we have (corpus and sample_pcaps).

The two decoders are written independently (dpkt-based header walking vs Wireshark's
dissectors), so agreement on real captures is evidence for both. Every difference that
remains is listed in EXPECTED with its reason; a new one fails the test.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tcpanalyze.crosscheck import (
    Disagreement,
    compare_segments,
    connection_key,
    crosscheck_capture,
    dpkt_segments,
)
from tcpanalyze.segment import ACK, SYN, Segment
from tcpanalyze.tshark import tshark_available

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_pcaps"
CORPUS = ROOT.parent / "shared" / "corpus"
if not CORPUS.is_dir():
    CORPUS = Path("/work/shared/corpus")

A = bytes([10, 78, 0, 1])
B = bytes([10, 78, 0, 2])


def seg(frame: int, **changes: object) -> Segment:
    base = Segment(frame, 1000.0 + frame / 1000, A, B, 40000, 80, 100 + frame, 7, ACK,
                   512, 10, b"")
    return base._replace(**changes)


# -- the comparison ------------------------------------------------------------------------

def test_identical_decodings_agree() -> None:
    segs = [seg(1, flags=SYN), seg(2, src=B, dst=A, sport=80, dport=40000), seg(3)]
    result = compare_segments(segs, list(segs))
    assert result.agree and result.frames_both == 3
    assert result.connections_left == result.connections_right == 1
    assert "3 frames decoded by both, 0 field disagreements" in result.summary()


def test_each_differing_field_is_reported_with_both_values() -> None:
    left = [seg(1), seg(2), seg(3)]
    right = [seg(1), seg(2, seq=5, flags=ACK | SYN, options=b"\x01"), seg(3, ts=2000.0)]
    result = compare_segments(left, right)
    assert result.disagreements == [
        Disagreement(2, "seq", 102, 5),
        Disagreement(2, "flags", ACK, ACK | SYN),
        Disagreement(2, "options", b"", b"\x01"),
        Disagreement(3, "ts", left[2].ts, 2000.0),
    ]
    assert result.disagreements[1].to_dict() == {
        "frame": 2, "field": "flags", "left": ". (0x010)", "right": "S. (0x012)"}
    assert not result.agree


def test_timestamps_within_a_microsecond_agree() -> None:
    result = compare_segments([seg(1, ts=1.2345670)], [seg(1, ts=1.2345674)])
    assert result.agree


def test_frames_only_one_side_decoded_and_connection_counts() -> None:
    other = {"src": bytes([10, 78, 0, 3]), "sport": 41000}
    left = [seg(1), seg(2), seg(4, **other)]
    right = [seg(2), seg(3), seg(5, **other), seg(6, **other)]
    result = compare_segments(left, right, left_name="dpkt", right_name="tshark")
    assert (result.only_left, result.only_right) == ([1, 4], [3, 5, 6])
    assert result.frames_both == 1 and not result.disagreements
    counts = {(d.left, d.right) for d in result.connection_differences}
    assert counts == {(1, 2)}  # 10.78.0.3:41000 had 1 segment vs 2; A:40000 had 2 vs 2
    as_dict = result.to_dict()
    assert as_dict["only_dpkt"] == {"count": 2, "frames": [1, 4]}
    assert as_dict["only_tshark"]["count"] == 3


def test_both_directions_share_one_connection_key() -> None:
    forth, back = seg(1), seg(2, src=B, dst=A, sport=80, dport=40000)
    assert connection_key(forth) == connection_key(back)
    assert connection_key(forth) != connection_key(seg(3, sport=40001))


def test_limit_bounds_lists_but_not_counts() -> None:
    result = compare_segments([seg(i) for i in range(1, 101)], [], limit=10)
    assert result.only_left == list(range(1, 11)) and result.only_left_count == 100


def test_frames_out_of_order_are_refused() -> None:
    with pytest.raises(ValueError, match="out of frame order"):
        compare_segments([seg(2), seg(1)], [])


# -- dpkt decoder vs tshark on real captures -----------------------------------------------

def captures() -> list[Path]:
    found = sorted(CORPUS.glob("*/*/capture.pcap*")) + sorted(SAMPLES.glob("*.pcap*"))
    return [p for p in found if not p.name.endswith(".json")]


def capture_id(path: Path) -> str:
    return path.parent.name if path.name.startswith("capture.") else path.stem


# capture -> (frames only dpkt decoded, frames only tshark decoded, why);
# "all": that side decoded every segment and the other none.
EXPECTED: dict[str, tuple[set[int] | str, set[int] | str, str]] = {
    "cisco-fabric-path-syns": (
        set(range(34, 65, 2)), set(),
        "tshark's Cisco FabricPath dissector takes the last 4 bytes for an FCS these "
        "frames do not have, leaving the TCP header short (tshark -V: 'Short segment'); "
        "the bytes show a whole 20-byte header, which dpkt decodes"),
    "tunnel-gre": (set(), "all", "GRE is not opened by the dpkt decoder (counted 'tunnel')"),
    "tunnel-vxlan": (set(), "all",
                     "VXLAN is not opened by the dpkt decoder (counted 'tunnel')"),
}


def test_expected_differences_name_existing_captures() -> None:
    assert set(EXPECTED) <= {capture_id(p) for p in captures()}


@pytest.mark.tshark
@pytest.mark.skipif(not tshark_available(), reason="tshark is not installed")
def test_dpkt_and_tshark_agree_on_every_capture() -> None:
    started = time.monotonic()
    paths = captures()
    assert len(paths) >= 64
    # two at a time: most of the time is tshark starting up, in its own process
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda p: crosscheck_capture(str(p), limit=100_000), paths))
    problems: list[str] = []
    for path, result in zip(paths, results, strict=True):
        name = capture_id(path)
        only_dpkt, only_tshark, _why = EXPECTED.get(name, (set(), set(), ""))
        if only_tshark == "all":
            only_tshark = set(result.only_right)
            if result.frames_both or not only_tshark:
                problems.append(f"{name}: expected tshark alone to decode it")
        if result.disagreements:
            problems.append(f"{name}: {[d.to_dict() for d in result.disagreements[:5]]}")
        if set(result.only_left) != only_dpkt:
            problems.append(f"{name}: only dpkt decoded {result.only_left[:20]}")
        if set(result.only_right) != only_tshark:
            problems.append(f"{name}: only tshark decoded {result.only_right[:20]}")
    assert not problems, "\n".join(problems)
    assert time.monotonic() - started < 90  # ~10 s here; the budget is 60


@pytest.mark.tshark
@pytest.mark.skipif(not tshark_available(), reason="tshark is not installed")
def test_tunnel_connections_by_tshark_match_truth_and_dpkt_sees_none() -> None:
    import json

    for kind in ("gre", "vxlan"):
        path = SAMPLES / f"tunnel-{kind}.pcap"
        truth = json.loads(path.with_suffix(".truth.json").read_text())
        result = crosscheck_capture(str(path))
        assert result.connections_left == 0
        assert result.connections_right == len(truth["connections"]) == 3
        assert len(result.connection_differences) == 3
        assert all(d.left == 0 and d.right > 0 for d in result.connection_differences)


def test_dpkt_segments_reads_a_corpus_capture() -> None:
    # the adapter the crosscheck feeds from; http-get has 14 TCP frames (tshark-fields.tsv)
    segs = list(dpkt_segments(str(CORPUS / "zeek" / "http-get" / "capture.pcap")))
    assert [s.frame for s in segs] == list(range(1, 15))
