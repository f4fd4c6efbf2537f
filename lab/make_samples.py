"""Regenerate sample_pcaps/: real kernel TCP in network namespaces, captured with tcpdump.

Run by hand as root from the repository root:

    sudo python3 lab/make_samples.py                 # every scenario
    sudo python3 lab/make_samples.py --only zero-window,keepalive
    python3 lab/make_samples.py --list

Each scenario gets a fresh lab (lab/netns.py), captures on the router's server-facing
interface s0 unless it says otherwise, stops the capture, snapshots `ss -tanoi` in every
host at once, and writes NAME.pcap[ng] plus NAME.truth.json.  Connection states in the
truth file are the kernel's (ss; absent = CLOSED); expected findings are what the scenario
deliberately causes, never the analyser's output.
"""

from __future__ import annotations

import argparse
import json
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dpkt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from lab.netns import Capture, Lab, Program, state_of

OUT = Path(__file__).resolve().parent.parent / "sample_pcaps"
PORT = 8080
LINKTYPES = {1: "EN10MB", 113: "LINUX_SLL", 276: "LINUX_SLL2", 0: "NULL", 101: "RAW"}


@dataclass
class Conn:
    client: tuple[str, int]  # (role or literal address, port)
    server: tuple[str, int]
    family: int = 4
    # explicit states override ss: None = no kernel (spoofed), or a superseded incarnation
    states: tuple[str | None, str | None] | None = None
    note: str = ""


@dataclass
class Recording:
    """What one scenario did: filled in by the scenario function."""

    name: str
    lab: Lab
    out: Path
    ext: str = "pcap"
    description: str = ""
    where: str = "router, interface s0 (the link to the server)"
    connections: list[Conn] = field(default_factory=list)
    expected: list[dict[str, Any]] = field(default_factory=list)
    incidental: list[dict[str, Any]] = field(default_factory=list)
    capture: Capture | None = None
    ss: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    sysctls: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # more evidence for the truth file

    @property
    def path(self) -> Path:
        return self.out / f"{self.name}.{self.ext}"

    def start(self, role: str = "router", interface: str = "s0", **kw: Any) -> None:
        self.path.unlink(missing_ok=True)
        self.capture = self.lab.capture(role, interface, self.path, **kw)

    def start_pcapng(self, role: str, interfaces: list[tuple[str, str]]) -> None:
        self.path.unlink(missing_ok=True)
        self.capture = self.lab.capture_pcapng(role, interfaces, self.path)

    def stop(self) -> None:
        """End the capture, then at once take every host's ss snapshot."""
        assert self.capture is not None
        self.capture.stop()
        for role in self.lab.hosts:
            if role != "router" and role not in self.lab.removed:
                self.ss[role] = self.lab.ss(role)


SCENARIOS: dict[str, tuple[Callable[[Recording], None], tuple[str, ...]]] = {}


def scenario(name: str, extra: tuple[str, ...] = ()) -> Callable[
        [Callable[[Recording], None]], Callable[[Recording], None]]:
    def register(fn: Callable[[Recording], None]) -> Callable[[Recording], None]:
        SCENARIOS[name] = (fn, extra)
        return fn
    return register


# -- small building blocks ------------------------------------------------------------

def server(rec: Recording, do: str, port: int = PORT, family: int = 4, *extra: str) -> Program:
    addr = "0.0.0.0" if family == 4 else "::"
    prog = rec.lab.endpoint_program("server", ["listen", "--addr", addr, "--port", str(port),
                                               "--do", do, *extra], "server")
    prog.expect("READY")
    return prog


def client(rec: Recording, lport: int, do: str = "", port: int = PORT, family: int = 4,
           role: str = "client", *extra: str) -> Program:
    return rec.lab.endpoint_program(role, [
        "connect", "--addr", rec.lab.addr("server", family), "--port", str(port),
        "--local-port", str(lport), "--do", do, *extra], f"{role}:{lport}")


def finding(kind: str, rec: Recording, port: int = PORT, family: int = 4,
            **more: Any) -> dict[str, Any]:
    return {"kind": kind, "server": rec.lab.endpoint("server", port, family), **more}


def settle(seconds: float = 0.2) -> None:
    # let the last ACKs cross the router before the capture stops
    time.sleep(seconds)


def last_ack_from(path: Path, src: str, sport: int) -> int:
    """The acknowledgment number of the last segment src:sport sent (read from the
    capture being written; tcpdump -U flushes every packet)."""
    ack = None
    with path.open("rb") as f:
        for _ts, buf in dpkt.pcap.Reader(f):
            ip = dpkt.ethernet.Ethernet(buf).data
            if (isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.tcp.TCP)
                    and ip.src == bytes(map(int, src.split("."))) and ip.data.sport == sport):
                ack = ip.data.ack
    if ack is None:
        raise RuntimeError(f"no segment from {src}:{sport} in {path}")
    return ack


# -- scenarios --------------------------------------------------------------------------

def normal_exchange(rec: Recording, lport: int, family: int = 4) -> None:
    srv = server(rec, "echo; close", PORT, family)
    cli = client(rec, lport, "send 300; recv 300; close", PORT, family)
    cli.expect("DONE")
    srv.expect("DONE")
    settle()
    rec.connections.append(Conn(("client", lport), ("server", PORT), family))


@scenario("normal-client-close")
def normal_client_close(rec: Recording) -> None:
    rec.description = ("Client connects, sends 300 bytes, the server echoes them; the client "
                       "closes first (FIN), the server reads EOF and closes. Client ends in "
                       "TIME_WAIT, the server CLOSED.")
    rec.start()
    normal_exchange(rec, 40001)
    rec.stop()


@scenario("normal-server-close")
def normal_server_close(rec: Recording) -> None:
    rec.description = ("Client sends a 100-byte request; the server answers 5000 bytes and "
                       "closes first; the client reads to EOF and closes. Server ends in "
                       "TIME_WAIT, the client CLOSED.")
    rec.start()
    srv = server(rec, "recv 100; send 5000; close")
    cli = client(rec, 40002, "send 100; recv-eof; close")
    cli.expect("DONE")
    srv.expect("DONE")
    settle()
    rec.connections.append(Conn(("client", 40002), ("server", PORT)))
    rec.stop()


