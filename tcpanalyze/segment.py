"""The compact segment record every decoder produces and the tracker consumes.

A `Segment` is one TCP segment as seen on the wire, reduced to what the tracker needs.
Addresses stay packed (4 or 16 bytes) and TCP options stay raw until someone asks,
because most segments are plain data whose options nobody reads (dpkt's lazy idea).
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from typing import Final, NamedTuple

FIN: Final = 0x01
SYN: Final = 0x02
RST: Final = 0x04
PSH: Final = 0x08
ACK: Final = 0x10
URG: Final = 0x20
ECE: Final = 0x40
CWR: Final = 0x80
NS: Final = 0x100  # the AE/NS bit from the data-offset byte, kept above the classic eight

SEQ_MOD: Final = 1 << 32


class Segment(NamedTuple):
    frame: int  # 1-based frame number in the capture (as Wireshark counts)
    ts: float  # seconds since the epoch
    src: bytes  # packed IPv4 (4 bytes) or IPv6 (16 bytes)
    dst: bytes
    sport: int
    dport: int
    seq: int
    ack: int  # the ack field as sent, meaningful only when ACK is in flags
    flags: int  # FIN..CWR in the low byte, NS as 0x100
    window: int  # raw advertised window, not scaled
    payload_len: int  # from the IP length, so snaplen-cut packets keep their true size
    options: bytes = b""  # raw TCP option bytes, parsed on demand by parse_options()
    # the frame's VLAN ids, outer << 12 | inner (one tag: its id; 0: untagged, or only
    # priority tags): what a VLAN-aware connection key adds (settings.vlan_tracking)
    vlan: int = 0
    # The capture holds less than the payload the IP header's length claims (snaplen): Zeek
    # keeps such payload out of its reassembly, so an ACK for it is a content gap.
    payload_cut: bool = False
    # Bytes the IP header's length claims past where the decoder ended the datagram (it
    # believes a shorter PPPoE length or frame): Zeek, which believes the IP header, takes
    # them as payload. Both fields are for Zeek's records (analysis.ZeekRecord).
    ip_short: int = 0


class TcpOptions(NamedTuple):
    mss: int | None = None
    wscale: int | None = None
    sack_permitted: bool = False
    sack_blocks: tuple[tuple[int, int], ...] = ()
    tsval: int | None = None
    tsecr: int | None = None
    fastopen: bytes | None = None  # TFO cookie (may be empty: a cookie request)


_u16: Final = struct.Struct("!H").unpack_from
_u32_pair: Final = struct.Struct("!II").unpack_from


def parse_options(raw: bytes) -> TcpOptions:
    """Parse raw TCP option bytes; stops quietly at the first malformed option."""
    if len(raw) == 20 and raw[:2] == b"\x02\x04" and raw[4:8] == b"\x04\x02\x08\x0a" \
            and raw[16:19] == b"\x01\x03\x03":
        # Linux's SYN and SYN-ACK: MSS, SACK permitted, timestamps, NOP, window scale
        tsval, tsecr = _u32_pair(raw, 8)
        return TcpOptions(_u16(raw, 2)[0], raw[19], True, (), tsval, tsecr, None)
    mss = wscale = tsval = tsecr = None
    sack_permitted = False
    sack_blocks: tuple[tuple[int, int], ...] = ()
    fastopen = None
    i, n = 0, len(raw)
    while i < n:
        kind = raw[i]
        if kind == 1:  # NOP
            i += 1
            continue
        if kind == 0:  # end of option list
            break
        if i + 1 >= n:
            break
        length = raw[i + 1]
        if length < 2 or i + length > n:
            break
        # (values read in place: no slice per option)
        if kind == 8:
            if length == 10:
                tsval, tsecr = _u32_pair(raw, i + 2)
        elif kind == 2:
            if length == 4:
                mss = _u16(raw, i + 2)[0]
        elif kind == 3:
            if length == 3:
                wscale = raw[i + 2]
        elif kind == 4:
            if length == 2:
                sack_permitted = True
        elif kind == 5:
            if length >= 10 and (length - 2) % 8 == 0:
                sack_blocks = tuple(_u32_pair(raw, j) for j in range(i + 2, i + length, 8))
        elif kind == 34:  # RFC 7413 Fast Open
            fastopen = bytes(raw[i + 2 : i + length])
        elif kind == 254 and length >= 4 and raw[i + 2 : i + 4] == b"\xf9\x89":
            fastopen = bytes(raw[i + 4 : i + length])  # experimental TFO
        i += length
    return TcpOptions(mss, wscale, sack_permitted, sack_blocks, tsval, tsecr, fastopen)


def seq_lt(a: int, b: int) -> bool:
    """a < b in 32-bit serial-number arithmetic (RFC 1982)."""
    return a != b and ((b - a) & 0xFFFFFFFF) < 0x80000000


def seq_le(a: int, b: int) -> bool:
    return a == b or ((b - a) & 0xFFFFFFFF) < 0x80000000


def seq_gt(a: int, b: int) -> bool:
    return seq_lt(b, a)


def seq_ge(a: int, b: int) -> bool:
    return seq_le(b, a)


def seq_add(a: int, n: int) -> int:
    return (a + n) & 0xFFFFFFFF


def seq_diff(a: int, b: int) -> int:
    """Signed distance a - b in serial-number space."""
    d = (a - b) & 0xFFFFFFFF
    return d - SEQ_MOD if d >= 0x80000000 else d


def vlan_ids(vlan: int) -> list[int]:
    """A Segment's `vlan` as the tag ids, outer first: [], [42] or [10, 20]."""
    if not vlan:
        return []
    return [vlan >> 12, vlan & 0xFFF] if vlan >> 12 else [vlan]


def format_addr(packed: bytes) -> str:
    # (remembered: a capture has few addresses and many connections between them, and
    # inet_ntop's argument parsing costs more than the formatting)
    text = _ADDR_TEXT.get(packed)
    if text is None:
        if len(_ADDR_TEXT) >= _ADDR_TEXTS:  # (a flood of spoofed sources: start over)
            _ADDR_TEXT.clear()
        family = socket.AF_INET if len(packed) == 4 else socket.AF_INET6
        text = _ADDR_TEXT[packed] = socket.inet_ntop(family, packed)
    return text


_ADDR_TEXT: Final[dict[bytes, str]] = {}
_ADDR_TEXTS: Final = 65536


def format_endpoint(packed: bytes, port: int) -> str:
    """'10.0.0.1:80' or '[fd00::1]:80', the form used in every output."""
    if len(packed) == 4:
        return f"{format_addr(packed)}:{port}"
    return f"[{format_addr(packed)}]:{port}"


def parse_endpoint(text: str) -> tuple[bytes, int]:
    """Inverse of format_endpoint, for configuration and baselines."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    return ipaddress.ip_address(host).packed, int(port)


_FLAG_LETTERS: Final = ((SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P"), (ACK, "."),
                 (URG, "U"), (ECE, "E"), (CWR, "W"))


def flags_text(flags: int) -> str:
    """tcpdump-style flag string: 'S', 'S.', 'F.', 'R', 'P.'."""
    text = "".join(letter for bit, letter in _FLAG_LETTERS if flags & bit)
    return text or "none"
