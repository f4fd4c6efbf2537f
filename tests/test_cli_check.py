"""`tcpanalyze check` as a CI step would run it: a subprocess on real captures, judged
by its exit code (0 pass, 1 findings fail, 2 usage/config/input errors) and outputs."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_pcaps"
NORMAL = SAMPLES / "normal-client-close.pcap"  # kernel truth: a clean close, no findings
LEAK = SAMPLES / "close-wait-leak.pcap"  # the server never closes: a high finding
RESET = SAMPLES / "reset-linger0.pcap"  # SO_LINGER 0: a medium rst_teardown


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tcpanalyze", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd or ROOT, timeout=120)


def test_pass_on_a_normal_capture() -> None:
    result = run("check", NORMAL)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


def test_fail_on_a_close_wait_leak() -> None:
    result = run("check", LEAK)
    assert result.returncode == 1
    assert "close_wait_leak" in result.stdout


def test_default_threshold_is_high_and_fail_on_lowers_it() -> None:
    assert run("check", RESET).returncode == 0  # rst_teardown is medium
    assert run("check", "--fail-on", "medium", RESET).returncode == 1
    assert run("check", "--fail-on", "rst_teardown", RESET).returncode == 1
    assert run("check", "--fail-on", "none", LEAK).returncode == 0


def test_baseline_suppresses_known_findings_only(tmp_path: Path) -> None:
    baseline = tmp_path / "known.json"
    wrote = run("check", "--write-baseline", baseline, LEAK)
    assert wrote.returncode == 0, wrote.stderr
    kinds = {f["kind"] for f in json.loads(baseline.read_text())["findings"]}
    assert "close_wait_leak" in kinds
    assert run("check", "--baseline", baseline, LEAK).returncode == 0
    # A finding that is not in the baseline still fails.
    assert run("check", "--baseline", baseline, "--fail-on", "medium", RESET).returncode == 1


def test_ignore_rules_from_the_command_line_and_the_config(tmp_path: Path) -> None:
    assert run("check", "--ignore", "kind=close_wait_leak", LEAK).returncode == 0
    assert run("check", "--ignore", "port=8080", LEAK).returncode == 0
    assert run("check", "--ignore", "port=9999", LEAK).returncode == 1
    (tmp_path / ".tcpanalyze.toml").write_text(
        'ignore = [{ kind = "close_wait_leak", address = "10.77.2.0/24" }]\n')
    assert run("check", LEAK, cwd=tmp_path).returncode == 0
    (tmp_path / ".tcpanalyze.toml").write_text("close-wait-threshold = 3600\n")
    assert run("check", LEAK, cwd=tmp_path).returncode == 0  # not a leak that long


def test_bad_config_is_a_clear_usage_error(tmp_path: Path) -> None:
    (tmp_path / ".tcpanalyze.toml").write_text("close-wait-treshold = 3\n")
    result = run("check", LEAK, cwd=tmp_path)
    assert result.returncode == 2
    assert "close-wait-treshold" in result.stderr and "Traceback" not in result.stderr
    (tmp_path / ".tcpanalyze.toml").write_text('time-wait = "long"\n')
    result = run("check", LEAK, cwd=tmp_path)
    assert result.returncode == 2 and "time-wait" in result.stderr


@pytest.mark.parametrize("content", [b"", b"\x00", b"not a capture at all\n" * 10])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(content)
    result = run("check", bad)
    assert result.returncode == 2
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "bad.pcap" in lines[0], result.stderr


def test_truncated_capture_still_reports_what_was_read(tmp_path: Path) -> None:
    data = LEAK.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) - 30])  # cut inside the last record
    result = run("report", "-f", "json", cut)
    assert result.returncode == 2
    report = json.loads(result.stdout)
    assert report["capture"]["packets"] > 0 and report["connections"]
    assert "cut.pcap" in result.stderr and "offset" in result.stderr


def test_missing_file_and_empty_glob(tmp_path: Path) -> None:
    assert run("check", tmp_path / "nope.pcap").returncode == 2
    assert run("check", str(tmp_path / "*.pcap")).returncode == 2


def test_outputs_for_machines_in_one_run(tmp_path: Path) -> None:
    outs = [tmp_path / n for n in ("r.sarif", "r.xml", "r.md", "r.log", "r.csv", "r.json")]
    result = run("check", *[a for o in outs for a in ("-o", o)], LEAK, RESET)
    assert result.returncode == 1
    sarif = json.loads(outs[0].read_text())
    results = sarif["runs"][0]["results"]
    assert {r["ruleId"] for r in results} >= {"close_wait_leak", "rst_teardown"}
    junit = ET.parse(outs[1]).getroot()
    failures = sum(int(s.get("failures", "0")) for s in junit.iter("testsuite"))
    assert failures == 1  # only the high close_wait_leak fails the default policy
    assert "close_wait_leak" in outs[2].read_text()
    assert "#path\tconn" in outs[3].read_text()
    report = json.loads(outs[5].read_text())
    captures = {f.get("capture") for f in report["findings"]}
    assert captures == {str(LEAK), str(RESET)}  # merged, each finding names its capture


def test_help_teaches() -> None:
    text = run("check", "--help").stdout
    for word in ("--fail-on", "--baseline", "--ignore", "Exit status"):
        assert word in text