@scenario("several-normal")
def several_normal(rec: Recording) -> None:
    rec.description = ("Five ordinary connections in one capture, partly overlapping: three "
                       "to port 8080 where the client closes first (client TIME_WAIT) and two "
                       "to port 8081 where the server closes first (server TIME_WAIT).")
    rec.start()
    s1 = server(rec, "echo; close", 8080, 4, "--accept", "3")
    s2 = rec.lab.endpoint_program("server", ["listen", "--addr", "0.0.0.0", "--port", "8081",
                                             "--accept", "2", "--do",
                                             "recv 100; send 2000; close"], "server2")
    s2.expect("READY")
    progs = []
    for i, (lport, port) in enumerate([(40011, 8080), (40012, 8081), (40013, 8080),
                                       (40014, 8081), (40015, 8080)]):
        do = ("send 200; recv 200; sleep 0.3; close" if port == 8080
              else "send 100; recv-eof; close")
        progs.append(client(rec, lport, do, port))
        rec.connections.append(Conn(("client", lport), ("server", port)))
        time.sleep(0.1 * (i % 2))
    for p in progs:
        p.expect("DONE")
    s1.expect("DONE")
    s2.expect("DONE")
    settle()
    rec.stop()


@scenario("refused")
def refused(rec: Recording) -> None:
    rec.description = ("Client connects to port 9 on the server where nothing listens; the "
                       "server's kernel answers the SYN with RST-ACK (ECONNREFUSED).")
    rec.start()
    cli = client(rec, 40020, "", 9)
    cli.expect("ERR connect ECONNREFUSED")
    settle()
    rec.connections.append(Conn(("client", 40020), ("server", 9)))
    rec.expected.append(finding("connection_refused", rec, 9))
    rec.stop()


@scenario("reset-linger0")
def reset_linger0(rec: Recording) -> None:
    rec.description = ("Request/response of 100 bytes each, then the client sets SO_LINGER "
                       "{on, 0} and closes: its kernel sends RST instead of FIN; the server's "
                       "read fails with ECONNRESET. Both end CLOSED.")
    rec.start()
    srv = server(rec, "recv 100; send 100; recv-eof")
    cli = client(rec, 40021, "send 100; recv 100; linger0; close")
    cli.expect("DONE")
    srv.expect("ERR")
    settle()
    rec.connections.append(Conn(("client", 40021), ("server", PORT)))
    rec.expected.append(finding("rst_teardown", rec, by="client"))
    rec.stop()


@scenario("ipv6-normal")
def ipv6_normal(rec: Recording) -> None:
    rec.description = ("As normal-client-close, over IPv6 (fd77:1::2 -> fd77:2::2): echo of 300 "
                       "bytes, client closes first (client TIME_WAIT, server CLOSED).")
    rec.start()
    normal_exchange(rec, 40003, family=6)
    rec.stop()


@scenario("ipv6-refused-reset")
def ipv6_refused_reset(rec: Recording) -> None:
    rec.description = ("Over IPv6: the client connects to port 9 where nothing listens (RST-ACK, "
                       "ECONNREFUSED), then makes a connection to port 8080, exchanges 100 bytes "
                       "each way and closes it with SO_LINGER {on, 0} (RST). Both end CLOSED.")
    rec.start()
    client(rec, 40022, "", 9, 6).expect("ERR connect ECONNREFUSED")
    srv = server(rec, "recv 100; send 100; recv-eof", PORT, 6)
    client(rec, 40023, "send 100; recv 100; linger0; close", PORT, 6).expect("DONE")
    srv.expect("ERR")
    settle()
    rec.connections += [Conn(("client", 40022), ("server", 9), 6),
                        Conn(("client", 40023), ("server", PORT), 6)]
    rec.expected += [finding("connection_refused", rec, 9, 6),
                     finding("rst_teardown", rec, PORT, 6, by="client")]
    rec.stop()


@scenario("dropped-third-ack")
def dropped_third_ack(rec: Recording) -> None:
    rec.description = ("iptables in the server namespace drops every ACK without SYN from the "
                       "client to port 8080, so the handshake's third ACK (seen on the router) "
                       "never arrives: the client is ESTABLISHED and sends nothing, the server "
                       "stays SYN_RCVD and retransmits its SYN-ACK (after ~1 s and ~3 s); each "
                       "retransmission draws a duplicate ACK from the client, dropped as well.")
    rec.lab.iptables("server", ["-A", "INPUT", "-p", "tcp", "--dport", str(PORT),
                                "--tcp-flags", "SYN,ACK", "ACK", "-j", "DROP"])
    server(rec, "hold")
    rec.start()
    cli = client(rec, 40030, "hold")
    cli.expect("CONNECTED")
    time.sleep(4.0)  # SYN-ACK retransmissions at ~1 s and ~3 s; the next is at ~7 s
    rec.connections.append(Conn(("client", 40030), ("server", PORT)))
    rec.expected.append(finding("missing_third_ack", rec))
    rec.stop()


@scenario("unanswered-syn")
def unanswered_syn(rec: Recording) -> None:
    linear = rec.lab.run_in("client", ["sysctl", "-n", "net.ipv4.tcp_syn_linear_timeouts"],
                            check=False).strip()
    rec.sysctls["client net.ipv4.tcp_syn_linear_timeouts"] = linear or "absent"
    rec.description = ("iptables in the server namespace drops SYNs to port 8080 (a listener "
                       "exists). The client retransmits its SYN on the kernel's schedule "
                       "(recent kernels with tcp_syn_linear_timeouts=4: after 1, 2, 3, 4, 5 and "
                       "7 s; older kernels: 1, 3, 7 s); the capture stops at ~7.5 s with the "
                       "client still in SYN_SENT.")
    rec.lab.iptables("server", ["-A", "INPUT", "-p", "tcp", "--dport", str(PORT),
                                "--tcp-flags", "SYN,ACK", "SYN", "-j", "DROP"])
    server(rec, "hold")
    rec.start()
    client(rec, 40031, "", PORT, 4, "client", "--timeout", "20")
    time.sleep(7.5)
    rec.connections.append(Conn(("client", 40031), ("server", PORT)))
    rec.expected += [finding("syn_retransmission", rec), finding("half_open", rec)]
    rec.stop()


