"""A throw-away network of Linux network namespaces: client -- router -- server.

    client  (eth0) 10.77.1.2/24  fd77:1::2/64
       |  veth
    router  (c0)   10.77.1.1/24  fd77:1::1/64   forwarding on, rp_filter off
            (s0)   10.77.2.1/24  fd77:2::1/64
       |  veth
    server  (eth0) 10.77.2.2/24  fd77:2::2/64

Extra client-side hosts (attacker, scanner, ...) each get their own link to the router:
host number k (1-based) sits on 10.77.(2+k).2 behind router interface h<k>.  The router
also black-holes 10.77.100.0/22 (``Lab.spoof_net4``), so spoofed sources from there are
inside the lab and replies to them die on the router.

Every veth is created directly inside its namespaces, so interface names never touch
the root namespace and parallel labs with different prefixes / /16s cannot collide.
Deleting a namespace deletes its veths and its iptables rules; ``Lab`` kills the
processes it started and deletes its namespaces on exit, whatever happened.

Needs root, iproute2, and for captures tcpdump or dumpcap.  Example::

    from lab.netns import Lab
    with Lab(prefix="tca-live-", net4="10.77") as lab:
        cap = lab.capture("router", "s0", "/tmp/x.pcap")
        lab.run("server", ["ss", "-tan"])
        cap.stop()
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ENDPOINT = str(Path(__file__).resolve().parent / "endpoint.py")

# ss's state names -> RFC 793 names (CLOSE and UNCONN are sockets without a connection)
SS_STATES: dict[str, str] = {
    "ESTAB": "ESTABLISHED",
    "SYN-SENT": "SYN_SENT",
    "SYN-RECV": "SYN_RCVD",
    "FIN-WAIT-1": "FIN_WAIT_1",
    "FIN-WAIT-2": "FIN_WAIT_2",
    "TIME-WAIT": "TIME_WAIT",
    "CLOSE-WAIT": "CLOSE_WAIT",
    "LAST-ACK": "LAST_ACK",
    "CLOSING": "CLOSING",
    "LISTEN": "LISTEN",
    "UNCONN": "CLOSED",
    "CLOSE": "CLOSED",
}


class LabError(RuntimeError):
    pass


def run(argv: Sequence[str], check: bool = True, timeout: float = 10.0) -> str:
    """Run a command (no shell) and return its stdout; raise LabError with stderr on failure."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def normalise_endpoint(text: str) -> str:
    """'[::ffff:10.1.2.3]:80' -> '10.1.2.3:80'; IPv6 stays '[addr]:port'; '*' kept."""
    m = re.fullmatch(r"\[::ffff:(\d+\.\d+\.\d+\.\d+)\]:(\S+)", text)
    if m:
        return f"{m.group(1)}:{m.group(2)}"
    m = re.fullmatch(r"([0-9a-fA-F:]*:[0-9a-fA-F:.]*)%?\S*:(\d+|\*)", text)
    if m and not text.startswith("["):  # old ss prints bare IPv6
        return f"[{m.group(1)}]:{m.group(2)}"
    return text


def parse_ss(text: str) -> list[dict[str, str]]:
    """Parse `ss -tanoi` output into rows {state, local, peer, ss_state, recv_q, send_q, timer}.

    With -i every socket has a second, indented line of TCP info; it is kept as 'info'.
    """
    rows: list[dict[str, str]] = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("State"):
            continue
        if line[0].isspace():  # -i continuation line
            if rows:
                rows[-1]["info"] = line.strip()
            continue
        parts = line.split()
        if parts[0] not in SS_STATES or len(parts) < 5:
            continue
        row = {
            "state": SS_STATES[parts[0]],
            "local": normalise_endpoint(parts[3]),
            "peer": normalise_endpoint(parts[4]),
            "ss_state": parts[0],
            "recv_q": parts[1],
            "send_q": parts[2],
        }
        timer = next((p for p in parts[5:] if p.startswith("timer:")), None)
        if timer:
            row["timer"] = timer
        rows.append(row)
    return rows


def state_of(rows: list[dict[str, str]], local: str, peer: str) -> str:
    """The RFC state of the socket local<->peer in parsed ss rows; 'CLOSED' when absent."""
    for row in rows:
        if row["local"] == local and row["peer"] == peer:
            return row["state"]
    return "CLOSED"


@dataclass
class Host:
    name: str  # role: client, router, server, attacker, ...
    ns: str  # namespace name
    addr4: str = ""
    addr6: str = ""
    ifname: str = "eth0"


