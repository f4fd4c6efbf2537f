"""Test-only loader: corpus capture -> Segments -> Zeek-style records -> ZeekView.

Stands in for the real decoder and flow table until they exist. It reads pcap with
dpkt and pcapng with a tiny block parser (dpkt's reader takes one interface only),
unwraps the link layers the zeek items use, and groups TCP segments by unordered
4-tuple, splitting records where `ZeekView.starts_new_record` says Zeek would.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import dpkt

from tcpanalyze.segment import Segment, format_addr
from tcpanalyze.zeek import ZeekView, first_packet_flips

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus" / "zeek"
if not CORPUS.is_dir():  # ../shared beside the clone, else where this machine keeps it
    CORPUS = Path("/work/shared/corpus/zeek")

_IPV4, _IPV6 = 0x0800, 0x86DD


class UnreadableCapture(Exception):
    """The loader cannot read this capture; str(e) says why."""


def _read_pcapng(data: bytes) -> list[tuple[float, int, bytes]]:
    """(ts, linktype, frame) for every EPB/SPB of a pcapng file, any number of IDBs."""
    out: list[tuple[float, int, bytes]] = []
    interfaces: list[tuple[int, float]] = []  # (linktype, seconds per tick)
    endian = "<"
    pos = 0
    while pos + 12 <= len(data):
        btype = struct.unpack_from(endian + "I", data, pos)[0]
        if btype == 0x0A0D0D0A:
            endian = "<" if data[pos + 8:pos + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            interfaces = []
        blen = struct.unpack_from(endian + "I", data, pos + 4)[0]
        if blen < 12:
            raise UnreadableCapture(f"pcapng block of length {blen} at {pos}")
        body = data[pos + 8:pos + blen - 4]
        if btype == 1:
            linktype = struct.unpack_from(endian + "H", body, 0)[0]
            resol = 1e-6
            opos = 8
            while opos + 4 <= len(body):
                code, olen = struct.unpack_from(endian + "HH", body, opos)
                if code == 0:
                    break
                if code == 9 and olen >= 1:
                    v = body[opos + 4]
                    resol = 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0 ** -v
                opos += 4 + (olen + 3) // 4 * 4
            interfaces.append((linktype, resol))
        elif btype == 6:
            ifid, hi, lo, caplen, _orig = struct.unpack_from(endian + "IIIII", body, 0)
            linktype, resol = interfaces[ifid]
            out.append((((hi << 32) | lo) * resol, linktype, body[20:20 + caplen]))
        elif btype == 3:
            linktype, _ = interfaces[0]
            out.append((0.0, linktype, body[4:]))
        pos += blen
    return out


def read_frames(path: Path) -> list[tuple[float, int, bytes]]:
    data = path.read_bytes()
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        return _read_pcapng(data)
    with path.open("rb") as f:
        reader = dpkt.pcap.Reader(f)
        linktype = reader.datalink()
        return [(ts, linktype, bytes(buf)) for ts, buf in reader]


def _network_layer(linktype: int, buf: bytes) -> bytes | None:
    """Strip the link layer; None for frames that carry no IP."""
    if linktype == 1:
        off = 12
        while off + 2 <= len(buf):
            et = struct.unpack_from("!H", buf, off)[0]
            if et in (0x8100, 0x88A8, 0x9100):  # 802.1Q / QinQ
                off += 4
            elif et == 0x8903:  # Cisco FabricPath: 2-byte FTag/TTL, then a frame
                off += 4 + 12
            elif et in (0x8847, 0x8848):  # MPLS: labels until bottom of stack
                off += 2
                while off + 4 <= len(buf) and not buf[off + 2] & 1:
                    off += 4
                return buf[off + 4:]
            elif et == 0x8864:  # PPPoE session: 6 header bytes, 2-byte PPP protocol
                proto = struct.unpack_from("!H", buf, off + 8)[0]
                return buf[off + 10:] if proto in (0x21, 0x57) else None
            elif et in (_IPV4, _IPV6):
                return buf[off + 2:]
            else:
                return None
        return None
    if linktype in (101, 228, 229, 12, 14):
        return buf
    if linktype == 113:  # Linux cooked v1
        return buf[16:]
    if linktype == 276:  # Linux cooked v2
        return buf[20:]
    if linktype == 0:  # BSD loopback
        return buf[4:]
    return None


def _tcp_segment(number: int, ts: float, ip: bytes, depth: int = 0) -> Segment | None:
    if not ip:
        return None
    version = ip[0] >> 4
    if version == 4 and len(ip) >= 20:
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack_from("!H", ip, 2)[0]
        frag = struct.unpack_from("!H", ip, 6)[0]
        proto, src, dst = ip[9], ip[12:16], ip[16:20]
        if frag & 0x3FFF:
            return None  # fragments are not reassembled here
        body = ip[ihl:total] if total else ip[ihl:]
        body_len = (total - ihl) if total else len(body)
    elif version == 6 and len(ip) >= 40:
        proto, src, dst = ip[6], ip[8:24], ip[24:40]
        body_len = struct.unpack_from("!H", ip, 4)[0]
        body = ip[40:40 + body_len]
    else:
        return None
    if proto == 17 and depth == 0 and len(body) >= 8:  # Teredo (IPv6 in UDP 3544)
        sport, dport = struct.unpack_from("!HH", body, 0)
        if 3544 in (sport, dport) or (len(body) > 48 and body[8] >> 4 == 6):
            inner = body[8:]
            while len(inner) >= 2 and inner[0] == 0 and inner[1] in (0, 1):
                if inner[1] == 1:  # origin indication
                    inner = inner[8:]
                else:  # authentication header
                    if len(inner) < 4:
                        return None
                    inner = inner[4 + inner[2] + inner[3] + 9:]
            if inner and inner[0] >> 4 == 6:
                return _tcp_segment(number, ts, inner, depth + 1)
        return None
    if proto != 6 or len(body) < 20:
        return None
    sport, dport, seq, ack, offx, flags, window = struct.unpack_from("!HHIIBBH", body, 0)
    hlen = (offx >> 4) * 4
    if hlen < 20 or len(body) < hlen:
        return None
    flags |= (offx & 1) << 8
    return Segment(number, ts, bytes(src), bytes(dst), sport, dport, seq, ack, flags,
                   window, max(body_len - hlen, 0), bytes(body[20:hlen]))


def load_segments(path: Path) -> list[Segment]:
    return [seg for seg, _ in load_segments_captured(path)]


def load_segments_captured(path: Path) -> list[tuple[Segment, bool]]:
    """Segments with a flag: is the whole payload in the capture (not snaplen-cut)?"""
    segments = []
    for number, (ts, linktype, buf) in enumerate(read_frames(path), 1):
        ip = _network_layer(linktype, buf)
        if ip is None:
            continue
        seg = _tcp_segment(number, ts, ip)
        if seg is not None:
            segments.append((seg, len(ip) >= _payload_end(ip)))
    return segments


def _payload_end(ip: bytes) -> int:
    """Bytes the IP packet claims (its total/payload length), to spot snaplen cuts."""
    if ip[0] >> 4 == 4:
        return struct.unpack_from("!H", ip, 2)[0] or len(ip)
    return 40 + struct.unpack_from("!H", ip, 4)[0]


@dataclass
class Record:
    """One Zeek connection record as we build it."""

    orig: tuple[bytes, int]
    resp: tuple[bytes, int]
    view: ZeekView
    frames: list[int] = field(default_factory=list)

    @property
    def orig_h(self) -> str:
        return format_addr(self.orig[0])

    @property
    def resp_h(self) -> str:
        return format_addr(self.resp[0])


def build_records(segments: list[Segment] | list[tuple[Segment, bool]]) -> list[Record]:
    """Group segments (optionally with their payload-captured flag) into Zeek-style
    records, in order of creation."""
    records: list[Record] = []
    current: dict[tuple, Record] = {}
    for item in segments:
        seg, captured = item if isinstance(item, tuple) else (item, True)
        a, b = (seg.src, seg.sport), (seg.dst, seg.dport)
        key = (a, b) if a < b else (b, a)
        rec = current.get(key)
        if rec is not None:
            from_orig = a == (rec.orig if not rec.view.roles_swapped else rec.resp)
            if rec.view.starts_new_record(seg, from_orig, seg.ts):
                rec = None
        if rec is None:
            flipped = first_packet_flips(seg)
            rec = Record(b if flipped else a, a if flipped else b, ZeekView(flipped))
            current[key] = rec
            records.append(rec)
        from_orig = a == (rec.orig if not rec.view.roles_swapped else rec.resp)
        rec.view.feed(seg, from_orig, captured)
        rec.frames.append(seg.frame)
    for rec in records:  # a mid-way flip swaps who the originator is
        if rec.view.roles_swapped:
            rec.orig, rec.resp = rec.resp, rec.orig
    return records


@dataclass
class Baseline:
    """One TCP row of a Zeek baseline; absent columns are None."""

    orig_h: str | None
    orig_p: int | None
    resp_h: str | None
    resp_p: int | None
    conn_state: str | None
    history: str | None


_NO_HEADER_COLUMNS = ["id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto",
                      "service", "community_id"]


def parse_conn_log(path: Path) -> list[Baseline]:
    """Full logs (#fields), zeek-cut extracts (header line) and the headerless one."""
    lines = [ln for ln in path.read_text().splitlines()
             if ln and not ln.startswith("###")]
    columns: list[str] | None = None
    rows: list[list[str]] = []
    for ln in lines:
        if ln.startswith("#fields"):
            columns = ln.split("\t")[1:]
        elif ln.startswith("#"):
            continue
        elif columns is None and re.match(r"^(ts|uid)\t", ln):
            columns = ln.split("\t")
        else:
            rows.append(ln.split("\t"))
    if columns is None:
        columns = _NO_HEADER_COLUMNS
    out = []
    for row in rows:
        rec = dict(zip(columns, row, strict=False))
        if rec.get("proto", "tcp") != "tcp":
            continue

        def get(name: str, rec: dict[str, str] = rec) -> str | None:
            value = rec.get(name)
            return None if value in (None, "", "-") else value

        orig_p, resp_p = get("id.orig_p"), get("id.resp_p")
        out.append(Baseline(get("id.orig_h"), int(orig_p) if orig_p else None,
                            get("id.resp_h"), int(resp_p) if resp_p else None,
                            get("conn_state"), get("history")))
    return out


def parse_rst_behavior(path: Path, line: int) -> list[Baseline]:
    """The conn_state-RST-behavior btest prints 'history, conn_state' per trace."""
    lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("###")]
    history, state = (part.strip() for part in lines[line - 1].split(","))
    return [Baseline(None, None, None, None, state, history)]


def match_records(records: list[Record], baselines: list[Baseline]
                  ) -> list[tuple[int, Baseline, Record | None]]:
    """Pair each baseline row with our record: same endpoints (either way round),
    the n-th row of a 4-tuple with the n-th record of it."""
    used: set[int] = set()
    pairs: list[tuple[int, Baseline, Record | None]] = []
    for index, base in enumerate(baselines):
        found = None
        for i, rec in enumerate(records):
            if i in used:
                continue
            ends = {(rec.orig_h, rec.orig[1]), (rec.resp_h, rec.resp[1])}
            if base.orig_h is not None and base.orig_h not in {h for h, _ in ends}:
                continue
            if base.resp_h is not None and base.resp_h not in {h for h, _ in ends}:
                continue
            if base.orig_p is not None and base.orig_p not in {p for _, p in ends}:
                continue
            if base.resp_p is not None and base.resp_p not in {p for _, p in ends}:
                continue
            found = i
            break
        if found is not None:
            used.add(found)
        pairs.append((index, base, records[found] if found is not None else None))
    return pairs