@scenario("peer-vanished")
def peer_vanished(rec: Recording) -> None:
    rec.description = ("After a 100-byte request/response, iptables in the server namespace "
                       "starts dropping everything from the client. The client writes 500 "
                       "bytes that are never acknowledged and retransmits them 5 times (RTO "
                       "backoff: ~0.2, 0.4, 0.85, 1.7, 3.3 s after the first send). Both "
                       "kernels still say ESTABLISHED.")
    srv = server(rec, "recv 100; send 100; hold")
    rec.start()
    cli = client(rec, 40032, "", PORT, 4, "client", "--stdin")
    cli.expect("CONNECTED")
    cli.do("send 100")
    cli.do("recv 100")
    srv.expect("OK sent")
    rec.lab.iptables("server", ["-A", "INPUT", "-s", rec.lab.addr("client"), "-j", "DROP"])
    cli.do("send 500")
    time.sleep(3.5)
    rec.connections.append(Conn(("client", 40032), ("server", PORT)))
    rec.expected += [finding("half_open", rec), finding("retransmission", rec)]
    rec.stop()


@scenario("close-wait-leak")
def close_wait_leak(rec: Recording) -> None:
    rec.description = ("Request/response, then the client closes; the server application reads "
                       "EOF but never closes its socket. 7 s later an unrelated short connection "
                       "(client port 40041 to server port 8081, client closes first) shows that "
                       "time has passed: server CLOSE_WAIT, client FIN_WAIT_2 on the first.")
    server(rec, "recv 100; send 100; recv-eof; hold")
    rec.start()
    cli = client(rec, 40040, "send 100; recv 100; close")
    cli.expect("DONE")
    time.sleep(7.0)
    # an unrelated short connection: a capture only shows time passing through packets
    mark = server(rec, "echo; close", 8081)
    client(rec, 40041, "send 10; recv 10; close", 8081).expect("DONE")
    mark.expect("DONE")
    settle()
    rec.connections.append(Conn(("client", 40040), ("server", PORT)))
    rec.connections.append(Conn(("client", 40041), ("server", 8081),
                                note="unrelated connection 7 s later that marks the time"))
    rec.expected.append(finding("close_wait_leak", rec))
    # on the wire the client's FIN_WAIT_2 with a silent peer looks stuck as well
    rec.incidental.append(finding("fin_wait_2_stuck", rec))
    rec.stop()


@scenario("fin-wait-2-stuck", extra=("backup",))
def fin_wait_2_stuck(rec: Recording) -> None:
    rec.description = ("Request/response, then the client closes (FIN) and the server ACKs it; "
                       "0.3 s later the server host vanishes (its namespace is deleted, as if "
                       "the machine crashed), so the client's orphaned socket waits in "
                       "FIN_WAIT_2 for a FIN that never comes. 7 s later an unrelated short "
                       "connection from the client to a second host (10.77.3.2:8080) marks "
                       "the time. On the wire this looks like close-wait-leak; only the ss "
                       "truth differs (the server has no kernel any more: null).")
    rec.where = "router, interface c0 (the client's link; s0 vanishes with the server)"
    lab = rec.lab
    server(rec, "recv 100; send 100; recv-eof; hold")
    rec.start("router", "c0")
    cli = client(rec, 40045, "send 100; recv 100; close")
    cli.expect("DONE")
    time.sleep(0.3)
    lab.remove_host("server")
    time.sleep(7.0)
    mark = lab.endpoint_program("backup", ["listen", "--addr", "0.0.0.0", "--port", "8080",
                                           "--do", "echo; close"], "backup")
    mark.expect("READY")
    lab.endpoint_program("client", [
        "connect", "--addr", lab.addr("backup"), "--port", "8080", "--local-port", "40046",
        "--do", "send 10; recv 10; close"], "marker").expect("DONE")
    mark.expect("DONE")
    settle()
    rec.connections.append(Conn(("client", 40045), ("server", PORT), note=(
        "server host removed 0.3 s after ACKing the FIN: no kernel, no state")))
    rec.connections.append(Conn(("client", 40046), ("backup", 8080),
                                note="unrelated connection 7 s later that marks the time"))
    rec.expected.append(finding("fin_wait_2_stuck", rec, client=lab.endpoint("client", 40045)))
    # the wire cannot tell a crashed server from one that leaks its socket
    rec.incidental.append(finding("close_wait_leak", rec))
    rec.stop()
    rec.connections[0].states = (state_of(rec.ss["client"], lab.endpoint("client", 40045),
                                          lab.endpoint("server", PORT)), None)


@scenario("last-ack-stuck")
def last_ack_stuck(rec: Recording) -> None:
    rec.description = ("The client closes first; iptables in the client namespace drops "
                       "incoming FINs, so the server's FIN (sent when its application closes "
                       "0.3 s after reading EOF; the client's FIN was ACKed before) is never "
                       "ACKed: the server sits in LAST_ACK and "
                       "retransmits the FIN (~0.2, 0.6, 1.4 s later) while the client waits "
                       "in FIN_WAIT_2. The capture stops at ~2 s.")
    lab = rec.lab
    # the pause lets the server ACK the client's FIN on its own before sending its FIN
    srv = server(rec, "recv 100; send 100; recv-eof; sleep 0.3; close")
    rec.start()
    cli = client(rec, 40047, "send 100; recv 100", PORT, 4, "client", "--stdin")
    cli.expect("OK received")
    lab.iptables("client", ["-A", "INPUT", "-p", "tcp", "--tcp-flags", "FIN", "FIN",
                            "-j", "DROP"])
    cli.do("close")
    srv.expect("DONE")
    time.sleep(2.0)
    rec.connections.append(Conn(("client", 40047), ("server", PORT)))
    rec.expected.append(finding("last_ack_stuck", rec))
    rec.incidental.append(finding("retransmission", rec, note="the FIN retransmissions"))
    rec.stop()


