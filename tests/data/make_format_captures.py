#!/usr/bin/env python3
"""Make the small format-specific captures in tests/data (run as root; needs ip, tcpdump, dumpcap).

Two network namespaces (tca-rd-a, tca-rd-b) joined by a veth pair, addresses 10.79.0.0/16 and
fd79::/16 only. Namespace A talks to B while tcpdump/dumpcap capture in A:

  one IPv4 TCP connection with IPv4 options (4 NOP/EOL bytes, so IHL 6),
  one IPv6 TCP connection with a hop-by-hop and a destination-options header,
  each: 200 bytes up, 200 bytes back, FIN both ways;
  one small UDP datagram, and one 2000-byte UDP datagram each over IPv4 and IPv6
  (fragmented at MTU 1500: 2 IPv4 fragments, 2 IPv6 fragments; no listener, so an
  ICMP port unreachable may follow).

Captures written (all of the same traffic):
  eth-nano.pcap       tcpdump -i veth --time-stamp-precision nano   (Ethernet, ns pcap)
  eth-snap110.pcap    tcpdump -s 110: TCP headers whole, payload cut
  eth-snap60.pcap     tcpdump -s 60: cut inside the TCP header (or IPv6 extension headers)
  sll.pcap            tcpdump -i any -y LINUX_SLL                    (Linux cooked v1, 113)
  sll2.pcap           tcpdump -i any -y LINUX_SLL2                   (Linux cooked v2, 276)
  multi.pcapng        dumpcap -i veth -i any                         (two IDBs: 1 and 113)
  eth-nano.pcap.gz, multi.pcapng.gz   gzip copies
  crafted-2sections.pcapng  the packets of multi.pcapng rewritten by this script: section 1
      big-endian, interface 0 = Ethernet with if_tsresol 2^-20 and if_tsoffset 1000 s,
      interface 1 = SLL with if_tsresol 10^-9, packets as EPBs and OPBs; section 2
      little-endian with the interfaces in the other order (SLL first) and packets as EPBs,
      plus its SLL packets again as SPBs. Wrong interface bookkeeping shows as wrong link types.
  crafted.json        what the crafted file holds, for the tests (per frame: link type, source
                      frame in multi.pcapng, block kind, timestamp offset in seconds)
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent
NS_A, NS_B = "tca-rd-a", "tca-rd-b"
VETH_A, VETH_B = "tcard-a", "tcard-b"
A4, B4, A6, B6 = "10.79.0.1", "10.79.0.2", "fd79::1", "fd79::2"
PORT = 7979

SERVER = f"""
import socket, select, time
socks = []
for fam, addr in ((socket.AF_INET, '{B4}'), (socket.AF_INET6, '{B6}')):
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, {PORT})); s.listen(4); socks.append(s)
deadline = time.time() + 15
served = 0
while served < 2 and time.time() < deadline:
    ready, _, _ = select.select(socks, [], [], 1.0)
    for s in ready:
        c, _ = s.accept(); c.settimeout(5)
        data = b''
        while len(data) < 200:
            part = c.recv(4096)
            if not part: break
            data += part
        c.sendall(b'S' * 200)
        c.shutdown(socket.SHUT_WR)
        c.recv(10)
        c.close(); served += 1
