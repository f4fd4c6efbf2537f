"""Capture real TCP connections carried in GRE and VXLAN tunnels (run by hand, as root).

    python3 lab/make_tunnel_samples.py [--out sample_pcaps]

Two namespaces joined by one veth (the underlay, 10.78.0.1 -- 10.78.0.2):

    tca-tun-c (client)  ua 10.78.0.1/24 ==== ub 10.78.0.2/24  tca-tun-s (server)
      vx42: VXLAN id 42 dstport 4789   10.78.2.1/24 fd78:2::1/64 <-> 10.78.2.2 fd78:2::2
      gre0: GRE (see below)            10.78.1.1/24 fd78:1::1/64 <-> 10.78.1.2 fd78:1::2

Through each tunnel run three connections, one after the other: an IPv4 one closed
normally (client closes first, so it ends in TIME_WAIT), an IPv4 one the server resets
(SO_LINGER 0), and an IPv6 one closed normally. tcpdump on the client's underlay veth
writes sample_pcaps/tunnel-<kind>.pcap, so the capture holds outer IPv4 + GRE/VXLAN +
inner IP/TCP; `ss` in both namespaces at capture stop goes into tunnel-<kind>.truth.json.

The lab kernel has no ip_gre module (only vxlan), so GRE is done in user space, as
RFC 2784 frames it: each namespace runs a relay (`gre-relay` below) that moves packets
between a TUN device and a raw IP-protocol-47 socket, adding/removing the 4-byte GRE
header. The TCP inside is the kernels' own; only the encapsulation is ours. With a
kernel that has ip_gre, `--kernel-gre` uses `ip link add gre0 type gre` instead.

Everything stays inside the two namespaces; they are deleted (and the relays and
endpoints killed) on the way out, whatever happened.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import select
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lab.netns import Capture, LabError, parse_ss, run, state_of

CLIENT_NS = "tca-tun-c"
SERVER_NS = "tca-tun-s"
UNDERLAY = ("10.78.0.1", "10.78.0.2")
TUNNEL_NETS = {
    # kind: (device, IPv4 /24 prefix, IPv6 /64 prefix)
    "gre": ("gre0", "10.78.1", "fd78:1::"),
    "vxlan": ("vx42", "10.78.2", "fd78:2::"),
}
TUNNEL_MTU = 1400  # leaves room for the outer headers on the 1500-byte veth
LIFETIME = 30.0  # seconds any helper process lives at most
REQUEST_BYTES = 300
REPLY_BYTES = 5000

# (family, how it ends, client port, server port)
CONNECTIONS = (
    (4, "normal", 41001, 8001),
    (4, "reset", 41002, 8002),
    (6, "normal", 41003, 8003),
)

SCRIPT = str(Path(__file__).resolve())


def ns_argv(ns: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


# -- the in-namespace helpers (subcommands) -----------------------------------------------

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IPPROTO_GRE = 47
GRE_PROTO = {4: 0x0800, 6: 0x86DD}


def gre_relay(tun: str, local: str, remote: str, lifetime: float) -> None:
    """Move packets between TUN device `tun` and GRE (IP protocol 47) to `remote`."""
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", tun.encode(), IFF_TUN | IFF_NO_PI))
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_GRE)
    raw.bind((local, 0))
    print("READY", flush=True)
    deadline = time.monotonic() + lifetime
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd, raw], [], [], 0.2)
        if fd in ready:
            packet = os.read(fd, 65535)
            proto = GRE_PROTO.get(packet[0] >> 4) if packet else None
            if proto is not None:
                raw.sendto(struct.pack("!HH", 0, proto) + packet, (remote, 0))
        if raw in ready:
            data, addr = raw.recvfrom(65535)
            if addr[0] != remote:
                continue
            gre = data[(data[0] & 0x0F) * 4 :]  # a raw IPv4 socket hands us the IP header
            if len(gre) < 4:
                continue
            flags = struct.unpack("!H", gre[:2])[0]
            header = 4 + 4 * sum(bool(flags & bit) for bit in (0x8000, 0x2000, 0x1000))
            if gre[header:]:
                os.write(fd, gre[header:])


def serve(addr: str, port: int, mode: str, lifetime: float) -> None:
    """Accept one connection; read the request, reply; then close or reset."""
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((addr, port))
    listener.listen(1)
    listener.settimeout(lifetime)
    print("READY", flush=True)
    conn, _ = listener.accept()
    listener.close()
    conn.settimeout(lifetime)
    got = 0
    while got < REQUEST_BYTES:
        chunk = conn.recv(REQUEST_BYTES - got)
        if not chunk:
            break
        got += len(chunk)
    if mode == "reset":
        # linger 0: close() sends RST instead of FIN (the "abortive release")
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
        print("OK reset", flush=True)
        return
    conn.sendall(b"r" * REPLY_BYTES)
    while conn.recv(4096):  # wait for the client's FIN: the client closes first
        pass
    conn.close()
    print("OK closed", flush=True)


def connect(addr: str, port: int, local: str, local_port: int, lifetime: float) -> None:
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((local, local_port))
    sock.settimeout(lifetime)
    sock.connect((addr, port))
    sock.sendall(b"q" * REQUEST_BYTES)
    got = 0
    try:
        while got < REPLY_BYTES:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += len(chunk)
    except ConnectionResetError:
        print("OK reset-by-peer", flush=True)
        sock.close()
        return
    sock.close()
    print(f"OK got {got}", flush=True)


# -- the lab -------------------------------------------------------------------------------

def addresses(kind: str, family: int) -> tuple[str, str]:
    _, net4, net6 = TUNNEL_NETS[kind]
    if family == 4:
        return f"{net4}.1", f"{net4}.2"
    return f"{net6}1", f"{net6}2"


def endpoint_text(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def wait_line(proc: subprocess.Popen[str], prefix: str, timeout: float = 10.0) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith(prefix):
        proc.kill()
        raise LabError(f"{' '.join(proc.args)}: expected {prefix}, got {line!r}")  # type: ignore[arg-type]
    return line.strip()


class TunnelLab:
    def __init__(self, kind: str, kernel_gre: bool = False) -> None:
        self.kind = kind
        self.kernel_gre = kernel_gre
        self.procs: list[subprocess.Popen[str]] = []

    def spawn(self, ns: str, args: list[str]) -> subprocess.Popen[str]:
        proc = subprocess.Popen(ns_argv(ns, [sys.executable, SCRIPT, *args]),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.procs.append(proc)
        return proc

    def up(self) -> None:
        for ns in (CLIENT_NS, SERVER_NS):
            run(["ip", "netns", "add", ns])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
        run(["ip", "-n", CLIENT_NS, "link", "add", "ua", "type", "veth",
             "peer", "name", "ub", "netns", SERVER_NS])
        device, net4, net6 = TUNNEL_NETS[self.kind]
        sides = ((CLIENT_NS, "ua", UNDERLAY[0], UNDERLAY[1], "1"),
                 (SERVER_NS, "ub", UNDERLAY[1], UNDERLAY[0], "2"))
        for ns, veth, local, remote, host in sides:
            run(["ip", "-n", ns, "addr", "add", f"{local}/24", "dev", veth])
            run(["ip", "-n", ns, "link", "set", veth, "up"])
            if self.kind == "vxlan":
                run(["ip", "-n", ns, "link", "add", device, "type", "vxlan", "id", "42",
                     "dstport", "4789", "local", local, "remote", remote, "dev", veth])
            elif self.kernel_gre:
                run(["ip", "-n", ns, "link", "add", device, "type", "gre",
                     "local", local, "remote", remote])
            else:
                run(["ip", "-n", ns, "tuntap", "add", "mode", "tun", "name", device])
            run(["ip", "-n", ns, "link", "set", device, "mtu", str(TUNNEL_MTU), "up"])
            # segment in the stack, as on a real wire: with offloads on, the underlay
            # capture holds 5000-byte super-segments (GSO) that no network carries
            for dev in (device, veth):
                run(ns_argv(ns, ["ethtool", "-K", dev, "tso", "off", "gso", "off"]),
                    check=False)
            run(["ip", "-n", ns, "addr", "add", f"{net4}.{host}/24", "dev", device])
            run(["ip", "-n", ns, "-6", "addr", "add", f"{net6}{host}/64", "dev", device,
                 "nodad"])
            if self.kind == "gre" and not self.kernel_gre:
                relay = self.spawn(ns, ["gre-relay", "--tun", device, "--local", local,
                                        "--remote", remote])
                wait_line(relay, "READY")

    def down(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        for ns in (CLIENT_NS, SERVER_NS):
            run(["ip", "netns", "del", ns], check=False)

    def connection(self, family: int, mode: str, cport: int, sport: int) -> dict[str, str]:
        client_addr, server_addr = addresses(self.kind, family)
        server = self.spawn(SERVER_NS, ["serve", "--addr", server_addr, "--port", str(sport),
                                        "--mode", mode])
        wait_line(server, "READY")
        client = self.spawn(CLIENT_NS, ["connect", "--addr", server_addr, "--port",
                                        str(sport), "--local", client_addr,
                                        "--local-port", str(cport)])
        client_said = wait_line(client, "OK", timeout=20)
        server_said = wait_line(server, "OK", timeout=20)
        client.wait(10)
        server.wait(10)
        return {"client": endpoint_text(client_addr, cport),
                "server": endpoint_text(server_addr, sport),
                "mode": mode, "client_said": client_said, "server_said": server_said}

    def ss(self, ns: str) -> tuple[str, list[dict[str, str]]]:
        text = run(ns_argv(ns, ["ss", "-tanoi"]))
        return text, parse_ss(text)


def make_sample(kind: str, out_dir: Path, kernel_gre: bool) -> Path:
    pcap = out_dir / f"tunnel-{kind}.pcap"
    lab = TunnelLab(kind, kernel_gre)
    try:
        lab.up()
        # --immediate-mode: without it packets still in tcpdump's ring buffer at SIGINT
        # are lost (a short run can end with an empty file)
        tcpdump = ["tcpdump", "-i", "ua", "-n", "-s", "0", "-U", "--immediate-mode",
                   "-w", str(pcap)]
        capture = Capture(ns_argv(CLIENT_NS, tcpdump), str(pcap), CLIENT_NS, "ua")
        try:
            done = [lab.connection(*spec) for spec in CONNECTIONS]
            time.sleep(0.5)  # let the last ACKs cross before the states are read
            client_text, client_rows = lab.ss(CLIENT_NS)
            server_text, server_rows = lab.ss(SERVER_NS)
        finally:
            capture.stop()
    finally:
        lab.down()
    connections = []
    findings = []
    for item in done:
        client, server = item["client"], item["server"]
        connections.append({
            "client": client,
            "server": server,
            "client_state": state_of(client_rows, client, server),
            "server_state": state_of(server_rows, server, client),
            "ends": "server RST (SO_LINGER 0)" if item["mode"] == "reset"
                    else "client FIN first, then server FIN",
        })
        if item["mode"] == "reset":
            findings.append({"kind": "rst_teardown", "subject": f"{client} -> {server}",
                             "server": server})
    encapsulation = ("GRE (RFC 2784, 4-byte header, user-space relay)" if kind == "gre"
                     and not kernel_gre else "GRE (kernel ip_gre)" if kind == "gre"
                     else "VXLAN VNI 42, UDP port 4789, inner Ethernet")
    truth = {
        "scenario": f"tunnel-{kind}",
        "description": (
            f"Three TCP connections inside {encapsulation} between two namespaces, captured "
            f"on the underlay veth ({UNDERLAY[0]} <-> {UNDERLAY[1]}): IPv4 closed normally "
            "(client closes first), IPv4 reset by the server after the request, IPv6 closed "
            "normally. Every TCP segment is tunnelled; a decoder that does not open the "
            "tunnel sees no TCP at all."),
        "capture": pcap.name,
        "encapsulation": encapsulation,
        "underlay": list(UNDERLAY),
        "connections": connections,
        "expected_findings": findings,
        "ss": {"client": {"namespace": CLIENT_NS, "text": client_text, "rows": client_rows},
               "server": {"namespace": SERVER_NS, "text": server_text, "rows": server_rows}},
        "made_by": "lab/make_tunnel_samples.py",
    }
    truth_path = out_dir / f"tunnel-{kind}.truth.json"
    truth_path.write_text(json.dumps(truth, indent=2) + "\n")
    return pcap


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command")
    make = sub.add_parser("make", help="build the samples (the default)")
    make.add_argument("--out", default=str(Path(SCRIPT).parent.parent / "sample_pcaps"))
    make.add_argument("--kind", choices=sorted(TUNNEL_NETS), action="append")
    make.add_argument("--kernel-gre", action="store_true")
    relay = sub.add_parser("gre-relay")
    relay.add_argument("--tun", required=True)
    relay.add_argument("--local", required=True)
    relay.add_argument("--remote", required=True)
    srv = sub.add_parser("serve")
    srv.add_argument("--addr", required=True)
    srv.add_argument("--port", type=int, required=True)
    srv.add_argument("--mode", choices=("normal", "reset"), default="normal")
    cli = sub.add_parser("connect")
    cli.add_argument("--addr", required=True)
    cli.add_argument("--port", type=int, required=True)
    cli.add_argument("--local", required=True)
    cli.add_argument("--local-port", type=int, required=True)
    args = parser.parse_args(argv if argv is not None else (sys.argv[1:] or ["make"]))
    if args.command == "gre-relay":
        gre_relay(args.tun, args.local, args.remote, LIFETIME)
    elif args.command == "serve":
        serve(args.addr, args.port, args.mode, LIFETIME)
    elif args.command == "connect":
        connect(args.addr, args.port, args.local, args.local_port, LIFETIME)
    else:
        if os.geteuid() != 0:
            print("needs root (network namespaces)", file=sys.stderr)
            return 2
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for kind in args.kind or sorted(TUNNEL_NETS):
            path = make_sample(kind, out, args.kernel_gre)
            print(f"wrote {path} and {path.with_suffix('').name}.truth.json")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
