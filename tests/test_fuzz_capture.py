"""Fuzzing the capture reader and the whole in-process analysis with damaged real captures.

Seeds are real captures (tests/data and, when shared/ is present, corpus items in every
format and many link layers). Each case must satisfy fuzz.captures.check_capture: no
exception but a one-line CaptureError for an unusable header, a one-line error naming the
file and frame/byte offset for a later fault, every frame before the damage read exactly
as in the intact capture and analysed, every frame counted in one packet class.

Hypothesis runs derandomized (same cases on every run, no example database) with bounded
example counts; TCPANALYZE_FUZZ_SCALE=10 multiplies them for a longer run by hand.
"""

from __future__ import annotations

import atexit
import os
import shutil
import struct
import tempfile
import tracemalloc
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz.captures import (
    boundaries,
    check_capture,
    endian_of,
    flip_bit,
    frames_of,
    insert,
    layout,
    packet_ends,
    pcapng_block,
    pcapng_epb,
    pcapng_idb,
    pcapng_shb,
    put_u32,
    seed_paths,
    truncate,
)
from tcpanalyze.capture import MAX_CAPLEN
from tcpanalyze.decode import Decoder

SCALE = int(os.environ.get("TCPANALYZE_FUZZ_SCALE", "1"))
SEEDS = seed_paths()
SEED_IDS = [p.parent.name if p.name.startswith("capture.") else p.name for p in SEEDS]
WORK = Path(tempfile.mkdtemp(prefix="tcpanalyze-fuzz-"))
atexit.register(shutil.rmtree, WORK, True)  # (it was left behind by every run)


def fuzz_settings(examples: int) -> settings:
    return settings(max_examples=examples * SCALE, derandomize=True, database=None,
                    deadline=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@cache
def seed(index: int) -> tuple[bytes, list, list[int]]:
    """(bytes, intact frames, end offset of each frame's record) of seed `index`."""
    path = SEEDS[index]
    raw = path.read_bytes()
    return raw, frames_of(path), packet_ends(raw)


def write(data: bytes, name: str = "case.pcap") -> str:
    path = WORK / name
    path.write_bytes(data)
    return str(path)


def check_mutant(index: int, data: bytes, first_changed: int) -> None:
    _raw, frames, ends = seed(index)
    check_capture(write(data), original=frames, original_ends=ends,
                  intact_before=first_changed)


seed_index = st.integers(min_value=0, max_value=len(SEEDS) - 1)


# -- truncation at every structural boundary (exhaustive, not sampled) ------------------------


@pytest.mark.parametrize("index", range(len(SEEDS)), ids=SEED_IDS)
def test_truncation_at_every_boundary(index: int) -> None:
    raw, frames, ends = seed(index)
    fmt, records = layout(raw)
    # a cut on a record/block end is a clean end of file; anywhere else is a fault
    clean = {r.end for r in records} | ({24} if fmt == "pcap" else set())
    classes = [Decoder() for _ in frames]  # class of each intact frame, decoded alone
    tcp_before = [0]
    for dec, frame in zip(classes, frames, strict=True):
        tcp_before.append(tcp_before[-1] + (dec.decode(frame) is not None))
    cuts = boundaries(raw, first=10)
    assert len(cuts) > 20
    for at in cuts:
        data, _ = truncate(raw, at)
        outcome = check_capture(write(data), original=frames, original_ends=ends,
                                intact_before=at)
        kept = sum(1 for end in ends if end <= at)
        if outcome.report is None:  # refused at open: only inside the file header
            assert at < (24 if fmt == "pcap" else 12), (at, outcome.refused)
            continue
        assert outcome.frames == frames[:kept]
        cap = outcome.report.captures[0]
        assert cap.packets == kept
        assert cap.tcp_segments == tcp_before[kept]
        if at in clean:
            assert cap.error is None, (at, cap.error)
        else:
            assert cap.error is not None, at
            assert "ends inside" in cap.error, cap.error


# -- sampled damage --------------------------------------------------------------------------


@fuzz_settings(600)
@given(index=seed_index, bits=st.lists(st.integers(min_value=0), min_size=1, max_size=8))
def test_bit_flips(index: int, bits: list[int]) -> None:
    raw = seed(index)[0]
    data, first = raw, len(raw)
    for bit in bits:
        data, at = flip_bit(data, bit % (len(raw) * 8))
        first = min(first, at)
    check_mutant(index, data, first)


ABSURD = st.sampled_from([0, 1, 2, 3, 4, 11, 12, 13, 16, 28, 31, 32, 60, 1514, MAX_CAPLEN,
                          MAX_CAPLEN + 1, 16 * 1024 * 1024, 2**31 - 1, 2**31, 2**32 - 4,
                          2**32 - 1])


@fuzz_settings(500)
@given(index=seed_index, which=st.integers(min_value=0), field=st.integers(0, 5),
       value=ABSURD | st.integers(0, 2**32 - 1))
def test_absurd_length_fields(index: int, which: int, field: int, value: int) -> None:
    """caplen/len (pcap), block length / trailer / captured / wire length (pcapng)."""
    raw = seed(index)[0]
    fmt, records = layout(raw)
    rec = records[which % len(records)]
    if fmt == "pcap":
        offsets = (rec.start + 8, rec.start + 12, rec.start + 8, rec.start + 12, 16, 20)
    else:
        offsets = (rec.start + 4, rec.end - 4, rec.start + 20, rec.start + 24,
                   rec.start + 4, rec.start + 12)
    at = offsets[field]
    if at + 4 > len(raw):
        at = rec.start
    data, first = put_u32(raw, at, value, endian_of(raw))
    check_mutant(index, data, first)


@fuzz_settings(400)
@given(index=seed_index, where=st.integers(min_value=0),
       changes=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)),
                        min_size=1, max_size=24))
