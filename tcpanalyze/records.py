"""Walking a buffer of pcap records: where each one starts.

A pcap file says where its next record starts only in the record before it (its
captured length), so the walk is one record at a time and cannot be done as arrays.
Compiled (COMPILED_MODULES), a loop of integer arithmetic on the buffer's bytes costs
~60 ns a record, against ~140 ns for a `struct` loop in Python: a fifth of a second on
two million packets. Interpreted, that same byte loop is twice as slow as the `struct`
one, so `record_offsets` is whichever of the two is faster in the build that runs; both
walk by the same rules (tests/test_records.py compares them on real and broken files).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

__all__ = ["record_offsets"]

_LENGTH = {True: struct.Struct("<I").unpack_from, False: struct.Struct(">I").unpack_from}


def walk_bytes(buf: bytes, pos: int, head: int, little: bool, most: int,
               max_caplen: int) -> tuple[list[int], int, int]:
    """The offsets of the complete records of `buf` from `pos` on (at most `most`), each
    `head` bytes of header with the captured length at +8 (`little`: little-endian) and
    that many bytes of data. Returns them, where the walk stopped, and the captured length
    of the record it stopped at (-1: its header is not complete in `buf`, or `most`
    records were found). A length over `max_caplen` stops the walk there (a corrupt file:
    the caller says so)."""
    offsets: list[int] = []
    end = len(buf)
    limit = end - head
    n = 0
    while n < most and pos <= limit:
        at = pos + 8
        if little:
            caplen = buf[at] | (buf[at + 1] << 8) | (buf[at + 2] << 16) | (buf[at + 3] << 24)
        else:
            caplen = (buf[at] << 24) | (buf[at + 1] << 16) | (buf[at + 2] << 8) | buf[at + 3]
        stop = pos + head + caplen
        if stop > end or caplen > max_caplen:
            return offsets, pos, caplen
        offsets.append(pos)
        pos = stop
        n += 1
    return offsets, pos, -1


def walk_struct(buf: bytes, pos: int, head: int, little: bool, most: int,
                max_caplen: int) -> tuple[list[int], int, int]:
    """`walk_bytes`, each length read by `struct` (the faster one interpreted)."""
    length_at = _LENGTH[little]
    offsets: list[int] = []
    append = offsets.append
    end = len(buf)
    limit = end - head
    for _ in range(most):  # (a bounded for: cheaper than counting each record)
        if pos > limit:
            break
        caplen: int = length_at(buf, pos + 8)[0]
        stop = pos + head + caplen
        if stop > end or caplen > max_caplen:
            return offsets, pos, caplen
        append(pos)
        pos = stop
    return offsets, pos, -1


# (compiled, this module is an extension module and its file not a .py)
record_offsets: Callable[[bytes, int, int, bool, int, int], tuple[list[int], int, int]] = (
    walk_struct if __file__.endswith(".py") else walk_bytes)