@scenario("time-wait-reuse")
def time_wait_reuse(rec: Recording) -> None:
    rec.description = ("Two connections on the same 4-tuple 10.77.1.2:40050 -> 10.77.2.2:8080, "
                       "1 s apart. In both the server closes first, so after the first one the "
                       "server is in TIME_WAIT when the client (SO_REUSEADDR, same local port) "
                       "sends a new SYN; the server's kernel accepts it (higher ISN) and the "
                       "TIME_WAIT is replaced. The second connection ends with the server in "
                       "TIME_WAIT again, the client CLOSED.")
    srv = server(rec, "recv 100; send 100; close", PORT, 4, "--accept", "2")
    rec.start()
    for _ in range(2):
        cli = client(rec, 40050, "send 100; recv-eof; close")
        cli.expect("DONE")
        time.sleep(1.0)
    srv.expect("DONE")
    rec.connections += [
        Conn(("client", 40050), ("server", PORT), states=("CLOSED", "CLOSED"),
             note="first incarnation; its server TIME_WAIT was taken over by the second"),
        Conn(("client", 40050), ("server", PORT), note="second incarnation"),
    ]
    rec.expected.append(finding("time_wait_violation", rec,
                                client=rec.lab.endpoint("client", 40050)))
    rec.stop()


@scenario("time-wait-assassination")
def time_wait_assassination(rec: Recording) -> None:
    rec.description = ("A normal connection; the client closes first and sits in TIME_WAIT. "
                       "About a second later a RST (no ACK flag) with exactly the sequence "
                       "number the client expects, crafted with scapy and sent from the server "
                       "namespace with the server's own address and port, hits the TIME_WAIT "
                       "socket; "
                       "with net.ipv4.tcp_rfc1337=0 the kernel drops the TIME_WAIT (ss no "
                       "longer lists it).")
    lab = rec.lab
    rec.sysctls["client net.ipv4.tcp_rfc1337"] = lab.run_in(
        "client", ["sysctl", "-n", "net.ipv4.tcp_rfc1337"]).strip()
    srv = server(rec, "recv 100; send 100; recv-eof; close")
    rec.start()
    cli = client(rec, 40060, "send 100; recv 100; close")
    cli.expect("DONE")
    srv.expect("DONE")
    time.sleep(0.5)
    before = lab.ss("client")
    rec.extra["ss_client_before_rst"] = before
    assert state_of(before, lab.endpoint("client", 40060),
                    lab.endpoint("server", PORT)) == "TIME_WAIT", before
    assert rec.capture is not None
    seq = last_ack_from(rec.path, lab.addr("client"), 40060)
    rst = lab.endpoint_program("server", [
        "rst", "--src", lab.addr("server"), "--sport", str(PORT),
        "--dst", lab.addr("client"), "--dport", "40060", "--seq", str(seq)], "rst")
    rst.expect("OK", timeout=20)
    settle()
    rec.connections.append(Conn(("client", 40060), ("server", PORT)))
    rec.expected.append(finding("time_wait_assassination", rec))
    rec.stop()


@scenario("simultaneous-close")
def simultaneous_close(rec: Recording) -> None:
    rec.description = ("After a request/response both applications close at the same moment. "
                       "iptables INPUT rules in both end namespaces drop incoming FINs for "
                       "~0.15 s, so both original FINs cross on the wire (each acknowledging "
                       "only data, not the other's FIN) and are lost at the receiver; the "
                       "retransmitted FINs are accepted: both sides go FIN_WAIT_1 -> CLOSING -> "
                       "TIME_WAIT.")
    lab = rec.lab
    srv = server(rec, "recv 100; send 100", PORT, 4, "--stdin")
    rec.start()
    cli = client(rec, 40070, "send 100; recv 100", PORT, 4, "client", "--stdin")
    cli.expect("OK received")
    srv.expect("OK sent")
    drop_fin = ["INPUT", "-p", "tcp", "--tcp-flags", "FIN", "FIN", "-j", "DROP"]
    for role in ("client", "server"):
        lab.iptables(role, ["-A", *drop_fin])
    cli.send("close")
    srv.send("close")
    cli.expect("OK closed")
    srv.expect("OK closed")
    time.sleep(0.15)
    for role in ("client", "server"):
        lab.iptables(role, ["-D", *drop_fin])
    time.sleep(1.5)
    rec.connections.append(Conn(("client", 40070), ("server", PORT)))
    rec.expected.append(finding("simultaneous_close", rec))
    rec.incidental.append(finding("retransmission", rec, note="the FIN retransmissions"))
    rec.stop()


@scenario("simultaneous-open")
def simultaneous_open(rec: Recording) -> None:
    rec.description = ("10.77.1.2:40080 and 10.77.2.2:40081 connect() to each other at the same "
                       "time, neither listens. iptables INPUT rules in both namespaces drop "
                       "pure SYNs for 0.5 s so the first SYNs (10.77.1.2's first, 50 ms ahead) "
                       "cross and are lost. 10.77.1.2's SYN retransmitted after ~1 s meets "
                       "10.77.2.2's socket in SYN_SENT, which answers SYN-ACK (SYN_RCVD); "
                       "10.77.1.2 goes SYN_SENT -> ESTABLISHED and ACKs, 10.77.2.2 goes "
                       "ESTABLISHED (10.77.2.2's own retransmission may or may not show, "
                       "depending on which timer fires first). Then 100 bytes each way; "
                       "10.77.1.2 closes first (TIME_WAIT), 10.77.2.2 ends CLOSED. 'client' "
                       "below is 10.77.1.2.")
    lab = rec.lab
    drop_syn = ["INPUT", "-p", "tcp", "--tcp-flags", "SYN,ACK", "SYN", "-j", "DROP"]
    for role in ("client", "server"):
        lab.iptables(role, ["-A", *drop_syn])
    rec.start()
    a = lab.endpoint_program("client", [
        "connect", "--addr", lab.addr("server"), "--port", "40081", "--local-port", "40080",
        "--do", "send 100; recv 100; close"], "a")
    a.expect("CONNECTING")
    time.sleep(0.05)  # 10.77.1.2's SYN is seen first, so it is the 'client'
    b = lab.endpoint_program("server", [
        "connect", "--addr", lab.addr("client"), "--port", "40080", "--local-port", "40081",
        "--do", "recv 100; send 100; recv-eof; close"], "b")
    time.sleep(0.5)
    for role in ("client", "server"):
        lab.iptables(role, ["-D", *drop_syn])
    a.expect("DONE")
    b.expect("DONE")
    settle()
    rec.connections.append(Conn(("client", 40080), ("server", 40081)))
    rec.expected.append(finding("simultaneous_open", rec, 40081))
    rec.stop()


