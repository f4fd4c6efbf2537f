"""Reading captures: pcap, pcapng and gzip-compressed copies of either, from a path or a pipe.

The reader never seeks: the format is sniffed from the first bytes, so `tcpdump -w -` and
`zcat x.pcap.gz |` work the same as files. Bytes are pulled in large chunks (one read
returns whatever a pipe has, up to 1 MiB) and every record that is complete in the buffer is
yielded before the next read, so a live pipe gives frames as soon as they are written.

Faults after the header do not raise: iteration stops, `reader.error` holds a one-line
`CaptureError`, and every frame complete before the fault has been yielded. No length field
is trusted for an allocation before it has been checked against a fixed bound.

Byte offsets in messages count the (decompressed) capture stream from its start.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import select
import stat
import struct
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from typing import Any, BinaryIO, NamedTuple

from tcpanalyze.records import record_offsets

__all__ = ["MAX_BLOCK_LEN", "MAX_CAPLEN", "CaptureError", "CaptureReader", "Frame",
           "capture_batches", "open_capture"]

# tcpdump's MAXIMUM_SNAPLEN: no real record is longer; a bigger length means a corrupt file.
MAX_CAPLEN = 262144
# Bound for any pcapng block (name resolution and custom blocks can exceed one packet).
MAX_BLOCK_LEN = 16 * 1024 * 1024
READ_SIZE = 1 << 20
BATCH_READ = 2 << 20  # bytes buffered at a time by record_batches
# Bound on frames held back for time ordering (bytes, counting a frame's own overhead).
MAX_REORDER_BYTES = 32 * 1024 * 1024
_HELD_OVERHEAD = 200

PCAP_MAGICS: dict[bytes, tuple[str, int, int]] = {
    # magic bytes as stored -> (struct byte order, fraction divisor, extra bytes per record)
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000, 0),
    b"\xa1\xb2\xc3\xd4": (">", 1_000_000, 0),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000, 0),
    b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000, 0),
    # Alexey Kuznetzov's patched libpcap: 8 more bytes (ifindex, protocol, type) per record
    b"\x34\xcd\xb2\xa1": ("<", 1_000_000, 8),
    b"\xa1\xb2\xcd\x34": (">", 1_000_000, 8),
}
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
GZIP_MAGIC = b"\x1f\x8b"

# pcapng block types
SHB, IDB, OPB, SPB, EPB = 0x0A0D0D0A, 1, 2, 3, 6
BYTE_ORDER_MAGIC = 0x1A2B3C4D


class Frame(NamedTuple):
    number: int  # 1-based
    ts: float  # epoch seconds
    linktype: int  # DLT/LINKTYPE value of the interface it came from
    wirelen: int  # original length on the wire
    data: bytes  # captured bytes (caplen = len(data))


def _printable(path: str) -> str:
    """The path for a one-line message: control characters (a newline in a file name)
    written as escapes, everything else as it is."""
    if path.isprintable():
        return path
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in path)


class CaptureError(Exception):
    """A capture that cannot be read (further); str() is the one-line message."""

    def __init__(self, path: str, what: str, offset: int | None = None,
                 frame: int | None = None) -> None:
        self.path = path
        self.offset = offset
        self.frame = frame
        self.what = what
        name = "<stdin>" if path == "-" else _printable(path)
        if frame is not None and offset is not None:
            where = f"frame {frame} (byte offset {offset})"
        elif offset is not None:
            where = f"byte offset {offset}"
        else:
            where = ""
        super().__init__(f"{name}: {where}: {what}" if where else f"{name}: {what}")

    def __reduce__(self) -> tuple[Any, ...]:  # (a --jobs worker's error reaches its parent)
        return CaptureError, (self.path, self.what, self.offset, self.frame)


class _Interface(NamedTuple):
    linktype: int
    snaplen: int
    divisor: int  # timestamp units per second
    offset: int  # if_tsoffset, seconds added to every timestamp


def _chunks_plain(stream: BinaryIO) -> Iterator[bytes]:
    # read1 returns what a pipe has now instead of waiting for a full chunk
    read = getattr(stream, "read1", None) or stream.read
    while True:
        chunk = read(READ_SIZE)
        if not chunk:
            return
        yield chunk


class _GzipTruncated(Exception):
    pass


def _chunks_gunzip(raw: Iterator[bytes]) -> Iterator[bytes]:
    """Decompress gzip members one after the other (`cat a.gz b.gz` is valid gzip)."""
    inflater = zlib.decompressobj(wbits=31)
    pending = b""
    while True:
        if pending:
            data, pending = pending, b""
        else:
            data = next(raw, b"")
            if not data:
                if not inflater.eof:
                    raise _GzipTruncated("compressed stream ends early")
                return
        out = inflater.decompress(data, READ_SIZE)
        # bound the output per step: a tiny input can inflate enormously
        while inflater.unconsumed_tail:
            if out:
                yield out
            out = inflater.decompress(inflater.unconsumed_tail, READ_SIZE)
        if out:
            yield out
        if inflater.eof:
            pending = inflater.unused_data
            inflater = zlib.decompressobj(wbits=31)
            if not pending:
                # a finished member at EOF is fine; more data starts a new member
                nxt = next(raw, b"")
                if not nxt:
                    return
                pending = nxt


class CaptureReader:
    """Iterate for Frames. Stops cleanly at a fault and leaves it in `error`."""

    def __init__(self, path: str, stream: BinaryIO, owned: bool) -> None:
        self.path = path
        self.format = ""
        self.linktypes: set[int] = set()
        self.frames_read = 0
        self.error: CaptureError | None = None
        # pcapng blocks that carried no frame, by block type (name resolution, stats, unknown)
        self.skipped_blocks: dict[int, int] = {}
        self._stream = stream
        self._owned = owned
        self._source: Iterator[bytes] = _chunks_plain(stream)
        # a pipe's (FIFO's, socket's) readiness: reads beyond what is needed take only
        # what it holds now, so a live stream's batches never wait to fill up
        self._ready = _readiness(stream)
        # live.Interrupt: Ctrl-C may raise while a pipe is waited for (`waiting`)
        self.interrupt: Any = None
        self._buf = b""
        self._pos = 0
        self._base = 0  # stream offset of _buf[0]
        self._run_base = 0  # stream offset of the buffer of the run block_batches yielded
        self._eof = False
        self._iter: Iterator[Frame] | None = None
        # pcap header fields
        self._endian = "<"
        self._divisor = 1_000_000
        self._extra = 0
        self._linktype = 0
        self.snaplen = 0
        self.interfaces = 1  # most interface blocks in one pcapng section
        self._sniff()

    # -- buffer ------------------------------------------------------------------------
    def _fill(self, need: int, ahead: int = 0) -> bool:
        """Make at least `need` bytes available at _pos; False at end of input. When it
        has to read, it reads on to `ahead` bytes if the input has them (a pipe: if it
        has them now)."""
        avail = len(self._buf) - self._pos
        if avail >= need:
            return True
        parts = [self._buf[self._pos:]]
        self._base += self._pos
        self._pos = 0
        want = max(need, ahead)
        ready = self._ready
        chunk = b""  # the last read
        try:
            while avail < want and not self._eof:
                if avail < need and ready is not None and self.interrupt is not None:
                    chunk = self._waited()
                elif avail >= need and ready is not None and (
                        len(chunk) < READ_SIZE or self.format.endswith("+gzip")
                        or not ready()):
                    # a short read took all the pipe held; compressed, what it holds
                    # may inflate to nothing yet
                    break
                else:
                    chunk = next(self._source, b"")
                if not chunk:
                    self._eof = True
                    break
                parts.append(chunk)
                avail += len(chunk)
        finally:
            self._buf = b"".join(parts)
        return avail >= need

    def _waited(self) -> bytes:
        """The next chunk of a pipe, which may take any time: Ctrl-C raises
        KeyboardInterrupt here (nothing is lost: no complete frame is in the buffer)."""
        interrupt = self.interrupt
        interrupt.waiting = True
        try:
            if interrupt.requested:  # (a signal just before waiting)
                raise KeyboardInterrupt
            return next(self._source, b"")
        finally:
            interrupt.waiting = False

    def _would_wait(self, need: int) -> bool:
        return self._ready is not None and len(self._buf) - self._pos < need and \
            not self._ready()

    @property
    def is_pipe(self) -> bool:
        """The input is a pipe, FIFO or socket (maybe a live stream), not a file."""
        return self._ready is not None

    def paused(self) -> bool:
        """A pipe with nothing to read now: the next read would wait (a live stream
        between packets). False for a file, and at the end of a pipe's input."""
        return self._ready is not None and not self._ready()

    def input_idle(self) -> bool:
        """A pipe with nothing more to read now: what is held should be analysed."""
        return self._ready is not None and len(self._buf) == self._pos and not self._ready()

    def _error(self, what: str, offset: int | None, frame: int | None) -> CaptureError:
        return CaptureError(self.path, what, offset, frame)

    # -- header ------------------------------------------------------------------------
    def _sniff(self) -> None:
        try:
            self._fill(4)
        except OSError as exc:
            raise self._error(f"cannot read: {exc.strerror or exc}", None, None) from None
        if len(self._buf) == 0:
            raise self._error("empty file, not a capture", 0, None)
        suffix = ""
        if self._buf[:2] == GZIP_MAGIC:
            raw = self._raw_after_sniff(self._buf[self._pos:])
            self._source = _chunks_gunzip(raw)
            self._buf, self._pos, self._base, self._eof = b"", 0, 0, False
            suffix = "+gzip"
            try:
                self._fill(4)
            except (zlib.error, _GzipTruncated) as exc:
                raise self._error(f"bad gzip data: {exc}", 0, None) from None
            if not self._buf:
                raise self._error("empty gzip stream, not a capture", 0, None)
        magic = self._buf[:4]
        if len(magic) < 4:
            raise self._error(f"{len(self._buf)}-byte file, too short for a capture header",
                              0, None)
        if magic in PCAP_MAGICS:
            self._endian, self._divisor, self._extra = PCAP_MAGICS[magic]
            if not self._fill(24):
                raise self._error("file ends inside the 24-byte pcap header", 0, None)
            major, _minor, _zone, _sigfigs, snaplen, network = struct.unpack_from(
                self._endian + "HHiIII", self._buf, 4)
            if major != 2:
                raise self._error(f"unsupported pcap version {major}", 4, None)
            self.snaplen = snaplen
            # the upper bits carry FCS information, not the link type
            self._linktype = network & 0x03FFFFFF
            self.linktypes.add(self._linktype)
            self._pos = 24
            self.format = ("pcap-ns" if self._divisor == 1_000_000_000 else "pcap") + suffix
        elif magic == PCAPNG_SHB:
            if self._fill(12):
                bom = self._buf[8:12]
                if bom not in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
                    raise self._error("pcapng section header has a bad byte-order magic",
                                      8, None)
            self.format = "pcapng" + suffix
        else:
            raise self._error(f"not a pcap or pcapng file (magic 0x{magic.hex()})", 0, None)

    def _raw_after_sniff(self, already: bytes) -> Iterator[bytes]:
        if already:
            yield already
        yield from _chunks_plain(self._stream)

    # -- iteration -----------------------------------------------------------------------
    def __iter__(self) -> Iterator[Frame]:
        if self._iter is None:
            self._iter = self._frames()
        return self._iter

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def position(self) -> int:
        """Bytes of the input consumed so far (of the file itself, so compressed bytes
        for a .gz): what a progress bar measures against the file size."""
        try:
            return self._stream.tell()
        except (OSError, ValueError):  # a pipe, or closed
            return self._base + self._pos

    @property
    def batch_offset(self) -> int | None:
        """Where in the file the buffer of the batch `record_batches` (or the run
        `block_batches`) just yielded starts, so that another reader of the same file
        can read the same bytes (None for compressed input, where buffer and file offsets
        differ)."""
        if self.format.endswith("+gzip"):
            return None
        return self._run_base if self.format.startswith("pcapng") else self._base

    def close(self) -> None:
        if self._owned:
            self._stream.close()

    def _frames(self) -> Iterator[Frame]:
        parse = self._pcap if self.format.startswith("pcap") and not self.format.startswith(
            "pcapng") else self._pcapng
        yield from self._guarded(parse())

    def _guarded(self, items: Iterator[Any]) -> Iterator[Any]:
        """Yield from a parser; a fault ends it quietly and is left in `error`."""
        try:
            yield from items
        except CaptureError as exc:
            self.error = exc
        except (zlib.error, _GzipTruncated) as exc:
            self.error = self._error(f"bad gzip data: {exc}", self._base + len(self._buf),
                                     self.frames_read + 1)
        except OSError as exc:
            self.error = self._error(f"read failed: {exc.strerror or exc}",
                                     self._base + len(self._buf), self.frames_read + 1)
        finally:
            self.close()

    def _pcap(self) -> Iterator[Frame]:
        head = 16 + self._extra
        unpack = struct.Struct(self._endian + "IIII").unpack_from
        divisor = self._divisor
        linktype = self._linktype
        number = self.frames_read
        while True:
            buf = self._buf
            pos = self._pos
            end = len(buf)
            need = head
            while pos + head <= end:
                sec, frac, caplen, wirelen = unpack(buf, pos)
                if caplen > MAX_CAPLEN:
                    self._pos = pos
                    raise self._error(
                        f"record length {caplen} is absurd (limit {MAX_CAPLEN}); corrupt file",
                        self._base + pos, number + 1)
                stop = pos + head + caplen
                if stop > end:
                    need = head + caplen
                    break
                number += 1
                self.frames_read = number
                yield Frame(number, sec + frac / divisor, linktype, wirelen,
                            buf[pos + head:stop])
                pos = stop
            self._pos = pos
            if not self._fill(need):
                left = len(self._buf) - self._pos
                if left == 0:
                    return
                part = "record header" if left < head else "record data"
                raise self._error(f"file ends inside the {part} ({left} bytes present)",
                                  self._base + self._pos, number + 1)

    @property
    def record_layout(self) -> dict[str, Any]:
        """How a pcap file lays out its records: columns.decode_records' keywords."""
        return {"endian": self._endian, "divisor": self._divisor, "extra": self._extra,
                "linktype": self._linktype}

    def record_batches(self, most: int = 65536) -> Iterator[tuple[bytes, list[int], int]]:
        """pcap only: the records complete in the buffer, as (buffer, offsets of their
        record headers, number of the first), at most `most` at a time, for a columnar
        decoder (columns.py). Walks exactly as `_pcap` does, with the same bounds and the
        same errors (left in `error`); frame numbers continue from `frames_read`."""
        if not self.format.startswith("pcap") or self.format.startswith("pcapng"):
            raise ValueError("record_batches reads pcap only")
        return self._guarded(self._record_batches(most))

    def _record_batches(self, most: int) -> Iterator[tuple[bytes, list[int], int]]:
        head = 16 + self._extra
        little = self._endian == "<"
        while True:
            buf = self._buf
            first = self.frames_read + 1
            offsets, pos, caplen = record_offsets(buf, self._pos, head, little, most,
                                                  MAX_CAPLEN)
            if caplen > MAX_CAPLEN:
                self._pos = pos
                if offsets:
                    self.frames_read += len(offsets)
                    yield buf, offsets, first
                raise self._error(
                    f"record length {caplen} is absurd (limit {MAX_CAPLEN}); "
                    "corrupt file", self._base + pos, self.frames_read + 1)
            # (what the next batch needs at least: the header, or the record it stopped at)
            need = head + caplen if caplen >= 0 else head
            self._pos = pos
            if offsets:
                self.frames_read += len(offsets)
                yield buf, offsets, first
                if len(offsets) >= most:
                    continue
            # larger reads than a frame at a time: batches of thousands of records
            self._fill(need, BATCH_READ)
            left = len(self._buf) - self._pos
            if left < need:
                if left == 0:
                    return
                part = "record header" if left < head else "record data"
                raise self._error(f"file ends inside the {part} ({left} bytes present)",
                                  self._base + self._pos, self.frames_read + 1)

    def block_batches(self, most: int = 65536) -> Iterator[Any]:
        """pcapng only: the frames in file order, runs of Enhanced Packet Blocks of one
        interface that are complete in the buffer as (buffer, offsets of their blocks,
        number of the first, columns.decode_blocks' keywords), at most `most` at a time,
        and every other frame as a Frame. Runs stop for good once a section has several
        interfaces (their frames need time-ordering: `time_ordered`). Walks exactly as
        the frame reader does, with the same bounds and errors (left in `error`)."""
        if not self.format.startswith("pcapng"):
            raise ValueError("block_batches reads pcapng only")
        return self._guarded(self._pcapng(most))

    def _pcapng(self, most: int = 0) -> Iterator[Any]:
        """Frames; with `most`, runs of EPBs as well (block_batches)."""
        interfaces: list[_Interface] = []
        endian = "<"
        hdr = struct.Struct("<II").unpack_from
        last_ts = 0.0
        ahead = BATCH_READ if most else 0  # read in larger pieces for runs
        run: list[int] = []  # offsets in run_buf of the run's blocks
        run_buf, run_first, run_iface = b"", 0, -1
        run_layout: dict[str, Any] = {}
        run_base = 0  # the stream offset of run_buf[0]
        last_raw: tuple[int, int, _Interface] | None = None  # a run's last EPB: its time

        def ended() -> tuple[bytes, list[int], int, dict[str, Any]]:
            nonlocal run
            out = (run_buf, run, run_first, run_layout)
            run = []
            self._run_base = run_base
            return out

        try:
            while True:
                if run and (len(run) >= most or len(self._buf) - self._pos < 8):
                    yield ended()  # (full, or the input may end here)
                if not self._fill(8, ahead):
                    left = len(self._buf) - self._pos
                    if left:
                        raise self._error(f"file ends inside a block header ({left} bytes present)",
                                          self._base + self._pos, self.frames_read + 1)
                    return
                buf, pos = self._buf, self._pos
                start = self._base + pos
                btype, blen = hdr(buf, pos)
                if btype == SHB:  # the same bytes in either byte order
                    if not self._fill(12):
                        raise self._error("file ends inside a section header block", start,
                                          self.frames_read + 1)
                    buf, pos = self._buf, self._pos
                    bom = buf[pos + 8:pos + 12]
                    if bom == b"\x4d\x3c\x2b\x1a":
                        endian = "<"
                    elif bom == b"\x1a\x2b\x3c\x4d":
                        endian = ">"
                    else:
                        raise self._error("section header block has a bad byte-order magic",
                                          start + 8, self.frames_read + 1)
                    hdr = struct.Struct(endian + "II").unpack_from
                    btype, blen = hdr(buf, pos)
                if blen < 12 or blen % 4 or blen > MAX_BLOCK_LEN:
                    raise self._error(f"block type 0x{btype:x} has an impossible length {blen}",
                                      start, self.frames_read + 1)
                if run and (btype != EPB or self._would_wait(blen)):
                    yield ended()  # before what the block holds, or waiting for it
                if not self._fill(blen, ahead):
                    raise self._error(
                        f"file ends inside a block (type 0x{btype:x}, length {blen}, "
                        f"{len(self._buf) - self._pos} bytes present)", start, self.frames_read + 1)
                buf, pos = self._buf, self._pos
                (trailer,) = struct.unpack_from(endian + "I", buf, pos + blen - 4)
                if trailer != blen:
                    raise self._error(
                        f"block type 0x{btype:x}: trailing length {trailer} disagrees with {blen}",
                        start, self.frames_read + 1)
                body_end = pos + blen - 4
                self._pos = pos + blen
                if btype in (EPB, OPB):
                    if blen < 32:
                        raise self._error("packet block too short", start, self.frames_read + 1)
                    if btype == EPB:
                        ifid, tsh, tsl, caplen, wirelen = struct.unpack_from(
                            endian + "IIIII", buf, pos + 8)
                    else:
                        ifid, _drops, tsh, tsl, caplen, wirelen = struct.unpack_from(
                            endian + "HHIIII", buf, pos + 8)
                    if ifid >= len(interfaces):
                        raise self._error(f"packet block names interface {ifid}, but only "
                                          f"{len(interfaces)} are described", start,
                                          self.frames_read + 1)
                    if caplen > body_end - (pos + 28) or caplen > MAX_CAPLEN:
                        raise self._error(f"captured length {caplen} does not fit its block",
                                          start, self.frames_read + 1)
                    iface = interfaces[ifid]
                    if most and btype == EPB and self.interfaces < 2:
                        if run and (ifid != run_iface or buf is not run_buf):
                            yield ended()  # a run is of one interface, in one buffer
                        if not run:
                            run_buf, run_first, run_iface = buf, self.frames_read + 1, ifid
                            run_base = self._base
                            run_layout = {"endian": endian, "divisor": iface.divisor,
                                          "offset": iface.offset, "linktype": iface.linktype}
                        run.append(pos)
                        last_raw = (tsh, tsl, iface)
                        self.frames_read += 1
                        continue
                    last_raw = None
                    last_ts = ((tsh << 32) | tsl) / iface.divisor + iface.offset
                    self.frames_read += 1
                    yield Frame(self.frames_read, last_ts, iface.linktype, wirelen,
                                buf[pos + 28:pos + 28 + caplen])
                elif btype == SPB:
                    if not interfaces:
                        raise self._error("simple packet block before any interface block", start,
                                          self.frames_read + 1)
                    (wirelen,) = struct.unpack_from(endian + "I", buf, pos + 8)
                    iface = interfaces[0]
                    caplen = min(wirelen, body_end - (pos + 12))
                    if iface.snaplen:
                        caplen = min(caplen, iface.snaplen)
                    self.frames_read += 1
                    if last_raw is not None:  # the last time seen was a run's
                        tsh, tsl, ts_iface = last_raw
                        last_ts = ((tsh << 32) | tsl) / ts_iface.divisor + ts_iface.offset
                        last_raw = None
                    # no timestamp in an SPB: keep time moving forward with the last one seen
                    yield Frame(self.frames_read, last_ts, iface.linktype, wirelen,
                                buf[pos + 12:pos + 12 + caplen])
                elif btype == IDB:
                    if blen < 20:
                        raise self._error("interface description block too short", start,
                                          self.frames_read + 1)
                    interfaces.append(self._interface(buf, pos + 8, body_end, endian))
                    self.linktypes.add(interfaces[-1].linktype)
                    self.interfaces = max(self.interfaces, len(interfaces))
                elif btype == SHB:
                    interfaces = []  # interface ids are per section
                else:
                    self.skipped_blocks[btype] = self.skipped_blocks.get(btype, 0) + 1
        except CaptureError:
            if run:  # what was read before the fault is still analysed
                yield ended()
            raise

    @staticmethod
    def _interface(buf: bytes, at: int, end: int, endian: str) -> _Interface:
        linktype, _reserved, snaplen = struct.unpack_from(endian + "HHI", buf, at)
        divisor, offset = 1_000_000, 0
        opt = at + 8
        # options: code, length, value padded to 4; the walk only moves forward
        while opt + 4 <= end:
            code, length = struct.unpack_from(endian + "HH", buf, opt)
            value = opt + 4
            if code == 0 or value + length > end:
                break
            if code == 9 and length >= 1:  # if_tsresol
                res = buf[value]
                exp = res & 0x7F
                if exp <= 60:  # beyond that no clock exists; keep microseconds
                    divisor = (2 ** exp) if res & 0x80 else (10 ** exp)
            elif code == 14 and length >= 8:  # if_tsoffset, seconds
                (offset,) = struct.unpack_from(endian + "q", buf, value)
            opt = value + ((length + 3) & ~3)
        return _Interface(linktype, snaplen, divisor, offset)


