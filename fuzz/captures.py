"""Capture builders, structural mutators and the "handled, not crashed" invariant.

Everything here is deterministic and free of test-framework imports, so the hypothesis
suite and the atheris harness drive the same code. The invariant (`check_capture`):

* the only exception an analysis may raise is `CaptureError`, and only for a file whose
  header is unusable; its message is one line naming the file;
* a fault later in the file ends reading with a one-line `error` naming the file and the
  frame / byte offset, and everything read before it is still analysed and reported;
* every frame read is counted in exactly one packet class;
* frames whose bytes lie wholly before the first damaged byte come out exactly as in the
  undamaged capture (the reader never lets later damage spoil what it already had);
* the report renders (JSON at least) without error.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from tcpanalyze.analysis import analyze
from tcpanalyze.capture import CaptureError, Frame, open_capture
from tcpanalyze.report import Report
from tcpanalyze.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"


def corpus_dir() -> Path | None:
    for candidate in (ROOT.parent / "shared" / "corpus", Path("/work/shared/corpus")):
        if candidate.is_dir():
            return candidate
    return None


# Real captures used as mutation seeds: every format the reader knows (pcap us/ns, both
# byte orders, pcapng with several interfaces and sections) and many link layers.
CORPUS_SEEDS = (
    "zeek/http-get/capture.pcap",  # Ethernet, a whole HTTP connection
    "zeek/ftp-ipv6/capture.pcap",  # IPv6
    "zeek/vlan-mpls/capture.pcap",  # VLAN + MPLS
    "zeek/pppoe-qinq/capture.pcap",  # QinQ + PPPoE
    "zeek/nflog-http/capture.pcap",  # NFLOG TLVs
    "zeek/tcp-syslog-rawip/capture.pcap",  # raw IP
    "zeek/vlan-pcp-dei-pcapng/capture.pcapng",  # pcapng
    "zeek/flip-without-syn-pcapng/capture.pcapng",
    "tcpdump/handshake-nano-sll/capture.pcap",  # nanosecond pcap, Linux cooked
    "tcpdump/pptp-big-endian/capture.pcap",  # big-endian pcap, GRE
    "tcpdump/tso-oversized/capture.pcap",  # TSO super-packets (IP total length 0)
    "suricata-verify/sll2/capture.pcap",
    "suricata-verify/cisco-hdlc/capture.pcap",
    "suricata-verify/ppp-frag-syn/capture.pcap",
    "suricata-verify/syn-flood-3whs/capture.pcap",
)
DATA_SEEDS = ("eth-nano.pcap", "multi.pcapng", "crafted-2sections.pcapng", "sll.pcap",
              "sll2.pcap", "eth-snap60.pcap")


def seed_paths() -> list[Path]:
    """The seed captures present on this machine (tests/data always; the corpus if shared/
    is beside the checkout)."""
    paths = [DATA / name for name in DATA_SEEDS]
    corpus = corpus_dir()
    if corpus is not None:
        paths += [corpus / rel for rel in CORPUS_SEEDS if (corpus / rel).is_file()]
    return paths


# -- layout of a capture file ------------------------------------------------------------


class Record(NamedTuple):
    start: int  # byte offset of the record / block
    end: int  # offset just past it
    kind: int  # pcap: 0; pcapng: block type


PCAP_ORDER = {b"\xd4\xc3\xb2\xa1": ("<", 0), b"\xa1\xb2\xc3\xd4": (">", 0),
              b"\x4d\x3c\xb2\xa1": ("<", 0), b"\xa1\xb2\x3c\x4d": (">", 0),
              b"\x34\xcd\xb2\xa1": ("<", 8), b"\xa1\xb2\xcd\x34": (">", 8)}


def layout(raw: bytes) -> tuple[str, list[Record]]:
    """('pcap' or 'pcapng', the records/blocks), walked by hand from well-formed input.
    For pcap the records are packet records; for pcapng every block (SHB included)."""
    if raw[:4] in PCAP_ORDER:
        endian, extra = PCAP_ORDER[raw[:4]]
        head = 16 + extra
        out, pos = [], 24
        while pos + head <= len(raw):
            caplen = struct.unpack_from(endian + "I", raw, pos + 8)[0]
            out.append(Record(pos, pos + head + caplen, 0))
            pos += head + caplen
        return "pcap", out
    out, pos, endian = [], 0, "<"
    while pos + 12 <= len(raw):
        if raw[pos:pos + 4] == b"\x0a\x0d\x0d\x0a":
            endian = "<" if raw[pos + 8:pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
        btype, blen = struct.unpack_from(endian + "II", raw, pos)
        out.append(Record(pos, pos + blen, btype))
        pos += blen
    return "pcapng", out


def endian_of(raw: bytes) -> str:
    if raw[:4] in PCAP_ORDER:
        return PCAP_ORDER[raw[:4]][0]
    return "<" if raw[8:12] == b"\x4d\x3c\x2b\x1a" else ">"


def boundaries(raw: bytes, first: int | None = None, last: int = 3) -> list[int]:
    """Every structural boundary (and one byte either side): file header fields, record
    and block starts, their length fields, where packet data begins, their ends. With
    `first`, only those of the first `first` and the last `last` records (each record
    repeats the same structure; the tests stay fast on long captures)."""
    fmt, records = layout(raw)
    points = {0, 1, 2, 3, 4, 8, 12, 16, 20, 23, 24, len(raw)}
    if first is not None and len(records) > first + last:
        records = records[:first] + records[-last:]
    for rec in records:
        inner = (4, 8, 12, 16) if fmt == "pcap" else (4, 8, 12, 20, 28)
        for at in (rec.start, rec.end, *(rec.start + i for i in inner)):
            points.update((at - 1, at, at + 1))
    return sorted(p for p in points if 0 <= p <= len(raw))


def frames_of(raw_path: str | Path) -> list[Frame]:
    reader = open_capture(str(raw_path))
    return list(reader)


def packet_ends(raw: bytes) -> list[int]:
    """End offset of each packet-carrying record, in frame order."""
    fmt, records = layout(raw)
    if fmt == "pcap":
        return [r.end for r in records]
    return [r.end for r in records if r.kind in (2, 3, 6)]


# -- mutations: each returns (bytes, offset of the first byte that differs) ------------------


def truncate(raw: bytes, at: int) -> tuple[bytes, int]:
    return raw[:at], at


def flip_bit(raw: bytes, bit: int) -> tuple[bytes, int]:
    out = bytearray(raw)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out), bit // 8


def put_u32(raw: bytes, at: int, value: int, endian: str) -> tuple[bytes, int]:
    out = bytearray(raw)
    struct.pack_into(endian + "I", out, at, value & 0xFFFFFFFF)
    return bytes(out), at


def insert(raw: bytes, at: int, blob: bytes) -> tuple[bytes, int]:
    return raw[:at] + blob + raw[at:], at


# -- builders ---------------------------------------------------------------------------------


def pcap_file(frames: Iterable[tuple[float, bytes]], linktype: int = 1,
              wirelens: Sequence[int] | None = None) -> bytes:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype)]
    for i, (ts, data) in enumerate(frames):
        sec = int(ts)
        usec = round((ts - sec) * 1e6)
        wire = wirelens[i] if wirelens is not None else len(data)
        out.append(struct.pack("<IIII", sec, usec, len(data), wire) + data)
    return b"".join(out)


def pcapng_block(btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    blen = len(body) + 12
    return struct.pack("<II", btype, blen) + body + struct.pack("<I", blen)


def pcapng_shb() -> bytes:
    return pcapng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))


def pcapng_idb(linktype: int = 1, options: bytes = b"") -> bytes:
    return pcapng_block(1, struct.pack("<HHI", linktype, 0, 0) + options)


def pcapng_epb(ts: float, data: bytes, ifid: int = 0) -> bytes:
    stamp = round(ts * 1e6)
    return pcapng_block(6, struct.pack("<IIIII", ifid, stamp >> 32, stamp & 0xFFFFFFFF,
                                       len(data), len(data)) + data)


def tcp_header(sport: int, dport: int, seq: int, ack: int, flags: int, *,
               window: int = 65535, options: bytes = b"", offset: int | None = None) -> bytes:
    options += b"\0" * (-len(options) % 4)
    words = offset if offset is not None else 5 + len(options) // 4
    return struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                       (words & 15) << 4, flags, window, 0, 0) + options


def ipv4(src: bytes, dst: bytes, payload: bytes, *, proto: int = 6, ihl: int = 5,
         total: int | None = None, options: bytes = b"") -> bytes:
    length = 20 + len(options) + len(payload) if total is None else total
    return struct.pack("!BBHHHBBH4s4s", 0x40 | (ihl & 15), 0, length & 0xFFFF, 1, 0x4000, 64,
                       proto, 0, src, dst) + options + payload


def ipv6(src: bytes, dst: bytes, payload: bytes, *, nh: int = 6, ext: bytes = b"",
         plen: int | None = None) -> bytes:
    length = len(ext) + len(payload) if plen is None else plen
    return struct.pack("!IHBB16s16s", 0x60000000, length & 0xFFFF, nh, 64, src, dst) + ext \
        + payload


def ether(payload: bytes, etype: int = 0x0800) -> bytes:
    return b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01" + struct.pack("!H", etype) + payload


def ipv4_addr(n: int) -> bytes:
    """10.x.y.z for distinct n (the synthetic captures' own addresses)."""
    return bytes((10, (n >> 16) & 255, (n >> 8) & 255, n & 255))


# -- the invariant ---------------------------------------------------------------------------

ERROR_WHERE = re.compile(r": (frame \d+ \(byte offset \d+\)|byte offset \d+): \S")


def display_name(path: str) -> str:
    return CaptureError(path, "x").args[0][:-3]


@dataclass
class Outcome:
    report: Report | None  # None when the file was refused at open
    refused: CaptureError | None
    error: str | None  # the capture's read error (one line), if reading stopped early
    frames: list[Frame]  # what the reader alone yields


def assert_one_line(message: str, path: str) -> None:
    assert "\n" not in message and "\r" not in message, message
    assert "Traceback" not in message, message
    assert message.startswith(display_name(path) + ": "), (message, path)


def check_capture(path: str, *, original: Sequence[Frame] = (),
                  original_ends: Sequence[int] = (), intact_before: int = 0,
                  settings: Settings | None = None, render: bool = True) -> Outcome:
    """Analyse `path` and assert the invariant (module docstring). `original` and
    `original_ends` describe the undamaged capture; frames ending at or before
    `intact_before` must come out unchanged."""
    try:
        report = analyze(path, settings)
    except CaptureError as exc:
        assert_one_line(str(exc), path)
        assert exc.path == path
        return Outcome(None, exc, None, [])
    reader = open_capture(path)
    frames = list(reader)
    cap = report.captures[0]
    assert cap.packets == len(frames), (cap.packets, len(frames))
    assert cap.packets == cap.tcp_segments + sum(cap.skipped.values())
    if cap.error is not None:
        assert_one_line(cap.error, path)
        assert ERROR_WHERE.search(cap.error), cap.error
        assert reader.error is not None and str(reader.error) == cap.error
    else:
        assert reader.error is None
    kept = [f for f, end in zip(original, original_ends, strict=False) if end <= intact_before]
    assert frames[:len(kept)] == kept, "damage after a frame changed the frame"
    if render:
        from tcpanalyze import output

        data = json.loads(output.render("json", report, output.RenderOptions()))
        assert data["capture"]["packets"] == cap.packets
    return Outcome(report, None, cap.error, frames)
