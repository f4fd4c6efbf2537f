"""Streaming benchmark: millions of synthetic packets through a pipe into `tcpanalyze report -`.

Run by hand (not part of the test suite):

    python3 bench/stream_bench.py                      # 5.1 M packets, 1 M connections
    python3 bench/stream_bench.py --connections 20000  # a quick look
    python3 bench/stream_bench.py --write /tmp/x.pcap --connections 1000   # keep a file

The script writes a pcap (Ethernet, IPv4) to the stdin of `python3 -m tcpanalyze report
- --format ndjson` and samples the child's RSS (/proc/PID/status VmRSS) every 0.2 s; the
child's CPU time comes from wait4 (on a shared machine wall-clock packets/s understate it).
Nothing goes on a network: packets exist only in the pipe. Addresses are inside
10.80.0.0/16 (clients 10.80.0.0/17, SYN-flood sources 10.80.128.0/17, servers 10.80.255.x;
with --wide-flood the spoofed sources are drawn from 10.128.0.0/9).

Traffic, in capture time (not wall time):
  * ordinary connections, one starting every 1/rate s: handshake, a request and a reply,
    FIN/ACK both ways (9 packets); every 1000th leaks CLOSE_WAIT (the server never sends
    its FIN) and every 1000th+500 is reset by the server;
  * a random-source SYN flood against 10.80.255.1:80 in the middle third of the run:
    one SYN and one SYN-ACK per spoofed source/port (the server answers with SYN cookies,
    no SYN-ACK retransmissions), at `--flood-rate` SYNs per second.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ETH = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
_IP = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBBHHH")
_REC = struct.Struct("<IIII")
SYN, FIN, RST, PSH, ACK = 0x02, 0x01, 0x04, 0x08, 0x10

SERVER = bytes([10, 80, 255, 1])


def pcap_header() -> bytes:
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)


def packet(ts: float, src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int,
           flags: int, payload: int = 0) -> bytes:
    """One pcap record: Ethernet + IPv4 + TCP, payload bytes left out of the capture
    (snaplen-cut frames keep their size through the IP total length)."""
    tcp = _TCP.pack(sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags,
                    65535, 0, 0)
    ip = _IP.pack(0x45, 0, 40 + payload, 0, 0x4000, 64, 6, 0, src, dst)
    frame = ETH + ip + tcp
    sec = int(ts)
    return _REC.pack(sec, int((ts - sec) * 1_000_000), len(frame), len(frame) + payload) + frame


def client_addr(i: int) -> bytes:
    # 10.80.0.0/17: 32766 clients, each with many source ports
    n = i % 32766 + 1
    return bytes([10, 80, n >> 8, n & 0xFF])


def normal_connection(i: int, t: float, step: float) -> list[tuple[float, bytes]]:
    c, s = client_addr(i), bytes([10, 80, 255, 2 + i % 4])
    cp, sp = 1024 + (i // 32766) % 60000, 443
    ci, si = (i * 7919) & 0xFFFFFFFF, (i * 104729) & 0xFFFFFFFF
    p = []
    times = [t + k * step for k in range(9)]
    p.append((times[0], packet(times[0], c, s, cp, sp, ci, 0, SYN)))
    p.append((times[1], packet(times[1], s, c, sp, cp, si, ci + 1, SYN | ACK)))
    p.append((times[2], packet(times[2], c, s, cp, sp, ci + 1, si + 1, ACK)))
    p.append((times[3], packet(times[3], c, s, cp, sp, ci + 1, si + 1, PSH | ACK, 200)))
    p.append((times[4], packet(times[4], s, c, sp, cp, si + 1, ci + 201, PSH | ACK, 1000)))
    if i % 1000 == 500:  # the server resets instead of closing
        p.append((times[5], packet(times[5], s, c, sp, cp, si + 1001, ci + 201, RST | ACK)))
        return p
    p.append((times[5], packet(times[5], c, s, cp, sp, ci + 201, si + 1001, FIN | ACK)))
    p.append((times[6], packet(times[6], s, c, sp, cp, si + 1001, ci + 202, ACK)))
    if i % 1000 == 0:  # CLOSE_WAIT leak: the server never closes
        return p
    p.append((times[7], packet(times[7], s, c, sp, cp, si + 1001, ci + 202, FIN | ACK)))
    p.append((times[8], packet(times[8], c, s, cp, sp, ci + 202, si + 1002, ACK)))
    return p


def flood_syn(rng: random.Random, t: float, wide: bool = False) -> list[tuple[float, bytes]]:
    if wide:  # 10.128.0.0/9: 8 million addresses, nearly every SYN from a new source
        src = bytes([10, 128 + rng.randrange(128), rng.randrange(256), rng.randrange(1, 255)])
    else:
        src = bytes([10, 80, 128 + rng.randrange(127), rng.randrange(1, 255)])
    sport, isn, cookie = rng.randrange(1024, 65535), rng.getrandbits(32), rng.getrandbits(32)
    return [(t, packet(t, src, SERVER, sport, 80, isn, 0, SYN)),
            (t + 0.0001, packet(t + 0.0001, SERVER, src, 80, sport, cookie, isn + 1,
                                SYN | ACK))]


def generate(connections: int, flood_share: float, rate: float, flood_rate: float,
             seed: int = 1, wide: bool = False) -> Iterator[bytes]:
    """pcap bytes in chunks; packets in capture-time order."""
    rng = random.Random(seed)
    yield pcap_header()
    n_flood = int(connections * flood_share)
    n_normal = connections - n_flood
    duration = n_normal / rate
    flood_start = 1_700_000_000.0 + duration / 3
    t0 = 1_700_000_000.0
    step = 0.1 / rate  # a connection's packets fit before the next one starts
    flood_gap = 1.0 / flood_rate
    next_flood = flood_start
    flooded = 0
    out: list[bytes] = []
    for i in range(n_normal):
        t = t0 + i / rate
        pending = []
        while flooded < n_flood and next_flood < t + 9 * step:
            pending.extend(flood_syn(rng, next_flood, wide))
            flooded += 1
            next_flood += flood_gap
        pkts = normal_connection(i, t, step)
        if pending:
            pkts = sorted(pkts + pending, key=lambda p: p[0])
        out.extend(p for _, p in pkts)
        if len(out) >= 4096:
            yield b"".join(out)
            out = []
    while flooded < n_flood:  # the flood outlasts the ordinary traffic
        out.extend(p for _, p in flood_syn(rng, next_flood, wide))
        flooded += 1
        next_flood += flood_gap
        if len(out) >= 4096:
            yield b"".join(out)
            out = []
    if out:
        yield b"".join(out)


def packets_in(connections: int, flood_share: float) -> int:
    n_flood = int(connections * flood_share)
    n_normal = connections - n_flood
    resets = sum(1 for i in range(n_normal) if i % 1000 == 500)
    leaks = sum(1 for i in range(n_normal) if i % 1000 == 0)
    return n_normal * 9 - resets * 3 - leaks * 2 + n_flood * 2


def rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in kB."""
    rss = hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=1_000_000)
    ap.add_argument("--flood-share", type=float, default=0.55,
                    help="share of the connections that are spoofed flood SYNs")
    ap.add_argument("--rate", type=float, default=500.0,
                    help="ordinary connections per second of capture time")
    ap.add_argument("--flood-rate", type=float, default=5000.0,
                    help="flood SYNs per second of capture time")
    ap.add_argument("--wide-flood", action="store_true",
                    help="spoofed sources from 10.128.0.0/9 instead of 10.80.128.0/17 (a "
                    "new source for nearly every SYN)")
    ap.add_argument("--write", metavar="PCAP", help="write the capture to a file and stop")
    ap.add_argument("--json", metavar="FILE", help="write the measured figures as JSON")
    ap.add_argument("extra", nargs="*", help="extra arguments for tcpanalyze report")
    a = ap.parse_args()
    chunks = generate(a.connections, a.flood_share, a.rate, a.flood_rate, wide=a.wide_flood)
    if a.write:
        with open(a.write, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
        return
    expected = packets_in(a.connections, a.flood_share)
    repo = Path(__file__).resolve().parent.parent
    argv = [sys.executable, "-m", "tcpanalyze", "report", "--format", "ndjson", *a.extra, "-"]
    child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             cwd=repo, env=dict(os.environ, PYTHONPATH=str(repo)))
    assert child.stdin is not None and child.stdout is not None
    samples: list[tuple[float, int, int]] = []  # (wall s, bytes written, RSS kB)
    written = 0
    start = time.monotonic()
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            try:
                rss, _ = rss_kb(child.pid)
            except (OSError, ValueError):
                return
            samples.append((time.monotonic() - start, written, rss))
            stop.wait(0.2)

    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.extend(child.stdout), daemon=True)
    sampler = threading.Thread(target=sample, daemon=True)
    reader.start()
    sampler.start()
    gen_time = 0.0
    t = time.monotonic()
    for chunk in chunks:
        gen_time += time.monotonic() - t
        child.stdin.write(chunk)
        written += len(chunk)
        t = time.monotonic()
    child.stdin.close()
    _, hwm = rss_kb(child.pid)
    # wait4: the child's own CPU time (the machine is shared: wall time is not its speed)
    _, status, usage = os.wait4(child.pid, 0)
    code = child.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    wall = time.monotonic() - start
    stop.set()
    reader.join()
    summary = json.loads(lines[-1]) if lines else {}
    kinds = summary.get("by_kind", {})
    samples = [s for s in samples if s[2]]  # a last read as the child exits finds no RSS
    rss = [r for _, _, r in samples]
    # "flat after warm-up": RSS over the second half of the bytes vs the first quarter's end
    quarter = [r for _, w, r in samples if w <= written / 4]
    second_half = [r for _, w, r in samples if w >= written / 2]
    half = [r for _, w, r in samples if w <= written / 2]
    figures = {
        "connections": a.connections, "packets_expected": expected,
        "packets_read": summary.get("packets"), "exit_code": code,
        "wall_s": round(wall, 1), "packets_per_s": round(expected / wall),
        "cpu_s": round(cpu, 1), "packets_per_cpu_s": round(expected / cpu),
        "generator_s": round(gen_time, 1),
        "peak_rss_mb": round(max(hwm, max(rss, default=0)) / 1024, 1),
        "rss_at_quarter_mb": round(max(quarter, default=0) / 1024, 1),
        "rss_at_half_mb": round(max(half, default=0) / 1024, 1),
        "rss_second_half_min_max_mb": [round(min(second_half, default=0) / 1024, 1),
                                       round(max(second_half, default=0) / 1024, 1)],
        "findings": summary.get("findings"), "by_kind": kinds,
        "finding_lines": len(lines) - 1,
    }
    print(json.dumps(figures, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps({"figures": figures, "samples": samples}))


if __name__ == "__main__":
    main()
