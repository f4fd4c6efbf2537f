"""Frames to TCP segments: link layers, IPv4/IPv6 and the TCP header, counting every frame.

Every frame lands in exactly one class of `report.PACKET_CLASSES`; only 'tcp' frames give a
`Segment`. The common case (Ethernet, IPv4 without options, TCP) takes a fast path of two
`struct.unpack_from` calls on the frame bytes; everything else walks the headers below.

Lengths: the TCP payload length comes from the IP total / payload length, never from the
captured length, so Ethernet padding is ignored and snaplen-cut frames keep their size.
An IPv4 total length of 0 (or IPv6 payload length 0, e.g. a jumbogram) is what a capture on
the sender shows for a TSO/GSO super-packet before the NIC splits it: the datagram is then
taken to run to the end of the frame as it was on the wire (`wirelen`), and its checksums,
which the NIC fills in later, are never judged.

Checksums are not looked at unless `verify_checksums=True` (offloading makes them wrong in
most captures taken on a sending host). A frame cut by the snaplen cannot be verified and
counts as 'tcp'.

VLAN tags (802.1Q, 802.1ad, old QinQ types) are stepped over; the ids of the first two
(TCI & 0xFFF, outer first) go into the Segment's `vlan` as outer << 12 | inner, for a
VLAN-aware connection key (settings.vlan_tracking). A priority tag (id 0) adds nothing of
its own: alone it is untagged, before another tag that tag's id stands alone. Tags past
the second are not kept (Zeek's key keeps two as well).
"""

from __future__ import annotations

import struct

from .capture import Frame
from .report import PACKET_CLASSES
from .segment import Segment

__all__ = ["MAX_EXAMPLES", "Decoder"]

MAX_EXAMPLES = 5
MAX_LINK_HEADERS = 16  # VLAN tags, MPLS labels, FabricPath ... before we give up
MAX_IP_HEADERS = 12  # IPv6 extension headers / AH walked before we give up
# Timestamps outside [0, 2**35) s (year 3058) come from corrupt headers, not clocks; past
# about 2**52 s adding a timer (+1 s) no longer changes a float, which would stall timers.
MAX_TIMESTAMP = float(2**35)

# link types (LINKTYPE_* as stored in files)
LT_NULL, LT_ETHERNET, LT_PPP, LT_RAW_OLD12, LT_RAW_OLD14 = 0, 1, 9, 12, 14
LT_PPP_HDLC, LT_RAW, LT_CHDLC, LT_LOOP, LT_SLL = 50, 101, 104, 108, 113
LT_IPV4, LT_IPV6, LT_NFLOG, LT_SLL2 = 228, 229, 239, 276

# BSD AF_INET6 values seen in NULL/LOOP headers: NetBSD/OpenBSD/BSDI, FreeBSD, Darwin,
# Linux (in pcap files written on Linux), Windows
AF_INET6_VALUES = frozenset((24, 28, 30, 10, 23))

VLAN_TYPES = frozenset((0x8100, 0x88A8, 0x9100, 0x9200, 0x9300))
TUNNEL_PROTOCOLS = {4: "IPv4-in-IP", 41: "IPv6-in-IP (6in4)", 47: "GRE"}
TUNNEL_UDP_PORTS = {4789: "VXLAN", 2152: "GTP-U", 3544: "Teredo"}

_ETH_IP4 = struct.Struct("!12xHBBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBBHHH")
_eth_ip4 = _ETH_IP4.unpack_from  # bound once: the fast path runs per frame
_tcp_at = _TCP.unpack_from
_U16 = struct.Struct("!H").unpack_from
_U32_LE = struct.Struct("<I").unpack_from
_U16_LE = struct.Struct("<H").unpack_from

# link decoding outcome: an IP version, or why the frame is not decoded further
_IP4, _IP6 = 4, 6


def _ones_sum(data: bytes) -> int:
    """Internet checksum sum of `data`, folded to 16 bits (byte order does not matter)."""
    if len(data) & 1:
        data += b"\0"
    total = sum(memoryview(data).cast("H"))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


class _Skip(Exception):
    """Internal: the frame belongs to a class other than 'tcp'."""

    def __init__(self, cls: str, reason: str) -> None:
        self.cls = cls
        self.reason = reason