"""

CLIENT = f"""
import socket, time
def talk(sock, addr):
    sock.settimeout(5)
    sock.connect(addr)
    sock.sendall(b'C' * 200)
    got = b''
    while len(got) < 200:
        part = sock.recv(4096)
        if not part: break
        got += part
    sock.shutdown(socket.SHUT_WR)
    sock.recv(10)
    sock.close()
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, bytes([1, 1, 1, 0]))
talk(s, ('{B4}', {PORT}))
time.sleep(0.2)
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
# PadN over 6 bytes: an 8-byte extension header that changes nothing
opts = bytes([0, 0, 1, 4, 0, 0, 0, 0])
s.setsockopt(socket.IPPROTO_IPV6, 54, opts)  # IPV6_HOPOPTS
s.setsockopt(socket.IPPROTO_IPV6, 59, opts)  # IPV6_DSTOPTS
talk(s, ('{B6}', {PORT}))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.sendto(b'udp', ('{B4}', {PORT + 1}))
# 2000-byte datagrams: fragmented at MTU 1500 (IPv4 MF/offset, IPv6 fragment header)
u.sendto(b'F' * 2000, ('{B4}', {PORT + 2}))
u6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
u6.sendto(b'F' * 2000, ('{B6}', {PORT + 2}))
"""


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(args, check=check, capture_output=True, timeout=30)


def in_ns(ns: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *args]


def setup() -> None:
    run("ip", "netns", "add", NS_A)
    run("ip", "netns", "add", NS_B)
    run("ip", "link", "add", VETH_A, "netns", NS_A, "type", "veth", "peer", "name", VETH_B,
        "netns", NS_B)
    for ns, dev, a4, a6 in ((NS_A, VETH_A, A4, A6), (NS_B, VETH_B, B4, B6)):
        run(*in_ns(ns, "ip", "link", "set", "lo", "up"))
        run(*in_ns(ns, "ip", "addr", "add", f"{a4}/24", "dev", dev))
        run(*in_ns(ns, "ip", "-6", "addr", "add", f"{a6}/64", "dev", dev, "nodad"))
        run(*in_ns(ns, "ip", "link", "set", dev, "up"))


def teardown() -> None:
    for ns in (NS_A, NS_B):
        run("ip", "netns", "del", ns, check=False)


def capture(workdir: Path) -> None:
    specs = {
        "eth-nano.pcap": ["tcpdump", "-i", VETH_A, "--time-stamp-precision", "nano"],
        "eth-snap110.pcap": ["tcpdump", "-i", VETH_A, "-s", "110"],
        "eth-snap60.pcap": ["tcpdump", "-i", VETH_A, "-s", "60"],
        "sll.pcap": ["tcpdump", "-i", "any", "-y", "LINUX_SLL"],
        "sll2.pcap": ["tcpdump", "-i", "any", "-y", "LINUX_SLL2"],
    }
    procs = []
    for name, cmd in specs.items():
        procs.append(subprocess.Popen(
            in_ns(NS_A, *cmd, "-U", "-n", "-w", str(workdir / name)),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    procs.append(subprocess.Popen(
        in_ns(NS_A, "dumpcap", "-q", "-i", VETH_A, "-i", "any", "-w",
              str(workdir / "multi.pcapng")), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL))
    try:
        time.sleep(2.0)  # let every capture attach before the first packet
        server = subprocess.Popen(in_ns(NS_B, sys.executable, "-c", SERVER))
        time.sleep(0.5)
        run(*in_ns(NS_A, sys.executable, "-c", CLIENT))
        server.wait(timeout=20)
        time.sleep(1.0)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


# -- a minimal pcapng reader/writer, independent of tcpanalyze.capture -------------------

def read_pcapng(path: Path) -> tuple[list[tuple[int, int]], list[tuple[int, int, int, bytes]]]:
    """Interfaces (linktype, snaplen) and EPBs (ifid, ts_ns, wirelen, data) of one section."""
    raw = path.read_bytes()
    assert raw[8:12] == b"\x4d\x3c\x2b\x1a", "expects a little-endian file from dumpcap"
    interfaces: list[tuple[int, int]] = []
    units: list[int] = []  # ticks per second, per interface
    packets: list[tuple[int, int, int, bytes]] = []
    pos = 0
    while pos < len(raw):
        btype, blen = struct.unpack_from("<II", raw, pos)
        if btype == 1:
            linktype, _r, snaplen = struct.unpack_from("<HHI", raw, pos + 8)
            interfaces.append((linktype, snaplen))
            units.append(1_000_000)
            opt = pos + 16
            while opt < pos + blen - 4:
                code, length = struct.unpack_from("<HH", raw, opt)
                if code == 0:
                    break
                if code == 9:
                    assert raw[opt + 4] < 0x80, "power-of-10 resolution expected"
                    units[-1] = 10 ** raw[opt + 4]
                opt += 4 + length + (-length % 4)
        elif btype == 6:
            ifid, tsh, tsl, caplen, wirelen = struct.unpack_from("<IIIII", raw, pos + 8)
            ticks = (tsh << 32) | tsl
            assert 1_000_000_000 % units[ifid] == 0
            packets.append((ifid, ticks * (1_000_000_000 // units[ifid]), wirelen,
                            raw[pos + 28:pos + 28 + caplen]))
        elif btype == 0x0A0D0D0A and pos:
            raise ValueError("expects one section")
        pos += blen
    return interfaces, packets


def block(endian: str, btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    blen = len(body) + 12
    return struct.pack(endian + "II", btype, blen) + body + struct.pack(endian + "I", blen)


def option(endian: str, code: int, value: bytes) -> bytes:
    return struct.pack(endian + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def shb(endian: str) -> bytes:
    return block(endian, 0x0A0D0D0A, struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def idb(endian: str, linktype: int, snaplen: int, tsresol: int | None = None,
        tsoffset: int | None = None) -> bytes:
    opts = b""
    if tsresol is not None:
        opts += option(endian, 9, bytes([tsresol]))
    if tsoffset is not None:
        opts += option(endian, 14, struct.pack(endian + "q", tsoffset))
    if opts:
        opts += option(endian, 0, b"")
    return block(endian, 1, struct.pack(endian + "HHI", linktype, 0, snaplen) + opts)


def epb(endian: str, ifid: int, ticks: int, wirelen: int, data: bytes) -> bytes:
    return block(endian, 6, struct.pack(endian + "IIIII", ifid, ticks >> 32, ticks & 0xFFFFFFFF,
                                        len(data), wirelen) + data)


def opb(endian: str, ifid: int, ticks: int, wirelen: int, data: bytes) -> bytes:
    return block(endian, 2, struct.pack(endian + "HHIIII", ifid, 0, ticks >> 32,
                                        ticks & 0xFFFFFFFF, len(data), wirelen) + data)


def spb(endian: str, wirelen: int, data: bytes) -> bytes:
    return block(endian, 3, struct.pack(endian + "I", wirelen) + data)


def craft(multi: Path, out: Path, manifest: Path) -> None:
    interfaces, packets = read_pcapng(multi)
    assert [lt for lt, _ in interfaces] == [1, 113], interfaces
    tsoffset = 1000
    frames: list[dict[str, object]] = []
    parts = [shb(">"), idb(">", 1, interfaces[0][1], tsresol=0x80 | 20, tsoffset=tsoffset),
             idb(">", 113, interfaces[1][1], tsresol=9)]
    # convert each time to the interface's own unit (2^-20 s is not exact: < 1 us off)
    for n, (ifid, ns, wirelen, data) in enumerate(packets, 1):
        # interface 0: readers add the tsoffset back, so store the time minus it
        ticks = ((ns - tsoffset * 1_000_000_000) << 20) // 1_000_000_000 if ifid == 0 else ns
        writer = opb if n % 3 == 0 else epb
        parts.append(writer(">", ifid, ticks, wirelen, data))
        frames.append({"source": n, "linktype": [1, 113][ifid], "section": 1,
                       "block": writer.__name__, "ts_ns": ns})
    # section 2: no if_tsresol, so the default microseconds
    parts += [shb("<"), idb("<", 113, interfaces[1][1]), idb("<", 1, interfaces[0][1])]
    for n, (ifid, ns, wirelen, data) in enumerate(packets, 1):
        parts.append(epb("<", 1 - ifid, ns // 1000, wirelen, data))
        frames.append({"source": n, "linktype": [1, 113][ifid], "section": 2,
                       "block": "epb", "ts_ns": ns // 1000 * 1000})
    for n, (ifid, _ns, wirelen, data) in enumerate(packets, 1):
        if ifid == 1:
            parts.append(spb("<", wirelen, data))
            frames.append({"source": n, "linktype": 113, "section": 2, "block": "spb",
                           "ts_ns": None})
    out.write_bytes(b"".join(parts))
    manifest.write_text(json.dumps({"tsoffset": tsoffset, "frames": frames}, indent=0) + "\n")


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces, packet capture)")
    work = OUT / "format-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    teardown()
    try:
        setup()
        capture(work)
    finally:
        teardown()
    names = ["eth-nano.pcap", "eth-snap110.pcap", "eth-snap60.pcap", "sll.pcap", "sll2.pcap",
             "multi.pcapng"]
    for name in names:
        shutil.copyfile(work / name, OUT / name)
    shutil.rmtree(work)
    for name in ("eth-nano.pcap", "multi.pcapng"):
        with gzip.GzipFile(OUT / (name + ".gz"), "wb", mtime=0) as gz:
            gz.write((OUT / name).read_bytes())
    craft(OUT / "multi.pcapng", OUT / "crafted-2sections.pcapng", OUT / "crafted.json")
    for name in [*names, "eth-nano.pcap.gz", "multi.pcapng.gz", "crafted-2sections.pcapng"]:
        print(f"{name}: {(OUT / name).stat().st_size} bytes")


if __name__ == "__main__":
    main()
