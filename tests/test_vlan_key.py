"""The VLAN-aware connection key (settings.vlan_tracking, `--vlan`, `-s vlan-tracking=1`).

Expectations come from the captures themselves, read here with dpkt (or tshark), and from
Zeek's logs stored beside them, never from our own output. With tracking off the key is
the five-tuple (tests/test_corpus_connections.py); with it on, each VLAN (outer and inner
id) is a key of its own, as in Zeek's VLAN-aware key and Suricata's vlan.use-for-tracking.
"""

from __future__ import annotations

import gzip
import json
import shutil
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tcpanalyze.analysis import analyze
from tcpanalyze.assignment import Assignment, bucket_of
from tcpanalyze.parallel import analyze_parallel
from tcpanalyze.report import Report
from tcpanalyze.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
MINI = ROOT / "tests" / "data" / "bench-mini.pcap.gz"
COLLISIONS = CORPUS / "zeek" / "vlan-collisions"
ON = Settings(vlan_tracking=True)
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus is not beside")

SYN, ACK, FIN, RST = 0x02, 0x10, 0x01, 0x04


def _frames(capture: Path) -> list[tuple[int, tuple[int, ...], Any]]:
    """(frame number, VLAN ids outer first, the dpkt TCP segment) of each TCP frame."""
    import dpkt

    out = []
    with capture.open("rb") as f:
        reader = dpkt.pcapng.Reader(f) if capture.suffix == ".pcapng" else dpkt.pcap.Reader(f)
        for number, (_, data) in enumerate(reader, 1):
            at, tags = 14, []
            etype = int.from_bytes(data[12:14], "big")
            while etype in (0x8100, 0x88A8, 0x9100):
                tags.append(int.from_bytes(data[at:at + 2], "big") & 0x0FFF)
                etype = int.from_bytes(data[at + 2:at + 4], "big")
                at += 4
            ip_class = {0x0800: dpkt.ip.IP, 0x86DD: dpkt.ip6.IP6}.get(etype)
            if ip_class is None:  # (MPLS, ...: not read here)
                continue
            ip = ip_class(data[at:])
            if isinstance(ip.data, dpkt.tcp.TCP):
                out.append((number, tuple(tags), ip.data))
    return out


def _zeek_rows(log: Path) -> list[dict[str, str]]:
    lines = log.read_text().splitlines()
    header = next(ln for ln in lines if ln.startswith("ts\t") or ln.startswith("#fields"))
    names = header.removeprefix("#fields\t").split("\t")
    return [dict(zip(names, ln.split("\t"), strict=True)) for ln in lines
            if ln[:1].isdigit() or ln.startswith("XXXX")]


def _cli(*args: str) -> bytes:
    return subprocess.run([sys.executable, "-m", "tcpanalyze", *args], capture_output=True,
                          check=True, cwd=ROOT).stdout


# -- vlan-collisions: one five-tuple on three VLANs ---------------------------------------

@needs_corpus
def test_vlan_collisions_are_three_clean_connections() -> None:
    frames = _frames(COLLISIONS / "capture.pcap")
    by_tags: dict[tuple[int, ...], list[Any]] = {}
    for _, tags, tcp in frames:
        by_tags.setdefault(tags, []).append(tcp)
    # what each copy holds: a whole connection, handshake to both FINs
    client_port = frames[0][2].sport
    expected = {}
    for tags, segs in by_tags.items():
        flags = [t.flags & (SYN | ACK | FIN | RST) for t in segs]
        assert flags[:3] == [SYN, SYN | ACK, ACK]
        assert not any(f & RST for f in flags)
        assert {t.sport for t in segs if t.flags & FIN} == {client_port, 80}
        sent = Counter(t.sport == client_port for t in segs)
        expected[tags] = (sent[True], sent[False])
    # Zeek's VLAN-aware key: three records of 7 + 7, VLANs (none), 42 and 10/20
    zeek = {tuple(int(r[k]) for k in ("id.ctx.vlan", "id.ctx.inner_vlan") if r[k] != "-"):
            (int(r["orig_pkts"]), int(r["resp_pkts"]))
            for r in _zeek_rows(COLLISIONS / "zeek-conn.vlan-aware.log")}
    assert expected == zeek == {(): (7, 7), (42,): (7, 7), (10, 20): (7, 7)}

    report = analyze(str(COLLISIONS / "capture.pcap"), ON)
    got = {tuple(c.vlan): (c.packets_client, c.packets_server) for c in report.connections}
    assert got == expected
    for conn in report.connections:
        assert conn.client.endswith(f":{client_port}") and conn.server.endswith(":80")
        assert conn.quality["handshake_seen"] and conn.conn_state == "SF"
        assert conn.history.startswith("ShA") and "F" in conn.history and "f" in conn.history
        assert (conn.client_state, conn.server_state) == ("TIME_WAIT", "CLOSED")
        assert conn.findings == []
    # merged (tracking off) the copies looked like retransmissions of one connection
    assert not {f.kind for f in report.findings} & {"missing_third_ack", "keepalive"}
    assert report.findings == []


