"""Hostile input: regressions for what the fuzzers found, resource bounds (allocation,
header chains, frames held for ordering, connection-table floods), file names and payloads
that must never be executed, evaluated or used as a path.

The classes of bad input and what the user sees are listed in docs/bad-input.md."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from fuzz.captures import (
    DATA,
    check_capture,
    ether,
    ipv4,
    ipv4_addr,
    ipv6,
    pcap_file,
    pcapng_block,
    pcapng_epb,
    pcapng_idb,
    pcapng_shb,
    tcp_header,
)
from tcpanalyze.capture import Frame, open_capture, time_ordered
from tcpanalyze.decode import MAX_TIMESTAMP, Decoder
from tcpanalyze.segment import ACK, SYN

ROOT = Path(__file__).resolve().parent.parent
A, B = ipv4_addr(1), ipv4_addr(2)


@contextlib.contextmanager
def within(seconds: float) -> Iterator[None]:
    """Fail (instead of hanging the suite) when the body runs longer than `seconds`."""
    def expire(*_: object) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def handshake(ts: float = 1_700_000_000.0, sport: int = 40000) -> list[tuple[float, bytes]]:
    """A three-way handshake, a data segment and its ACK, as Ethernet frames."""
    c = 1000
    s = 5000
    return [
        (ts, ether(ipv4(A, B, tcp_header(sport, 80, c, 0, SYN)))),
        (ts + 0.001, ether(ipv4(B, A, tcp_header(80, sport, s, c + 1, SYN | ACK)))),
        (ts + 0.002, ether(ipv4(A, B, tcp_header(sport, 80, c + 1, s + 1, ACK)))),
        (ts + 0.003, ether(ipv4(A, B, tcp_header(sport, 80, c + 1, s + 1, ACK) + b"x" * 10))),
        (ts + 0.004, ether(ipv4(B, A, tcp_header(80, sport, s + 1, c + 11, ACK)))),
    ]


# -- regressions found by the fuzzers ---------------------------------------------------------


@pytest.mark.parametrize("stamp", [2**62, 2**64 - 1, 2**56])
def test_absurd_pcapng_timestamp_is_malformed_not_a_hang(tmp_path: Path, stamp: int) -> None:
    # Found by fuzzing: a bit flip in an if_tsresol/timestamp gave 3.3e18 s; `now + 5.0`
    # equalled `now` and the flow table's timer sweep never ended.
    frames = handshake()
    body = [pcapng_shb(), pcapng_idb()]
    for i, (ts, data) in enumerate(frames):
        if i == 2:
            body.append(pcapng_block(6, struct.pack("<IIIII", 0, stamp >> 32,
                                                    stamp & 0xFFFFFFFF, len(data), len(data))
                                     + data))
        else:
            body.append(pcapng_epb(ts, data))
    path = tmp_path / "future.pcapng"
    path.write_bytes(b"".join(body))
    with within(20):
        outcome = check_capture(str(path))
    assert outcome.report is not None
    cap = outcome.report.captures[0]
    assert cap.packets == 5 and cap.error is None
    assert cap.skipped["malformed"] == 1 and cap.tcp_segments == 4
    assert cap.last_ts is not None and cap.last_ts < MAX_TIMESTAMP


def test_negative_timestamp_from_tsoffset_is_malformed(tmp_path: Path) -> None:
    # if_tsoffset (option 14) is signed: a hostile one puts every frame before 1970
    tsoffset = struct.pack("<HHq", 14, 8, -(2**40)) + struct.pack("<HH", 0, 0)
    body = [pcapng_shb(), pcapng_idb(options=tsoffset)]
    body += [pcapng_epb(ts, data) for ts, data in handshake()]
    path = tmp_path / "past.pcapng"
    path.write_bytes(b"".join(body))
    decoder = Decoder()
    frames = list(open_capture(str(path)))
    assert all(f.ts < 0 for f in frames)
    assert [decoder.decode(f) for f in frames] == [None] * 5
    assert decoder.counts["malformed"] == 5
    assert "timestamp" in decoder.examples["malformed"][0][1]
    with within(20):
        outcome = check_capture(str(path))
    assert outcome.report is not None and outcome.report.connections == []


def test_time_ordering_holds_a_bounded_number_of_bytes(tmp_path: Path) -> None:
    # Two interfaces whose clock stands still: ordering by time must not hold the whole
    # capture back (it held every frame until the end before the byte bound).
    payload = b"\0" * 1000
    body = [pcapng_shb(), pcapng_idb(), pcapng_idb()]
    body += [pcapng_epb(1.0, payload, ifid=i & 1) for i in range(20_000)]
    path = tmp_path / "still.pcapng"
    path.write_bytes(b"".join(body))
    reader = open_capture(str(path))
    tracemalloc.start()
    try:
        count = sum(1 for _ in time_ordered(reader, max_held=1 << 20))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 20_000
    assert peak < 6 * 1024 * 1024  # the frames alone are 20 MB


def test_time_ordering_still_orders_within_the_bound(tmp_path: Path) -> None:
    # the bound must not break what ordering is for: dumpcap's interleaved buffers
    body = [pcapng_shb(), pcapng_idb(), pcapng_idb()]
    stamps = [1.0, 1.2, 1.4, 1.1, 1.3, 1.5]
    body += [pcapng_epb(ts, b"\0" * 60, ifid=i // 3) for i, ts in enumerate(stamps)]
    path = tmp_path / "interleaved.pcapng"
    path.write_bytes(b"".join(body))
    ordered = list(time_ordered(open_capture(str(path))))
    assert [f.ts for f in ordered] == sorted(stamps)
    assert [f.number for f in ordered] == [1, 4, 2, 5, 3, 6]


# -- a capture engineered to create very many connections -------------------------------------

FLOOD_SERVER = ipv4_addr(0xFFFF)


def syn_flood_pcap(path: Path, count: int, rate: float = 10_000.0) -> None:
    """`count` SYNs from distinct sources to one server port, `rate` per second."""
    head = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
    parts = [head]
    for i in range(count):
        ts = 1_700_000_000 + i / rate
        frame = ether(ipv4(ipv4_addr(i + 1), FLOOD_SERVER,
                           tcp_header(1024 + i % 60000, 80, i * 7919, 0, SYN)))
        parts.append(struct.pack("<IIII", int(ts), round((ts % 1) * 1e6), len(frame),
                                 len(frame)) + frame)
    path.write_bytes(b"".join(parts))


def test_syn_flood_keeps_the_flow_table_and_its_timers_bounded(tmp_path: Path) -> None:
    # Before the fix the timer heap kept an entry (and so the whole Connection) for every
    # evicted connection until its deadline (63 s of capture time): a flood of distinct
    # SYNs kept all of them alive whatever max_connections said.
    import gc

    from tcpanalyze.analysis import Analysis, read_into
    from tcpanalyze.settings import Settings
    from tcpanalyze.tracker import Connection

    count, limit = 20_000, 1000
    path = tmp_path / "flood.pcap"
    syn_flood_pcap(path, count)
    analysis = Analysis(Settings(max_connections=limit), keep_connections=False)
    with within(120):
        summary = read_into(analysis, str(path))
    assert summary.tcp_segments == count and summary.error is None
    gc.collect()
    alive = sum(isinstance(o, Connection) for o in gc.get_objects())
    assert alive <= 2 * limit + 1024, alive
    assert analysis.table.peak <= limit
    analysis.finish()
    assert analysis.table.evicted == count - limit
    assert "syn_flood" in {f.kind for f in analysis.findings}


# -- file names and payloads are data, never code or paths -------------------------------------

HOSTILE_NAMES = [
    "with space.pcap",
    "-leading-dash.pcap",
    "--version.pcap",
    "semi;colon.pcap",
    "$(touch PWNED).pcap",
    "`touch PWNED`.pcap",
    "quote'single.pcap",
    'quote"double.pcap',
    "new\nline.pcap",
    "tab\tand\x1bescape.pcap",
    "[/x]markup.pcap",  # a folder '[', a file 'x]...': rich markup (it crashed the terminal)
    "%s%n{0}.pcap",
    "ünïcødé.pcap",
]
ETH_NANO_FRAMES = 43  # capinfos tests/data/eth-nano.pcap


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tcpanalyze", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def hostile_path(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name  # '/' in a name means a folder ('[' for the markup case)
    path.parent.mkdir(exist_ok=True)
    shutil.copyfile(DATA / "eth-nano.pcap", path)
    return path


def assert_no_canary(tmp_path: Path) -> None:
    assert not list(tmp_path.rglob("PWNED*")), "a file name was executed"


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_file_names_through_the_cli(tmp_path: Path, name: str) -> None:
    path = hostile_path(tmp_path, name)
    for fmt in ("json", "terminal"):
        proc = run_cli("report", "--decoder", "dpkt", "-f", fmt, "--", str(path),
                       cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr and proc.stderr == ""
        if fmt == "json":
            data = json.loads(proc.stdout)
            assert data["capture"]["path"] == str(path)
            assert data["capture"]["packets"] == ETH_NANO_FRAMES
    assert_no_canary(tmp_path)


@pytest.mark.parametrize("name", ["new\nline.pcap", "[/x]markup.pcap",
                                  "$(touch PWNED);x.pcap"])
def test_read_error_for_a_hostile_name_is_one_line(tmp_path: Path, name: str) -> None:
    path = hostile_path(tmp_path, name)
    path.write_bytes(path.read_bytes()[:3000])  # cut inside a record
    proc = run_cli("report", "--decoder", "dpkt", "-f", "terminal", "--", str(path),
                   cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("tcpanalyze: ") and "frame " in lines[0]
    assert path.name.split("\n")[-1] in lines[0]
    assert_no_canary(tmp_path)


needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None,
                                  reason="tshark is not installed (apt-get install tshark)")


@needs_tshark
@pytest.mark.tshark
def test_tshark_decoder_gets_hostile_names_as_one_argument(tmp_path: Path) -> None:
    from tcpanalyze.analysis import analyze

    for name in HOSTILE_NAMES:
        path = hostile_path(tmp_path, name)
        report = analyze(str(path), decoder="tshark")
        cap = report.captures[0]
        assert cap.error is None, (name, cap.error)
        # tshark counts the same frames as capinfos does
        assert cap.packets == ETH_NANO_FRAMES, name
    assert_no_canary(tmp_path)


SHELL_AND_PYTHON = [
    b"$(touch PWNED_PAYLOAD)", b"`touch PWNED_PAYLOAD`", b"; touch PWNED_PAYLOAD #",
    b"__import__('os').system('touch PWNED_PAYLOAD')", b"{0.__class__}%s%n%x",
    b"[/red][bold]markup", b"\x1b]0;title\x07\x1b[2J", b"../../../../etc/passwd\0",
]


def test_payload_text_is_never_evaluated(tmp_path: Path) -> None:
    """Shell, Python, format-string, markup and terminal-escape text in TCP payloads and
    in options: counted as bytes, nothing else."""
    frames = handshake()[:3]
    c, s = 1001, 5001
    ts = frames[-1][0]
    for text in SHELL_AND_PYTHON:
        ts += 0.01
        frames.append((ts, ether(ipv4(A, B, tcp_header(40000, 80, c, s, ACK,
                                                        options=text[:40]) + text))))
        c += len(text)
    path = tmp_path / "payloads.pcap"
    path.write_bytes(pcap_file(frames))
    for fmt in ("json", "terminal", "sarif", "markdown", "csv", "zeek"):
        proc = run_cli("report", "--decoder", "dpkt", "-f", fmt, str(path), cwd=tmp_path)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        assert b"PWNED" not in proc.stdout.encode()
    data = json.loads(run_cli("report", "-f", "json", str(path), cwd=tmp_path).stdout)
    assert data["capture"]["tcp_segments"] == len(frames)
    assert data["connections"][0]["bytes"]["client"] == sum(len(t) for t in SHELL_AND_PYTHON)
    assert_no_canary(tmp_path)


# -- deep and looping header chains, decompression bombs ----------------------------------------


def test_thousand_deep_header_chains_are_bounded() -> None:
    """Stacks far deeper than any network: each frame is judged within a bounded walk."""
    inner = ipv4(A, B, tcp_header(40000, 80, 1, 1, ACK))
    vlan = b"".join(b"\0\x01\x81\x00" for _ in range(1000))
    mpls = b"".join(struct.pack("!I", 16 << 12 | 64) for _ in range(1000))  # no bottom
    hop = bytes((0, 0)) + b"\0" * 6  # hop-by-hop naming hop-by-hop again: a loop
    ah = bytes((51, 0)) + b"\0" * 6  # IPv4 AH naming AH again
    frames = [
        ether(vlan + inner, 0x8100),
        ether(mpls + inner, 0x8847),
        ether(ipv6(bytes(16), bytes(16), tcp_header(1, 2, 3, 4, ACK), nh=0, ext=hop * 1000),
              0x86DD),
        ether(ipv4(A, B, ah * 1000 + tcp_header(1, 2, 3, 4, ACK), proto=51)),
    ]
    decoder = Decoder()
    with within(5):
        for i, data in enumerate(frames, 1):
            assert decoder.decode(Frame(i, 1.0, 1, len(data), data)) is None
    assert decoder.counts["malformed"] == len(frames)
    assert all("more than" in why or "too long" in why
               for _, why in decoder.examples["malformed"])


def test_gzip_bomb_is_streamed_in_bounded_memory(tmp_path: Path) -> None:
    # 64 MiB of records of zeros inflates from ~64 KiB: it must be streamed, never held
    import zlib

    pack = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
    record = struct.pack("<IIII", 1_700_000_000, 0, 1008, 1008) + bytes(1008)
    chunk = record * 1024  # 1 MiB
    parts = [pack.compress(head)] + [pack.compress(chunk) for _ in range(64)] + [pack.flush()]
    path = tmp_path / "bomb.pcap.gz"
    path.write_bytes(b"".join(parts))
    assert path.stat().st_size < 200_000
    reader = open_capture(str(path))
    tracemalloc.start()
    try:
        count = 0
        for _ in reader:
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 64 * 1024 and reader.error is None
    assert peak < 16 * 1024 * 1024


def test_syn_flood_through_the_cli_counts_evictions(tmp_path: Path) -> None:
    """`-s max-connections=1000` against a flood of distinct SYNs: the report says how many
    connections were evicted, the table never held more than the limit, and the process
    stays within a memory bound. TCPANALYZE_FUZZ_SCALE=10 runs the 200k-SYN version."""
    import resource

    scale = int(os.environ.get("TCPANALYZE_FUZZ_SCALE", "1"))
    count, limit = (200_000 if scale >= 10 else 30_000), 1000
    path = tmp_path / "flood.pcap"
    syn_flood_pcap(path, count)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run(
        # one worker: with --jobs N every worker has its own table of max-connections
        [sys.executable, "-m", "tcpanalyze", "report", "-f", "json", "--decoder", "dpkt",
         "--jobs", "1", "--no-timeline", "-s", f"max-connections={limit}", str(path)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    rss_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"{count} SYNs, max-connections={limit}: child peak RSS {rss_mib:.0f} MiB")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    data = json.loads(proc.stdout)
    assert data["capture"]["tcp_segments"] == count
    assert data["stats"]["evicted"] == count - limit
    assert data["stats"].get("peak_tracked", limit) <= limit
    assert "syn_flood" in {f["kind"] for f in data["findings"]}
    # the report itself lists every connection; the bound is on what tracking costs
    if before < rss_mib * 1024:  # a fresh peak: this child's own
        assert rss_mib < 120 + count * 0.008, rss_mib  # a guard: 8 KiB per reported connection


@needs_tshark
@pytest.mark.tshark
def test_tshark_decoder_refuses_an_empty_file_and_guards_time(tmp_path: Path) -> None:
    from tcpanalyze.analysis import analyze
    from tcpanalyze.tshark import TsharkError

    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    # tshark itself reads an empty file as zero packets; the dpkt path refuses it
    with pytest.raises(TsharkError, match="empty file, not a capture"):
        analyze(str(empty), decoder="tshark")
    # the same absurd timestamp as the dpkt regression above: malformed, no stall
    frames = handshake()
    stamp = 2**62
    body = [pcapng_shb(), pcapng_idb()]
    for i, (ts, data) in enumerate(frames):
        body.append(pcapng_block(6, struct.pack("<IIIII", 0, stamp >> 32, stamp & 0xFFFFFFFF,
                                                len(data), len(data)) + data)
                    if i == 2 else pcapng_epb(ts, data))
    path = tmp_path / "future.pcapng"
    path.write_bytes(b"".join(body))
    with within(60):
        cap = analyze(str(path), decoder="tshark").captures[0]
    assert cap.packets == 5
    assert cap.tcp_segments == 4 and cap.skipped["malformed"] == 1
