"""pcap written again as pcapng, for tests of the pcapng readers (columns, --jobs)."""

from __future__ import annotations

import struct

__all__ = ["as_pcapng"]


def as_pcapng(pcap: bytes, tsresol: int, offset: int = 0, simple_every: int = 0,
              interleave: int = 0) -> bytes:
    """A little-endian pcap (microseconds) written again as pcapng: one section, one
    interface with if_tsresol `tsresol` (10**-tsresol s) and if_tsoffset `offset`, one
    Enhanced Packet Block a frame, the time in the new units; with `simple_every`, every
    such frame as a Simple Packet Block instead (no time: readers keep the last one).
    With `interleave`, two interfaces as dumpcap writes them: frames take turns between
    them, and of each `interleave` frames, those of interface 0 come first in the file
    (out of time order)."""
    linktype = struct.unpack_from("<I", pcap, 20)[0]

    def block(btype: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        return struct.pack("<II", btype, len(body) + 12) + body + struct.pack("<I",
                                                                              len(body) + 12)

    options = struct.pack("<HHB3x", 9, 1, tsresol) + struct.pack("<HHq", 14, 8, offset) + \
        struct.pack("<HH", 0, 0)
    out = [block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)),
           block(1, struct.pack("<HHI", linktype, 0, 65535) + options)]
    if interleave:
        out.append(out[-1])
    group: list[list[bytes]] = [[], []]
    pos = 24
    while pos < len(pcap):
        sec, usec, caplen, wirelen = struct.unpack_from("<IIII", pcap, pos)
        units = (sec * 1_000_000 + usec) * 10 ** tsresol // 1_000_000
        data = pcap[pos + 16:pos + 16 + caplen]
        if simple_every and len(out) % simple_every == 0:
            out.append(block(3, struct.pack("<I", wirelen) + data))
        elif interleave:
            k = (pos // 7) % 2  # (record offsets: about evenly spread)
            group[k].append(block(6, struct.pack("<IIIII", k, units >> 32, units & 0xFFFFFFFF,
                                                 caplen, wirelen) + data))
            if len(group[0]) + len(group[1]) >= interleave:
                out += group[0] + group[1]
                group = [[], []]
        else:
            out.append(block(6, struct.pack("<IIIII", 0, units >> 32, units & 0xFFFFFFFF,
                                            caplen, wirelen) + data))
        pos += 16 + caplen
    return b"".join(out + group[0] + group[1])
