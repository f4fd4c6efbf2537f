"""Fuzzing the decoder with header fields that lie: every frame is built here, so the
expected class comes from the header rules (RFC 791 IHL, RFC 9293 data offset, RFC 8200
extension headers), not from the decoder.

IPv4 IHL < 5 or beyond the datagram, TCP data offset < 5 or beyond the IP payload, IPv6
extension header chains that repeat or overrun, VLAN/MPLS stacks deeper than any network
uses: each frame lands in exactly one class and never raises.
"""

from __future__ import annotations

import os
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from fuzz.captures import ether, ipv4, ipv4_addr, ipv6, tcp_header
from tcpanalyze.capture import Frame
from tcpanalyze.decode import MAX_IP_HEADERS, MAX_LINK_HEADERS, Decoder
from tcpanalyze.segment import ACK, PSH

SCALE = int(os.environ.get("TCPANALYZE_FUZZ_SCALE", "1"))
A, B = ipv4_addr(1), ipv4_addr(2)
A6, B6 = bytes(15) + b"\x01", bytes(15) + b"\x02"


def fuzz_settings(examples: int) -> settings:
    return settings(max_examples=examples * SCALE, derandomize=True, database=None,
                    deadline=None)


def decode_one(data: bytes, linktype: int = 1, wirelen: int | None = None,
               verify: bool = False) -> tuple[str, object]:
    decoder = Decoder(verify_checksums=verify)
    frame = Frame(1, 1_700_000_000.0, linktype, len(data) if wirelen is None else wirelen,
                  data)
    segment = decoder.decode(frame)
    classes = [name for name, count in decoder.counts.items() if count]
    assert len(classes) == 1 and decoder.counts[classes[0]] == 1, decoder.counts
    assert (segment is not None) == (classes[0] == "tcp")
    return classes[0], segment


@fuzz_settings(500)
@given(ihl=st.one_of(st.none(), st.integers(0, 15)), doff=st.one_of(st.integers(5, 15),
                                                                   st.integers(0, 15)),
       payload=st.integers(0, 64), opt_words=st.integers(0, 10),
       total_delta=st.one_of(st.just(0), st.integers(-70, 70)),
       verify=st.sampled_from([False, False, False, True]))
def test_ipv4_ihl_and_tcp_data_offset(ihl: int | None, doff: int, payload: int,
                                      opt_words: int, total_delta: int, verify: bool) -> None:
    ip_options = b"\x01" * (4 * opt_words)  # NOPs: what the frame really carries
    if ihl is None:
        ihl = 5 + opt_words  # the honest header length
    tcp = tcp_header(40000, 80, 1, 1, ACK | PSH, offset=doff) + b"\0" * 40 + b"d" * payload
    honest_total = 20 + len(ip_options) + len(tcp)
    total = max(1, honest_total + total_delta)  # 0 would mean a TSO super-packet
    frame = ether(ipv4(A, B, tcp, ihl=ihl, total=total, options=ip_options))
    cls, segment = decode_one(frame, verify=verify)
    if verify and cls == "bad_checksum":
        return  # the checksums are zero; verification may set the frame aside, nothing more
    captured = len(frame) - 14
    total = min(total, captured)  # a length beyond the frame is clipped (as tshark does)
    header = ihl * 4
    if ihl < 5 or total < header:
        assert cls == "malformed"
        return
    tcp_room = total - header
    if tcp_room < 20:
        assert cls == "malformed"
        return
    # the TCP header starts after the IHL the header claims, wherever that falls
    tcp_start = 14 + header
    real_doff = frame[tcp_start + 12] >> 4
    if real_doff < 5 or real_doff * 4 > tcp_room:
        assert cls == "malformed", (cls, real_doff, tcp_room)
        return
    assert cls == "tcp"
    assert segment is not None
    assert segment.payload_len == tcp_room - real_doff * 4  # type: ignore[attr-defined]


EXT_TYPES = st.sampled_from([0, 43, 60, 51, 44])


