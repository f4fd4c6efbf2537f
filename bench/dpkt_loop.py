"""The plain dpkt baseline: decode Ethernet/IPv4/TCP of every frame and count flows.

    python3 bench/dpkt_loop.py CAPTURE

No state machine, no findings: the least a Python tool built on dpkt does per packet.
"""

from __future__ import annotations

import sys

import dpkt


def count_flows(path: str) -> tuple[int, int, int]:
    flows: dict[tuple[bytes, int, bytes, int], int] = {}
    packets = tcp = 0
    with open(path, "rb") as f:
        for _ts, buf in dpkt.pcap.Reader(f):
            packets += 1
            try:
                eth = dpkt.ethernet.Ethernet(buf)
            except (dpkt.UnpackError, IndexError):
                continue
            ip = eth.data
            if not isinstance(ip, dpkt.ip.IP):
                continue
            seg = ip.data
            if not isinstance(seg, dpkt.tcp.TCP):
                continue
            tcp += 1
            a, b = (ip.src, seg.sport), (ip.dst, seg.dport)
            key = (ip.src, seg.sport, ip.dst, seg.dport) if a <= b else (
                ip.dst, seg.dport, ip.src, seg.sport)
            flows[key] = flows.get(key, 0) + 1
    return packets, tcp, len(flows)


if __name__ == "__main__":
    packets, tcp, n = count_flows(sys.argv[1])
    print(f"{packets} packets, {tcp} TCP, {n} flows")
