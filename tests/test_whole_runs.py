"""Quiet runs applied whole (whole_runs.py) leave every connection exactly as one segment
at a time does, also when real connections are replayed with the faults that make a run
not quiet.

Real short connections are edited where it hurts a bulk update: an ACK that goes
backwards, a zero window, a keepalive probe (one byte behind), a duplicate, two segments
swapped, a segment dropped, a long silence. The edited segments are written as a pcap and
read both ways (batch path and frame by frame); the reports and the whole state of every
connection when it is closed (tracker endpoints, Zeek view, reassemblers) must be equal.
"""

from __future__ import annotations

import struct
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tcpanalyze.batch as batch
from tcpanalyze.analysis import build_report, read_into
from tcpanalyze.capture import open_capture
from tcpanalyze.decode import Decoder
from tcpanalyze.segment import ACK, Segment
from tests.test_batch import ClosingAnalysis, watched

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
if not CORPUS.is_dir():
    CORPUS = Path("/work/shared/corpus")
# real captures whose connections have short quiet middles (request, response, ACKs)
REAL = [ROOT / "sample_pcaps" / "several-normal.pcap",
        ROOT / "sample_pcaps" / "normal-server-close.pcap",
        CORPUS / "zeek" / "pop3-rejects" / "capture.pcap",
        CORPUS / "zeek" / "http-get" / "capture.pcap",
        CORPUS / "suricata-verify" / "tls-last-ack" / "capture.pcap"]
MASK = 0xFFFFFFFF


@cache
def _segments(index: int) -> tuple[Segment, ...]:
    decoder = Decoder()
    out = []
    for frame in open_capture(str(REAL[index])):
        seg = decoder.decode(frame)
        if seg is not None and len(seg.src) == 4:
            out.append(seg)
    return tuple(out)


