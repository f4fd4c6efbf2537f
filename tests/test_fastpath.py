"""The quiet-segment fast path changes nothing but speed.

Every capture of sample_pcaps/ and the shared corpus is analysed twice, with plain
`Analysis.feed` and with `fastpath.make_feed`, and the whole reports must be equal
(connections, states, timelines, findings, Zeek conn_state/history, stats). A test also
checks that the fast path is really taken on bulk traffic, so the comparison cannot pass
just because every segment went the slow way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tcpanalyze.analysis import Analysis, build_report
from tcpanalyze.capture import open_capture, time_ordered
from tcpanalyze.decode import Decoder
from tcpanalyze.fastpath import make_feed
from tcpanalyze.segment import ACK, Segment

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
if not CORPUS.is_dir():
    CORPUS = Path("/work/shared/corpus")
# bench-mini: `bench/make_capture.py --connections 300 --bulk 2 --bulk-mbytes 4`, 11.5k
# packets of real kernel traffic with 0.2 % loss on the bulk downloads (gzip)
MINI = ROOT / "tests" / "data" / "bench-mini.pcap.gz"
CAPTURES = [MINI, *sorted((ROOT / "sample_pcaps").glob("*.pcap*")),
            *sorted(CORPUS.glob("*/*/capture.pcap*"))]


class _Counted(Analysis):
    """Counts the segments that reach the general path (a subclass: compiled, an
    Analysis cannot be patched)."""

    def __init__(self, counter: list[int]) -> None:
        super().__init__()
        self.counter = counter

    def feed(self, seg: Segment) -> list[Any]:
        self.counter[0] += 1
        return super().feed(seg)


def _report(path: Path, fast: bool, counter: list[int] | None = None) -> dict[str, Any]:
    analysis = Analysis() if counter is None else _Counted(counter)
    feed = make_feed(analysis) if fast else analysis.feed
    decoder = Decoder()
    for frame in time_ordered(open_capture(str(path))):
        seg = decoder.decode(frame)
        if seg is not None:
            feed(seg)
    analysis.finish()
    return build_report([], analysis).to_dict()


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fast_path_report_is_identical(path: Path) -> None:
    assert _report(path, fast=False) == _report(path, fast=True)


def test_fast_path_is_taken_on_bulk_data() -> None:
    # most segments of bulk downloads are in-order data and ACKs
    path = MINI
    decoder = Decoder()
    segments = sum(1 for f in open_capture(str(path)) if decoder.decode(f) is not None)
    slow = [0]
    _report(path, fast=True, counter=slow)
    assert slow[0] < segments * 0.4, (slow[0], segments)


def _seg(frame: int, ts: float, client: bool, seq: int, ack: int, flags: int,
         plen: int = 0, window: int = 1000) -> Segment:
    a, b = (b"\x0a\x00\x00\x01", 40000), (b"\x0a\x00\x00\x02", 80)
    (src, sport), (dst, dport) = (a, b) if client else (b, a)
    return Segment(frame, ts, src, dst, sport, dport, seq, ack, flags, window, plen)


def _synthetic(extra: list[Segment]) -> tuple[dict[str, Any], dict[str, Any]]:
    # handshake and one data segment each way, then the segments under test
    base = [_seg(1, 0.0, True, 100, 0, 0x02), _seg(2, 0.01, False, 500, 101, 0x12),
            _seg(3, 0.02, True, 101, 501, ACK), _seg(4, 0.03, True, 101, 501, ACK | 0x08, 10),
            _seg(5, 0.04, False, 501, 111, ACK | 0x08, 20), _seg(6, 0.05, True, 111, 521, ACK)]
    out = []
    for fast in (False, True):
        analysis = Analysis()
        feed = make_feed(analysis) if fast else analysis.feed
        for seg in base + extra:
            feed(seg)
        analysis.finish()
        out.append(build_report([], analysis).to_dict())
    return out[0], out[1]


@pytest.mark.parametrize("case", [
    # a retransmission of the client's data (seq behind snd_nxt)
    [_seg(7, 0.1, True, 111, 521, ACK, 10), _seg(8, 0.2, True, 101, 521, ACK, 10)],
    # a hole (seq ahead), then an ACK of bytes never seen (a gap)
    [_seg(7, 0.1, True, 131, 521, ACK, 10), _seg(8, 0.2, False, 521, 500, ACK)],
    # a zero window and its reopening
    [_seg(7, 0.1, False, 521, 111, ACK, window=0), _seg(8, 0.9, False, 521, 111, ACK)],
    # a keepalive (one byte behind), then a FIN
    [_seg(7, 0.1, True, 110, 521, ACK, 1), _seg(8, 0.2, True, 111, 521, ACK | 0x01)],
])
def test_state_changing_segments_take_the_full_path(case: list[Segment]) -> None:
    slow, fast = _synthetic(case)
    assert slow == fast
    assert slow["findings"] or any(c["timeline"] for c in slow["connections"])