class Decoder:
    """Decode frames to Segments, counting each frame in one of report.PACKET_CLASSES."""

    def __init__(self, verify_checksums: bool = False) -> None:
        self.verify_checksums = verify_checksums
        self.counts: dict[str, int] = dict.fromkeys(PACKET_CLASSES, 0)
        self.examples: dict[str, list[tuple[int, str]]] = {c: [] for c in PACKET_CLASSES}
        self._end = 0
        self._vlan = 0  # the frame's VLAN ids so far (see the module's note)
        self._tags = 0  # and how many tags were seen

    def decode(self, frame: Frame) -> Segment | None:
        data = frame.data
        # fast path: Ethernet II, IPv4 with a 20-byte header, unfragmented TCP
        if frame.linktype == 1 and len(data) >= 54 and not self.verify_checksums \
                and 0.0 <= frame.ts < MAX_TIMESTAMP:
            etype, vihl, _tos, total, _id, frag, _ttl, proto, _sum, src, dst = _eth_ip4(data, 0)
            if (etype == 0x0800 and vihl == 0x45 and proto == 6 and not frag & 0x3FFF
                    and total >= 40 and total + 14 <= max(len(data), frame.wirelen)):
                sport, dport, seq, ack, off, flags, win, _c, _u = _tcp_at(data, 34)
                thl = (off >> 4) << 2
                if 20 <= thl <= total - 20 and 34 + thl <= len(data):
                    self.counts["tcp"] += 1
                    return Segment(frame.number, frame.ts, src, dst, sport, dport, seq, ack,
                                   flags | (off & 1) << 8, win, total - 20 - thl,
                                   data[54:34 + thl] if thl > 20 else b"", 0,
                                   total + 14 > len(data), 0)
        try:
            segment = self._decode(frame)
        except _Skip as skip:
            self.counts[skip.cls] += 1
            examples = self.examples[skip.cls]
            if len(examples) < MAX_EXAMPLES:
                examples.append((frame.number, skip.reason))
            return None
        self.counts["tcp"] += 1
        return segment

    # -- general path ------------------------------------------------------------------
    def _decode(self, frame: Frame) -> Segment:
        data = frame.data
        if not 0.0 <= frame.ts < MAX_TIMESTAMP:
            raise _Skip("malformed", f"timestamp {frame.ts:.6g} s is out of range")
        # where the link layer's payload ends on the wire; PPPoE can say less
        self._end = max(frame.wirelen, len(data))
        self._vlan = self._tags = 0
        version, at = self._link(frame.linktype, data, frame.wirelen > len(data))
        if version == _IP4:
            return self._ipv4(frame, at)
        return self._ipv6(frame, at)

    @staticmethod
    def _short(cut: bool, what: str) -> _Skip:
        # a header that ends early: the snaplen's doing if the frame was cut, else a lie
        return _Skip("truncated" if cut else "malformed", what + (" (snaplen cut)" if cut else ""))

    def _link(self, linktype: int, data: bytes, cut: bool) -> tuple[int, int]:
        """Return (IP version, offset of the IP header) or raise _Skip."""
        n = len(data)
        if linktype == LT_ETHERNET:
            if n < 14:
                raise self._short(cut, f"Ethernet header cut at {n} bytes")
            return self._ethertype(data, _U16(data, 12)[0], 14, cut)
        if linktype in (LT_RAW, LT_RAW_OLD12, LT_RAW_OLD14, LT_IPV4, LT_IPV6):
            if n < 1:
                raise _Skip("malformed", "empty raw IP frame")
            version = data[0] >> 4
            if version not in (4, 6) or (linktype == LT_IPV4 and version != 4) or (
                    linktype == LT_IPV6 and version != 6):
                raise _Skip("malformed", f"IP version {version} on raw link type {linktype}")
            return version, 0
        if linktype == LT_SLL:
            if n < 16:
                raise self._short(cut, f"Linux cooked header cut at {n} bytes")
            return self._ethertype(data, _U16(data, 14)[0], 16, cut)
        if linktype == LT_SLL2:
            if n < 20:
                raise self._short(cut, f"Linux cooked v2 header cut at {n} bytes")
            return self._ethertype(data, _U16(data, 0)[0], 20, cut)
        if linktype in (LT_NULL, LT_LOOP):
            if n < 4:
                raise self._short(cut, f"loopback header cut at {n} bytes")
            family = _U32_LE(data, 0)[0]
            if family > 0xFFFF:  # written in the other byte order (LOOP is big-endian)
                family = int.from_bytes(data[:4], "big")
            if family == 2:
                return _IP4, 4
            if family in AF_INET6_VALUES:
                return _IP6, 4
            raise _Skip("non_ip", f"loopback address family {family}")
        if linktype in (LT_PPP, LT_PPP_HDLC):
            return self._ppp(data, 0, cut)
        if linktype == LT_CHDLC:
            if n < 4:
                raise self._short(cut, f"Cisco HDLC header cut at {n} bytes")
            return self._ethertype(data, _U16(data, 2)[0], 4, cut)
        if linktype == LT_NFLOG:
            return self._nflog(data, cut)
        raise _Skip("unsupported_link", f"link type {linktype}")

    def _ethertype(self, data: bytes, etype: int, at: int, cut: bool) -> tuple[int, int]:
        """Follow an EtherType (and tags, MPLS, PPPoE, LLC/SNAP) to an IP header."""
        n = len(data)
        for _ in range(MAX_LINK_HEADERS):
            if etype == 0x0800:
                return _IP4, at
            if etype == 0x86DD:
                return _IP6, at
            if etype in VLAN_TYPES:  # 802.1Q / 802.1ad / old QinQ: TCI, then the next type
                if at + 4 > n:
                    raise self._short(cut, "VLAN tag cut")
                if self._tags < 2:
                    self._vlan = (self._vlan << 12) | (_U16(data, at)[0] & 0xFFF)
                    self._tags += 1
                etype = _U16(data, at + 2)[0]
                at += 4
            elif etype == 0x8903:  # Cisco FabricPath: FTag/TTL, then a whole inner frame
                if at + 16 > n:
                    raise self._short(cut, "FabricPath header cut")
                etype = _U16(data, at + 14)[0]
                at += 16
            elif etype in (0x8847, 0x8848):  # MPLS: labels up to bottom-of-stack
                return self._mpls(data, at, cut)
            elif etype == 0x8864:  # PPPoE session: 6-byte header, then PPP protocol
                if at + 6 > n:
                    raise self._short(cut, "PPPoE header cut")
                self._end = min(self._end, at + 6 + _U16(data, at + 4)[0])
                return self._ppp(data, at + 6, cut)
            elif etype < 0x0600:  # 802.3 length; only LLC/SNAP carries an EtherType
                if data[at:at + 3] == b"\xaa\xaa\x03" and at + 8 <= n:
                    etype = _U16(data, at + 6)[0]
                    at += 8
                else:
                    raise _Skip("non_ip", "802.3/LLC frame")
            else:
                raise _Skip("non_ip", f"EtherType 0x{etype:04x}")
        raise _Skip("malformed", f"more than {MAX_LINK_HEADERS} link headers")

    def _mpls(self, data: bytes, at: int, cut: bool) -> tuple[int, int]:
        n = len(data)
        for _ in range(MAX_LINK_HEADERS):
            if at + 4 > n:
                raise self._short(cut, "MPLS label stack cut")
            bottom = data[at + 2] & 1
            at += 4
            if bottom:
                break
        else:
            raise _Skip("malformed", f"more than {MAX_LINK_HEADERS} MPLS labels")
        if at >= n:
            raise self._short(cut, "MPLS payload missing")
        nibble = data[at] >> 4
        if nibble == 4:
            return _IP4, at
        if nibble == 6:
            return _IP6, at
        if nibble == 0 and at + 18 <= n:  # pseudowire control word, then an Ethernet frame
            return self._ethertype(data, _U16(data, at + 16)[0], at + 18, cut)
        raise _Skip("non_ip", "MPLS payload is not IP")

    def _ppp(self, data: bytes, at: int, cut: bool) -> tuple[int, int]:
        n = len(data)
        if data[at:at + 2] == b"\xff\x03":  # HDLC address/control
            at += 2
        if at >= n:
            raise self._short(cut, "PPP header cut")
        if data[at] & 1:  # protocol field compression: one byte
            proto = data[at]
            at += 1
        else:
            if at + 2 > n:
                raise self._short(cut, "PPP header cut")
            proto = _U16(data, at)[0]
            at += 2
        if proto == 0x21:
            return _IP4, at
        if proto == 0x57:
            return _IP6, at
        raise _Skip("non_ip", f"PPP protocol 0x{proto:04x}")

    def _nflog(self, data: bytes, cut: bool) -> tuple[int, int]:
        n = len(data)
        if n < 4:
            raise self._short(cut, "NFLOG header cut")
        family = data[0]
        at = 4
        # TLVs in host byte order (little-endian on every capture host we meet)
        for _ in range(64):
            if at + 4 > n:
                break
            length, tlv_type = _U16_LE(data, at)[0], _U16_LE(data, at + 2)[0]
            if length < 4:
                raise _Skip("malformed", f"NFLOG TLV length {length}")
            if tlv_type & 0x7FFF == 9:  # NFULA_PAYLOAD: the IP packet
                if family == 2:
                    return _IP4, at + 4
                if family == 10:
                    return _IP6, at + 4
                raise _Skip("non_ip", f"NFLOG family {family}")
            at += (length + 3) & ~3
        raise _Skip("non_ip", "NFLOG record without a payload")

    def _ipv4(self, frame: Frame, o: int) -> Segment:
        data = frame.data
        n = len(data)
        cut = frame.wirelen > n
        if o + 20 > n:
            raise self._short(cut, f"IPv4 header cut at {n - o} bytes")
        vihl = data[o]
        if vihl >> 4 != 4:
            raise _Skip("malformed", f"IP version {vihl >> 4} where IPv4 was announced")
        ihl = (vihl & 15) * 4
        if ihl < 20:
            raise _Skip("malformed", f"IPv4 header length {ihl} < 20")
        total, _id, frag, _ttl, proto = struct.unpack_from("!HHHBB", data, o + 2)
        wire = self._end - o  # datagram bytes the frame can hold on the wire
        tso = total == 0
        claimed = wire if tso else total  # (Zeek believes the header)
        if tso:
            total = wire
        elif total < ihl:
            raise _Skip("malformed", f"IPv4 total length {total} < header length {ihl}")
        elif total > wire:
            # the header claims more than the frame had on the wire: like tshark, believe
            # the frame (a middlebox trimmed it, or PPPoE's length is the honest one)
            total = wire
        if o + ihl > n:
            raise self._short(cut, f"IPv4 header length {ihl} beyond the captured bytes")
        if frag & 0x3FFF:  # more-fragments flag or an offset: first fragments too
            raise _Skip("fragment", f"IPv4 fragment (offset {(frag & 0x1FFF) * 8})")
        if self.verify_checksums and not tso and _ones_sum(data[o:o + ihl]) != 0xFFFF:
            raise _Skip("bad_checksum", "IPv4 header checksum")
        src, dst = data[o + 12:o + 16], data[o + 16:o + 20]
        return self._transport(frame, proto, o + ihl, o + total, src, dst, tso, o + claimed)

    def _ipv6(self, frame: Frame, o: int) -> Segment:
        data = frame.data
        n = len(data)
        cut = frame.wirelen > n
        if o + 40 > n:
            raise self._short(cut, f"IPv6 header cut at {n - o} bytes")
        if data[o] >> 4 != 6:
            raise _Skip("malformed", f"IP version {data[o] >> 4} where IPv6 was announced")
        plen = _U16(data, o + 4)[0]
        nh = data[o + 6]
        wire = self._end - o
        jumbo = plen == 0
        # a payload length beyond the frame is clipped to it, as for IPv4
        end = o + wire if jumbo else o + min(40 + plen, wire)
        claimed_end = o + wire if jumbo else o + 40 + plen
        src, dst = data[o + 8:o + 24], data[o + 24:o + 40]
        at = o + 40
        for _ in range(MAX_IP_HEADERS):
            if nh in (0, 43, 60, 51):  # hop-by-hop, routing, destination options, AH
                if at + 2 > n:
                    raise self._short(cut, f"IPv6 extension header {nh} cut")
                size = (data[at + 1] + 2) * 4 if nh == 51 else (data[at + 1] + 1) * 8
                nh = data[at]
                at += size
            elif nh == 44:  # fragment header
                if at + 8 > n:
                    raise self._short(cut, "IPv6 fragment header cut")
                offset_flags = _U16(data, at + 2)[0]
                if offset_flags & 0xFFF9:  # offset or more-fragments: a real fragment
                    raise _Skip("fragment", f"IPv6 fragment (offset {offset_flags & 0xFFF8})")
                nh = data[at]  # atomic fragment (RFC 6946): the packet is whole
                at += 8
            else:
                break
            if at > end:
                raise _Skip("malformed", "IPv6 extension headers run past the payload length")
        else:
            raise _Skip("malformed", f"more than {MAX_IP_HEADERS} IPv6 extension headers")
        return self._transport(frame, nh, at, end, src, dst, jumbo, claimed_end)

    def _transport(self, frame: Frame, proto: int, t: int, end: int, src: bytes, dst: bytes,
                   tso: bool, claimed_end: int) -> Segment:
        """`end`: where the datagram ends as we take it; `claimed_end`: as its IP length
        says (beyond `end` when a PPPoE length or the frame's end cut it shorter)."""
        data = frame.data
        if proto == 51 and len(src) == 4:  # IPv4 AH: step over it (bounded: AH in AH is rare)
            for _ in range(MAX_IP_HEADERS):
                if t + 2 > len(data):
                    raise self._short(frame.wirelen > len(data), "AH header cut")
                proto, size = data[t], (data[t + 1] + 2) * 4
                t += size
                if t > end:
                    raise _Skip("malformed", "AH header runs past the datagram")
                if proto != 51:
                    break
            else:
                raise _Skip("malformed", "AH chain too long")
        if proto == 6:
            return self._tcp(frame, t, end, src, dst, tso, claimed_end)
        if proto in TUNNEL_PROTOCOLS:
            raise _Skip("tunnel", TUNNEL_PROTOCOLS[proto])
        if proto == 17 and t + 4 <= len(data):
            sport, dport = struct.unpack_from("!HH", data, t)
            # VXLAN is recognised by its destination port; GTP-U and Teredo by either
            name = TUNNEL_UDP_PORTS.get(dport) or (TUNNEL_UDP_PORTS.get(sport)
                                                   if sport != 4789 else None)
            if name:
                raise _Skip("tunnel", f"{name} (UDP {sport} -> {dport})")
        raise _Skip("other_ip", f"IP protocol {proto}")

    def _tcp(self, frame: Frame, t: int, end: int, src: bytes, dst: bytes,
             tso: bool, claimed_end: int) -> Segment:
        data = frame.data
        n = len(data)
        cut = frame.wirelen > n
        if end - t < 20:
            raise _Skip("malformed", f"IP length leaves {end - t} bytes for the TCP header")
        if t + 20 > n:
            raise self._short(cut, f"TCP header cut at {n - t} bytes")
        sport, dport, seq, ack, off, flags, win, _csum, _urp = _TCP.unpack_from(data, t)
        thl = (off >> 4) * 4
        if thl < 20:
            raise _Skip("malformed", f"TCP data offset {off >> 4} < 5")
        if t + thl > end:
            raise _Skip("malformed", f"TCP header length {thl} beyond the IP payload ({end - t})")
        if t + thl > n:
            raise self._short(cut, f"TCP header length {thl} beyond the captured bytes")
        if self.verify_checksums and not tso and end <= n:
            length = end - t
            if len(src) == 4:
                pseudo = src + dst + struct.pack("!BBH", 0, 6, length)
            else:
                pseudo = src + dst + struct.pack("!I3xB", length, 6)
            total = _ones_sum(pseudo) + _ones_sum(data[t:end])
            total = (total & 0xFFFF) + (total >> 16)
            if total != 0xFFFF:
                raise _Skip("bad_checksum", f"TCP checksum 0x{_csum:04x}")
        return Segment(frame.number, frame.ts, src, dst, sport, dport, seq, ack,
                       flags | (off & 1) << 8, win, end - t - thl,
                       data[t + 20:t + thl] if thl > 20 else b"", self._vlan,
                       claimed_end > n, claimed_end - end)
