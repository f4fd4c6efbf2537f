"""Traffic programs for the bench capture, run inside the bench namespaces.

    python3 bench/traffic.py serve --addr A --ports 9000-9007 --bulk-port 9100 --lifetime S
    python3 bench/traffic.py clients --addr A --ports 9000-9007 --count N --concurrency C
    python3 bench/traffic.py bulk --addr A --port 9100 --count N --mbytes M [--slow-reader]

Short connections ask "GET size mode" and the server answers `size` bytes, then:
mode 'n' closes normally, 'r' resets (SO_LINGER 0), 'h' holds the socket open until
its lifetime ends (the client's FIN leaves it in CLOSE_WAIT), 'd' sends the reply slowly
in pieces. Bulk connections receive `mbytes` MiB; --slow-reader pauses reading so the
receive window closes (zero-window episodes). Every program stops after --lifetime
seconds whatever it is doing, and every loop is bounded by a count.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import socket
import struct
import sys
import time

CHUNK = bytes(range(256)) * 256  # 64 KiB


def _ports(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


async def _serve_short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       held: list[asyncio.StreamWriter]) -> None:
    try:
        line = await asyncio.wait_for(reader.readline(), 10)
        words = line.split()
        size, mode = (int(words[1]), words[2].decode()) if len(words) >= 3 else (100, "n")
        size = min(size, 1 << 22)
        if mode == "d":  # dribble: many small segments
            for _ in range(min(size // 100, 50)):
                writer.write(CHUNK[:100])
                await writer.drain()
                await asyncio.sleep(0.001)
        else:
            while size > 0:
                writer.write(CHUNK[:min(size, len(CHUNK))])
                size -= len(CHUNK)
            await writer.drain()
        if mode == "r":
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return
        if mode == "h":
            held.append(writer)  # never closed: the peer's FIN leaves it in CLOSE_WAIT
            return
        writer.close()
    except (TimeoutError, OSError, ValueError, IndexError):
        writer.transport.abort()


async def _serve_bulk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        line = await asyncio.wait_for(reader.readline(), 10)
        mbytes = min(int(line.split()[1]), 4096)
        for _ in range(mbytes * 16):
            writer.write(CHUNK)
            await writer.drain()
        writer.close()
    except (TimeoutError, OSError, ValueError, IndexError):
        writer.transport.abort()


async def serve(args: argparse.Namespace) -> None:
    held: list[asyncio.StreamWriter] = []
    servers = []
    for port in _ports(args.ports):
        servers.append(await asyncio.start_server(
            lambda r, w: _serve_short(r, w, held), args.addr, port, backlog=4096))
    servers.append(await asyncio.start_server(_serve_bulk, args.addr, args.bulk_port,
                                              backlog=64))
    print("READY", flush=True)
    await asyncio.sleep(args.lifetime)


async def _one_client(addr: str, port: int, size: int, mode: str, timeout: float) -> str:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(addr, port), timeout)
    except (TimeoutError, OSError):
        return "fail"
    try:
        writer.write(f"GET {size} {mode}\n".encode())
        await writer.drain()
        if mode == "h":  # read the reply, then close our side; the server never will
            got = 0
            while got < size:
                data = await asyncio.wait_for(reader.read(65536), timeout)
                if not data:
                    break
                got += len(data)
        else:
            while await asyncio.wait_for(reader.read(65536), timeout):
                pass
        writer.close()
        return "ok"
    except (TimeoutError, OSError):
        writer.transport.abort()
        return "err"


async def clients(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    ports = _ports(args.ports)
    sem = asyncio.Semaphore(args.concurrency)
    results: dict[str, int] = {}
    deadline = time.monotonic() + args.lifetime - 5

    async def run(i: int) -> None:
        async with sem:
            if time.monotonic() > deadline:
                results["skipped"] = results.get("skipped", 0) + 1
                return
            r = rng.random()
            # mostly small request/response, some larger replies, a few anomalies
            size = rng.choice((0, 120, 512, 1400, 3000, 8000, 20000)) if r < 0.97 else 60000
            mode = "n"
            if i % 500 == 7:
                mode = "r"
            elif i % 2000 == 11:
                mode = "h"
            elif i % 300 == 5:
                mode = "d"
            port = ports[i % len(ports)]
            if i % 1000 == 3 and args.closed_port:
                port = args.closed_port  # nothing listens: refused with RST
            elif i % 3000 == 13 and args.blackhole_port:
                port = args.blackhole_port  # the router drops the SYNs: no answer
            out = await _one_client(args.addr, port, size, mode, 5.0)
            results[out] = results.get(out, 0) + 1

    await asyncio.gather(*(run(i) for i in range(args.count)))
    print("DONE", " ".join(f"{k}={v}" for k, v in sorted(results.items())), flush=True)


def bulk(args: argparse.Namespace) -> None:
    deadline = time.monotonic() + args.lifetime - 2
    for _ in range(args.count):
        if time.monotonic() > deadline:
            break
        sock = socket.create_connection((args.addr, args.port), timeout=10)
        if args.slow_reader:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(f"GET {args.mbytes}\n".encode())
        got = 0
        pauses = 0
        while time.monotonic() < deadline:
            data = sock.recv(1 << 20)
            if not data:
                break
            got += len(data)
            if args.slow_reader and pauses < 5 and got > (pauses + 1) * (1 << 22):
                pauses += 1
                time.sleep(0.5)  # stop reading: the window fills and closes
        sock.close()
        print("BULK", got, flush=True)
    print("DONE", flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--addr", required=True)
    s.add_argument("--ports", default="9000-9007")
    s.add_argument("--bulk-port", type=int, default=9100)
    c = sub.add_parser("clients")
    c.add_argument("--addr", required=True)
    c.add_argument("--ports", default="9000-9007")
    c.add_argument("--count", type=int, default=30000)
    c.add_argument("--concurrency", type=int, default=200)
    c.add_argument("--closed-port", type=int, default=0)
    c.add_argument("--blackhole-port", type=int, default=0)
    c.add_argument("--seed", type=int, default=1)
    b = sub.add_parser("bulk")
    b.add_argument("--addr", required=True)
    b.add_argument("--port", type=int, default=9100)
    b.add_argument("--count", type=int, default=4)
    b.add_argument("--mbytes", type=int, default=200)
    b.add_argument("--slow-reader", action="store_true")
    for q in (s, c, b):
        q.add_argument("--lifetime", type=float, default=240.0)
    args = p.parse_args()
    signal.signal(signal.SIGALRM, lambda *_: sys.exit(3))
    signal.alarm(int(args.lifetime) + 5)  # hard stop whatever happens
    if args.cmd == "serve":
        asyncio.run(serve(args))
    elif args.cmd == "clients":
        asyncio.run(clients(args))
    else:
        bulk(args)


if __name__ == "__main__":
    main()