@needs_corpus
def test_vlan_key_outputs_only_with_tracking() -> None:
    capture = str(COLLISIONS / "capture.pcap")
    on = json.loads(_cli("report", "-f", "json", "--jobs", "1", "--no-progress", "--vlan",
                         capture))
    assert sorted(c["vlan"] for c in on["connections"]) == [[], [10, 20], [42]]
    assert _cli("report", "-f", "json", "--jobs", "1", "--no-progress", "-s",
                "vlan-tracking=1", capture) == json.dumps(on, indent=2).encode() + b"\n"
    off = json.loads(_cli("report", "-f", "json", "--jobs", "1", "--no-progress", capture))
    assert all("vlan" not in c for c in off["connections"])
    assert len(off["connections"]) == 1
    # Zeek's conn.log: the VLAN-aware key's two columns after the endpoints, as in the
    # reference log's header
    reference = (COLLISIONS / "zeek-conn.vlan-aware.log").read_text().splitlines()
    ref_names = next(ln for ln in reference if ln.startswith("ts\t")).split("\t")
    log = _cli("report", "-f", "zeek", "--jobs", "1", "--no-progress", "--vlan", capture)
    names = next(ln for ln in log.decode().splitlines() if ln.startswith("#fields"))
    names_list = names.split("\t")[1:]
    at = names_list.index("id.resp_p")
    assert names_list[at + 1:at + 3] == ref_names[ref_names.index("id.resp_p") + 1:][:2]
    rows = _zeek_rows_text(log.decode())
    assert sorted((r["id.ctx.vlan"], r["id.ctx.inner_vlan"], r["orig_pkts"], r["resp_pkts"])
                  for r in rows) == sorted(
        (r["id.ctx.vlan"], r["id.ctx.inner_vlan"], r["orig_pkts"], r["resp_pkts"])
        for r in _zeek_rows(COLLISIONS / "zeek-conn.vlan-aware.log"))
    plain = _cli("report", "-f", "zeek", "--jobs", "1", "--no-progress", capture).decode()
    assert "id.ctx.vlan" not in plain
    # the flows table has a vlan column only with tracking
    table = _cli("flows", "--jobs", "1", "--no-progress", "--vlan", capture).decode()
    assert "vlan" in table and "10/20" in table and " 42 " in table
    assert "vlan" not in _cli("flows", "--jobs", "1", "--no-progress", capture).decode()


def _zeek_rows_text(text: str) -> list[dict[str, str]]:
    lines = text.splitlines()
    names = next(ln for ln in lines if ln.startswith("#fields")).split("\t")[1:]
    return [dict(zip(names, ln.split("\t"), strict=True)) for ln in lines
            if not ln.startswith("#")]


# -- one connection whose two directions carry different tags -----------------------------

@needs_corpus
@pytest.mark.parametrize("item", ["suricata-verify/syn-retransmit-ts-vlan",
                                  "zeek/ldap-gap-multi-if-pcapng"])
