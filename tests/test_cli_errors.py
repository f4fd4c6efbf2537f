"""What a user sees when something around the analysis goes wrong: an output file that
cannot be written, a configuration or baseline that is not text, one unreadable capture
among several, options out of range. Each is one line naming what is wrong, exit code 2,
no traceback, and what could be read and written still is."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_pcaps"
REFUSED = SAMPLES / "refused.pcap"  # kernel truth: one connection, refused (medium)
RESET = SAMPLES / "reset-linger0.pcap"  # SO_LINGER 0: one rst_teardown (medium)
BULK = SAMPLES / "bulk-loss.pcap"
GRE = SAMPLES / "tunnel-gre.pcap"  # TCP inside GRE: the built-in decoder skips it


def run(*args: str | Path, stdin: bytes | None = None, cwd: Path | None = None
        ) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "tcpanalyze", *map(str, args)],
                            input=stdin.decode("latin-1") if stdin is not None else None,
                            capture_output=True, text=True, cwd=cwd or ROOT, timeout=120,
                            encoding="latin-1")
    assert "Traceback" not in result.stderr, result.stderr
    return result


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("tcpanalyze: ")]


def truncated(tmp_path: Path) -> Path:
    """bulk-loss.pcap cut inside a record: the frames before the cut are whole."""
    path = tmp_path / "cut.pcap"
    path.write_bytes(BULK.read_bytes()[:3000])
    return path


# -- output files ----------------------------------------------------------------------


def test_an_output_file_that_cannot_be_written_spoils_nothing_else(tmp_path: Path) -> None:
    good = tmp_path / "r.csv"
    bad = tmp_path / "no-such-dir" / "r.json"
    result = run("report", "-j", "1", "-f", "json", "-o", bad, "-o", good, REFUSED)
    assert result.returncode == 2
    assert error_lines(result) == [
        f"tcpanalyze: {bad}: cannot write the report: No such file or directory"]
    # stdout and the other file still hold the report: the refused connection
    assert [c["conn_state"] for c in json.loads(result.stdout)["connections"]] == ["REJ"]
    assert good.read_text().count("\n") == 2  # the CSV header and the one connection


def test_a_baseline_that_cannot_be_written(tmp_path: Path) -> None:
    bad = tmp_path / "no-such-dir" / "known.json"
    result = run("check", "-j", "1", "--write-baseline", bad, RESET)
    assert result.returncode == 2
    assert error_lines(result) == [
        f"tcpanalyze: {bad}: cannot write the baseline: No such file or directory"]


def test_writing_a_baseline_from_a_cut_capture_says_why_it_exits_2(tmp_path: Path) -> None:
    cut = truncated(tmp_path)
    known = tmp_path / "known.json"
    result = run("check", "-j", "1", "--write-baseline", known, cut)
    assert result.returncode == 2
    lines = error_lines(result)
    assert any(str(cut) in line and "byte offset" in line for line in lines), lines
    assert known.exists()  # what was read is still recorded


def test_format_applies_to_an_output_file_whose_name_implies_none(tmp_path: Path) -> None:
    out = tmp_path / "report.out"
    result = run("report", "-j", "1", "-f", "json", "-o", out, REFUSED)
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text()) == json.loads(result.stdout)
    # without --format the name must say it, and nothing is analysed first
    result = run("report", "-o", out, REFUSED)
    assert result.returncode == 2
    assert "cannot tell the output format" in result.stderr


# -- configuration and baseline files ----------------------------------------------------


def test_binary_configuration_and_baseline_files(tmp_path: Path) -> None:
    binary = tmp_path / "blob"
    binary.write_bytes(bytes(range(256)) * 4)  # not UTF-8 from byte 128 on
    result = run("report", "--config", binary, REFUSED)
    assert result.returncode == 2
    assert "not valid TOML: not UTF-8 text (byte 128)" in result.stderr
    result = run("check", "--baseline", binary, REFUSED)
    assert result.returncode == 2
    assert "baseline is not valid JSON: not UTF-8 text (byte 128)" in result.stderr


def test_a_missing_baseline_says_how_to_make_one(tmp_path: Path) -> None:
    result = run("check", "--baseline", tmp_path / "known.json", REFUSED)
    assert result.returncode == 2
    assert "record one with --write-baseline" in result.stderr


@pytest.mark.parametrize("name", [".tcpanalyze.toml", "ci.toml"])
def test_the_readme_table_works_in_any_configuration_file(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text('[tool.tcpanalyze]\nfail-on = ["medium"]\n')
    args = ("check", "-j", "1", RESET) if name.startswith(".") else \
        ("check", "-j", "1", "--config", tmp_path / name, RESET)
    assert run(*args, cwd=tmp_path).returncode == 1  # the medium rst_teardown now fails
    assert run("check", "-j", "1", RESET, cwd=tmp_path.parent).returncode == 0


def test_a_table_of_another_tool_is_still_an_unknown_key(tmp_path: Path) -> None:
    config = tmp_path / "ci.toml"
    config.write_text("[tool.other]\nx = 1\n")
    result = run("report", "--config", config, REFUSED)
    assert result.returncode == 2
    assert "'tool': unknown key" in result.stderr


@pytest.mark.parametrize("args", [("--max-rows", "-1"), ("-s", "max-connections=0")])
def test_values_out_of_range_are_usage_errors(args: tuple[str, str]) -> None:
    result = run("report", *args, REFUSED)
    assert result.returncode == 2
    assert "Usage:" in result.stderr and result.stdout == ""


# -- several captures, one unreadable ------------------------------------------------------


@pytest.mark.parametrize("command", ["report", "check", "flows"])
def test_one_unreadable_capture_among_several(tmp_path: Path, command: str) -> None:
    text = tmp_path / "notes.pcap"
    text.write_text("not a capture\n")
    missing = tmp_path / "gone.pcap"
    alone = run(command, "-j", "1", "-f", "json", REFUSED)
    result = run(command, "-j", "1", "-f", "json", text, REFUSED, missing, RESET)
    assert result.returncode == 2
    assert error_lines(result) == [
        f"tcpanalyze: {text}: byte offset 0: not a pcap or pcapng file (magic 0x6e6f7420)",
        f"tcpanalyze: {missing}: cannot open: No such file or directory"]
    data = json.loads(result.stdout)
    # the readable captures are analysed and reported, the others listed in their place
    assert [c["conn_state"] for c in data["connections"]] == ["REJ", "RSTO"]
    assert data["connections"][0]["server"] == json.loads(alone.stdout)["connections"][0][
        "server"]
    if command != "flows":  # (flows lists connections, not captures)
        captures = data["captures"]
        assert [c["path"] for c in captures] == [str(p) for p in (text, REFUSED, missing,
                                                                    RESET)]
        assert [c["packets"] for c in captures] == [0, 5, 0, 12]
        assert "error" in captures[0] and "error" not in captures[1]


def test_report_files_say_which_capture_was_not_read(tmp_path: Path) -> None:
    text = tmp_path / "notes.pcap"
    text.write_text("not a capture\n")
    md, xml = tmp_path / "r.md", tmp_path / "r.xml"
    assert run("report", "-j", "1", "-o", md, "-o", xml, REFUSED, text).returncode == 2
    why = f"{text}: byte offset 0: not a pcap or pcapng file (magic 0x6e6f7420)"
    (line,) = [line for line in md.read_text().splitlines() if "notes.pcap`" in line]
    # (the path is escaped for markdown: its underscores)
    assert line.startswith("- `notes.pcap`: not read: ")
    assert line.endswith("byte offset 0: not a pcap or pcapng file (magic 0x6e6f7420)")
    assert f"<system-err>capture not read: {why}</system-err>" in xml.read_text()


def test_when_no_capture_can_be_read_nothing_is_reported(tmp_path: Path) -> None:
    result = run("report", "-f", "json", tmp_path / "a.pcap", tmp_path / "b.pcap")
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(error_lines(result)) == 2


# -- what the verdict line says ------------------------------------------------------------


def test_report_counts_and_check_judges() -> None:
    scan = SAMPLES / "port-scan.pcap"  # one high port_scan finding
    report = run("report", "-j", "1", scan).stdout.strip().splitlines()[-1]
    assert "FAIL" not in report and report.startswith("1 finding (1 high)")
    check = run("check", "-j", "1", scan)
    assert check.returncode == 1
    assert check.stdout.strip().splitlines()[-1].startswith(
        "FAIL: 1 of 1 finding fails the policy")


def test_check_shows_what_its_baseline_set_aside(tmp_path: Path) -> None:
    known = tmp_path / "known.json"
    assert run("check", "-j", "1", "--write-baseline", known, RESET).returncode == 0
    result = run("check", "-j", "1", "--fail-on", "medium", "--baseline", known, RESET)
    assert result.returncode == 0
    assert "rst_teardown (set aside)" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == (
        "OK: no findings in 1 connection (1 more set aside: 0 ignored, 1 in the baseline)")


# -- stdin and crosscheck --------------------------------------------------------------------


def test_tunnelled_packets_on_stdin_point_to_the_tshark_decoder() -> None:
    result = run("report", "-j", "1", "-", stdin=GRE.read_bytes())
    assert result.returncode == 0
    lines = error_lines(result)
    assert len(lines) == 1 and lines[0].startswith("tcpanalyze: <stdin>: ")
    assert "--decoder tshark" in lines[0]


def test_crosscheck_refuses_stdin() -> None:
    result = run("crosscheck", "-", stdin=REFUSED.read_bytes())
    assert result.returncode == 2
    assert "needs a file, not '-'" in result.stderr and result.stdout == ""


@pytest.mark.skipif(shutil.which("tshark") is None,
                    reason="tshark is not installed (scripts/test.sh installs it)")
def test_crosscheck_of_a_cut_capture_compares_what_was_read_and_exits_2(
        tmp_path: Path) -> None:
    cut = truncated(tmp_path)
    result = run("crosscheck", "-f", "json", cut)
    assert result.returncode == 2
    data = json.loads(result.stdout)
    assert data["frames_both"] > 0 and "byte offset" in data["error"]
    assert error_lines(result) == [f"tcpanalyze: {data['error']}"]


# -- what the terminal shows -----------------------------------------------------------------


@pytest.mark.parametrize("command", ["report", "flows", "check"])
def test_ipv6_endpoints_are_shown_whole(command: str) -> None:
    # tcpdump -nr: fd77:1::2.40022 > fd77:2::2.9 (refused), fd77:1::2.40023 > fd77:2::2.8080
    # (reset); rich markup would have taken "[fd77:1::2]" for a style and dropped it
    import os

    result = subprocess.run([sys.executable, "-m", "tcpanalyze", command, "-j", "1",
                             str(SAMPLES / "ipv6-refused-reset.pcap")],
                            capture_output=True, text=True, cwd=ROOT, timeout=120,
                            env={**os.environ, "COLUMNS": "200"})
    assert "[fd77:1::2]:40023" in result.stdout
    assert "[fd77:2::2]:9" in result.stdout
    if command != "flows":  # a finding's summary names both ends
        assert "[fd77:2::2]:9 refused [fd77:1::2]:40022's connection" in result.stdout
