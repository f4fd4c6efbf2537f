"""Columns straight from a pcapng's blocks equal the columns of its frames, read one by one.

`columns.capture_columns` reads pcapng Enhanced Packet Blocks in runs from the reader's
buffer (`CaptureReader.block_batches`, `columns.decode_blocks`) and every other frame
through the frame reader, switching to time order once a section has several
interfaces. The expected columns here are always `decode_frames` of the frame reader's
own frames (`time_ordered(open_capture(...))`), the path pcapng took before.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from pcapng_copy import as_pcapng

import tcpanalyze.capture as capture
from tcpanalyze.capture import open_capture, time_ordered
from tcpanalyze.columns import Columns, capture_columns, decode_frames

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
if not CORPUS.is_dir():
    CORPUS = Path("/work/shared/corpus")
DATA = ROOT / "tests" / "data"
MINI = DATA / "bench-mini.pcap.gz"
PCAPNG = [*sorted(DATA.glob("*.pcapng*")), *sorted((ROOT / "sample_pcaps").glob("*.pcapng")),
          *sorted(CORPUS.glob("*/*/capture.pcapng*"))]

_FIELDS = ("caplen", "wirelen", "src", "dst", "sport", "dport", "seq", "ack", "flags",
           "window", "payload_len", "thl", "tsval", "plain_options")


def _joined(batches: list[Columns]) -> dict[str, object]:
    """The fields of all batches, one after the other; the decoded header fields only
    where a frame was decoded (they mean nothing elsewhere)."""
    fast = np.concatenate([c.fast for c in batches]) if batches else np.zeros(0, bool)
    out: dict[str, object] = {
        "numbers": [n for c in batches for n in c.numbers],
        "ts": np.concatenate([c.ts for c in batches]).tolist() if batches else [],
        "fast": fast.tolist(),
        "data": [c.buf[int(at):int(at) + int(n)] for c in batches
                 for at, n in zip(c.data_at, c.caplen, strict=True)],
    }
    for name in _FIELDS:
        column = np.concatenate([getattr(c, name) for c in batches]) if batches else \
            np.zeros(0)
        out[name] = column[fast].tolist()
    return out


def _both_ways(path: Path) -> tuple[dict[str, object], dict[str, object], object, object]:
    frames_reader = open_capture(str(path))
    frames = list(time_ordered(frames_reader))
    expected = _joined([decode_frames(frames, False)] if frames else [])
    reader = open_capture(str(path))
    got = _joined(list(capture_columns(reader, False, at_once=7)))
    return got, expected, reader.error, frames_reader.error


@pytest.mark.parametrize("path", PCAPNG, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_pcapng_columns_equal_the_frames_columns(path: Path) -> None:
    got, expected, error, expected_error = _both_ways(path)
    assert got == expected
    assert str(error) == str(expected_error)


@pytest.mark.parametrize(("tsresol", "offset"), [(6, 0), (9, 0), (6, -3600), (3, 7)])
def test_real_traffic_as_pcapng_in_small_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               tsresol: int, offset: int) -> None:
    """bench-mini's real kernel traffic as pcapng, read in 16 KB pieces: runs end at
    every refill of the buffer; nanosecond times are beyond 2**53 units (computed in
    Python, not float64), microsecond and millisecond ones below."""
    monkeypatch.setattr(capture, "READ_SIZE", 16 << 10)
    monkeypatch.setattr(capture, "BATCH_READ", 16 << 10)
    path = tmp_path / "mini.pcapng"
    path.write_bytes(as_pcapng(gzip.decompress(MINI.read_bytes()), tsresol, offset))
    got, expected, error, expected_error = _both_ways(path)
    assert len(got["numbers"]) == 11529  # type: ignore[arg-type]
    assert got == expected
    assert error is None and expected_error is None


def test_a_pcapng_cut_short_keeps_every_block_before_the_fault(tmp_path: Path) -> None:
    raw = as_pcapng(gzip.decompress(MINI.read_bytes()), 6)
    path = tmp_path / "cut.pcapng"
    path.write_bytes(raw[:len(raw) // 2 + 5])
    got, expected, error, expected_error = _both_ways(path)
    assert 1000 < len(got["numbers"]) < 11529  # type: ignore[arg-type]
    assert got == expected
    assert error is not None and str(error) == str(expected_error)
    assert "ends inside a block" in str(error)


_KEYS = ("caplen", "wirelen", "src", "dst", "sport", "dport")


@pytest.mark.parametrize("path", [MINI, *PCAPNG[:3]], ids=lambda p: p.name)
def test_keys_only_columns_hold_the_same_records_and_flows(path: Path) -> None:
    """A `--jobs` dealer decodes keys only (`keys_only=True`): the same records, the same
    TCP frames and flows as the full decode, and none of the fields it skips."""
    from tcpanalyze.columns import capture_sources

    full = list(capture_sources(open_capture(str(path)), False))
    keys = list(capture_sources(open_capture(str(path)), False, keys_only=True))
    assert [s for _, s in keys] == [s for _, s in full]
    decoded = 0
    for (k, source), (f, _) in zip(keys, full, strict=True):
        assert k.numbers == f.numbers
        assert k.ts.tolist() == f.ts.tolist()
        assert k.fast.tolist() == f.fast.tolist()
        assert k.data_at.tolist() == f.data_at.tolist()
        for name in _KEYS:
            assert getattr(k, name)[k.fast].tolist() == getattr(f, name)[f.fast].tolist()
        decoded += int(k.fast.sum())
        if source[0] != "frames":  # (frames joined are decoded in full)
            assert len(k.seq) == len(k.flags) == len(k.tsval) == 0
    assert decoded > 0