@fuzz_settings(400)
@given(chain=st.lists(st.tuples(EXT_TYPES, st.integers(0, 6)), max_size=20),
       plen_delta=st.one_of(st.just(0), st.integers(-64, 64)),
       cut=st.one_of(st.just(0), st.integers(0, 200)))
def test_ipv6_extension_chains(chain: list[tuple[int, int]], plen_delta: int,
                               cut: int) -> None:
    """Chains of hop-by-hop/routing/destination/AH/atomic-fragment headers, repeating
    (a "loop" of the same header type), longer than the decoder walks, or running past
    the payload length or the captured bytes."""
    tcp = tcp_header(40000, 80, 1, 1, ACK) + b"p" * 10
    ext = bytearray()
    kinds = [k for k, _ in chain]
    for i, (kind, units) in enumerate(chain):
        nxt = kinds[i + 1] if i + 1 < len(kinds) else 6
        if kind == 44:  # fragment header: 8 bytes, offset 0 and M=0 (atomic)
            ext += struct.pack("!BBHI", nxt, 0, 0, 1)
        elif kind == 51:  # AH: length in 4-byte units minus 2
            ext += bytes((nxt, units)) + b"\0" * ((units + 2) * 4 - 2)
        else:
            ext += bytes((nxt, units)) + b"\0" * ((units + 1) * 8 - 2)
    first = kinds[0] if kinds else 6
    honest = len(ext) + len(tcp)
    plen = max(1, honest + plen_delta)
    packet = ipv6(A6, B6, tcp, nh=first, ext=bytes(ext), plen=plen)
    frame = ether(packet, 0x86DD)
    wirelen = len(frame)
    frame = frame[:max(14, len(frame) - cut)]
    cls, segment = decode_one(frame, wirelen=wirelen)
    assert cls in ("tcp", "malformed", "truncated")
    if cls == "tcp":
        assert len(chain) <= MAX_IP_HEADERS
        assert plen >= len(ext) + 20
        assert segment is not None
        assert segment.payload_len == min(plen, honest) - len(ext) - 20  # type: ignore
    if len(chain) > MAX_IP_HEADERS and cut == 0:
        assert cls == "malformed"


@fuzz_settings(200)
@given(tags=st.integers(0, 40), labels=st.integers(0, 40), mpls=st.booleans())
def test_link_header_stacks_are_bounded(tags: int, labels: int, mpls: bool) -> None:
    inner = ipv4(A, B, tcp_header(40000, 80, 1, 1, ACK))
    stack = b""
    for _ in range(tags):
        stack += b"\0\x01" + struct.pack("!H", 0x8100)  # TCI, then the next type
    if mpls:
        labels = max(labels, 1)
        for i in range(labels):
            stack += struct.pack("!I", (16 << 12) | (1 << 8 if i == labels - 1 else 0) | 64)
    # the first type word sits in the Ethernet header; each tag names the next type
    first = 0x8100 if tags else (0x8847 if mpls else 0x0800)
    body = stack[2:] if tags else stack
    last_type = 0x8847 if mpls else 0x0800
    if tags:
        body = bytearray(stack)
        for i in range(tags):
            nxt = 0x8100 if i + 1 < tags else last_type
            struct.pack_into("!H", body, 4 * i + 2, nxt)
        body = bytes(body)
    frame = ether(body + inner, first)
    cls, _ = decode_one(frame)
    too_deep = tags >= MAX_LINK_HEADERS or (mpls and labels > MAX_LINK_HEADERS)
    assert cls == ("malformed" if too_deep else "tcp")


@fuzz_settings(300)
@given(linktype=st.sampled_from([0, 1, 9, 12, 14, 50, 101, 104, 108, 113, 228, 229, 239,
                                 276, 147, 65535]),
       data=st.binary(max_size=120), wire_extra=st.integers(0, 3000))
def test_random_frames_on_every_link_type(linktype: int, data: bytes,
                                          wire_extra: int) -> None:
    cls, _ = decode_one(data, linktype, wirelen=len(data) + wire_extra)
    if linktype in (147, 65535):
        assert cls == "unsupported_link"
