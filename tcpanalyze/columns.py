"""Decoding a batch of pcap records at once, into numpy columns.

The per-frame decoder (decode.py) costs a few microseconds a frame in Python; most of a
large capture is Ethernet/IPv4/TCP with a 20-byte IP header, which this module decodes
for thousands of records at a time with array gathers. It applies exactly the conditions
of `Decoder.decode`'s own fast path, so a frame decoded here gives the very Segment that
`Decoder.decode` would; every other frame (other link types, IPv6, IP options, VLANs,
fragments, anything short or odd) is marked for `Decoder.decode`, which classifies it as
usual. Nothing here reads a file: `CaptureReader.record_batches` supplies the buffers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tcpanalyze.decode import MAX_TIMESTAMP

__all__ = ["Columns", "decode_records"]

_PAD = bytes(64)  # gathers past a short last record read zeros, masked out afterwards
_TS_OPTION = 0x0101080A  # NOP NOP TS(10): what Linux puts on every segment


@dataclass
class Columns:
    """One batch of records. Arrays have one entry per record; fields of records that
    are not `fast` are meaningless (decode those with Decoder.decode)."""

    buf: bytes
    first: int  # frame number of record 0
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

    def __len__(self) -> int:
        return len(self.ts)


def _u16(a: np.ndarray, at: np.ndarray) -> np.ndarray:
    return (a[at].astype(np.int64) << 8) | a[at + 1]


def _u32(a: np.ndarray, at: np.ndarray) -> np.ndarray:
    return ((a[at].astype(np.int64) << 24) | (a[at + 1].astype(np.int64) << 16)
            | (a[at + 2].astype(np.int64) << 8) | a[at + 3])


def _u32_le(a: np.ndarray, at: np.ndarray) -> np.ndarray:
    return ((a[at + 3].astype(np.int64) << 24) | (a[at + 2].astype(np.int64) << 16)
            | (a[at + 1].astype(np.int64) << 8) | a[at])


def decode_records(buf: bytes, offsets: list[int], first: int, *, endian: str,
                   divisor: int, extra: int, linktype: int,
                   verify_checksums: bool) -> Columns:
    a = np.frombuffer(buf + _PAD, dtype=np.uint8)
    rec = np.asarray(offsets, dtype=np.int64)
    u32 = _u32_le if endian == "<" else _u32
    sec = u32(a, rec)
    frac = u32(a, rec + 4)
    caplen = u32(a, rec + 8)
    wirelen = u32(a, rec + 12)
    ts = sec.astype(np.float64) + frac.astype(np.float64) / float(divisor)
    d = rec + 16 + extra
    n = len(rec)
    # The fields below are gathered for every record (cheap) and trusted only where the
    # record passes Decoder.decode's fast-path test.
    last = len(buf) + len(_PAD) - 60
    g = np.minimum(d, last)  # keep gathers inside the padded buffer
    etype = _u16(a, g + 12)
    vihl = a[g + 14]
    total = _u16(a, g + 16)
    frag = _u16(a, g + 20)
    proto = a[g + 23]
    off = a[g + 46].astype(np.int64)
    thl = (off >> 4) << 2
    fast = ((caplen >= 54) & (etype == 0x0800) & (vihl == 0x45) & (proto == 6)
            & ((frag & 0x3FFF) == 0) & (total >= 40)
            & (total + 14 <= np.maximum(caplen, wirelen))
            & (thl >= 20) & (thl <= total - 20) & (34 + thl <= caplen)
            & (ts >= 0.0) & (ts < MAX_TIMESTAMP))
    if linktype != 1 or verify_checksums:
        fast[:] = False
    src = _u32(a, g + 26)
    dst = _u32(a, g + 30)
    sport = _u16(a, g + 34)
    dport = _u16(a, g + 36)
    seq = _u32(a, g + 38)
    ack = _u32(a, g + 42)
    flags = a[g + 47].astype(np.int64) | ((off & 1) << 8)
    window = _u16(a, g + 48)
    payload_len = total - 20 - thl
    opt = _u32(a, g + 54)
    with_ts = opt == _TS_OPTION
    ts_only = (thl == 32) & with_ts
    # NOP NOP TS, then NOP NOP SACK with 1-3 blocks: Linux's ACKs during loss recovery
    sack_len = thl - 34
    ts_sack = (with_ts & (thl >= 44) & (_u16(a, g + 66) == 0x0101) & (a[g + 68] == 5)
               & (a[g + 69] == sack_len) & ((sack_len - 2) % 8 == 0))
    tsval = np.where(ts_only | ts_sack, _u32(a, g + 58), -1)
    plain = (thl == 20) | ts_only | ts_sack
    if n == 0:
        fast = np.zeros(0, dtype=bool)
    return Columns(buf=buf, first=first, data_at=d, caplen=caplen, wirelen=wirelen, ts=ts,
                   fast=fast, src=src, dst=dst, sport=sport, dport=dport, seq=seq, ack=ack,
                   flags=flags, window=window, payload_len=payload_len, thl=thl,
                   tsval=tsval, plain_options=plain)
