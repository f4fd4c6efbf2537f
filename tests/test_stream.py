"""Streaming from a pipe: findings as packets arrive, Ctrl-C/SIGTERM, closed pipes, bounded
tables. The captures are the lab's real ones (sample_pcaps/, with the kernels' `ss` truth);
the flood for the table bounds is synthetic (spoofed sources cannot be real anyway)."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tcpanalyze.analysis import Analysis, read_into
from tcpanalyze.flows import FlowTable
from tcpanalyze.segment import ACK, FIN, SYN, Segment
from tcpanalyze.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_pcaps"
CLOSE_WAIT = SAMPLES / "close-wait-leak.pcap"


def _truth(name: str) -> dict:
    return json.loads((SAMPLES / f"{name}.truth.json").read_text())


def _cli(*args: str, **kwargs: object) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1", COLUMNS="100")
    return subprocess.Popen([sys.executable, "-m", "tcpanalyze", *args], cwd=ROOT, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kwargs)  # type: ignore[call-overload]


class _Lines:
    """Collect a process's stdout lines with the time each arrived, in a thread."""

    def __init__(self, stream: io.BufferedReader) -> None:
        self.lines: list[tuple[float, bytes]] = []
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream: io.BufferedReader) -> None:
        for line in stream:
            self.lines.append((time.monotonic(), line))

    def wait_for(self, needle: bytes, timeout: float = 15.0) -> float | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, line in list(self.lines):
                if needle in line:
                    return at
            time.sleep(0.02)
        return None


def _chunks(data: bytes, rng: random.Random) -> list[bytes]:
    """Irregular small pieces: pcap record headers and bodies end up split across reads."""
    out, i = [], 0
    while i < len(data):
        n = rng.choice((1, 3, 7, 16, 17, 40, 61, 100))
        out.append(data[i:i + n])
        i += n
    return out


# -- a finding on stdout before the input ends ----------------------------------------------


def test_finding_appears_before_input_ends_with_pieces_and_pauses() -> None:
    truth = _truth("close-wait-leak")
    expected = {(f["kind"], f["server"]) for f in truth["expected_findings"]}
    proc = _cli("report", "--format", "ndjson", "-")
    assert proc.stdin is not None and proc.stdout is not None
    out = _Lines(proc.stdout)
    rng = random.Random(7)
    try:
        for piece in _chunks(CLOSE_WAIT.read_bytes(), rng):
            proc.stdin.write(piece)
            proc.stdin.flush()
            if rng.random() < 0.1:
                time.sleep(rng.choice((0.001, 0.01, 0.05)))
        # Everything written, the pipe still open: the leak must be reported now.
        seen = out.wait_for(b'"close_wait_leak"')
        assert seen is not None, "no finding before the end of the input"
        assert proc.poll() is None  # still running, still waiting for packets
        closed_at = time.monotonic()
        proc.stdin.close()
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    out.thread.join(5)
    assert seen < closed_at
    records = [json.loads(line) for _, line in out.lines]
    assert records[-1]["type"] == "summary"  # the final summary is the last line
    assert records[-1]["packets"] == 22  # capinfos: 22 packets
    found = {(r["kind"], r["server"]) for r in records if r["type"] == "finding"}
    assert expected <= found


@pytest.mark.parametrize(("capture", "kind"), [
    ("refused.pcap", "connection_refused"),  # the RST answering the SYN decides it
    ("reset-linger0.pcap", "rst_teardown"),
    ("time-wait-reuse.pcap", "time_wait_violation"),  # the new SYN on the ports decides it
])
def test_finding_decided_by_the_packets_read_comes_while_the_pipe_stays_open(
        capture: str, kind: str) -> None:
    """The whole capture written at once, the pipe held open: no later packet comes to
    move capture time on (a sweep), yet the finding those packets decide is printed when
    the input pauses, not at the end of the input."""
    truth = _truth(capture.removesuffix(".pcap"))
    expected = {(f["kind"], f["server"]) for f in truth["expected_findings"]}
    assert kind in {k for k, _ in expected}
    proc = _cli("report", "--format", "ndjson", "-")
    assert proc.stdin is not None and proc.stdout is not None
    out = _Lines(proc.stdout)
    try:
        proc.stdin.write((SAMPLES / capture).read_bytes())
        proc.stdin.flush()
        seen = out.wait_for(f'"kind":"{kind}"'.encode(), timeout=8.0)
        assert seen is not None, f"no {kind} line while the pipe was open"
        assert proc.poll() is None  # still waiting for packets
        proc.stdin.close()
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    out.thread.join(5)
    records = [json.loads(line) for _, line in out.lines]
    assert records[-1]["type"] == "summary"
    findings = [r for r in records if r["type"] == "finding"]
    assert expected <= {(r["kind"], r["server"]) for r in findings}
    # printed once: the look at the pause and the later ones do not repeat it
    assert [r["kind"] for r in findings].count(kind) == 1
    assert records[-1]["findings"] == len(findings)