class Capture:
    """A tcpdump/dumpcap process writing a file in a namespace; stop() ends it with SIGINT."""

    def __init__(self, argv: list[str], path: str, ns: str, interface: str):
        self.argv = argv
        self.path = path
        self.ns = ns
        self.interface = interface
        # path '-': the capture is written to self.stdout (a live pipe for a reader)
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE if path == "-" else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=False,
        )
        self.stdout = self.proc.stdout
        self.stderr = ""
        self._wait_started()

    def _wait_started(self, timeout: float = 5.0) -> None:
        # tcpdump/dumpcap say "listening on"/"Capturing on" once the socket is bound;
        # packets sent before that would be lost.
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        lines: list[str] = []
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline().decode(errors="replace")
            if not line:
                break
            lines.append(line)
            if "listening on" in line or "Capturing on" in line:
                # keep draining stderr so the pipe never fills
                threading.Thread(target=self._drain, daemon=True).start()
                time.sleep(0.05)
                return
        self.proc.kill()
        raise LabError(f"capture did not start: {' '.join(self.argv)}: {''.join(lines)}")

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr += line.decode(errors="replace")

    @property
    def command(self) -> str:
        return " ".join(self.argv)

    def stop(self, timeout: float = 5.0) -> str:
        """SIGINT, wait for the file to be complete; returns the path."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.path


class Program:
    """A process in a namespace whose stdout lines can be awaited (lab/endpoint.py speaks
    'READY', 'OK ...', 'ERR ...')."""

    def __init__(self, argv: list[str], name: str):
        self.argv = argv
        self.name = name
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line.rstrip("\n"))
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, prefix: str, timeout: float = 10.0) -> str:
        """Wait for a stdout line starting with prefix; LabError on ERR, exit or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LabError(f"{self.name}: no {prefix!r} within {timeout}s: {self.output}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise LabError(f"{self.name}: exited before {prefix!r}: {self.output}")
            if line.startswith(prefix):
                return line
            if line.startswith("ERR") and not prefix.startswith("ERR"):
                raise LabError(f"{self.name}: {line}")

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def do(self, command: str, timeout: float = 10.0) -> str:
        """Send one endpoint command and wait for its 'OK' (or raise on 'ERR')."""
        self.send(command)
        return self.expect("OK", timeout)

    def wait(self, timeout: float = 10.0) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Lab:
    """client -- router -- server namespaces; use as a context manager.

    prefix: namespace names are prefix + role ('tca-lab-client', ...).
    net4:   the first two octets of the lab's IPv4 /16 ('10.77').
    net6:   the first group of the lab's IPv6 /16 ('fd77'); links are net6:N::/64.
    extra:  names of extra client-side hosts (e.g. ['attacker', 'scanner']).
    replace_stale: delete namespaces with our names left by a crashed run instead of failing.
    offloads: keep veth checksum/segmentation offloads (captures then show partial
              checksums and >MTU segments); off by default when ethtool is present.
    """

    prefix: str = "tca-lab-"
    net4: str = "10.77"
    net6: str = "fd77"
    extra: Sequence[str] = ()
    replace_stale: bool = False
    offloads: bool = False
    hosts: dict[str, Host] = field(default_factory=dict)
    _programs: list[Program] = field(default_factory=list)
    _captures: list[Capture] = field(default_factory=list)
    _created: list[str] = field(default_factory=list)
    removed: set[str] = field(default_factory=set)  # roles whose host was removed

    # -- addresses ------------------------------------------------------------------
    @property
    def spoof_net4(self) -> str:
        """A /22 inside the lab's /16 that no host owns; the router black-holes it."""
        return f"{self.net4}.100.0/22"

    def addr(self, role: str, family: int = 4) -> str:
        host = self.hosts[role]
        return host.addr4 if family == 4 else host.addr6

    def endpoint(self, role: str, port: int, family: int = 4) -> str:
        """'10.77.1.2:40001' or '[fd77:1::2]:40001', the form ss and truth files use."""
        a = self.addr(role, family)
        return f"{a}:{port}" if family == 4 else f"[{a}]:{port}"

    def ns(self, role: str) -> str:
        return self.hosts[role].ns

    # -- life cycle -----------------------------------------------------------------
    def __enter__(self) -> Lab:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self) -> None:
        if os.geteuid() != 0:
            raise LabError("network namespaces need root")
        roles = ["client", "router", "server", *self.extra]
        existing = set(run(["ip", "netns", "list"]).split())
        for role in roles:
            name = self.prefix + role
            if len(name) > 64:
                raise LabError(f"namespace name too long: {name}")
            if name in existing:
                if not self.replace_stale:
                    raise LabError(f"namespace {name} exists (another lab? pass replace_stale)")
                self._kill_ns_processes(name)
                run(["ip", "netns", "del", name], check=False)
            run(["ip", "netns", "add", name])
            self._created.append(name)
            self.hosts[role] = Host(role, name)
            # no DAD on interfaces created later: a tentative link-local address delays
            # neighbour discovery by ~2 s and the first SYNs would queue and be resent
            self.run_in(name, ["sysctl", "-q", "-w", "net.ipv6.conf.default.accept_dad=0",
                               "net.ipv6.conf.all.accept_dad=0"])
        r = self.ns("router")
        self.hosts["router"].ifname = "c0"
        links = [("client", "c0", 1), ("server", "s0", 2)]
        links += [(role, f"h{k}", 2 + k) for k, role in enumerate(self.extra, 1)]
        for role, rif, subnet in links:
            host = self.hosts[role]
            run(["ip", "link", "add", "eth0", "netns", host.ns, "type", "veth",
                 "peer", "name", rif, "netns", r])
            host.addr4 = f"{self.net4}.{subnet}.2"
            host.addr6 = f"{self.net6}:{subnet}::2"
            for ns, ifname, a4, a6 in (
                (host.ns, "eth0", host.addr4, host.addr6),
                (r, rif, f"{self.net4}.{subnet}.1", f"{self.net6}:{subnet}::1"),
            ):
                run(["ip", "-n", ns, "addr", "add", f"{a4}/24", "dev", ifname])
                # nodad: the address is usable at once instead of after ~2 s of DAD
                run(["ip", "-n", ns, "addr", "add", f"{a6}/64", "dev", ifname, "nodad"])
                run(["ip", "-n", ns, "link", "set", ifname, "up"])
                if not self.offloads and shutil.which("ethtool"):
                    # real NICs hand tcpdump finished checksums and MTU-sized segments
                    self.run_in(ns, ["ethtool", "-K", ifname, "tx", "off", "tso", "off",
                                     "gso", "off", "gro", "off"], check=False)
            run(["ip", "-n", host.ns, "link", "set", "lo", "up"])
            run(["ip", "-n", host.ns, "route", "add", "default", "via",
                 f"{self.net4}.{subnet}.1"])
            run(["ip", "-n", host.ns, "-6", "route", "add", "default", "via",
                 f"{self.net6}:{subnet}::1"])
        self.hosts["router"].addr4 = f"{self.net4}.1.1"
        self.hosts["router"].addr6 = f"{self.net6}:1::1"
        run(["ip", "-n", r, "link", "set", "lo", "up"])
        run(["ip", "-n", r, "route", "add", "blackhole", self.spoof_net4])
        self.sysctl("router", {
            "net.ipv4.ip_forward": "1",
            "net.ipv6.conf.all.forwarding": "1",
            # spoofed lab sources arrive from the attacker's link
            "net.ipv4.conf.all.rp_filter": "0",
            "net.ipv4.conf.default.rp_filter": "0",
        })
        self._wait_links_up()

    def _wait_links_up(self, timeout: float = 5.0) -> None:
        # veth carrier comes up asynchronously (linkwatch); traffic before that is lost
        deadline = time.monotonic() + timeout
        for host in self.hosts.values():
            while True:
                out = run(["ip", "-n", host.ns, "-br", "link"])
                if "DOWN" not in out and "LOWERLAYERDOWN" not in out:
                    break
                if time.monotonic() > deadline:
                    raise LabError(f"links of {host.ns} not up: {out}")
                time.sleep(0.05)

    def down(self) -> None:
        for cap in self._captures:
            cap.stop()
        for prog in self._programs:
            prog.stop()
        for name in reversed(self._created):
            self._kill_ns_processes(name)
            run(["ip", "netns", "del", name], check=False)
        self._created.clear()

    def remove_host(self, role: str) -> None:
        """Make a host vanish at once (its kernel and sockets gone, its links down), as a
        crashed machine would; the router's interface to it disappears too."""
        ns = self.ns(role)
        # a killed process would close its sockets (FIN/RST); a crashed host sends nothing
        for tool in ("iptables", "ip6tables"):
            self.run_in(ns, [tool, "-w", "-P", "OUTPUT", "DROP"])
        self._kill_ns_processes(ns)
        run(["ip", "netns", "del", ns])
        self._created.remove(ns)
        self.removed.add(role)

    @staticmethod
    def _kill_ns_processes(name: str) -> None:
        # a process left inside keeps the namespace (and its sockets) alive after 'del'
        for pid in run(["ip", "netns", "pids", name], check=False).split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)

    # -- doing things in namespaces ---------------------------------------------------
    def exec_argv(self, role_or_ns: str, argv: Sequence[str]) -> list[str]:
        ns = self.hosts[role_or_ns].ns if role_or_ns in self.hosts else role_or_ns
        return ["ip", "netns", "exec", ns, *argv]

    def run_in(self, role_or_ns: str, argv: Sequence[str], check: bool = True,
               timeout: float = 10.0) -> str:
        """Run a command inside a namespace (no shell) and return its stdout."""
        return run(self.exec_argv(role_or_ns, argv), check=check, timeout=timeout)

    def sysctl(self, role: str, values: dict[str, str]) -> None:
        self.run_in(role, ["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in values.items())])

    def iptables(self, role: str, rule: Sequence[str], family: int = 4) -> None:
        """iptables inside the namespace, e.g. ['-A', 'INPUT', '-p', 'tcp', ..., '-j', 'DROP']."""
        self.run_in(role, ["iptables" if family == 4 else "ip6tables", "-w", *rule])

    def spawn(self, role: str, argv: Sequence[str], name: str | None = None) -> Program:
        """Start a long-running program in a namespace; killed at the latest on exit."""
        prog = Program(self.exec_argv(role, argv), name or f"{role}:{argv[0]}")
        self._programs.append(prog)
        return prog

    def endpoint_program(self, role: str, args: Sequence[str], name: str | None = None
                         ) -> Program:
        """lab/endpoint.py with the given arguments, inside the role's namespace."""
        return self.spawn(role, [sys.executable, "-u", ENDPOINT, *args], name or role)

    def capture(
        self,
        role: str,
        interface: str,
        path: str | os.PathLike[str],
        *,
        linktype: str | None = None,
        nano: bool = False,
        bpf: str = "",
        snaplen: int = 0,
    ) -> Capture:
        """tcpdump -U -w PATH in a namespace; interface 'any' for all of them,
        linktype e.g. 'LINUX_SLL2', nano for nanosecond timestamps.  PATH '-' writes the
        capture to the returned Capture's .stdout (a live stream; read it while it runs)."""
        argv = ["tcpdump", "-n", "-U", "--immediate-mode", "-i", interface, "-w", str(path)]
        # tcpdump drops root to 'tcpdump' for the file write unless told otherwise
        argv[1:1] = ["-Z", "root"]
        if snaplen:
            argv += ["-s", str(snaplen)]
        if linktype:
            argv += ["-y", linktype]
        if nano:
            argv += ["--time-stamp-precision", "nano"]
        if bpf:
            argv.append(bpf)
        cap = Capture(self.exec_argv(role, argv), str(path), self.ns(role), interface)
        self._captures.append(cap)
        return cap

    def capture_pcapng(
        self,
        role: str,
        interfaces: Sequence[tuple[str, str]],
        path: str | os.PathLike[str],
    ) -> Capture:
        """dumpcap writing pcapng from several interfaces, each (name, capture filter)."""
        argv = ["dumpcap", "-q", "-w", str(path)]
        for ifname, bpf in interfaces:
            argv += ["-i", ifname]
            if bpf:
                argv += ["-f", bpf]
        cap = Capture(self.exec_argv(role, argv), str(path), self.ns(role),
                      ",".join(i for i, _ in interfaces))
        self._captures.append(cap)
        return cap

    def ss(self, role: str) -> list[dict[str, str]]:
        """Parsed `ss -tanoi` of the namespace (TCP sockets, all states)."""
        return parse_ss(self.run_in(role, ["ss", "-tanoi"]))

    def exchange(self, lport: int, port: int = 8080, family: int = 4, closer: str = "client",
                 nbytes: int = 300, client_role: str = "client") -> tuple[str, str]:
        """One ordinary connection client -> server:port from local port lport: nbytes
        each way, then `closer` ('client' or 'server') closes first and the other follows.
        Returns (client endpoint, server endpoint) in truth-file notation."""
        any_addr = "0.0.0.0" if family == 4 else "::"
        if closer == "client":
            srv_do, cli_do = "echo; close", f"send {nbytes}; recv {nbytes}; close"
        else:
            srv_do = f"recv {nbytes}; send {nbytes}; close"
            cli_do = f"send {nbytes}; recv-eof; close"
        srv = self.endpoint_program("server", ["listen", "--addr", any_addr, "--port", str(port),
                                               "--do", srv_do], f"server:{port}")
        srv.expect("READY")
        cli = self.endpoint_program(client_role, [
            "connect", "--addr", self.addr("server", family), "--port", str(port),
            "--local-port", str(lport), "--do", cli_do], f"{client_role}:{lport}")
        cli.expect("DONE")
        srv.expect("DONE")
        return self.endpoint(client_role, lport, family), self.endpoint("server", port, family)