_FOUR_U32 = {e: struct.Struct(e + "IIII").unpack_from for e in "<>"}


def _record_frames(buf: bytes, offsets: list[int], first: int, endian: str, divisor: int,
                   extra: int, linktype: int) -> list[Frame]:
    """The Frames of a `record_batches` batch, as the frame reader makes them."""
    unpack = _FOUR_U32[endian]
    head = 16 + extra
    out = []
    for number, pos in enumerate(offsets, first):
        sec, frac, caplen, wirelen = unpack(buf, pos)
        out.append(Frame(number, sec + frac / divisor, linktype, wirelen,
                         buf[pos + head:pos + head + caplen]))
    return out


def _block_frames(buf: bytes, offsets: list[int], first: int, endian: str, divisor: int,
                  offset: int, linktype: int) -> list[Frame]:
    """The Frames of a `block_batches` run of EPBs, as the frame reader makes them."""
    unpack = _FOUR_U32[endian]
    out = []
    for number, pos in enumerate(offsets, first):
        tsh, tsl, caplen, wirelen = unpack(buf, pos + 12)
        out.append(Frame(number, ((tsh << 32) | tsl) / divisor + offset, linktype, wirelen,
                         buf[pos + 28:pos + 28 + caplen]))
    return out


def capture_batches(reader: CaptureReader, at_once: int = 32768, small: int = 0
                    ) -> Iterator[tuple[Any, ...]]:
    """The reader's frames in batches, undecoded, in the order they are analysed:
    ("records", buffer, offsets, first number) for pcap records, ("blocks", buffer,
    offsets, first number, columns.decode_blocks' keywords) for a run of pcapng EPBs, both
    straight from the reader's buffer, and ("frames", Frames) for other pcapng frames
    (`at_once` at most, fewer when a pipe has nothing more now) and, once a pcapng
    section has several interfaces, all its frames in time order (time_ordered).
    Record and block batches of fewer than `small` frames come as Frames too."""
    if not reader.format.startswith("pcapng"):
        layout = reader.record_layout
        for buf, offsets, first in reader.record_batches():
            if len(offsets) < small:
                yield "frames", _record_frames(buf, offsets, first, **layout)
            else:
                yield "records", buf, offsets, first
        return
    held: list[Frame] = []

    def joined() -> tuple[str, list[Frame]]:
        nonlocal held
        out, held = held, []
        return "frames", out

    items = reader.block_batches()
    for item in items:
        if isinstance(item, Frame):
            if reader.interfaces >= 2:  # this frame and all after it: time order
                if held:
                    yield joined()
                for frame in time_ordered(reader, frames=chain([item], items)):
                    held.append(frame)
                    if len(held) >= at_once or reader.input_idle():
                        yield joined()
                break
            held.append(item)
            if len(held) >= at_once or reader.input_idle():  # (a live stream: now)
                yield joined()
            continue
        if held:
            yield joined()
        buf, offsets, first, layout = item
        if len(offsets) < small:
            yield "frames", _block_frames(buf, offsets, first, **layout)
        else:
            yield "blocks", buf, offsets, first, layout
    if held:
        yield joined()