@scenario("zero-window")
def zero_window(rec: Recording) -> None:
    rec.description = ("The server (SO_RCVBUF 4096 set before listen) accepts and never reads. "
                       "The client writes without pause until its send buffer is full: the "
                       "server's advertised window shrinks to 0 and the client sends zero-window "
                       "probes with backoff for ~2 s. Both stay ESTABLISHED.")
    server(rec, "hold", PORT, 4, "--rcvbuf", "4096")
    rec.start()
    cli = client(rec, 40090, "fill; hold", PORT, 4, "client", "--sndbuf", "16384")
    cli.expect("OK filled", timeout=15)
    time.sleep(2.0)
    rec.connections.append(Conn(("client", 40090), ("server", PORT)))
    rec.expected.append(finding("zero_window", rec, by="server"))
    rec.stop()


@scenario("bulk-loss")
def bulk_loss(rec: Recording) -> None:
    rec.description = ("Bulk download with loss: the client sends a 100-byte request, the "
                       "server answers 4,000,000 bytes and closes first; the router drops 1 % "
                       "of the server's segments (iptables statistic, FORWARD), so the capture "
                       "on the client's link c0 (headers only, snaplen 96) has holes, SACK "
                       "blocks on the client's ACKs and the server's retransmissions. Server "
                       "ends in TIME_WAIT, the client CLOSED.")
    rec.where = "router, interface c0 (the link to the client), snaplen 96"
    rec.lab.iptables("router", ["-A", "FORWARD", "-p", "tcp", "--sport", str(PORT), "-m",
                                "statistic", "--mode", "random", "--probability", "0.01",
                                "-j", "DROP"])
    srv = server(rec, "recv 100; send 4000000; close")
    rec.start("router", "c0", snaplen=96)
    cli = client(rec, 40110, "send 100; recv-eof; close")
    cli.expect("DONE", timeout=60)
    srv.expect("DONE", timeout=60)
    settle(0.5)
    rec.connections.append(Conn(("client", 40110), ("server", PORT)))
    rec.incidental.append(finding("retransmission", rec))
    rec.stop()


@scenario("keepalive")
def keepalive(rec: Recording) -> None:
    rec.description = ("Client sends 10 bytes, then idles with SO_KEEPALIVE, TCP_KEEPIDLE=1, "
                       "TCP_KEEPINTVL=1: its kernel sends a keepalive probe (seq = snd_nxt-1, "
                       "no data) every second and the server ACKs each; about 3 probes in "
                       "3.6 s. Both ESTABLISHED.")
    srv = server(rec, "recv 10; hold")
    rec.start()
    cli = client(rec, 40100, "send 10; keepalive 1 1 9; hold")
    cli.expect("OK keepalive")
    srv.expect("OK received")
    time.sleep(3.6)
    rec.connections.append(Conn(("client", 40100), ("server", PORT)))
    rec.expected.append(finding("keepalive", rec, client=rec.lab.endpoint("client", 40100)))
    rec.stop()


def start_flood(rec: Recording) -> tuple[Program, list[list[Any]]]:
    """The attacker starts 1000 scapy SYNs at 500/s to the server's PORT from 250 spoofed
    sources; returns the program (it says 'OK sent' when done) and the SYNs' (src, sport)."""
    lab = rec.lab
    flood = lab.endpoint_program("attacker", [
        "--lifetime", "20", "synflood", "--dst", lab.addr("server"), "--dport", str(PORT),
        "--spoof-net", lab.spoof_net4, "--count", "1000", "--rate", "500", "--sources", "250"],
        "flood")
    syns = json.loads(flood.expect("SYNS", timeout=20).split(" ", 1)[1])
    flood.expect("SENDING")
    return flood, syns


def syn_flood(rec: Recording, cookies: bool) -> None:
    lab = rec.lab
    if cookies:
        lab.sysctl("server", {"net.ipv4.tcp_syncookies": "2"})
    rec.sysctls["server net.ipv4.tcp_syncookies"] = lab.run_in(
        "server", ["sysctl", "-n", "net.ipv4.tcp_syncookies"]).strip()
    srv = server(rec, "echo; close", PORT, 4, "--backlog", "128", "--hold")
    rec.start()
    flood, syns = start_flood(rec)
    time.sleep(1.0)  # a legitimate client in the middle of the flood
    cli = client(rec, 40110, "send 100; recv 100; close")
    cli.expect("DONE")
    flood.expect("OK sent", timeout=10)
    srv.expect("DONE")
    settle(0.3)
    rec.connections.append(Conn(("client", 40110), ("server", PORT),
                                note="legitimate connection during the flood"))
    for src, sport in syns:
        rec.connections.append(Conn((src, sport), ("server", PORT), states=(None, None),
                                    note="spoofed"))
    rec.expected.append(finding("syn_flood", rec, **({"syncookies": True} if cookies else {})))


@scenario("syn-flood", extra=("attacker",))
def syn_flood_plain(rec: Recording) -> None:
    rec.description = ("An attacker namespace sends 1000 SYNs crafted with scapy at 500/s "
                       "(~2 s) to 10.77.2.2:8080 from 250 spoofed sources in 10.77.100.0/22 "
                       "(inside the lab; the router black-holes that prefix, so the server's "
                       "SYN-ACKs are captured on s0 and die on the router). The listen backlog "
                       "is 128 with the default net.ipv4.tcp_syncookies=1: the first SYNs get "
                       "SYN_RCVD entries (and SYN-ACK retransmissions after ~1 s), the rest "
                       "syncookies. One legitimate client connection completes in the middle.")
    syn_flood(rec, cookies=False)
    rec.stop()
    fill_spoofed_states(rec)


@scenario("syn-flood-cookies", extra=("attacker",))
def syn_flood_cookies(rec: Recording) -> None:
    rec.description = ("As syn-flood but the server has net.ipv4.tcp_syncookies=2: every SYN is "
                       "answered with a syncookie SYN-ACK and no SYN_RCVD state is kept (no "
                       "SYN-ACK retransmissions). One legitimate connection completes.")
    syn_flood(rec, cookies=True)
    rec.stop()
    fill_spoofed_states(rec)


RECOVERY = 400  # legitimate connections after the flood in syn-flood-recovered