def test_directions_with_different_tags_become_one_sided_halves(item: str) -> None:
    """Documented: with the VLAN-aware key (as in Zeek's and Suricata's), a connection
    whose directions are tagged differently is two connections, each seen one way."""
    capture = next((CORPUS / item).glob("capture.pcap*"))
    sent: Counter[tuple[tuple[int, ...], int]] = Counter()
    for _, tags, tcp in _frames(capture):
        sent[tags, tcp.sport] += 1
    assert len(sent) == 2 and len({tags for tags, _ in sent}) == 2  # one tag set a side
    off = analyze(str(capture))
    assert len(off.connections) == 1
    report = analyze(str(capture), ON)
    got = {}
    for conn in report.connections:
        assert conn.quality["both_directions"] is False
        one_way = conn.packets_client if conn.packets_client else conn.packets_server
        assert 0 in (conn.packets_client, conn.packets_server)
        sender = conn.client if conn.packets_client else conn.server
        got[tuple(conn.vlan), int(sender.rsplit(":", 1)[1])] = one_way
    assert got == dict(sent)


# -- --jobs: each VLAN-aware connection in one worker -------------------------------------

def _retagged(tmp_path: Path, name: str, tag_of: Any) -> Path:
    """bench-mini with each IPv4 TCP frame given the tags `tag_of(frame index, ports)`
    returns (bytes to insert after the MACs, b"" for none)."""
    data = gzip.decompress(MINI.read_bytes())
    parts, at, count = [data[:24]], 24, 0
    while at < len(data):
        head = data[at:at + 16]
        caplen, wirelen = struct.unpack_from("<II", head, 8)
        frame = data[at + 16:at + 16 + caplen]
        at += 16 + caplen
        if frame[12:14] == b"\x08\x00" and frame[23] == 6 and len(frame) >= 38:
            ports = tuple(sorted(struct.unpack_from("!HH", frame, 34)))
            tags = tag_of(count, ports)
            count += 1
            if tags:
                frame = frame[:12] + tags + frame[12:]
                head = head[:8] + struct.pack("<II", caplen + len(tags), wirelen + len(tags))
        parts += [head, frame]
    path = tmp_path / name
    path.write_bytes(b"".join(parts))
    return path


QINQ = b"\x88\xa8\x00\x0a\x81\x00\x00\x14"  # outer 10, inner 20


def _whole_flows(count: int, ports: tuple[int, ...]) -> bytes:
    return (b"", b"\x81\x00\x00\x07", QINQ)[sum(ports) % 3]


def _every_third_frame(count: int, ports: tuple[int, ...]) -> bytes:
    return b"\x81\x00\x00\x07" if count % 3 == 2 else b""


def _without_vlan(report: Report) -> dict[str, Any]:
    out = report.to_dict()
    for conn in out["connections"]:
        conn.pop("vlan")
    return out


def test_untagged_keys_are_unchanged_with_tracking() -> None:
    """An untagged capture gives the same report with tracking on, but for the "vlan"
    key of each connection (empty)."""
    off = analyze(str(MINI))
    on = analyze(str(MINI), ON)
    assert all(c.vlan == [] for c in on.connections)
    assert _without_vlan(on) == off.to_dict()


def test_whole_flows_on_vlans(tmp_path: Path) -> None:
    """Connections each wholly on one VLAN (or none): the same connections with tracking
    on as off, each with its own VLAN ids; --jobs 2 and 3 give one process's report."""
    tagged = _retagged(tmp_path, "flows.pcap", _whole_flows)
    off = analyze(str(tagged))
    on = analyze(str(tagged), ON)
    assert len(on.connections) == len(off.connections) > 100
    ids = {tuple(c.vlan) for c in on.connections}
    assert ids == {(), (7,), (10, 20)}
    for conn in on.connections:
        ports = tuple(sorted(int(e.rsplit(":", 1)[1]) for e in (conn.client, conn.server)))
        assert tuple(conn.vlan) == ((), (7,), (10, 20))[sum(ports) % 3]
    one = on.to_dict()
    assert analyze_parallel(str(tagged), ON, jobs=2).to_dict() == one
    assert analyze_parallel(str(tagged), ON, jobs=3).to_dict() == one