def _readiness(stream: BinaryIO) -> Callable[[], bool] | None:
    """Whether a pipe (FIFO, socket, terminal) has data now; None for a regular file
    or a stream without a descriptor, which always has what is left."""
    try:
        fd = stream.fileno()
        mode = os.fstat(fd).st_mode
    except (AttributeError, OSError, ValueError):  # (io.UnsupportedOperation: OSError)
        return None
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISFIFO(mode):
        # A pipe holds 64 KiB by default: a file sent through one would come in batches
        # of ~500 frames. Up to 1 MiB (Linux; the writer may then run further ahead).
        with contextlib.suppress(ImportError, AttributeError, OSError):
            import fcntl

            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)
    poll = select.poll()
    poll.register(fd, select.POLLIN)

    def ready() -> bool:
        return bool(poll.poll(0))  # (also at end of input or a hang-up: a read returns)
    return ready


def open_capture(path: str, stdin: BinaryIO | None = None) -> CaptureReader:
    """Open a capture file, or stdin for '-'; raises CaptureError if it is not a capture."""
    if path == "-":
        stream: BinaryIO = stdin if stdin is not None else sys.stdin.buffer
        return CaptureReader(path, stream, owned=False)
    try:
        # unbuffered: reads go straight to the file in READ_SIZE pieces
        stream = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by the reader
    except OSError as exc:
        raise CaptureError(path, f"cannot open: {exc.strerror or exc}") from None
    try:
        return CaptureReader(path, stream, owned=True)
    except BaseException:
        stream.close()
        raise