@scenario("syn-flood-recovered", extra=("attacker",))
def syn_flood_recovered(rec: Recording) -> None:
    rec.description = ("As syn-flood (1000 SYNs at 500/s from 250 spoofed sources), but the "
                       "server's SYN queue holds them all (listen backlog and "
                       "net.ipv4.tcp_max_syn_backlog 4096: no SYN cookies); then the client "
                       f"opens {RECOVERY} connections to the same port one after the other "
                       "(source ports 41000.., each closed by the client at once). The flood "
                       f"is a flood while it lasts; by the end {RECOVERY} of its "
                       f"{1000 + RECOVERY} attempts completed (29%), more than the 20% a flood "
                       "allows: an analyser that decides only on the final counts misses it.")
    lab = rec.lab
    lab.sysctl("server", {"net.ipv4.tcp_max_syn_backlog": "4096"})
    rec.sysctls["server net.ipv4.tcp_max_syn_backlog"] = lab.run_in(
        "server", ["sysctl", "-n", "net.ipv4.tcp_max_syn_backlog"]).strip()
    server(rec, "recv-eof; close", PORT, 4, "--backlog", "4096", "--accept", str(RECOVERY),
           "--hold")
    rec.start()
    flood, syns = start_flood(rec)
    flood.expect("OK sent", timeout=10)
    cli = lab.endpoint_program("client", [
        "--lifetime", "60", "reconnect", "--addr", lab.addr("server"), "--port", str(PORT),
        "--count", str(RECOVERY), "--local-port-base", "41000"], "reconnect")
    cli.expect(f"OK connected {RECOVERY}", timeout=60)
    settle(1.0)  # the server's last FINs and the client's last ACKs
    for i in range(RECOVERY):
        rec.connections.append(Conn(("client", 41000 + i), ("server", PORT)))
    for src, sport in syns:
        rec.connections.append(Conn((src, sport), ("server", PORT), states=(None, None),
                                    note="spoofed"))
    rec.expected.append(finding("syn_flood", rec))
    rec.incidental.append(finding(
        "time_wait_assassination", rec,
        note="seen in the first connections: the server's ACK of the client's FIN goes out "
             "after its own FIN, the client in TIME_WAIT answers it, the server's closed "
             "socket answers that with a RST, which ends the TIME_WAIT (tcp_rfc1337=0)"))
    rec.stop()
    fill_spoofed_states(rec)


def fill_spoofed_states(rec: Recording) -> None:
    # spoofed clients have no kernel (null); the server side is whatever ss says
    srv_rows = rec.ss["server"]
    for conn in rec.connections:
        if conn.states == (None, None):
            peer = f"{conn.client[0]}:{conn.client[1]}"
            conn.states = (None, state_of(srv_rows, rec.lab.endpoint("server", PORT), peer))


@scenario("port-scan", extra=("scanner",))
def port_scan(rec: Recording) -> None:
    rec.description = ("A scanner namespace (10.77.4.2) probes ports 8000-8099 of the server "
                       "with connect() one after another (source ports 50000-50099, 0.3 s "
                       "timeout). Only 8080 listens: it completes and the scanner closes at "
                       "once (scanner TIME_WAIT); the other 99 probes are refused with RST-ACK.")
    lab = rec.lab
    srv = server(rec, "recv-eof; close")
    rec.start()
    scan = lab.endpoint_program("scanner", ["scan", "--addr", lab.addr("server"), "--ports",
                                            "8000-8099", "--local-port-base", "50000"], "scan")
    scan.expect("OK open 8080", timeout=30)
    srv.expect("DONE")
    settle()
    for i in range(100):
        rec.connections.append(Conn(("scanner", 50000 + i), ("server", 8000 + i)))
    rec.expected.append({"kind": "port_scan", "source": lab.addr("scanner"),
                         "host": lab.addr("server"), "ports": 100})
    rec.incidental.append(finding("connection_refused", rec, 8000,
                                  note="99 probes to closed ports, 8000-8099 except 8080"))
    rec.stop()


INVALID_FLAGS = [("SF", "SYN+FIN"), ("", "no flags (NULL scan)"), ("FPU", "FIN+PSH+URG (Xmas)"),
                 ("SR", "SYN+RST"), ("F", "FIN alone, no ACK")]


@scenario("invalid-flags", extra=("scanner",))
def invalid_flags(rec: Recording) -> None:
    kinds = "; ".join(f"{flags or '-'} = {what}" for flags, what in INVALID_FLAGS)
    rec.description = ("The scanner (10.77.4.2, its own address) sends scapy-crafted segments "
                       "with flag combinations no TCP stack sends, 0.05 s apart, from source "
                       "ports 51000.. to the listening port 8080 and the same set from 51100.. "
                       f"to the closed port 8099 ({kinds}). The server's kernel drops them at "
                       "the listener and answers RST-ACK at the closed port to those without "
                       "RST (SYN+FIN, NULL, Xmas, FIN); the scanner's kernel has no sockets "
                       "for them and stays silent.")
    lab = rec.lab
    server(rec, "hold")
    rec.start()
    segs = []
    for base, dport in ((51000, 8080), (51100, 8099)):
        for i, (flags, _what) in enumerate(INVALID_FLAGS):
            segs += ["--seg", f"{base + i}:{dport}:{flags}"]
            rec.connections.append(Conn(("scanner", base + i), ("server", dport),
                                        note=f"flags {flags or 'none'}; crafted, no socket"))
    craft = lab.endpoint_program("scanner", ["craft", "--src", lab.addr("scanner"),
                                             "--dst", lab.addr("server"), *segs], "craft")
    craft.expect("OK sent", timeout=20)
    settle(0.3)
    for dport in (8080, 8099):
        rec.expected.append(finding("invalid_flags", rec, dport,
                                    source=lab.addr("scanner"), combinations=[
                                        f or "none" for f, _ in INVALID_FLAGS]))
    rec.incidental.append(finding("connection_refused", rec, 8099,
                                  note="the closed port's RST-ACKs to the odd segments"))
    rec.stop()
    # the scanner's side is raw packets, not a socket: no kernel state (null); the
    # server's is what its ss says
    for conn in rec.connections:
        peer = lab.endpoint(*conn.client)
        conn.states = (None, state_of(rec.ss["server"], lab.endpoint(*conn.server), peer))


