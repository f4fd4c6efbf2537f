"""Live: real tcpdump in a network namespace piped into `tcpanalyze report -` while real
kernels make connections (a normal one, one reset with SO_LINGER 0, one that leaks
CLOSE_WAIT). The stream is also `tee`d to a file: the findings from the pipe must equal
those from the file, and match what the scenario did. A second reader runs
`tcpanalyze watch -` on the same stream and is stopped with SIGINT while tcpdump still runs.

Namespaces tca-live-*, addresses 10.80.0.0/16; removed in all cases (Lab's __exit__).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("tcpdump"),
                       reason="needs root, network namespaces and tcpdump"),
]

SETTINGS = ["-s", "close-wait-threshold=1"]


def _analyser(args: list[str], stdin: object) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1", COLUMNS="120")
    return subprocess.Popen([sys.executable, "-m", "tcpanalyze", *args], cwd=ROOT, env=env,
                            stdin=stdin, stdout=subprocess.PIPE,  # type: ignore[arg-type]
                            stderr=subprocess.PIPE)


def test_tcpdump_pipe_gives_the_findings_of_the_saved_file(tmp_path: Path) -> None:
    from lab.netns import Lab

    saved = tmp_path / "live.pcap"
    fifo = tmp_path / "watch.fifo"
    os.mkfifo(fifo)
    procs: list[subprocess.Popen[bytes]] = []
    with Lab(prefix="tca-live-", net4="10.80", net6="fd80", replace_stale=True) as lab:
        try:
            cap = lab.capture("router", "s0", "-")  # tcpdump -U --immediate-mode -w -
            # tee: one copy to the file, one to the watch view's fifo, one to stdout;
            # -p: a reader that leaves (the watch, stopped early) does not end tee
            tee = subprocess.Popen(["tee", "-p", str(saved), str(fifo)], stdin=cap.stdout,
                                   stdout=subprocess.PIPE)
            procs.append(tee)
            report = _analyser(["report", "--format", "ndjson", *SETTINGS, "-"], tee.stdout)
            procs.append(report)
            assert tee.stdout is not None
            tee.stdout.close()
            with open(fifo, "rb") as watch_in:  # opens once tee has opened its end
                watch = _analyser(["watch", *SETTINGS, "-"], watch_in)
            procs.append(watch)

            server, srv = lab.addr("server"), "0.0.0.0"
            # 1. an ordinary connection, client closes first
            lab.exchange(40001, port=8080)
            # 2. reset: the client closes with SO_LINGER 0 after sending data
            s2 = lab.endpoint_program("server", ["listen", "--addr", srv, "--port", "8081",
                                                 "--do", "recv 100; recv-eof; close"])
            s2.expect("READY")
            c2 = lab.endpoint_program("client", [
                "connect", "--addr", server, "--port", "8081", "--local-port", "40002",
                "--do", "send 100; sleep 0.2; linger0; close"])
            c2.expect("DONE")
            # 3. CLOSE_WAIT leak: the client closes, the server application never does
            s3 = lab.endpoint_program("server", ["--lifetime", "25", "listen", "--addr", srv,
                                                 "--port", "8082",
                                                 "--do", "recv 100; recv-eof; hold"])
            s3.expect("READY")
            c3 = lab.endpoint_program("client", [
                "connect", "--addr", server, "--port", "8082", "--local-port", "40003",
                "--do", "send 100; close"])
            c3.expect("DONE")
            s3.expect("OK eof")
            # 4. time passes (capture time moves with packets): a later connection
            time.sleep(2.0)
            lab.exchange(40004, port=8083)
            time.sleep(0.5)

            # Ctrl-C to the watch while tcpdump still runs: the final report comes out
            assert watch.poll() is None, "watch ended early"
            os.kill(watch.pid, signal.SIGINT)
            w_out, w_err = watch.communicate(timeout=20)
            assert watch.returncode == 0, w_err.decode()
            assert b"Traceback" not in w_err

            cap.stop()  # tcpdump ends: EOF through tee into the report
            r_out, r_err = report.communicate(timeout=20)
            tee.wait(timeout=10)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    assert report.returncode == 0, r_err.decode()
    live = [json.loads(line) for line in r_out.decode().splitlines()]
    assert live[-1]["type"] == "summary"

    # The same packets, saved by tee, analysed as a file.
    from_file = subprocess.run(
        [sys.executable, "-m", "tcpanalyze", "report", "--format", "ndjson", *SETTINGS,
         str(saved)], cwd=ROOT, capture_output=True, timeout=60,
        env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert from_file.returncode == 0, from_file.stderr.decode()
    whole = [json.loads(line) for line in from_file.stdout.decode().splitlines()]
    assert whole[-1]["packets"] == live[-1]["packets"] > 0
    live_findings = [r for r in live if r["type"] == "finding"]
    file_findings = [r for r in whole if r["type"] == "finding"]
    assert live_findings == file_findings

    # ... and they are what the scenario did.
    by_kind = {(f["kind"], f["subject"]) for f in live_findings}
    assert ("close_wait_leak", "10.80.1.2:40003 -> 10.80.2.2:8082") in by_kind
    assert ("rst_teardown", "10.80.1.2:40002 -> 10.80.2.2:8081") in by_kind
    rst = next(f for f in live_findings if f["kind"] == "rst_teardown")
    assert "client 10.80.1.2:40002 reset" in rst["summary"]
    clean = {"10.80.1.2:40001 -> 10.80.2.2:8080", "10.80.1.2:40004 -> 10.80.2.2:8083"}
    assert not [f for f in live_findings if f["subject"] in clean
                and f["severity"] in ("high", "medium")]

    # the watch's final report (terminal tables) shows the leak it had seen by then
    text = w_out.decode()
    assert "close_wait_leak" in text and "10.80.2.2:8082" in text


def test_a_refused_connection_is_printed_while_tcpdump_still_runs() -> None:
    """A real kernel's RST answering a SYN decides connection_refused: the ndjson line
    comes while tcpdump still runs and no later TCP packet has moved capture time on
    (the link stays quiet after the refusal)."""
    import threading

    from lab.netns import Lab

    with Lab(prefix="tca-live-", net4="10.80", net6="fd80", replace_stale=True) as lab:
        report = None
        try:
            cap = lab.capture("router", "s0", "-", bpf="tcp")
            report = _analyser(["report", "--format", "ndjson", "-"], cap.stdout)
            assert report.stdout is not None
            lines: list[bytes] = []
            reader = threading.Thread(target=lambda: lines.extend(iter(
                report.stdout.readline, b"")), daemon=True)  # type: ignore[union-attr]
            reader.start()
            client = lab.endpoint_program("client", [
                "connect", "--addr", lab.addr("server"), "--port", "9",
                "--local-port", "40020", "--do", "close"])
            client.expect("ERR connect ECONNREFUSED")
            deadline = time.monotonic() + 8.0
            while time.monotonic() < deadline and not any(
                    b'"connection_refused"' in line for line in lines):
                time.sleep(0.05)
            assert any(b'"connection_refused"' in line for line in lines), lines
            assert report.poll() is None  # still reading the live stream
            cap.stop()  # EOF: the summary line, then the reader thread ends
            reader.join(20)
            assert report.wait(timeout=20) == 0, report.stderr.read().decode()  # type: ignore[union-attr]
        finally:
            if report is not None and report.poll() is None:
                report.kill()
                report.wait()
    records = [json.loads(line) for line in lines]
    assert records[-1]["type"] == "summary"
    refused = [r for r in records if r["type"] == "finding"]
    assert [(r["kind"], r["subject"]) for r in refused] == [
        ("connection_refused", "10.80.1.2:40020 -> 10.80.2.2:9")]