def test_overwritten_bytes_near_a_boundary(index: int, where: int,
                                           changes: list[tuple[int, int]]) -> None:
    raw = seed(index)[0]
    points = boundaries(raw)
    base = points[where % len(points)]
    data = bytearray(raw)
    first = len(raw)
    for offset, value in changes:
        at = min(base + offset % 40, len(raw) - 1)
        data[at] = value
        first = min(first, at)
    check_mutant(index, bytes(data), first)


def unknown_block(btype: int, size: int) -> bytes:
    return pcapng_block(btype, b"\xab" * size)


BLOCKS = st.one_of(
    st.builds(unknown_block, st.sampled_from([0x0BAD, 0x80000001, 4, 5, 7, 0xBAD, 0x40000BAD,
                                              0x0A0D0D0B]), st.integers(0, 300)),
    st.just(pcapng_shb()),  # a new section mid-file: interfaces start over
    st.just(pcapng_idb(1)),
    st.just(pcapng_idb(147)),  # a link type nobody decodes
    st.just(pcapng_epb(1.0, b"\0" * 64, ifid=9)),  # names an interface not described
    st.just(struct.pack("<II", 0xBAD, 0xFFFFFFFC) + b"\0" * 16),  # oversized claim
    st.just(struct.pack("<II", 0xBAD, 12 + 2**24) + b"\0" * 8),  # just over the bound
    st.binary(min_size=1, max_size=64),  # garbage
)


@fuzz_settings(400)
@given(index=seed_index, where=st.integers(min_value=0), blob=BLOCKS)
def test_inserted_blocks_and_garbage(index: int, where: int, blob: bytes) -> None:
    """Unknown, oversized and misplaced pcapng blocks (or garbage) at a record boundary."""
    raw = seed(index)[0]
    starts = [r.start for r in layout(raw)[1]] + [len(raw)]
    data, first = insert(raw, starts[where % len(starts)], blob)
    check_mutant(index, data, first)


@fuzz_settings(150)
@given(index=seed_index, tail=st.binary(max_size=400))
def test_valid_header_then_noise(index: int, tail: bytes) -> None:
    raw = seed(index)[0]
    fmt, records = layout(raw)
    head = 24 if fmt == "pcap" else records[0].end
    check_mutant(index, raw[:head] + tail, head)


# -- deterministic corner cases --------------------------------------------------------------


@pytest.mark.parametrize("content", [
    b"", b"\xd4", b"\xd4\xc3\xb2", b"\x0a", b"\x0a\x0d\x0d\x0a", b"\x1f\x8b", b"\0" * 24,
    b"\xff" * 100, b"#!/bin/sh\nrm -rf /\n", b"\xa1\xb2\xc3\xd4" + b"\0" * 20,
    b"\xd4\xc3\xb2\xa1\x03\x00\x04\x00" + b"\0" * 16,  # pcap version 3
])
def test_not_a_capture_or_header_only(content: bytes) -> None:
    outcome = check_capture(write(content, "tiny.pcap"))
    if outcome.report is not None:  # a bare header or a 4..11-byte pcapng start
        assert outcome.report.captures[0].packets == 0


def test_zero_length_records_are_counted_not_fatal() -> None:
    raw, _frames, _ = seed(0)
    fmt, records = layout(raw)
    assert fmt == "pcap"
    # every other record replaced by a zero-length one (caplen 0, wire length 0)
    out = [raw[:24]]
    for i, rec in enumerate(records):
        if i % 2:
            out.append(raw[rec.start:rec.start + 8] + b"\0" * 8)
        else:
            out.append(raw[rec.start:rec.end])
    outcome = check_capture(write(b"".join(out)))
    assert outcome.report is not None
    cap = outcome.report.captures[0]
    assert cap.error is None and cap.packets == len(records)
    assert cap.skipped["malformed"] + cap.skipped["truncated"] >= len(records) // 2


@pytest.mark.parametrize("value", [MAX_CAPLEN + 1, 2**31 - 1, 2**32 - 1])
def test_absurd_lengths_allocate_a_bounded_amount(value: int) -> None:
    """No length claim makes the reader allocate by it (pcap caplen, pcapng block length
    and captured length), measured, not assumed."""
    for index in range(len(SEEDS)):
        raw, frames, ends = seed(index)
        fmt, records = layout(raw)
        rec = records[len(records) // 2]
        at = rec.start + 8 if fmt == "pcap" else rec.start + 4
        data, first = put_u32(raw, at, value, endian_of(raw))
        tracemalloc.start()
        try:
            check_capture(write(data), original=frames, original_ends=ends,
                          intact_before=first, render=False)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 48 * 1024 * 1024, (SEEDS[index], peak)