@scenario("data-after-close")
def data_after_close(rec: Recording) -> None:
    rec.description = ("Request/response; the server application then close()s (FIN) and no "
                       "longer owns the socket. The client reads EOF (CLOSE_WAIT) but 0.5 s later"
                       " writes 100 more bytes, which TCP's half-close allows. The server's "
                       "kernel has an orphaned socket in FIN_WAIT_2 that can never deliver data, "
                       "so it answers the data with RST (Linux: TCPAbortOnData). The client's "
                       "next write fails (EPIPE). Both end CLOSED.")
    srv = server(rec, "recv 100; send 100; close")
    rec.start()
    cli = client(rec, 40120, "send 100; recv-eof; sleep 0.5; try-send 100; sleep 0.2; "
                             "try-send 100")
    cli.expect("DONE")
    srv.expect("DONE")
    settle()
    rec.connections.append(Conn(("client", 40120), ("server", PORT)))
    rec.expected.append(finding("rst_teardown", rec, by="server"))
    rec.incidental.append(finding("data_after_close", rec,
                                  note="client data after the server's FIN; legal half-close "
                                       "TCP but the server's application had closed"))
    rec.stop()


# link-type variants: one normal connection each, captured in different ways

@scenario("linktype-any-sll")
def linktype_any(rec: Recording) -> None:
    rec.description = ("normal-client-close captured with `tcpdump -i any -y LINUX_SLL` in the "
                       "client namespace (Linux cooked capture v1; tcpdump 4.99 with libpcap "
                       "1.10 would pick LINUX_SLL2 for 'any' by default).")
    rec.where = "client namespace, -i any (eth0 and lo; the TCP traffic is on eth0 only)"
    rec.start("client", "any", linktype="LINUX_SLL")
    normal_exchange(rec, 40130)
    rec.stop()


@scenario("linktype-sll2")
def linktype_sll2(rec: Recording) -> None:
    rec.description = ("normal-client-close captured with `tcpdump -i any -y LINUX_SLL2` in the "
                       "client namespace (cooked capture v2: interface index, protocol).")
    rec.where = "client namespace, -i any -y LINUX_SLL2"
    rec.start("client", "any", linktype="LINUX_SLL2")
    normal_exchange(rec, 40131)
    rec.stop()


@scenario("linktype-nanosec")
def linktype_nano(rec: Recording) -> None:
    rec.description = ("normal-client-close captured on the router's s0 with "
                       "`--time-stamp-precision nano` (pcap magic a1b23c4d, nanosecond "
                       "timestamps).")
    rec.start(nano=True)
    normal_exchange(rec, 40132)
    rec.stop()


def reorder(rec: Recording) -> None:
    """reordercap: the same pcapng with its frames sorted by timestamp."""
    raw = rec.path.with_suffix(".unordered.tmp")
    rec.path.rename(raw)
    subprocess.run(["reordercap", str(raw), str(rec.path)], check=True, capture_output=True)
    raw.unlink()
    rec.extra["postprocess"] = f"reordercap {rec.name}.unordered {rec.path.name}"


@scenario("linktype-pcapng-multi")
def linktype_pcapng_ordered(rec: Recording) -> None:
    rec.ext = "pcapng"
    rec.description = ("normal-client-close captured by dumpcap in the client namespace into "
                       "pcapng with two interfaces of different link types: eth0 (EN10MB) with "
                       "filter 'src host 10.77.1.2' and any (LINUX_SLL) with filter 'inbound', "
                       "so every TCP packet is recorded once: client-sent ones on interface 0, "
                       "received ones on interface 1. dumpcap writes each interface's buffer in "
                       "turn; the file was then put in timestamp order with reordercap (see "
                       "linktype-pcapng-unordered for dumpcap's own order).")
    src = rec.lab.addr("client")
    rec.where = (f"client namespace: dumpcap -i eth0 -f 'src host {src}' -i any -f inbound, "
                 "then reordercap")
    rec.start_pcapng("client", [("eth0", f"src host {src}"), ("any", "inbound")])
    normal_exchange(rec, 40134)
    rec.stop()
    reorder(rec)


@scenario("linktype-pcapng-unordered")
def linktype_pcapng(rec: Recording) -> None:
    rec.ext = "pcapng"
    rec.description = ("normal-client-close captured by dumpcap in the client namespace into "
                       "pcapng with two interfaces of different link types: eth0 (EN10MB) with "
                       "filter 'src host 10.77.1.2' and any (LINUX_SLL) with filter 'inbound', "
                       "so every TCP packet is recorded once: client-sent ones on interface 0, "
                       "received ones on interface 1. dumpcap writes each interface's buffer in "
                       "turn, so the frames are NOT in timestamp order (all of interface 0, "
                       "then interface 1): a reader must merge them by timestamp.")
    src = rec.lab.addr("client")
    rec.where = f"client namespace: dumpcap -i eth0 -f 'src host {src}' -i any -f inbound"
    rec.start_pcapng("client", [("eth0", f"src host {src}"), ("any", "inbound")])
    normal_exchange(rec, 40133)
    rec.stop()


# -- writing ---------------------------------------------------------------------------