def test_settle_looks_only_at_new_evidence_and_only_on_a_pipe() -> None:
    """The sans-I/O side: `settle()` (a pause of the input) reports what the segments fed
    so far decide; a file's run never collects evidence for it."""
    from tcpanalyze.capture import open_capture
    from tcpanalyze.decode import Decoder

    def segments(name: str) -> list[Segment]:
        dec = Decoder()
        return [s for s in map(dec.decode, open_capture(str(SAMPLES / name))) if s]

    live = Analysis(Settings(), keep_connections=False, zeek_view=False)
    live.track_pauses()
    syn, rst = segments("refused.pcap")
    assert live.feed(syn) == [] and live.settle() == []  # a SYN alone decides nothing
    assert live.feed(rst) == []  # (a file's run would decide it at the next sweep)
    assert [f.kind for f in live.settle()] == ["connection_refused"]
    assert live.settle() == []  # nothing new since
    assert [f.kind for f in live.finish()] == []  # decided once, not again at the end
    assert [f.kind for f in live.findings] == ["connection_refused"]

    whole = Analysis(Settings())
    read_into(whole, str(SAMPLES / "refused.pcap"))
    assert whole.table.evident is None  # a file: nothing collected per segment
    assert whole.settle() == []


@pytest.mark.parametrize(("capture", "pause", "columns"), [
    (CLOSE_WAIT, 0.05, False),  # a quiet live stream: a few frames at each read
    (SAMPLES / "bulk-loss.pcap", 0.0, True),  # a file sent through the pipe at once
])
def test_a_pipe_loads_the_columnar_path_only_for_large_batches(
        capture: Path, pause: float, columns: bool) -> None:
    """numpy and the columnar path (~12 MiB) are loaded at the first batch of 128 frames
    or more: never by a quiet live stream, at once for a file sent through the pipe."""
    hook = ("import atexit, sys; atexit.register(lambda: print('numpy loaded:', "
            "'numpy' in sys.modules, file=sys.stderr)); from tcpanalyze.cli import entry; "
            "sys.argv[0] = 'tcpanalyze'; entry()")
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1")
    proc = subprocess.Popen([sys.executable, "-c", hook, "report", "--format", "ndjson", "-"],
                            cwd=ROOT, env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None
    data = capture.read_bytes()
    try:
        proc.stdin.write(data[:24])  # the file header; then the reader waits
        proc.stdin.flush()
        time.sleep(1.0)
        step = 200 if pause else len(data)  # ~2 frames a write, or all at once
        for i in range(24, len(data), step):
            proc.stdin.write(data[i:i + step])
            proc.stdin.flush()
            time.sleep(pause)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()
    summary = json.loads(out.splitlines()[-1])
    assert summary["type"] == "summary"
    assert summary["packets"] == {CLOSE_WAIT: 22}.get(capture, 4850)  # capinfos -c
    assert err.decode().splitlines()[-1] == f"numpy loaded: {columns}"


# -- a stream gives what the file gives --------------------------------------------------------


def _findings(analysis: Analysis) -> list[dict]:
    return [f.to_dict() for f in analysis.findings]


@pytest.mark.parametrize("capture", sorted(p.name for p in SAMPLES.glob("*.pcap*")))
def test_streaming_mode_finds_what_the_file_analysis_finds(capture: str) -> None:
    path = SAMPLES / capture
    whole = Analysis(Settings())
    whole_summary = read_into(whole, str(path))
    whole.finish()
    # stdin in 1000-byte reads, live settings: no Zeek view, only connections with findings
    live = Analysis(Settings(), keep_connections=False, zeek_view=False)

    class Pipe(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self.data, self.pos = data, 0

        def readable(self) -> bool:
            return True

        def readinto(self, buf: bytearray) -> int:  # type: ignore[override]
            n = min(len(buf), 1000, len(self.data) - self.pos)
            buf[:n] = self.data[self.pos:self.pos + n]
            self.pos += n
            return n

    stream = io.BufferedReader(Pipe(path.read_bytes()))
    live_summary = read_into(live, "-", stdin=stream)
    live.finish()
    assert live_summary.packets == whole_summary.packets
    assert live_summary.error is None
    assert live.connections_total == whole.connections_total
    assert _findings(live) == _findings(whole)
    with_findings = {c.id for c in whole.connections if c.findings}
    assert {c.id for c in live.connections} == with_findings


# -- Ctrl-C / SIGTERM on a real process ------------------------------------------------------


def _feed_and_signal(args: list[str], sig: int, wait_for: bytes | None = None
                     ) -> tuple[int, str, str, float]:
    """Write the CLOSE_WAIT capture into the process, keep the pipe open, signal it."""
    proc = _cli(*args)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    out = _Lines(proc.stdout)
    err = b""
    try:
        proc.stdin.write(CLOSE_WAIT.read_bytes())
        proc.stdin.flush()
        if wait_for is not None:
            assert out.wait_for(wait_for) is not None
        else:
            time.sleep(2.0)  # python start-up and the 22 packets
        assert proc.poll() is None
        sent = time.monotonic()
        os.kill(proc.pid, sig)
        code = proc.wait(timeout=20)
        took = time.monotonic() - sent
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdin.close()
    out.thread.join(5)
    return code, b"".join(line for _, line in out.lines).decode(), err.decode(), took


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_report_stdin_prints_the_final_report(sig: int) -> None:
    code, out, err, took = _feed_and_signal(["report", "--format", "ndjson", "-"], sig,
                                            wait_for=b'"close_wait_leak"')
    assert code == 0, err
    assert "Traceback" not in err
    summary = json.loads(out.splitlines()[-1])
    assert summary["type"] == "summary"
    assert summary["packets"] == 22
    assert summary["by_kind"].get("close_wait_leak") == 1
    assert took < 10


def test_sigint_during_terminal_report_prints_tables() -> None:
    code, out, err, _ = _feed_and_signal(["report", "-"], signal.SIGINT)
    assert code == 0, err
    assert "close_wait_leak" in out and "10.77.2.2:8080" in out
    assert "Traceback" not in err


@pytest.mark.parametrize("args", [["watch", "-"], ["report", "--live", "-"]])
def test_sigint_during_watch_prints_the_final_report(args: list[str]) -> None:
    code, out, err, took = _feed_and_signal(args, signal.SIGINT)
    assert code == 0, err
    assert "Traceback" not in err
    # the final report (terminal tables), with the leak the kernel's ss showed
    assert "close_wait_leak" in out
    assert "CLOSE_WAIT" in out
    assert took < 10


def test_sigint_with_nothing_received_ends_cleanly() -> None:
    proc = _cli("report", "--format", "ndjson", "-")
    assert proc.stdin is not None
    time.sleep(1.0)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    # no capture header ever arrived: that is an input error, said in one line
    assert proc.returncode == 2
    assert b"Traceback" not in err


# -- closed pipes ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["ndjson", "terminal", "json"])
def test_reader_going_away_ends_quietly(fmt: str) -> None:
    """`... | head -1`: the reader closes its end, the next write fails with EPIPE."""
    data = CLOSE_WAIT.read_bytes()
    proc = _cli("report", "--format", fmt, "-")
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # nobody will read the report
    proc.stdin.write(data)
    proc.stdin.close()
    code = proc.wait(timeout=20)
    err = proc.stderr.read().decode()
    assert "Traceback" not in err and "Broken pipe" not in err and "BrokenPipe" not in err
    # rich's own closed-pipe handling (terminal tables) exits 1; ours exits 0
    assert code == (1 if fmt == "terminal" else 0)


def test_head_on_a_shell_pipeline_is_quiet(tmp_path: Path) -> None:
    script = (f"cat {CLOSE_WAIT} | {sys.executable} -m tcpanalyze report -f ndjson - "
              f"| head -c 10 >/dev/null; cat {CLOSE_WAIT} | {sys.executable} -m tcpanalyze "
              f"report - | head -n 1 >/dev/null")
    proc = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert b"Traceback" not in proc.stderr and b"Broken" not in proc.stderr


# -- bounded tables --------------------------------------------------------------------------


def _seg(ts: float, src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int,
         flags: int, plen: int = 0) -> Segment:
    return Segment(0, ts, src, dst, sport, dport, seq, ack, flags, 65535, plen)


SERVER = bytes([10, 80, 255, 1])


def _handshake_and_close(ts: float, n: int) -> list[Segment]:
    c = bytes([10, 80, 1, n % 250 + 1])
    cp = 1024 + n
    a, b = 1000 * n, 500_000 + n
    return [
        _seg(ts, c, SERVER, cp, 443, a, 0, SYN),
        _seg(ts + 0.001, SERVER, c, 443, cp, b, a + 1, SYN | ACK),
        _seg(ts + 0.002, c, SERVER, cp, 443, a + 1, b + 1, ACK),
        _seg(ts + 0.003, c, SERVER, cp, 443, a + 1, b + 1, FIN | ACK),
        _seg(ts + 0.004, SERVER, c, 443, cp, b + 1, a + 2, FIN | ACK),
        _seg(ts + 0.005, c, SERVER, cp, 443, a + 2, b + 2, ACK),
    ]


def test_spoofed_syns_leave_the_table() -> None:
    """A random-source flood answered with SYN cookies (one SYN-ACK, never repeated):
    each attempt leaves once the cookie is recognised and the linger is over, so the
    table holds seconds of flood, not all of it."""
    rng = random.Random(3)
    analysis = Analysis(Settings(), keep_connections=False, zeek_view=False)
    rate, seconds = 200, 60
    t = 1_700_000_000.0
    for i in range(rate * seconds):
        ts = t + i / rate
        src = bytes([10, 80, 128 + rng.randrange(120), rng.randrange(1, 255)])
        sport, isn = rng.randrange(1024, 65535), rng.getrandbits(32)
        analysis.feed(_seg(ts, src, SERVER, sport, 80, isn, 0, SYN))
        analysis.feed(_seg(ts + 0.0001, SERVER, src, 80, sport, 7, isn + 1, SYN | ACK))
    table = analysis.table
    # 1.5 s to recognise a cookie + 1 s linger (no handshake, nothing in flight) + the
    # 1 s sweep: about 3.5 s of flood
    assert table.peak < rate * 5
    assert len(table) < rate * 5
    analysis.finish()
    assert analysis.connections_total == rate * seconds  # every attempt counted
    assert [f.kind for f in analysis.findings] == ["syn_flood"]
    assert analysis.findings[0].details["syns"] == rate * seconds
    assert analysis.connections == []  # no per-source summaries kept


def test_unanswered_syns_leave_after_the_syn_timeout() -> None:
    analysis = Analysis(Settings(), keep_connections=False, zeek_view=False)
    t = 1_700_000_000.0
    for i in range(3000):  # 20 SYNs/s for 150 s, nobody answers (dropped by a firewall)
        analysis.feed(_seg(t + i / 20, bytes([10, 80, 9, i % 200 + 1]), SERVER, 2000 + i,
                           22, i, 0, SYN))
    # a SYN_SENT lasts syn_timeout (63 s), then 5 s linger: ~70 s of attempts, not 150
    assert analysis.table.peak < 20 * 72
    analysis.finish()
    assert analysis.connections_total == 3000


def test_eviction_takes_the_least_recently_active_and_counts_it() -> None:
    settings = Settings(max_connections=3)
    table = FlowTable(settings)
    t = 1_700_000_000.0
    segs = [_handshake_and_close(t + n, n)[:3] for n in range(3)]  # three open connections
    for group in segs:
        for seg in group:
            table.add(seg)
    # connection 1 (the oldest) becomes the most recently active
    first = segs[0][2]
    table.add(first._replace(ts=t + 3.5, seq=first.seq, flags=ACK))
    table.add(_handshake_and_close(t + 4, 3)[0])  # a fourth: one must go
    assert table.evicted == 1
    gone = table.pop_finished()
    assert [c.id for c in gone] == [2]  # idle the longest, not the oldest
    assert len(table) == 3


def test_evicted_connections_keep_their_findings_and_counts() -> None:
    """A CLOSE_WAIT leak pushed out of a full table is still reported and counted."""
    whole = Analysis(Settings())
    read_into(whole, str(CLOSE_WAIT))
    whole.finish()
    tight = Analysis(Settings(max_connections=1), keep_connections=False)
    read_into(tight, str(CLOSE_WAIT))
    tight.finish()
    assert tight.table.evicted >= 1
    assert tight.connections_total == whole.connections_total
    kinds = {f.kind for f in tight.findings}
    assert "close_wait_leak" in {f.kind for f in whole.findings}
    # evicted before its CLOSE_WAIT was old enough to judge: the evidence up to then
    # stays (the connection is closed like any other), the count is right
    assert kinds <= {f.kind for f in whole.findings}


def test_flows_from_stdin_lists_every_connection_report_only_those_with_findings() -> None:
    truth = _truth("close-wait-leak")
    data = CLOSE_WAIT.read_bytes()
    flows = _cli("flows", "--format", "json", "-")
    f_out, f_err = flows.communicate(data, timeout=30)
    assert flows.returncode == 0, f_err.decode()
    listed = {(c["client"], c["server"]) for c in json.loads(f_out)["connections"]}
    assert listed == {(c["client"], c["server"]) for c in truth["connections"]}
    report = _cli("report", "--format", "json", "-")
    r_out, r_err = report.communicate(data, timeout=30)
    assert report.returncode == 0, r_err.decode()
    doc = json.loads(r_out)
    assert doc["stats"]["connections"] == len(truth["connections"])
    # a live stream keeps only the connections that have findings: the leaking one
    assert [(c["client"], c["server"]) for c in doc["connections"]] == [
        ("10.77.1.2:40040", "10.77.2.2:8080")]
