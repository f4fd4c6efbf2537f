"""Small TCP programs for the namespace lab, run as `ip netns exec NS python3 lab/endpoint.py`.

Subcommands:
  listen  --addr A --port P [--rcvbuf N] [--backlog N] [--accept K] [--do SCRIPT] [--stdin]
          listen; print READY; accept K connections, each runs SCRIPT in its own thread.
  connect --addr A --port P [--local-addr A] [--local-port P] [--sndbuf N] [--timeout S]
          [--do SCRIPT] [--stdin]
          connect (SO_REUSEADDR, optional bind); print CONNECTED, then run SCRIPT.
  rst     --src A --sport P --dst A --dport P --seq N [--ack N]      (scapy, raw socket)
  craft   --src A --dst A --seg SPORT:DPORT:FLAGS ...   odd flag combinations (scapy)
  synflood --dst A --dport P --spoof-net CIDR --count N --rate R --sources K  (scapy)
  scan    --addr A --ports LO-HI [--timeout S]   connect() probes, one after the other
  reconnect --addr A --port P --count N [--local-port-base B]
          connect() to one port N times, one after the other, each closed at once

SCRIPT is ';'-separated commands; with --stdin further commands are read from stdin, one
a line, and each answers 'OK ...' or 'ERR ...' on stdout (lab/netns.Program.do uses that):
  send N | recv N | recv-eof | echo | close | shutdown | linger0 | sleep S |
  keepalive IDLE INTVL CNT | fill | try-send N | hold
  - echo:     read until EOF, sending everything back
  - fill:     non-blocking writes until the send buffer is full (peer's window closed)
  - try-send: send and report the error instead of failing (writes after a reset)
  - hold:     do nothing until --lifetime ends (a connection that is never closed)
Every program exits by itself after --lifetime seconds (SIGALRM), default 30.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import random
import signal
import socket
import struct
import sys
import threading
import time

PAYLOAD = bytes(range(32, 127)) * 700


def say(*words: object) -> None:
    print(*words, flush=True)


def family_of(addr: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def run_command(sock: socket.socket, line: str, lock: threading.Lock | None = None) -> str:
    """One script command on a connected socket; returns the OK text."""
    words = line.split()
    cmd, args = words[0], words[1:]
    if cmd == "send":
        n = int(args[0])
        data = (PAYLOAD * (n // len(PAYLOAD) + 1))[:n]
        sock.sendall(data)
        return f"sent {n}"
    if cmd == "recv":
        n, got = int(args[0]), 0
        while got < n:
            chunk = sock.recv(min(65536, n - got))
            if not chunk:
                break
            got += len(chunk)
        return f"received {got}"
    if cmd == "recv-eof":
        got = 0
        while chunk := sock.recv(65536):
            got += len(chunk)
        return f"eof after {got}"
    if cmd == "echo":
        got = 0
        while chunk := sock.recv(65536):
            got += len(chunk)
            sock.sendall(chunk)
        return f"echoed {got}"
    if cmd == "close":
        sock.close()
        return "closed"
    if cmd == "shutdown":
        sock.shutdown(socket.SHUT_WR)
        return "shutdown"
    if cmd == "linger0":
        # close() now sends RST instead of FIN
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        return "linger 0"
    if cmd == "sleep":
        time.sleep(float(args[0]))
        return "slept"
    if cmd == "keepalive":
        idle, intvl, cnt = (int(a) for a in args)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, intvl)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, cnt)
        return "keepalive on"
    if cmd == "fill":
        sock.setblocking(False)
        total, idle_since = 0, time.monotonic()
        # keep writing until nothing more fits for 0.5 s (the peer's window is zero)
        while time.monotonic() - idle_since < 0.5:
            try:
                total += sock.send(PAYLOAD[:4096])
                idle_since = time.monotonic()
            except BlockingIOError:
                time.sleep(0.01)
        sock.setblocking(True)
        return f"filled {total}"
    if cmd == "try-send":
        try:
            sock.sendall(PAYLOAD[: int(args[0])])
            return "sent"
        except OSError as e:
            return f"error {errno.errorcode.get(e.errno or 0, e.errno)}"
    if cmd == "hold":
        while True:
            time.sleep(1)
    raise ValueError(f"unknown command {cmd!r}")


def run_script(sock: socket.socket, script: str, use_stdin: bool, tag: str = "") -> None:
    commands = [c.strip() for c in script.split(";") if c.strip()]

    def one(line: str) -> None:
        try:
            say("OK", tag + run_command(sock, line))
        except OSError as e:
            say("ERR", tag + line, errno.errorcode.get(e.errno or 0, str(e.errno)), e)

    for line in commands:
        one(line)
    if use_stdin:
        for line in sys.stdin:
            if line.strip():
                one(line.strip())


def cmd_listen(a: argparse.Namespace) -> None:
    fam = family_of(a.addr)
    srv = socket.socket(fam, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if a.rcvbuf:
        # set before listen() so accepted sockets inherit it (and a small window scale)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, a.rcvbuf)
    srv.bind((a.addr, a.port))
    srv.listen(a.backlog)
    say("READY")
    threads = []
    for _i in range(a.accept):
        conn, peer = srv.accept()
        say("ACCEPTED", peer[0], peer[1])
        tag = f"{peer[1]} " if a.accept > 1 else ""
        t = threading.Thread(target=run_script, args=(conn, a.do, a.stdin, tag), daemon=True)
        t.start()
        threads.append((t, conn))
    for t, _ in threads:
        t.join()
    say("DONE")
    if a.hold:
        # keep the listener and unclosed connections alive until the lifetime ends
        while True:
            time.sleep(1)


def cmd_connect(a: argparse.Namespace) -> None:
    fam = family_of(a.addr)
    sock = socket.socket(fam, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if a.sndbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, a.sndbuf)
    if a.local_port or a.local_addr:
        sock.bind((a.local_addr or ("::" if fam == socket.AF_INET6 else "0.0.0.0"),
                   a.local_port))
    sock.settimeout(a.timeout)
    say("CONNECTING")
    try:
        sock.connect((a.addr, a.port))
    except OSError as e:
        say("ERR connect", errno.errorcode.get(e.errno or 0, str(e)) if e.errno else str(e))
        sys.exit(2)
    sock.settimeout(None)
    say("CONNECTED", *sock.getsockname()[:2])
    run_script(sock, a.do, a.stdin)
    say("DONE")
    if a.hold:
        while True:
            time.sleep(1)


def cmd_rst(a: argparse.Namespace) -> None:
    from scapy.all import IP, TCP, IPv6, raw  # lab-only dependency

    ip = IPv6(src=a.src, dst=a.dst) if ":" in a.dst else IP(src=a.src, dst=a.dst)
    flags = "RA" if a.ack is not None else "R"
    seg = TCP(sport=a.sport, dport=a.dport, flags=flags, seq=a.seq, ack=a.ack or 0, window=0)
    send_raw([raw(ip / seg)], a.dst, rate=0)
    say("OK rst sent")


def cmd_craft(a: argparse.Namespace) -> None:
    """Segments with chosen flag combinations, 0.05 s apart: --seg SPORT:DPORT:FLAGS,
    FLAGS in scapy letters (S F R P A U E C), '' for none."""
    from scapy.all import IP, TCP, raw

    rng = random.Random(a.seed)
    packets = []
    for spec in a.seg[:100]:
        sport, dport, flags = spec.split(":", 2)
        packets.append(raw(IP(src=a.src, dst=a.dst)
                           / TCP(sport=int(sport), dport=int(dport), flags=flags,
                                 seq=rng.randrange(2**32), window=1024)))
    send_raw(packets, a.dst, rate=20)
    say(f"OK sent {len(packets)}")


def send_raw(packets: list[bytes], dst: str, rate: float) -> None:
    """Send finished IP packets on a raw socket, at most `rate` per second (0: at once)."""
    fam = family_of(dst)
    s = socket.socket(fam, socket.SOCK_RAW, socket.IPPROTO_RAW)
    start = time.monotonic()
    for i, pkt in enumerate(packets):
        if rate:
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        s.sendto(pkt, (dst, 0))
    s.close()


def cmd_synflood(a: argparse.Namespace) -> None:
    from scapy.all import IP, TCP, raw

    net = ipaddress.ip_network(a.spoof_net)
    hosts = list(net.hosts())
    rng = random.Random(a.seed)
    sources = [str(h) for h in rng.sample(hosts, min(a.sources, len(hosts)))]
    count = min(a.count, 5000)  # bounded whatever the caller asks
    packets = [
        raw(IP(src=sources[i % len(sources)], dst=a.dst)
            / TCP(sport=rng.randrange(1024, 65535), dport=a.dport, flags="S",
                  seq=rng.randrange(2**32), window=64240,
                  options=[("MSS", 1460), ("SAckOK", b""), ("WScale", 7)]))
        for i in range(count)
    ]
    # the orchestrator lists these as connections whose client has no kernel
    say("SYNS", json.dumps(sorted({(str(IP(p).src), IP(p)[TCP].sport) for p in packets})))
    say("SENDING")
    t0 = time.monotonic()
    send_raw(packets, a.dst, rate=min(a.rate, 2000))
    say(f"OK sent {count} SYNs from {len(sources)} sources in {time.monotonic() - t0:.2f}s")


def cmd_scan(a: argparse.Namespace) -> None:
    lo, hi = (int(p) for p in a.ports.split("-"))
    open_ports = []
    for port in range(lo, min(hi, lo + 1000) + 1):
        s = socket.socket(family_of(a.addr), socket.SOCK_STREAM)
        s.settimeout(a.timeout)
        if a.local_port_base:
            # known source ports let the truth file name every probe's connection
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("", a.local_port_base + port - lo))
        try:
            s.connect((a.addr, port))
            open_ports.append(port)
        except OSError:
            pass
        finally:
            s.close()
    say("OK open", *open_ports)


def cmd_reconnect(a: argparse.Namespace) -> None:
    connected = 0
    for i in range(a.count):
        s = socket.socket(family_of(a.addr), socket.SOCK_STREAM)
        s.settimeout(a.timeout)
        if a.local_port_base:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("", a.local_port_base + i))
        try:
            s.connect((a.addr, a.port))
            connected += 1
        except OSError:
            pass
        finally:
            s.close()
    say("OK connected", connected)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lifetime", type=float, default=30.0)
    sub = p.add_subparsers(dest="cmd", required=True)

    lp = sub.add_parser("listen")
    lp.add_argument("--addr", required=True)
    lp.add_argument("--port", type=int, required=True)
    lp.add_argument("--rcvbuf", type=int, default=0)
    lp.add_argument("--backlog", type=int, default=128)
    lp.add_argument("--accept", type=int, default=1)
    lp.add_argument("--do", default="")
    lp.add_argument("--stdin", action="store_true")
    lp.add_argument("--hold", action="store_true", help="stay alive after the scripts")
    lp.set_defaults(func=cmd_listen)

    cp = sub.add_parser("connect")
    cp.add_argument("--addr", required=True)
    cp.add_argument("--port", type=int, required=True)
    cp.add_argument("--local-addr", default="")
    cp.add_argument("--local-port", type=int, default=0)
    cp.add_argument("--sndbuf", type=int, default=0)
    cp.add_argument("--timeout", type=float, default=10.0)
    cp.add_argument("--do", default="")
    cp.add_argument("--stdin", action="store_true")
    cp.add_argument("--hold", action="store_true")
    cp.set_defaults(func=cmd_connect)

    rp = sub.add_parser("rst")
    rp.add_argument("--src", required=True)
    rp.add_argument("--sport", type=int, required=True)
    rp.add_argument("--dst", required=True)
    rp.add_argument("--dport", type=int, required=True)
    rp.add_argument("--seq", type=int, required=True)
    rp.add_argument("--ack", type=int, default=None)
    rp.set_defaults(func=cmd_rst)

    xp = sub.add_parser("craft")
    xp.add_argument("--src", required=True)
    xp.add_argument("--dst", required=True)
    xp.add_argument("--seg", action="append", required=True)
    xp.add_argument("--seed", type=int, default=11)
    xp.set_defaults(func=cmd_craft)

    fp = sub.add_parser("synflood")
    fp.add_argument("--dst", required=True)
    fp.add_argument("--dport", type=int, required=True)
    fp.add_argument("--spoof-net", required=True)
    fp.add_argument("--count", type=int, default=1000)
    fp.add_argument("--rate", type=float, default=500.0)
    fp.add_argument("--sources", type=int, default=250)
    fp.add_argument("--seed", type=int, default=7)
    fp.set_defaults(func=cmd_synflood)

    sp = sub.add_parser("scan")
    sp.add_argument("--addr", required=True)
    sp.add_argument("--ports", required=True)
    sp.add_argument("--timeout", type=float, default=0.3)
    sp.add_argument("--local-port-base", type=int, default=0)
    sp.set_defaults(func=cmd_scan)

    op = sub.add_parser("reconnect")
    op.add_argument("--addr", required=True)
    op.add_argument("--port", type=int, required=True)
    op.add_argument("--count", type=int, required=True)
    op.add_argument("--timeout", type=float, default=3.0)
    op.add_argument("--local-port-base", type=int, default=0)
    op.set_defaults(func=cmd_reconnect)

    a = p.parse_args(argv)
    # bounded lifetime: the default SIGALRM action ends the process
    signal.setitimer(signal.ITIMER_REAL, a.lifetime)
    a.func(a)


if __name__ == "__main__":
    main()