def file_linktypes(path: Path) -> tuple[str, list[str]]:
    """(format, link type names in interface order) read from the file's headers."""
    data = path.read_bytes()
    magic = data[:4]
    pcap_magics = (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1",
                   b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d")
    if magic in pcap_magics:
        end = "<" if magic[0] in (0xD4, 0x4D) else ">"
        fmt = "pcap-ns" if magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else "pcap"
        (lt,) = struct.unpack(end + "I", data[20:24])
        return fmt, [LINKTYPES.get(lt & 0xFFFF, str(lt))]
    types = []
    off, end = 0, "<"
    while off + 12 <= len(data):
        btype = struct.unpack(end + "I", data[off:off + 4])[0]
        if btype == 0x0A0D0D0A:  # section header: its byte-order magic sets the endianness
            end = "<" if data[off + 8:off + 12] == b"\x4d\x3c\x2b\x1a" else ">"
        blen = struct.unpack(end + "I", data[off + 4:off + 8])[0]
        if btype == 1:
            (lt,) = struct.unpack(end + "H", data[off + 8:off + 10])
            types.append(LINKTYPES.get(lt, str(lt)))
        if blen < 12:
            break
        off += blen
    return "pcapng", types


def endpoint_text(lab: Lab, ep: tuple[str, int], family: int) -> str:
    who, port = ep
    if who in lab.hosts:
        return lab.endpoint(who, port, family)
    return f"[{who}]:{port}" if ":" in who else f"{who}:{port}"


def write_truth(rec: Recording) -> dict[str, Any]:
    lab = rec.lab
    assert rec.capture is not None
    fmt, linktypes = file_linktypes(rec.path)
    conns = []
    for c in rec.connections:
        cl, sv = endpoint_text(lab, c.client, c.family), endpoint_text(lab, c.server, c.family)
        if c.states is not None:
            cs, ss_ = c.states
        else:
            cs = state_of(rec.ss[c.client[0]], cl, sv)
            ss_ = state_of(rec.ss[c.server[0]], sv, cl)
        entry: dict[str, Any] = {"client": cl, "server": sv, "client_state": cs,
                                 "server_state": ss_}
        if c.note:
            entry["note"] = c.note
        conns.append(entry)
    truth: dict[str, Any] = {
        "scenario": rec.name,
        "description": rec.description,
        "capture": {
            "command": rec.capture.command,
            "namespace": rec.capture.ns,
            "interface": rec.capture.interface,
            "where": rec.where,
            "format": fmt,
            "linktype": ",".join(linktypes),
            "linktypes": linktypes,
        },
        "connections": conns,
        "expected_findings": rec.expected,
        "incidental_findings": rec.incidental,
        "ss": rec.ss,
    }
    if rec.sysctls:
        truth["sysctls"] = rec.sysctls
    truth.update(rec.extra)
    (rec.out / f"{rec.name}.truth.json").write_text(json.dumps(truth, indent=1) + "\n")
    return truth


def run_scenario(name: str, out: Path) -> dict[str, Any]:
    fn, extra = SCENARIOS[name]
    with Lab(extra=extra, replace_stale=True) as lab:
        rec = Recording(name, lab, out)
        fn(rec)
        return write_truth(rec)


README_HEAD = """# Sample captures

Real Linux kernel TCP, made in network namespaces by `lab/make_samples.py` (run it as root
from the repository root; `--only NAME[,NAME]` remakes single scenarios, `--readme` only
rewrites this file). Topology (lab/netns.py): client 10.77.1.2 / fd77:1::2 -- router
(c0 10.77.1.1, s0 10.77.2.1) -- server 10.77.2.2 / fd77:2::2; extra hosts attacker
10.77.3.2 and scanner 10.77.4.2 (their own links to the router); spoofed flood sources
come from 10.77.100.0/22, which the router black-holes. Unless a row says otherwise the
capture was taken with tcpdump on the router's s0 (the server's link), Ethernet framing.

Every `NAME.pcap[ng]` has a `NAME.truth.json`:

- `connections[]`: `client`, `server` (`addr:port`, IPv6 `[addr]:port`), and
  `client_state` / `server_state` as the kernel's `ss -tanoi` showed them right after the
  capture stopped (not in ss = `CLOSED`; `null` = no kernel, e.g. spoofed sources). For a
  reused 4-tuple only the last incarnation is in ss; earlier ones say `CLOSED` with a note.
- `expected_findings[]`: what the scenario deliberately causes (from its design, never
  from running tcpanalyze), finding `kind` names as in the report contract.
- `incidental_findings[]`: what a correct analyser may also report as a side effect
  (e.g. the FIN retransmissions of simultaneous-close). Neither required nor wrong.
- `ss`: the parsed ss rows per namespace; `capture`: command, namespace, interface,
  format and link type(s) read back from the file; `sysctls` where they matter.

`tests/test_samples_truth.py` checks the truth files against the captures with tshark
(every connection exists; every expected finding has its packets, e.g. a resent SYN-ACK
for missing_third_ack). Kernel used: Linux %s (note tcp_syn_linear_timeouts=4: SYNs are
resent after 1, 2, 3, 4, 5, 7 s, not 1, 3, 7 s).

| file | what happens | states (client / server) | expected findings (incidental) |
| --- | --- | --- | --- |
"""


def write_readme(out: Path) -> None:
    import collections
    import platform

    rows = []
    for truth_path in sorted(out.glob("*.truth.json")):
        t = json.loads(truth_path.read_text())
        name = t["scenario"]
        capture = next(p.name for p in out.iterdir()
                       if p.name.startswith(name + ".pcap"))
        counts = collections.Counter(
            f"{c['client_state'] or 'null'} / {c['server_state'] or 'null'}"
            for c in t["connections"])
        states = "<br>".join(f"{k} x{n}" if n > 1 else k for k, n in counts.items())
        found = ", ".join(sorted({f["kind"] for f in t["expected_findings"]})) or "none"
        extra = sorted({f["kind"] for f in t.get("incidental_findings", [])})
        if extra:
            found += f" ({', '.join(extra)})"
        what = t["description"].replace("|", "/")
        cap = t["capture"]
        if isinstance(cap, dict) and cap.get("where", "").split(",")[0] != "router":
            what += f" *Captured: {cap['where']}.*"
        rows.append(f"| `{capture}` | {what} | {states} | {found} |")
    text = README_HEAD % platform.release() + "\n".join(rows) + "\n"
    (out / "README.md").write_text(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default="", help="comma-separated scenario names")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--list", action="store_true")
    p.add_argument("--readme", action="store_true", help="only rewrite sample_pcaps/README.md")
    a = p.parse_args(argv)
    if a.list:
        print("\n".join(SCENARIOS))
        return 0
    if a.readme:
        write_readme(a.out)
        return 0
    names = [n.strip() for n in a.only.split(",") if n.strip()] or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(unknown)}")
    a.out.mkdir(parents=True, exist_ok=True)
    for name in names:
        t0 = time.monotonic()
        truth = run_scenario(name, a.out)
        states = {(c["client_state"], c["server_state"]) for c in truth["connections"]}
        print(f"{name}: {time.monotonic() - t0:.1f}s, {len(truth['connections'])} "
              f"connection(s), states {sorted(states, key=str)[:4]}", flush=True)
    write_readme(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
