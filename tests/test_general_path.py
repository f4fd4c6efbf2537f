"""The per-segment general path after its speed work: exact where it got cheaper.

The reassembler now merges a block in place instead of re-sorting and rebuilding its
list; the option parser reads values in place; connection state holds no reference
cycles. Each is checked against a plain reference or a hand-decoded input.
"""

from __future__ import annotations

import gc
import random
from pathlib import Path

import pytest

from tcpanalyze.analysis import Analysis
from tcpanalyze.capture import open_capture, time_ordered
from tcpanalyze.decode import Decoder
from tcpanalyze.fastpath import make_feed
from tcpanalyze.segment import parse_options
from tcpanalyze.zeek import _Reassembler

SAMPLES = Path(__file__).resolve().parent.parent / "sample_pcaps"


class _SortingReassembler:
    """The reassembler as first written: append, sort, merge, scan (the reference)."""

    def __init__(self) -> None:
        self.blocks: list[list[int]] = []
        self.last_reassem = 1
        self.trim_seq = 1

    def data_sent(self, seq: int, length: int, acked: int) -> None:
        upper = seq + length
        if seq < acked:
            if upper <= acked:
                return
            seq = acked
        if upper <= self.trim_seq:
            return
        seq = max(seq, self.trim_seq)
        self.blocks.append([seq, upper])
        self.blocks.sort()
        merged: list[list[int]] = []
        for b in self.blocks:
            if merged and b[0] <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b[1])
            else:
                merged.append(b)
        self.blocks = merged
        for b in merged:
            if b[0] <= self.last_reassem < b[1]:
                self.last_reassem = b[1]

    def ack_received(self, seq: int) -> list[int]:
        if seq <= self.trim_seq:
            return []
        gaps: list[int] = []
        if self.last_reassem < seq:
            for start, end in self.blocks:
                if end <= self.last_reassem:
                    continue
                if start >= seq:
                    break
                if start > self.last_reassem:
                    gaps.append(start - self.last_reassem)
                self.last_reassem = max(self.last_reassem, end)
            if seq > self.last_reassem:
                gaps.append(seq - self.last_reassem)
            self.last_reassem = max(self.last_reassem, seq)
        self.trim_seq = seq
        self.blocks = [[max(s, seq), e] for s, e in self.blocks if e > seq]
        return gaps


@pytest.mark.parametrize("span", [16, 200, 5000])
def test_reassembler_matches_the_sorting_reference(span: int) -> None:
    rng = random.Random(span)
    for _ in range(3000):
        fast, ref = _Reassembler(), _SortingReassembler()
        for _ in range(rng.randint(1, 30)):
            r = rng.random()
            if r < 0.6:  # data: overlapping, touching, inside, beyond, below the ack
                seq, length = rng.randint(-3, span), rng.randint(1, span // 4 + 1)
                acked = rng.randint(0, span // 2)
                fast.data_sent(seq, length, acked)
                ref.data_sent(seq, length, acked)
            elif r < 0.9:
                seq = rng.randint(0, span)
                assert fast.ack_received(seq) == ref.ack_received(seq)
            else:  # ZeekView._ack_received sets trim_seq directly for a partial connection
                seq = rng.randint(0, 3)
                if seq > ref.trim_seq:
                    fast.trim_seq = ref.trim_seq = seq
            assert (fast.blocks, fast.last_reassem, fast.trim_seq) == (
                ref.blocks, ref.last_reassem, ref.trim_seq)


def test_reassembler_fills_a_hole_and_delivers_past_it() -> None:
    r = _Reassembler()
    r.data_sent(1, 100, 1)  # [1, 101): in order
    r.data_sent(201, 100, 1)  # [201, 301): after a hole
    assert r.blocks == [[1, 101], [201, 301]] and r.last_reassem == 101
    r.data_sent(101, 100, 1)  # the hole: everything merges, delivered to 301
    assert r.blocks == [[1, 301]] and r.last_reassem == 301
    assert r.ack_received(301) == [] and r.blocks == []


def test_options_linux_syn() -> None:
    # MSS 1460, SACK permitted, timestamps 1/0, NOP, window scale 7 (tcpdump's order)
    raw = bytes.fromhex("020405b4" "0402" "080a0000000100000000" "01" "030307")
    opts = parse_options(raw)
    assert (opts.mss, opts.sack_permitted, opts.tsval, opts.tsecr, opts.wscale) == (
        1460, True, 1, 0, 7)
    assert opts.sack_blocks == () and opts.fastopen is None


def test_options_sack_blocks_and_truncation() -> None:
    raw = bytes.fromhex("0101" "080a0000000a0000000b" "0101" "0512"
                        "00000064000000c8" "0000012c00000190")
    opts = parse_options(raw)
    assert opts.tsval == 10 and opts.tsecr == 11
    assert opts.sack_blocks == ((100, 200), (300, 400))
    # cut inside the SACK option: parsing stops there, what came before stays
    cut = parse_options(raw[:20])
    assert cut.tsval == 10 and cut.sack_blocks == ()
    assert parse_options(bytes.fromhex("22")) == parse_options(b"")  # kind without length


def test_options_fast_open() -> None:
    assert parse_options(bytes.fromhex("220a0102030405060708")).fastopen == bytes(range(1, 9))
    assert parse_options(bytes.fromhex("fe06f9890a0b")).fastopen == b"\x0a\x0b"
    assert parse_options(bytes.fromhex("fe06f9880a0b")).fastopen is None


@pytest.mark.parametrize("name", ["several-normal.pcap", "reset-linger0.pcap",
                                  "syn-flood.pcap", "zero-window.pcap"])
def test_connections_hold_no_reference_cycles(name: str) -> None:
    """A finished connection (tracker and Zeek view) is freed by reference counting,
    not left for a full collection of the garbage collector."""
    path = SAMPLES / name
    if not path.exists():
        pytest.skip(f"{name} not in sample_pcaps")
    dec = Decoder()
    segments = [s for s in map(dec.decode, time_ordered(open_capture(str(path))))
                if s is not None]
    gc.collect()
    gc.disable()
    try:
        analysis = Analysis()
        feed = make_feed(analysis)
        for seg in segments:
            feed(seg)
        analysis.finish()
        assert analysis.connections
        del analysis, feed
        assert gc.collect() == 0
    finally:
        gc.enable()