def test_mixed_frames_with_tracking_stay_together_in_workers(tmp_path: Path) -> None:
    """Every third TCP frame tagged: with tracking, a flow's tagged frames are another
    connection than its untagged ones (decoded by the per-frame decoder, the others by
    the columns); each must still be one worker's, so --jobs 2 and 3 give one
    process's report, on the CLI too (byte for byte, and for Zeek's records)."""
    tagged = _retagged(tmp_path, "mixed.pcap", _every_third_frame)
    on = analyze(str(tagged), ON)
    off = analyze(str(tagged))
    assert len(on.connections) > len(off.connections)
    assert {tuple(c.vlan) for c in on.connections} == {(), (7,)}
    one = on.to_dict()
    assert analyze_parallel(str(tagged), ON, jobs=2).to_dict() == one
    assert analyze_parallel(str(tagged), ON, jobs=3).to_dict() == one
    for fmt in ("json", "zeek"):
        first = _cli("report", "-f", fmt, "--jobs", "1", "--no-progress", "--vlan",
                     str(tagged))
        for jobs in ("2", "3"):
            assert _cli("report", "-f", fmt, "--jobs", jobs, "--no-progress", "--vlan",
                        str(tagged)) == first, (fmt, jobs)


@needs_corpus
@pytest.mark.parametrize("jobs", [2, 3])
def test_vlan_collisions_with_jobs(jobs: int) -> None:
    capture = str(COLLISIONS / "capture.pcap")
    args = ("report", "-f", "json", "--no-progress", "--vlan", capture)
    assert _cli(*args[:3], "--jobs", str(jobs), *args[3:]) == _cli(*args[:3], "--jobs", "1",
                                                                    *args[3:])
    one = analyze(capture, ON).to_dict()
    assert analyze_parallel(capture, ON, jobs=jobs).to_dict() == one


def test_bucket_of_mixes_the_vlan_only_when_there_is_one() -> None:
    a, b = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    plain = bucket_of(a, 40000, b, 80)
    assert bucket_of(a, 40000, b, 80, 0) == plain
    assert bucket_of(b, 80, a, 40000, 42) == bucket_of(a, 40000, b, 80, 42)  # either way
    # with 2**20 buckets, different VLANs of one five-tuple rarely share one
    assert len({bucket_of(a, 40000, b, 80, v) for v in range(1, 200)} | {plain}) == 200
    one, other = Assignment(2, 60.0), Assignment(2, 60.0)
    assert one.worker(a, 40000, b, 80, 1.0, 42) == other.worker(b, 80, a, 40000, 1.0, 42)


# -- decoders -------------------------------------------------------------------------------

@needs_corpus
@pytest.mark.parametrize("item", ["zeek/vlan-collisions", "zeek/vlan-pcp-dei-pcapng",
                                  "zeek/vlan-mpls", "suricata-verify/vlan-close-wait",
                                  "zeek/ldap-gap-multi-if-pcapng"])
def test_both_decoders_keep_the_tags_dpkt_reads(item: str) -> None:
    from tcpanalyze.capture import open_capture, time_ordered
    from tcpanalyze.decode import Decoder

    capture = next((CORPUS / item).glob("capture.pcap*"))
    expected = {n: tags for n, tags, _ in _frames(capture)}
    assert any(expected.values())

    def packed(tags: tuple[int, ...]) -> int:
        value = 0
        for vid in tags[:2]:
            value = value << 12 | vid
        return value

    decoder = Decoder()
    ours = {seg.frame: seg.vlan for seg in map(decoder.decode, time_ordered(
        open_capture(str(capture)))) if seg is not None}
    # (frames dpkt does not see as Ethernet TCP, MPLS ones say, are not compared)
    assert {n: ours[n] for n in expected} == {n: packed(t) for n, t in expected.items()}
    if shutil.which("tshark") is None:
        return
    from tcpanalyze.tshark import tshark_segments

    theirs = {seg.frame: seg.vlan for seg in tshark_segments(str(capture))}
    assert {n: theirs[n] for n in expected} == {n: packed(t) for n, t in expected.items()}
