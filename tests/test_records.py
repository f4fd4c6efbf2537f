"""The two walks of a buffer of pcap records (records.py) agree, and find the records the
frame reader reads.

`record_offsets` is the byte loop when compiled and the `struct` loop when not; each
pass of the suite runs the other one only here. They are compared on every pcap file of
the repository and the corpus (one of them big-endian), whole and cut short at many
places, with small batches, and with a record length made absurd.
"""

from __future__ import annotations

import gzip
import random
import struct
from pathlib import Path

import pytest

from tcpanalyze import core, records
from tcpanalyze.capture import MAX_CAPLEN, open_capture

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
if not CORPUS.is_dir():
    CORPUS = Path("/work/shared/corpus")
PCAPS = [ROOT / "tests" / "data" / "bench-mini.pcap.gz",
         *sorted((ROOT / "sample_pcaps").glob("*.pcap")),
         *sorted(CORPUS.glob("*/*/capture.pcap")), *sorted(CORPUS.glob("*/*/capture.pcap.gz"))]
_MAGIC = {b"\xd4\xc3\xb2\xa1": True, b"\x4d\x3c\xb2\xa1": True,  # little-endian (us, ns)
          b"\xa1\xb2\xc3\xd4": False, b"\xa1\xb2\x3c\x4d": False}


def _pcap(path: Path) -> tuple[bytes, bool]:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return data, _MAGIC[data[:4]]


def _both(buf: bytes, pos: int, little: bool, most: int = 1 << 30,
          max_caplen: int = MAX_CAPLEN) -> tuple[list[int], int, int]:
    by_bytes = records.walk_bytes(buf, pos, 16, little, most, max_caplen)
    by_struct = records.walk_struct(buf, pos, 16, little, most, max_caplen)
    assert by_bytes == by_struct
    return by_bytes


def test_the_faster_walk_runs() -> None:
    expected = records.walk_bytes if core() == "compiled" else records.walk_struct
    assert records.record_offsets is expected


@pytest.mark.parametrize("path", PCAPS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_both_walks_find_the_frames_the_reader_reads(path: Path) -> None:
    data, little = _pcap(path)
    offsets, pos, caplen = _both(data, 24, little)
    frames = list(open_capture(str(path)))
    assert len(offsets) == len(frames) > 0
    assert (pos, caplen) == (len(data), -1)  # the whole file, nothing left over
    for at, frame in zip(offsets, frames, strict=True):
        assert _frame(data, at, little) == frame.data


@pytest.mark.parametrize("path", PCAPS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_both_walks_stop_alike_on_cut_and_broken_buffers(path: Path) -> None:
    data, little = _pcap(path)
    whole, _, _ = _both(data, 24, little)
    rng = random.Random(path.name)
    for cut in [24, 25, 39, 40, 41, *rng.sample(range(24, len(data)), min(40, len(data) - 24))]:
        offsets, pos, caplen = _both(data[:cut], 24, little)
        # the records that fit whole, then where the next one (or its header) is cut
        assert offsets == [at for at in whole if at + 16 + len(_frame(data, at, little)) <= cut]
        assert pos == (offsets[-1] + 16 + len(_frame(data, offsets[-1], little))
                       if offsets else 24)
        if caplen >= 0:
            assert pos + 16 + caplen > cut  # its data is not all there
        else:
            assert pos + 16 > cut  # its header is not
    # batches of a few records, each walk going on where the last stopped
    pos, found = 24, []
    while True:
        offsets, pos, _ = _both(data, pos, little, most=7)
        found += offsets
        if len(offsets) < 7:
            break
    assert found == whole
    # an absurd length stops the walk at that record, the records before it kept
    if len(whole) > 3:
        at = whole[3]
        broken = bytearray(data)
        broken[at + 8:at + 12] = struct.pack("<I" if little else ">I", MAX_CAPLEN + 1)
        assert _both(bytes(broken), 24, little) == (whole[:3], at, MAX_CAPLEN + 1)


def _frame(data: bytes, at: int, little: bool) -> bytes:
    length = struct.unpack_from("<I" if little else ">I", data, at + 8)[0]
    return data[at + 16:at + 16 + length]