def time_ordered(reader: CaptureReader, window: float = 2.0,
                 max_held: int = MAX_REORDER_BYTES,
                 frames: Iterable[Frame] | None = None) -> Iterator[Frame]:
    """The reader's frames in timestamp order when a pcapng holds several interfaces.

    dumpcap writes each interface's buffer in turn, so frames of different interfaces
    interleave out of time order; the tracker needs capture-time order. Frames are held
    at most `window` seconds of capture time and at most `max_held` bytes (a capture whose
    clock stands still must not be held whole), and keep their numbers.
    Single-interface captures pass through in file order, as Wireshark reads them."""
    heap: list[tuple[float, int, Frame]] = []
    latest = float("-inf")
    held = 0
    for frame in reader if frames is None else frames:  # (frames: the reader's, read on)
        if reader.interfaces < 2 and not heap:
            yield frame
            continue
        heapq.heappush(heap, (frame.ts, frame.number, frame))
        held += len(frame.data) + _HELD_OVERHEAD
        latest = max(latest, frame.ts)
        while heap and (heap[0][0] <= latest - window or held > max_held):
            out = heapq.heappop(heap)[2]
            held -= len(out.data) + _HELD_OVERHEAD
            yield out
    while heap:
        yield heapq.heappop(heap)[2]