def _pcap(segments: list[Segment]) -> bytes:
    """Ethernet/IPv4/TCP records of `segments`: headers and options captured, the payload
    only counted (as a capture with a short snap length)."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)]
    for seg in segments:
        thl = 20 + len(seg.options)
        tcp = struct.pack("!HHIIBBHHH", seg.sport, seg.dport, seg.seq, seg.ack,
                          (thl // 4) << 4 | (seg.flags >> 8) & 1, seg.flags & 0xFF,
                          seg.window, 0, 0) + seg.options
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + thl + seg.payload_len, 0, 0x4000,
                         64, 6, 0, seg.src, seg.dst)
        frame = b"\x02" * 12 + b"\x08\x00" + ip + tcp
        usec = round(seg.ts * 1e6)
        out.append(struct.pack("<IIII", usec // 1_000_000, usec % 1_000_000, len(frame),
                               len(frame) + seg.payload_len) + frame)
    return b"".join(out)


def _both_ways(path: Path) -> tuple[Any, Any, int]:
    """(report and closed states) per-frame, the same in batches, short-run segments."""
    results = []
    short = 0
    for use_batch in (False, True):
        feeders: list[batch.BatchFeed] = []
        analysis = ClosingAnalysis()
        summary = read_into(analysis, str(path), batch=use_batch, feeder=watched(feeders))
        analysis.finish()
        results.append((build_report([summary], analysis).to_dict(), analysis.closed))
        if use_batch:
            short = feeders[0].whole_segments
    return results[0], results[1], short


def test_the_replayed_captures_take_whole_runs(tmp_path: Path) -> None:
    # unedited, every one of them has short runs applied in bulk
    for index in range(len(REAL)):
        path = tmp_path / f"{index}.pcap"
        path.write_bytes(_pcap(list(_segments(index))))
        one, many, short = _both_ways(path)
        assert short > 0, REAL[index]
        assert one == many


def test_bulk_transfers_go_whole_between_their_losses() -> None:
    # real downloads with 0.2 % loss: the retransmissions and holes are cut out of the
    # runs (batch._breaks), and the stretches between them are applied whole
    mini = ROOT / "tests" / "data" / "bench-mini.pcap.gz"
    one, many, short = _both_ways(mini)
    assert many == one
    segments = one[0]["capture"]["tcp_segments"]
    assert short > 0.6 * segments, (short, segments)


@settings(max_examples=60, derandomize=True, database=None, deadline=None)
@given(index=st.integers(0, len(REAL) - 1),
       edits=st.lists(st.tuples(st.sampled_from(["ack_back", "window0", "probe", "dup",
                                                 "swap", "drop", "silence"]),
                                st.integers(min_value=0), st.integers(1, 3000)),
                      min_size=1, max_size=4))
def test_edited_replays_leave_the_same_state(tmp_path_factory: pytest.TempPathFactory,
                                             index: int, edits: list[tuple[str, int, int]]
                                             ) -> None:
    segments = list(_segments(index))
    for op, where, amount in edits:
        i = where % len(segments)
        seg = segments[i]
        if op == "ack_back" and seg.flags & ACK:
            segments[i] = seg._replace(ack=(seg.ack - amount) & MASK)
        elif op == "window0":
            segments[i] = seg._replace(window=0)
        elif op == "probe":  # a keepalive: one byte behind, no data
            segments.insert(i + 1, seg._replace(seq=(seg.seq - 1) & MASK, payload_len=0,
                                                flags=ACK))
        elif op == "dup":
            segments.insert(i, seg)
        elif op == "swap" and i + 1 < len(segments):
            later = segments[i + 1]
            segments[i], segments[i + 1] = later._replace(ts=seg.ts), seg._replace(ts=later.ts)
        elif op == "drop" and len(segments) > 2:
            del segments[i]
        elif op == "silence":  # everything from here on an hour and more later
            segments[i:] = [s._replace(ts=s.ts + 3600 + amount) for s in segments[i:]]
    path = tmp_path_factory.mktemp("edited") / "edited.pcap"
    path.write_bytes(_pcap(segments))
    one, many, _ = _both_ways(path)
    assert many[0] == one[0]
    assert many[1].keys() == one[1].keys()
    for conn_id, state in one[1].items():
        assert many[1][conn_id] == state, conn_id


def _seg(frame: int, ts: float, client: bool, seq: int, ack: int, flags: int = ACK,
         plen: int = 0, options: bytes = b"") -> Segment:
    a, b = (b"\x0a\x51\x00\x01", 40000), (b"\x0a\x51\x00\x02", 80)
    (src, sport), (dst, dport) = (a, b) if client else (b, a)
    return Segment(frame, ts, src, dst, sport, dport, seq, ack, flags, 1000, plen, options)


# a handshake, a request and its answer; the connection stays open
_OPENING = [_seg(1, 0.00, True, 100, 0, 0x02), _seg(2, 0.01, False, 500, 101, 0x12),
            _seg(3, 0.02, True, 101, 501), _seg(4, 0.03, True, 101, 501, ACK | 0x08, 10),
            _seg(5, 0.04, False, 501, 111), _seg(6, 0.05, False, 501, 111, ACK | 0x08, 20),
            _seg(7, 0.06, True, 111, 521)]
_MSS = b"\x02\x04\x05\xb4"  # options that are not plain: the segment is an event


@pytest.mark.parametrize("tail", [
    # the client's keepalive probe (an event: its options are not plain), then the
    # server's answer starts a short run: the client's count of unanswered probes goes
    # back to 0
    [_seg(8, 0.07, True, 110, 521, options=_MSS), _seg(9, 0.08, False, 521, 111),
     _seg(10, 0.09, False, 521, 111, ACK | 0x08, 5), _seg(11, 0.10, False, 526, 111)],
    # after an event, the client's ACKs start below its highest ack so far: quiet for the
    # fast path, which keeps the highest (a bulk update must not lower it); a timer
    # sweep (every second of capture time) lies between, so the higher ack is in an
    # earlier stretch and does not cut the run (batch._breaks)
    [_seg(8, 1.50, False, 521, 111, options=_MSS), _seg(9, 1.60, True, 111, 515),
     _seg(10, 1.70, True, 111, 515)],
], ids=["after-keepalive", "ack-below-highest"])
def test_a_run_after_an_event_leaves_the_same_state(tmp_path: Path, tail: list[Segment]
                                                    ) -> None:
    path = tmp_path / "conn.pcap"
    path.write_bytes(_pcap(_OPENING + tail))
    one, many, short = _both_ways(path)
    assert many == one
    assert len(one[1]) == 1  # the one connection, closed at the end of the capture
    assert short >= 4  # the opening's request and answer went as a short run
