"""The shipped sample captures and their truth files agree with each other.

Needs only the committed files (no root, no tcpanalyze). The truth files' connection
states come from the kernel (ss) and their expected findings from the scenario design
(lab/make_samples.py); here they are checked against the capture itself with tshark, an
independent decoder: every connection listed exists, and every expected finding has the
packets that make it (e.g. a SYN-ACK sent twice for missing_third_ack).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

# TCA_SAMPLES_DIR checks a fresh `lab/make_samples.py --out DIR` run before committing it
SAMPLES = Path(os.environ.get("TCA_SAMPLES_DIR")
               or Path(__file__).resolve().parent.parent / "sample_pcaps")
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".pcap.gz", ".pcapng.gz")

FINDING_KINDS = {
    "missing_third_ack", "half_open", "close_wait_leak", "time_wait_violation",
    "time_wait_assassination", "rst_teardown", "connection_refused", "syn_flood",
    "port_scan", "fin_wait_2_stuck", "last_ack_stuck", "simultaneous_open",
    "simultaneous_close", "syn_retransmission", "retransmission", "zero_window",
    "keepalive", "invalid_flags", "data_after_close",
}
STATES = {
    "CLOSED", "LISTEN", "SYN_SENT", "SYN_RCVD", "ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2",
    "CLOSE_WAIT", "CLOSING", "LAST_ACK", "TIME_WAIT",
}
ENDPOINT_RE = re.compile(r"^(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-f:.]+\]):\d{1,5}$")
LINKTYPES = {1: "EN10MB", 113: "LINUX_SLL", 276: "LINUX_SLL2", 101: "RAW", 0: "NULL"}


def capture_files() -> list[Path]:
    return sorted(p for p in SAMPLES.iterdir() if p.name.endswith(CAPTURE_SUFFIXES))


def truth_files() -> list[Path]:
    return sorted(SAMPLES.glob("*.truth.json"))


def stem(path: Path) -> str:
    name = path.name
    for suffix in sorted(CAPTURE_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name.removesuffix(".truth.json")


def capture_for(truth: Path) -> Path:
    matches = [p for p in capture_files() if stem(p) == stem(truth)]
    assert len(matches) == 1, f"{truth.name}: capture files {matches}"
    return matches[0]


@cache
def load(truth: Path) -> dict[str, Any]:
    return json.loads(truth.read_text())


def ss_rows(t: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Parsed ss rows per host: a list, or {'rows': [...], 'text': ...} with the raw text."""
    return {role: v["rows"] if isinstance(v, dict) else v for role, v in t.get("ss", {}).items()}


TRUTHS = truth_files()
IDS = [stem(t) for t in TRUTHS]


# -- the files are there and well-formed ------------------------------------------------

def test_samples_exist() -> None:
    assert len(capture_files()) >= 20
    total = sum(p.stat().st_size for p in SAMPLES.iterdir())
    assert total < 5 * 1024 * 1024, f"sample_pcaps/ is {total} bytes"


@pytest.mark.parametrize("capture", capture_files(), ids=lambda p: p.name)
def test_every_capture_has_a_truth_file(capture: Path) -> None:
    assert (SAMPLES / f"{stem(capture)}.truth.json").is_file()


@pytest.mark.parametrize("truth", TRUTHS, ids=IDS)
def test_truth_file_is_well_formed(truth: Path) -> None:
    t = load(truth)
    capture_for(truth)
    assert t["scenario"] == stem(truth)
    assert isinstance(t["description"], str) and len(t["description"]) > 20
    # lab/make_samples.py writes a dict; other generators may name just the file
    if isinstance(t["capture"], dict):
        for key in ("command", "namespace", "interface", "linktype"):
            assert t["capture"][key], key
    else:
        assert isinstance(t["capture"], str)
    assert t["connections"], "a scenario has at least one connection"
    for c in t["connections"]:
        for side in ("client", "server"):
            assert ENDPOINT_RE.match(c[side]), c[side]
            state = c[f"{side}_state"]
            assert state is None or state in STATES, state
    for key in ("expected_findings", "incidental_findings"):
        for f in t.get(key, []):
            assert f["kind"] in FINDING_KINDS, f
    for role, rows in ss_rows(t).items():
        for row in rows:
            assert row["state"] in STATES, (role, row)


