"""Decoding a batch of pcap records at once, into numpy columns.

The per-frame decoder (decode.py) costs a few microseconds a frame in Python; most of a
large capture is Ethernet/IPv4/TCP with a 20-byte IP header, which this module decodes
for thousands of records at a time with array gathers. It applies exactly the conditions
of `Decoder.decode`'s own fast path, so a frame decoded here gives the very Segment that
`Decoder.decode` would; every other frame (other link types, IPv6, IP options, VLANs,
fragments, anything short or odd) is marked for `Decoder.decode`, which classifies it as
usual. Nothing here opens a file: `CaptureReader.record_batches` (pcap) and
`block_batches` (pcapng) supply the buffers, `capture_columns` puts them in order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from tcpanalyze.capture import Frame, capture_batches
from tcpanalyze.decode import MAX_TIMESTAMP

__all__ = ["Columns", "capture_columns", "capture_sources", "decode_blocks", "decode_frames",
           "decode_records"]

_REACH = 70  # bytes past a frame's start the gathers read (the SACK option's length)
_TS_OPTION = 0x0101080A  # NOP NOP TS(10): what Linux puts on every segment
_EXACT = 2 ** 53  # integers up to here are exact in float64
# What keys-only columns (`keys_only=True`: a `--jobs` dealer, which needs no more than
# which records are TCP and their flows) hold instead of the fields they skip: indexing
# it fails loudly, where a made-up value would not.
_SKIPPED = np.empty(0, dtype=np.int64)


@dataclass
class Columns:
    """One batch of records. Arrays have one entry per record; fields of records that
    are not `fast` are meaningless (decode those with Decoder.decode)."""

    buf: bytes
    numbers: list[int]  # frame number of each record
    linktype: int | list[int]  # of every record, or of each
    data_at: np.ndarray  # offset in buf of each record's captured bytes
    caplen: np.ndarray
    wirelen: np.ndarray
    ts: np.ndarray  # float64, computed as capture.py does (sec + frac / divisor)
    fast: np.ndarray  # bool: Ethernet/IPv4(20)/TCP decoded here
    src: np.ndarray  # uint32, big-endian value of the packed address
    dst: np.ndarray
    sport: np.ndarray  # int64 from here on
    dport: np.ndarray
    seq: np.ndarray
    ack: np.ndarray
    flags: np.ndarray  # with NS as 0x100, as Segment.flags
    window: np.ndarray
    payload_len: np.ndarray
    thl: np.ndarray  # TCP header length: options are buf[data_at+54 : data_at+34+thl]
    tsval: np.ndarray  # the TS value when the options are plain (below), else -1
    plain_options: np.ndarray  # bool: none, NOP NOP TS, or NOP NOP TS NOP NOP SACK
    # (keys-only columns hold just the record fields, fast, ts and the flow: seq to
    # plain_options are empty)

    def __len__(self) -> int:
        return len(self.ts)


def decode_records(buf: bytes, offsets: Any, first: int, *, endian: str,
                   divisor: int, extra: int, linktype: int,
                   verify_checksums: bool, numbers: list[int] | None = None,
                   keys_only: bool = False) -> Columns:
    """pcap records at `offsets` of `buf` (CaptureReader.record_batches), numbered from
    `first` on, or `numbers` (some records of a batch: a `--jobs` worker's)."""
    rec = np.asarray(offsets, dtype=np.int64)
    # each record's header and its frame's headers in one gather (a gather's cost is
    # mostly per row, not per byte: one instead of two saves 0.11 s on 2 million records
    # whose buffers are not in the cache, ~0.03 s in a whole run, where they are)
    rows = _rows(buf, rec, 16 + extra + _REACH)
    # the record headers: seconds, fraction, captured and original length
    head = rows[:, :16].view(endian + "u4").astype(np.int64)
    # sec + frac / divisor, as capture.py computes it (both exact in float64, one rounding
    # for the division and one for the sum, as in Python)
    ts = head[:, 0].astype(np.float64) + head[:, 1].astype(np.float64) / float(divisor)
    if numbers is None:
        numbers = list(range(first, first + len(offsets)))
    return _decode(buf, rec + 16 + extra, head[:, 2], head[:, 3], ts,
                   numbers, linktype == 1 and not verify_checksums, linktype, keys_only,
                   rows[:, 16 + extra:])


def decode_blocks(buf: bytes, offsets: Any, first: int, *, endian: str, divisor: int,
                  offset: int, linktype: int, verify_checksums: bool,
                  numbers: list[int] | None = None, keys_only: bool = False) -> Columns:
    """pcapng Enhanced Packet Blocks of one interface at `offsets` of `buf`
    (CaptureReader.block_batches), numbered from `first` on, or `numbers` (a `--jobs`
    worker's blocks)."""
    rec = np.asarray(offsets, dtype=np.int64)
    rows = _rows(buf, rec, 28 + _REACH)  # (one gather, as decode_records)
    # type, length, interface, time high and low, captured and original length
    head = rows[:, :28].view(endian + "u4").astype(np.uint64)
    units = (head[:, 3] << np.uint64(32)) | head[:, 4]
    # ((high << 32) | low) / divisor + offset, as capture.py computes it: Python divides
    # the integers exactly (one rounding); so does float64 while both are below 2**53
    if divisor < _EXACT and abs(offset) < _EXACT and (units < _EXACT).all():
        ts = units.astype(np.float64) / float(divisor) + float(offset)
    else:
        ts = np.array([int(u) / divisor + offset for u in units.tolist()], dtype=np.float64)
    return _decode(buf, rec + 28, head[:, 5].astype(np.int64), head[:, 6].astype(np.int64),
                   ts, list(range(first, first + len(offsets))) if numbers is None else numbers,
                   linktype == 1 and not verify_checksums, linktype, keys_only, rows[:, 28:])


def capture_columns(reader: Any, verify_checksums: bool, at_once: int = 32768
                    ) -> Iterator[Columns]:
    """A capture file's frames as batches of columns, in the order they are analysed:
    pcap records and pcapng Enhanced Packet Blocks straight from the reader's buffer,
    other pcapng frames joined from Frames (`at_once` at most), and once a pcapng
    section has several interfaces, its frames in time order (capture.time_ordered)."""
    for cols, _ in capture_sources(reader, verify_checksums, at_once):
        yield cols


# Where a batch of `capture_sources` came from: ("records", file offset of its buffer)
# for pcap records, ("blocks", file offset, decode_blocks' keywords) for a run of pcapng
# EPBs (offsets None for compressed input), ("frames", the Frames) for frames joined
# (their data is not in the file as one piece). What a `--jobs` dealer needs to let a
# worker read the same frames again.
Source = tuple[Any, ...]


def capture_sources(reader: Any, verify_checksums: bool, at_once: int = 32768,
                    keys_only: bool = False) -> Iterator[tuple[Columns, Source]]:
    """`capture_columns`' batches, each with its `Source`; `keys_only`: records and
    blocks as keys-only columns (frames joined are decoded in full)."""
    for batch in capture_batches(reader, at_once):
        yield decode_batch(batch, reader, verify_checksums, keys_only)


def decode_batch(batch: tuple[Any, ...], reader: Any, verify_checksums: bool,
                 keys_only: bool = False) -> tuple[Columns, Source]:
    """A batch of capture.capture_batches as columns, with its `Source` (read while the
    reader is still at the batch)."""
    kind = batch[0]
    if kind == "records":
        _, buf, offsets, first = batch
        return (decode_records(buf, offsets, first, **reader.record_layout,
                               verify_checksums=verify_checksums, keys_only=keys_only),
                ("records", reader.batch_offset))
    if kind == "blocks":
        _, buf, offsets, first, layout = batch
        return (decode_blocks(buf, offsets, first, **layout, verify_checksums=verify_checksums,
                              keys_only=keys_only),
                ("blocks", reader.batch_offset, layout))
    return decode_frames(batch[1], verify_checksums), batch


def decode_frames(frames: list[Frame], verify_checksums: bool) -> Columns:
    """Frames from any reader (pcapng, time-ordered interfaces), joined into one buffer."""
    buf = b"".join(f.data for f in frames)
    caplen = np.fromiter((len(f.data) for f in frames), dtype=np.int64, count=len(frames))
    data_at = np.zeros(len(frames), dtype=np.int64)
    if len(frames) > 1:
        np.cumsum(caplen[:-1], out=data_at[1:])
    wirelen = np.fromiter((f.wirelen for f in frames), dtype=np.int64, count=len(frames))
    ts = np.fromiter((f.ts for f in frames), dtype=np.float64, count=len(frames))
    linktypes = [f.linktype for f in frames]
    ethernet = np.fromiter((lt == 1 for lt in linktypes), dtype=bool, count=len(frames))
    cols = _decode(buf, data_at, caplen, wirelen, ts, [f.number for f in frames],
                   not verify_checksums, linktypes)
    cols.fast &= ethernet
    return cols


# The header bytes _decode reads, at their offsets from a frame's start (Ethernet 14,
# IPv4 20, TCP 20 + options), as one record type: a batch's frames are gathered as rows
# of _REACH bytes and every field is read from them at once, instead of byte by byte.
_HEADERS = np.dtype({
    "names": ["etype", "vihl", "total", "frag", "proto", "src", "dst", "sport", "dport",
              "seq", "ack", "off", "flags", "window", "opt", "tsval", "nopnop", "kind",
              "length"],
    "formats": [">u2", "u1", ">u2", ">u2", "u1", ">u4", ">u4", ">u2", ">u2", ">u4", ">u4",
                "u1", "u1", ">u2", ">u4", ">u4", ">u2", "u1", "u1"],
    "offsets": [12, 14, 16, 20, 23, 26, 30, 34, 36, 38, 42, 46, 47, 48, 54, 58, 66, 68, 69],
    "itemsize": _REACH})


def _rows(buf: bytes, starts: np.ndarray, width: int) -> np.ndarray:
    """The `width` bytes of `buf` from each of `starts`, one row each, zeros past the end
    of `buf` (a short last frame: the fields read there are masked out afterwards). The
    buffer itself is not copied: only the few rows that reach past its end are made apart."""
    a = np.frombuffer(buf, dtype=np.uint8)
    whole = starts <= len(buf) - width
    rows = np.zeros((len(starts), width), dtype=np.uint8)
    if len(buf) >= width:
        # every `width` bytes of buf as one item: a row is then one item's copy (a fifth
        # faster than rows of a two-dimensional sliding_window_view)
        items = np.ndarray(shape=(len(buf) - width + 1,), dtype=f"V{width}", buffer=buf,
                           strides=(1,))
        if whole.all():
            return items[starts].view(np.uint8).reshape(len(starts), width)
        rows[whole] = items[starts[whole]].view(np.uint8).reshape(-1, width)
    for i in np.flatnonzero(~whole).tolist():
        tail = a[int(starts[i]):]
        rows[i, :len(tail)] = tail
    return rows


def _decode(buf: bytes, d: np.ndarray, caplen: np.ndarray,
            wirelen: np.ndarray, ts: np.ndarray, numbers: list[int], allowed: bool,
            linktype: int | list[int], keys_only: bool = False,
            gathered: np.ndarray | None = None) -> Columns:
    """`gathered`: the _REACH bytes from each of `d`, if already gathered (as rows)."""
    n = len(d)
    # The fields below are gathered for every record (cheap) and trusted only where the
    # record passes Decoder.decode's fast-path test.
    if gathered is None:
        gathered = _rows(buf, d, _REACH)
    h = gathered.view(_HEADERS).reshape(-1)

    def field(name: str) -> np.ndarray:
        return h[name].astype(np.int64)

    total = field("total")
    off = field("off")
    thl = (off >> 4) << 2
    fast = ((caplen >= 54) & (h["etype"] == 0x0800) & (h["vihl"] == 0x45)
            & (h["proto"] == 6) & ((h["frag"] & 0x3FFF) == 0) & (total >= 40)
            & (total + 14 <= np.maximum(caplen, wirelen))
            & (thl >= 20) & (thl <= total - 20) & (34 + thl <= caplen)
            & (ts >= 0.0) & (ts < MAX_TIMESTAMP))
    if not allowed or n == 0:
        fast = np.zeros(n, dtype=bool)
    if keys_only:
        return Columns(buf=buf, numbers=numbers, linktype=linktype, data_at=d, caplen=caplen,
                       wirelen=wirelen, ts=ts, fast=fast, src=field("src"),
                       dst=field("dst"), sport=field("sport"), dport=field("dport"),
                       seq=_SKIPPED, ack=_SKIPPED, flags=_SKIPPED, window=_SKIPPED,
                       payload_len=_SKIPPED, thl=_SKIPPED, tsval=_SKIPPED,
                       plain_options=_SKIPPED)
    flags = field("flags") | ((off & 1) << 8)
    payload_len = total - 20 - thl
    with_ts = h["opt"] == _TS_OPTION
    ts_only = (thl == 32) & with_ts
    # NOP NOP TS, then NOP NOP SACK with 1-3 blocks: Linux's ACKs during loss recovery
    sack_len = thl - 34
    ts_sack = (with_ts & (thl >= 44) & (h["nopnop"] == 0x0101) & (h["kind"] == 5)
               & (h["length"] == sack_len) & ((sack_len - 2) % 8 == 0))
    tsval = np.where(ts_only | ts_sack, field("tsval"), -1)
    plain = (thl == 20) | ts_only | ts_sack
    return Columns(buf=buf, numbers=numbers, linktype=linktype, data_at=d, caplen=caplen,
                   wirelen=wirelen, ts=ts, fast=fast, src=field("src"), dst=field("dst"),
                   sport=field("sport"), dport=field("dport"), seq=field("seq"),
                   ack=field("ack"), flags=flags, window=field("window"),
                   payload_len=payload_len, thl=thl, tsval=tsval, plain_options=plain)
