"""Damaged captures through the real command line (`python -m tcpanalyze report -f json`):
exit 0 with the bad packets counted, or exit 2 with exactly one stderr line naming the file
and the frame / byte offset; never a traceback; what was read before a fault is reported.

Fewer cases than the in-process suites (each is a process start); chosen by a fixed seed.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz.captures import (
    boundaries,
    check_capture,
    endian_of,
    flip_bit,
    layout,
    put_u32,
    seed_paths,
    truncate,
)

ROOT = Path(__file__).resolve().parent.parent
SEEDS = seed_paths()
ONE_LINE = re.compile(r"^tcpanalyze: .+: (frame \d+ \(byte offset \d+\)|byte offset \d+): .+$")


def damaged_cases() -> list[tuple[str, bytes]]:
    rng = random.Random(20240611)  # fixed: the same cases on every run
    cases: list[tuple[str, bytes]] = [
        ("empty", b""), ("one-byte", b"\xd4"), ("wrong-magic", b"\x00\x01\x02\x03" * 10),
        ("text", b"#!/bin/sh\necho hi\n"),
        ("gzip-of-text", gzip.compress(b"not a capture at all")),
    ]
    for i in range(14):
        path = SEEDS[rng.randrange(len(SEEDS))]
        raw = path.read_bytes()
        _, records = layout(raw)
        kind = i % 4
        if kind == 0:
            data, _ = truncate(raw, rng.choice(boundaries(raw, first=10)))
        elif kind == 1:
            data = raw
            for _ in range(4):
                data, _ = flip_bit(data, rng.randrange(len(raw) * 8))
        elif kind == 2:
            rec = rng.choice(records)
            data, _ = put_u32(raw, rec.start + rng.choice((4, 8, 12)),
                              rng.choice((0, 2**31 - 1, 2**32 - 1, 262145)), endian_of(raw))
        else:
            data = gzip.compress(raw)[: rng.randrange(20, 400)]  # a cut gzip stream
        cases.append((f"{path.parent.name}-{path.stem}-{kind}-{i}", data))
    return cases


CASES = damaged_cases()


@pytest.mark.parametrize("name, data", CASES, ids=[c[0] for c in CASES])
def test_damaged_capture_through_the_cli(tmp_path: Path, name: str, data: bytes) -> None:
    path = tmp_path / f"{name}.pcap"
    path.write_bytes(data)
    proc = subprocess.run(
        [sys.executable, "-m", "tcpanalyze", "report", "-f", "json", "--decoder", "dpkt",
         str(path)], capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode in (0, 2), (proc.returncode, proc.stderr)
    expected = check_capture(str(path))  # the same capture, in-process
    if proc.returncode == 0:
        assert proc.stderr == ""
        assert expected.error is None and expected.report is not None
        packets = json.loads(proc.stdout)["capture"]["packets"]
        assert packets == expected.report.captures[0].packets
        return
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and ONE_LINE.match(lines[0]), proc.stderr
    assert str(path) in lines[0]
    if expected.report is None:  # refused at open: nothing to report
        assert proc.stdout == ""
        assert str(expected.refused) in lines[0]
    else:  # what was read before the fault is still reported
        data_out = json.loads(proc.stdout)
        assert data_out["capture"]["packets"] == expected.report.captures[0].packets
        assert data_out["capture"]["error"] == expected.error
        assert lines[0] == f"tcpanalyze: {expected.error}"


def truncated_seed() -> bytes:
    raw = (ROOT / "tests" / "data" / "eth-nano.pcap").read_bytes()
    return raw[:3000]


def whole_records_before_the_cut() -> tuple[int, int]:
    """(records wholly inside the first 3000 bytes, offset of the one cut), walked by hand."""
    _, records = layout((ROOT / "tests" / "data" / "eth-nano.pcap").read_bytes())
    whole = [r for r in records if r.end <= 3000]
    assert records[len(whole)].start < 3000  # the cut falls inside the next record
    return len(whole), records[len(whole)].start


@pytest.mark.parametrize("command", [["report", "-f", "json"], ["flows", "-f", "json"],
                                     ["check", "-f", "json", "--fail-on", "none"]])
def test_every_command_reports_a_fault_in_one_line(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "cut.pcap"
    path.write_bytes(truncated_seed())
    proc = subprocess.run([sys.executable, "-m", "tcpanalyze", *command, "--decoder", "dpkt",
                           str(path)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if not ln.startswith("tcpanalyze: wrote")]
    assert len(lines) == 1 and ONE_LINE.match(lines[0]), proc.stderr
    whole, offset = whole_records_before_the_cut()
    assert f"{path}: frame {whole + 1} (byte offset {offset}): " in lines[0]
    assert json.loads(proc.stdout)["capture"]["packets"] == whole


def test_damaged_stdin_is_named_stdin(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "tcpanalyze", "report", "-f", "json",
                           "--decoder", "dpkt", "-"], input=truncated_seed(),
                          capture_output=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    stderr = proc.stderr.decode()
    assert proc.returncode == 2 and "Traceback" not in stderr
    assert stderr.splitlines() == [stderr.splitlines()[0]]
    whole, offset = whole_records_before_the_cut()
    assert stderr.startswith(f"tcpanalyze: <stdin>: frame {whole + 1} (byte offset {offset}): ")
    assert json.loads(proc.stdout)["capture"]["packets"] == whole