@pytest.mark.parametrize("truth", TRUTHS, ids=IDS)
def test_truth_states_agree_with_ss_snapshot(truth: Path) -> None:
    """Where a connection's endpoint was in an ss snapshot, its state is ss's; a socket
    absent from every snapshot is CLOSED (or null: no kernel)."""
    t = load(truth)
    rows = [r for rs in ss_rows(t).values() for r in rs]
    if not rows and not t.get("ss"):
        pytest.skip("no ss snapshot in this truth file")
    seen: dict[tuple[str, str], str] = {(r["local"], r["peer"]): r["state"] for r in rows}
    last: dict[tuple[str, str], dict[str, Any]] = {}
    for c in t["connections"]:  # a reused tuple: only the last incarnation is in ss
        last[(c["client"], c["server"])] = c
    for (cl, sv), c in last.items():
        if c["client_state"] is not None:
            assert c["client_state"] == seen.get((cl, sv), "CLOSED"), c
        if c["server_state"] is not None:
            assert c["server_state"] == seen.get((sv, cl), "CLOSED"), c


def file_linktypes(path: Path) -> list[str]:
    data = path.read_bytes()
    if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        return [LINKTYPES.get(struct.unpack("<I", data[20:24])[0] & 0xFFFF, "?")]
    if data[:4] in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        return [LINKTYPES.get(struct.unpack(">I", data[20:24])[0] & 0xFFFF, "?")]
    assert data[:4] == b"\x0a\x0d\x0d\x0a", f"{path.name}: unknown format"
    end = "<" if data[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
    types, off = [], 0
    while off + 12 <= len(data):
        btype, blen = struct.unpack(end + "II", data[off:off + 8])
        if btype == 1:
            types.append(LINKTYPES.get(struct.unpack(end + "H", data[off + 8:off + 10])[0], "?"))
        off += max(blen, 12)
    return types


@pytest.mark.parametrize("truth", TRUTHS, ids=IDS)
def test_linktype_matches_file(truth: Path) -> None:
    cap = load(truth)["capture"]
    if not isinstance(cap, dict) or "linktypes" not in cap:
        pytest.skip("truth file names no link types")
    assert file_linktypes(capture_for(truth)) == cap["linktypes"]


# -- cross-check against tshark ----------------------------------------------------------

needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")


def tshark(*args: str) -> str:
    proc = subprocess.run(["tshark", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def bracket(addr: str, port: str) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


@cache
def conversations(path: Path) -> set[frozenset[str]]:
    """tshark's TCP conversations as unordered endpoint pairs in truth-file notation."""
    pairs = set()
    for line in tshark("-r", str(path), "-q", "-z", "conv,tcp").splitlines():
        if "<->" not in line:
            continue
        left, right = line.split("<->")
        ends = []
        for text in (left.split()[0], right.split()[0]):
            addr, port = text.rsplit(":", 1)
            ends.append(bracket(addr, port))
        pairs.add(frozenset(ends))
    return pairs


@needs_tshark
@pytest.mark.tshark
@pytest.mark.parametrize("truth", TRUTHS, ids=IDS)
def test_connections_exist_in_capture(truth: Path) -> None:
    convs = conversations(capture_for(truth))
    missing = [c for c in load(truth)["connections"]
               if frozenset((c["client"], c["server"])) not in convs]
    assert not missing, f"{len(missing)} connection(s) not in tshark's conv,tcp: {missing[:3]}"


@dataclass
class Seg:
    """One TCP segment as tshark decodes it (innermost IP header for tunnels)."""

    ts: float
    src: str
    dst: str
    flags: int
    seq: int
    ack: int
    length: int
    window: int
    keepalive: bool
    retransmission: bool

    @property
    def syn(self) -> bool:
        return bool(self.flags & 0x02)

    @property
    def fin(self) -> bool:
        return bool(self.flags & 0x01)

    @property
    def rst(self) -> bool:
        return bool(self.flags & 0x04)

    @property
    def has_ack(self) -> bool:
        return bool(self.flags & 0x10)


@cache
def segments(path: Path) -> list[Seg]:
    fields = ["frame.time_epoch", "ip.src", "ipv6.src", "tcp.srcport", "ip.dst", "ipv6.dst",
              "tcp.dstport", "tcp.flags", "tcp.seq_raw", "tcp.ack_raw", "tcp.len",
              "tcp.window_size_value", "tcp.analysis.keep_alive",
              "tcp.analysis.retransmission"]
    out = tshark("-r", str(path), "-Y", "tcp", "-T", "fields", "-E", "occurrence=l",
                 *(x for f in fields for x in ("-e", f)))
    segs = []
    for line in out.splitlines():
        v = line.split("\t")
        src = bracket(v[2], v[3]) if v[2] else bracket(v[1], v[3])
        dst = bracket(v[5], v[6]) if v[5] else bracket(v[4], v[6])
        segs.append(Seg(float(v[0]), src, dst, int(v[7], 16), int(v[8]), int(v[9] or 0),
                        int(v[10] or 0), int(v[11] or 0), bool(v[12]), bool(v[13])))
    # a multi-interface pcapng is not in timestamp order; evidence is about time order
    segs.sort(key=lambda s: s.ts)
    return segs


def between(segs: list[Seg], a: str, b: str) -> list[Seg]:
    return [s for s in segs if {s.src, s.dst} == {a, b}]


def host_of(endpoint: str) -> str:
    return endpoint.rsplit(":", 1)[0]


# Each check gets the finding, its truth file and the capture's segments and asserts the
# packets that make the finding are there.

def ev_connection_refused(f: dict[str, Any], t: dict[str, Any], segs: list[Seg]) -> None:
    sv = f["server"]
    assert any(s.src == sv and s.rst and s.has_ack for s in segs), "no RST-ACK from server"
    assert not any(s.src == sv and s.syn for s in segs), "the port answered a SYN"


def the_connection(f: dict[str, Any], t: dict[str, Any], segs: list[Seg]) -> list[Seg]:
    conns = [c for c in t["connections"] if c["server"] == f["server"]]
    if "client" in f:
        conns = [c for c in conns if c["client"] == f["client"]]
    assert conns, f"no connection to {f['server']} in the truth file"
    return between(segs, conns[-1]["client"], conns[-1]["server"])


def ev_rst_teardown(f: dict[str, Any], t: dict[str, Any], segs: list[Seg]) -> None:
    conv = the_connection(f, t, segs)
    assert any(s.syn and s.has_ack for s in conv), "never established"
    assert any(s.rst for s in conv), "no RST"


def ev_missing_third_ack(f: dict[str, Any], t: dict[str, Any], segs: list[Seg]) -> None:
    conv = the_connection(f, t, segs)
    synacks = [s for s in conv if s.syn and s.has_ack]
    assert len(synacks) >= 2 and len({s.seq for s in synacks}) == 1, "SYN-ACK not resent"
    client = synacks[0].dst
    assert any(s.src == client and s.has_ack and not s.syn and s.ts > synacks[0].ts
               for s in conv), "the third ACK is not in the capture"
    assert not any(s.src == client and s.length for s in conv), "client sent data"


def ev_syn_retransmission(f: dict[str, Any], t: dict[str, Any], segs: list[Seg]) -> None:
    conv = the_connection(f, t, segs)
    syns = [s for s in conv if s.syn and not s.has_ack]
    assert len(syns) >= 2 and len({s.seq for s in syns}) == 1


def ev_half_open(f: dict[str, Any], t: dict[str, Any], segs: list[Seg]) -> None:
    # one side sends the same segment again and again, the other never answers it
    conv = the_connection(f, t, segs)
    last = conv[-1]
    repeats = [s for s in conv if (s.src, s.seq, s.length, s.flags) ==
               (last.src, last.seq, last.length, last.flags)]
    assert len(repeats) >= 3, "the last segment is not repeated"
    assert not any(s.src == last.dst and s.ts > repeats[0].ts for s in conv), "peer answered"


def ev_retransmission(f: dict[str, Any], t: dict[str, Any], segs: list[Seg]) -> None:
    assert any(s.retransmission for s in the_connection(f, t, segs))


def ev_close_wait_leak(f: dict[str, Any], t: dict[str, Any], segs: list[Seg]) -> None:
    conv = the_connection(f, t, segs)
    sv = f["server"]
    client_fin = next(s for s in conv if s.dst == sv and s.fin)
    assert any(s.src == sv and s.ack == client_fin.seq + 1 for s in conv), "FIN not ACKed"
    assert not any(s.src == sv and s.fin for s in conv), "the server closed"
    assert segs[-1].ts - client_fin.ts > 5.0, "capture ends too soon after the FIN"


def ev_fin_wait_2_stuck(f: dict[str, Any], t: dict[str, Any], segs: list[Seg]) -> None:
    conv = the_connection(f, t, segs)
    sv = f["server"]
    client_fin = next(s for s in conv if s.src == f["client"] and s.fin)
    fin_ack = next(s for s in conv if s.src == sv and s.ack == client_fin.seq + 1)
    assert not any(s.src == sv and s.ts > fin_ack.ts for s in conv), "the peer was seen again"
    assert segs[-1].ts - fin_ack.ts > 5.0, "capture ends too soon after the FIN's ACK"


def ev_last_ack_stuck(f: dict[str, Any], t: dict[str, Any], segs: list[Seg]) -> None:
    conv = the_connection(f, t, segs)
    sv = f["server"]
    client_fin = next(s for s in conv if s.dst == sv and s.fin)
    server_fins = [s for s in conv if s.src == sv and s.fin and s.ts > client_fin.ts]
    assert len(server_fins) >= 2 and len({s.seq for s in server_fins}) == 1, "FIN not resent"
    fin_seq = server_fins[0].seq
    assert not any(s.dst == sv and s.ack == fin_seq + 1 for s in conv), "the FIN was ACKed"
    assert segs[-1].ts - server_fins[0].ts > 1.0


def ev_time_wait_violation(f: dict[str, Any], t: dict[str, Any], segs: list[Seg]) -> None:
    conv = the_connection(f, t, segs)
    syns = [s for s in conv if s.syn and not s.has_ack]
    assert len({s.seq for s in syns}) >= 2, "only one connection on the tuple"
    second = next(s for s in syns if s.seq != syns[0].seq)
    fins = [s for s in conv if s.fin and s.ts < second.ts]
    assert {s.src for s in fins} == {f["server"], second.src}, "first one not closed"
    assert second.ts - fins[-1].ts < 60.0, "outside 2*MSL"


def ev_time_wait_assassination(f: dict[str, Any], t: dict[str, Any], segs: list[Seg]
                               ) -> None:
    conv = the_connection(f, t, segs)
    fins = [s for s in conv if s.fin]
    assert len({s.src for s in fins}) == 2, "not closed by both sides"
    rst = [s for s in conv if s.rst and s.ts > fins[-1].ts]
    assert rst, "no RST after the close"
    # it carries exactly the sequence number the TIME_WAIT side expects
    tw_side = rst[0].dst
    peer_fin = next(s for s in fins if s.src == rst[0].src)
    assert rst[0].seq == peer_fin.seq + 1, (rst[0].seq, peer_fin.seq)
    assert next(s for s in fins if s.src == tw_side).ts < peer_fin.ts, "RST hit the passive side"


def ev_simultaneous_close(f: dict[str, Any], t: dict[str, Any], segs: list[Seg]) -> None:
    conv = the_connection(f, t, segs)
    first_fin: dict[str, Seg] = {}
    for s in conv:
        if s.fin:
            first_fin.setdefault(s.src, s)
    assert len(first_fin) == 2
    a, b = first_fin.values()
    # neither side's first FIN acknowledges the other's FIN: they crossed
    assert a.ack != b.seq + 1 and b.ack != a.seq + 1


def ev_simultaneous_open(f: dict[str, Any], t: dict[str, Any], segs: list[Seg]) -> None:
    conv = the_connection(f, t, segs)
    first_synack = min((s.ts for s in conv if s.syn and s.has_ack), default=float("inf"))
    senders = {s.src for s in conv if s.syn and not s.has_ack and s.ts < first_synack}
    assert len(senders) == 2, "SYNs from one side only"


def ev_zero_window(f: dict[str, Any], t: dict[str, Any], segs: list[Seg]) -> None:
    conv = the_connection(f, t, segs)
    assert any(s.src == f["server"] and s.window == 0 and not s.rst and not s.syn
               for s in conv), "the server never advertised a zero window"


def ev_keepalive(f: dict[str, Any], t: dict[str, Any], segs: list[Seg]) -> None:
    assert sum(s.keepalive for s in the_connection(f, t, segs)) >= 2


def ev_syn_flood(f: dict[str, Any], t: dict[str, Any], segs: list[Seg]) -> None:
    """A flood while it lasts: in the capture up to some whole second after the first SYN
    (syn-flood-recovered completes many handshakes after its flood), >= 200 SYNs from >= 20
    hosts at >= 100/s, of which fewer than 20% completed by then."""
    all_syns = [s for s in segs if s.dst == f["server"] and s.syn and not s.has_ack]
    assert all_syns, "no SYNs to the server"
    start = all_syns[0].ts
    seconds = int(all_syns[-1].ts - start) + 1
    failures = []
    for k in range(1, seconds + 1):
        syns = [s for s in all_syns if s.ts < start + k]
        hosts = len({host_of(s.src) for s in syns})
        rate = len(syns) / max(syns[-1].ts - start, 1e-6)
        completed = {s.src for s in segs if s.ts < start + k and s.dst == f["server"]
                     and s.has_ack and not s.syn and not s.rst}
        share = len(completed) / len({s.src for s in syns})
        if len(syns) >= 200 and hosts >= 20 and rate >= 100 and share < 0.2:
            return
        failures.append(f"first {k} s: {len(syns)} SYNs, {hosts} hosts, {rate:.0f}/s, "
                        f"{share:.0%} completed")
    raise AssertionError("never a flood: " + "; ".join(failures))


def ev_port_scan(f: dict[str, Any], t: dict[str, Any], segs: list[Seg]) -> None:
    probes: dict[str, set[str]] = defaultdict(set)
    for s in segs:
        if s.syn and not s.has_ack and host_of(s.src) == f["source"]:
            probes[host_of(s.dst)].add(s.dst)
    assert len(probes[f["host"]]) >= 20


def ev_invalid_flags(f: dict[str, Any], t: dict[str, Any], segs: list[Seg]) -> None:
    def invalid(flags: int) -> bool:
        syn, fin, rst, ack = flags & 0x02, flags & 0x01, flags & 0x04, flags & 0x10
        return (flags & 0x3F == 0 or bool(syn and fin) or bool(syn and rst)
                or bool(fin and not ack))

    odd = [s for s in segs if s.dst == f["server"] and host_of(s.src) == f["source"]
           and invalid(s.flags)]
    assert len(odd) >= 3, f"only {len(odd)} segments with impossible flags"


EVIDENCE = {name.removeprefix("ev_"): fn for name, fn in globals().items()
            if name.startswith("ev_")}


def finding_cases() -> list[Any]:
    cases = []
    for truth in TRUTHS:
        for i, f in enumerate(load(truth).get("expected_findings", [])):
            cases.append(pytest.param(truth, f, id=f"{stem(truth)}-{i}-{f['kind']}"))
    return cases


@needs_tshark
@pytest.mark.tshark
@pytest.mark.parametrize(("truth", "finding"), finding_cases())
def test_expected_finding_is_visible_in_capture(truth: Path, finding: dict[str, Any]) -> None:
    check = EVIDENCE.get(finding["kind"])
    if check is None:
        pytest.skip(f"no capture check for {finding['kind']}")
    check(finding, load(truth), segments(capture_for(truth)))


def test_every_designed_finding_kind_has_a_sample() -> None:
    """The lab covers the finding kinds it can cause with a real kernel."""
    kinds = {f["kind"] for t in TRUTHS for f in load(t).get("expected_findings", [])}
    assert set(EVIDENCE) <= kinds, set(EVIDENCE) - kinds


# -- the ss parser that produced the truth files -------------------------------------------

# real `ss -tanoi` output from the lab's namespaces (iproute2 6.1), info lines shortened
SS_SERVER = """\
State  Recv-Q Send-Q      Local Address:Port       Peer Address:Port Process
LISTEN 0      128                     *:8080                  *:*
\t bbr cwnd:10
ESTAB  0      0             [fd77:2::2]:8080        [fd77:1::2]:40003
\t ts sack bbr wscale:10,10 rto:204 rtt:0.196/0.098 mss:1428
ESTAB  0      0      [::ffff:10.77.2.2]:8080 [::ffff:10.77.1.2]:40002
\t ts sack bbr wscale:10,10 rto:204 rtt:0.03/0.015 mss:1448
SYN-RECV 0      0             10.77.2.2:8080         10.77.1.2:40030 timer:(on,1.012ms,1)
CLOSE-WAIT 1    0             10.77.2.2:8080         10.77.1.2:40040
\t ts sack bbr wscale:10,10 rto:204
"""
SS_CLIENT = """\
State     Recv-Q Send-Q Local Address:Port  Peer Address:PortProcess
TIME-WAIT 0      0          10.77.1.2:40001    10.77.2.2:8081 timer:(timewait,59sec,0)
\t
FIN-WAIT-2 0      0          10.77.1.2:40040    10.77.2.2:8080 timer:(timewait,57sec,0)
\t ts sack bbr wscale:10,10 rto:204
SYN-SENT  0      1          10.77.1.2:40031    10.77.2.2:8080 timer:(on,2.1sec,2)
\t ts sack bbr
"""


def test_parse_ss_maps_states_and_endpoints() -> None:
    from lab.netns import parse_ss, state_of

    srv = parse_ss(SS_SERVER)
    assert [r["state"] for r in srv] == ["LISTEN", "ESTABLISHED", "ESTABLISHED", "SYN_RCVD",
                                         "CLOSE_WAIT"]
    # IPv4-mapped addresses of a dual-stack socket are written as plain IPv4
    assert srv[2]["local"] == "10.77.2.2:8080" and srv[2]["peer"] == "10.77.1.2:40002"
    assert srv[1]["peer"] == "[fd77:1::2]:40003"
    assert state_of(srv, "10.77.2.2:8080", "10.77.1.2:40030") == "SYN_RCVD"
    assert state_of(srv, "10.77.2.2:8080", "10.77.1.2:49999") == "CLOSED"
    cli = parse_ss(SS_CLIENT)
    assert [r["state"] for r in cli] == ["TIME_WAIT", "FIN_WAIT_2", "SYN_SENT"]
    assert cli[0]["timer"] == "timer:(timewait,59sec,0)"
    assert cli[2]["send_q"] == "1"
