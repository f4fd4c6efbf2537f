"""Connection summaries kept on disk past `summaries-in-memory` change nothing in a report.

Every capture is analysed with the summaries all in memory and with a limit of a few
summaries (so nearly all go through the temporary file), and the reports must be equal;
also with `--jobs 2`, with flood and scan captures (whose members' findings are changed
after the fact), and through the real CLI over several captures at once (connections
renumbered after the fact).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tcpanalyze.analysis import analyze
from tcpanalyze.parallel import analyze_parallel
from tcpanalyze.report import ConnectionSummary, StateChange
from tcpanalyze.settings import Settings
from tcpanalyze.summaries import SummaryList

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
if not CORPUS.is_dir():
    CORPUS = Path("/work/shared/corpus")
SAMPLES = ROOT / "sample_pcaps"
CAPTURES = [ROOT / "tests" / "data" / "bench-mini.pcap.gz", *sorted(SAMPLES.glob("*.pcap*")),
            *sorted(CORPUS.glob("*/*/capture.pcap*"))]
FEW = Settings(summaries_in_memory=2)


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.parent.name + "/" + p.name)
def test_reports_are_equal_with_summaries_on_disk(path: Path) -> None:
    whole = analyze(str(path)).to_dict()
    spilled = analyze(str(path), FEW)
    assert spilled.to_dict() == whole
    if len(whole["connections"]) > 2:
        assert spilled.connections._offsets, "the summaries did go to disk"


@pytest.mark.parametrize("name", ["syn-flood.pcap", "port-scan.pcap", "syn-flood-cookies.pcap",
                                  "time-wait-reuse.pcap", "bulk-loss.pcap"])
def test_parallel_reports_are_equal_with_summaries_on_disk(name: str) -> None:
    path = str(SAMPLES / name)
    whole = analyze(path).to_dict()
    assert analyze_parallel(path, FEW, jobs=2).to_dict() == whole
    # the members of a flood or a scan lose their own findings after the fact
    if name != "bulk-loss.pcap" and name != "time-wait-reuse.pcap":
        assert any(not c["findings"] for c in whole["connections"])


def _cli(*args: str) -> bytes:
    return subprocess.run([sys.executable, "-m", "tcpanalyze", *args], cwd=ROOT,
                          capture_output=True, check=False, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(ROOT))).stdout


@pytest.mark.parametrize("fmt", ["json", "csv", "zeek"])
def test_several_captures_through_the_cli_with_summaries_on_disk(fmt: str) -> None:
    paths = [str(SAMPLES / n) for n in ("syn-flood.pcap", "several-normal.pcap",
                                        "port-scan.pcap", "time-wait-reuse.pcap")]
    whole = _cli("report", "--format", fmt, "--jobs", "1", *paths)
    assert whole and b"Traceback" not in whole
    assert _cli("report", "--format", fmt, "--jobs", "1", "-s", "summaries-in-memory=1",
                *paths) == whole
    assert _cli("report", "--format", fmt, "--jobs", "2", "-s", "summaries-in-memory=0",
                *paths) == whole


# -- the list itself ------------------------------------------------------------------------


def _summary(i: int) -> ConnectionSummary:
    return ConnectionSummary(
        id=i, client=f"10.0.0.1:{1000 + i}", server="10.0.0.2:80", start=float(i), end=i + 1.5,
        packets_client=i, packets_server=2, bytes_client=0, bytes_server=10,
        client_state="TIME_WAIT", server_state="CLOSED", conn_state="SF", history="ShAFf",
        findings=["rst_teardown"] if i % 3 == 0 else [], flags_seen="SAF",
        quality={"handshake_seen": True},
        timeline=[StateChange(i + 0.5, i, "client", "CLOSED", "SYN_SENT", "sent SYN")])


def test_the_list_behaves_like_a_list() -> None:
    order = [5, 2, 9, 1, 7, 3, 8, 6, 4, 10]
    plain = [_summary(i) for i in order]
    kept = SummaryList((_summary(i) for i in order), spill_at=3)
    assert len(kept._memory) < 3 and len(kept._offsets) == 9  # most of it on disk
    assert kept == plain and len(kept) == 10
    assert kept[0] == plain[0] and kept[-1] == plain[-1] and kept[2:7:2] == plain[2:7:2]
    with pytest.raises(IndexError):
        kept[10]
    assert list(kept.ids()) == order
    # changed after the fact, on disk and in memory, only those that existed then
    kept.apply(lambda s: s.findings.append("later"))
    kept.append(_summary(11))
    plain.append(_summary(11))
    for s in plain[:-1]:
        s.findings.append("later")
    assert kept == plain
    kept.renumber(100)
    kept.sort(key=lambda s: s.id)
    for s in plain:
        s.id += 100
    plain.sort(key=lambda s: s.id)
    assert kept == plain and list(kept.ids()) == [s.id for s in plain]
    assert [s.findings for s in kept] == [s.findings for s in plain]
    # reading twice gives the same (fresh objects, changed again)
    assert list(kept) == list(kept)


def test_all_in_memory_below_the_limit() -> None:
    kept = SummaryList((_summary(i) for i in range(5)), spill_at=50)
    assert kept._file is None and len(kept._memory) == 5
    kept.sort(key=lambda s: s.id)
    assert [s.id for s in kept] == list(range(5))


def test_without_a_temporary_directory_the_summaries_stay_in_memory(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", "/nonexistent/tcpanalyze-test")
    kept = SummaryList((_summary(i) for i in range(10)), spill_at=3)
    assert kept._file is None and len(kept._memory) == 10
    assert [s.id for s in kept] == list(range(10))
