"""Issue 8 acceptance on real kernel captures: for every connection in sample_pcaps/,
the final states of both ends equal what each kernel's `ss` reported when the capture
stopped (recorded by lab/make_samples.py in NAME.truth.json), and every finding the
scenario was designed to cause is reported. Normal closes give only info findings."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from tcpanalyze.analysis import analyze
from tcpanalyze.report import ConnectionSummary
from tcpanalyze.tshark import tshark_available

SAMPLES = Path(__file__).resolve().parents[1] / "sample_pcaps"
TRUTHS = sorted(SAMPLES.glob("*.truth.json"))

# scenario -> why its kernel states cannot be compared connection by connection
STATE_EXCEPTIONS: dict[str, str] = {}


def capture_for(truth: Path) -> Path:
    stem = truth.name[: -len(".truth.json")]
    return next(p for p in SAMPLES.glob(stem + ".pcap*") if not p.name.endswith(".json"))


def match(conns: list[ConnectionSummary], client: str, server: str,
          seen: dict[tuple[str, str], int]) -> ConnectionSummary:
    """The n-th connection on this tuple (a tuple can carry several, in order)."""
    same = [c for c in conns if (c.client, c.server) == (client, server)
            or (c.client, c.server) == (server, client)]
    index = seen[(client, server)]
    seen[(client, server)] += 1
    assert index < len(same), f"no connection #{index + 1} for {client} -> {server}"
    return same[index]


def oriented(conn: ConnectionSummary, client: str) -> tuple[str, str]:
    if conn.client == client:
        return conn.client_state, conn.server_state
    return conn.server_state, conn.client_state


@pytest.mark.parametrize("truth", TRUTHS, ids=[t.name.split(".")[0] for t in TRUTHS])
def test_states_equal_the_kernels_and_findings_are_reported(truth: Path) -> None:
    spec = json.loads(truth.read_text())
    decoder = "dpkt"
    if spec["scenario"].startswith("tunnel-"):
        if not tshark_available():
            pytest.skip("tshark is not installed (scripts/test.sh installs it)")
        decoder = "tshark"  # the dpkt decoder does not open GRE/VXLAN
    report = analyze(str(capture_for(truth)), decoder=decoder)
    assert report.capture.error is None
    found = {f.kind for f in report.findings}
    expected = {f["kind"] for f in spec["expected_findings"]}
    assert expected <= found, f"missing {sorted(expected - found)}"
    if spec["scenario"] in STATE_EXCEPTIONS:
        return
    seen: dict[tuple[str, str], int] = defaultdict(int)
    mismatches = []
    for want in spec["connections"]:
        conn = match(report.connections, want["client"], want["server"], seen)
        got = oriented(conn, want["client"])
        for side, kernel, ours in zip(("client", "server"),
                                      (want["client_state"], want["server_state"]), got,
                                      strict=True):
            if kernel is not None and kernel != ours:
                mismatches.append(f"{want['client']} -> {want['server']} {side}: "
                                  f"kernel {kernel}, tcpanalyze {ours}")
    assert not mismatches, "\n".join(mismatches[:20])


@pytest.mark.parametrize("name", ["normal-client-close", "normal-server-close",
                                  "several-normal", "ipv6-normal"])
def test_normal_captures_raise_nothing_above_info(name: str) -> None:
    report = analyze(str(SAMPLES / f"{name}.pcap"))
    assert [f for f in report.findings if f.severity != "info"] == []
    assert all(c.conn_state == "SF" for c in report.connections)


def test_findings_carry_frames_that_exist() -> None:
    for truth in TRUTHS:
        report = analyze(str(capture_for(truth)))
        for finding in report.findings:
            assert finding.frames, (truth.name, finding.kind)
            assert all(1 <= f <= report.capture.packets for f in finding.frames)
            assert finding.summary.endswith((".", ")"))


def test_multi_interface_pcapng_is_merged_by_time() -> None:
    """dumpcap wrote all of one interface, then the other: without merging by time the
    server would seem to answer before the client asked."""
    from tcpanalyze.capture import open_capture

    reader = open_capture(str(SAMPLES / "linktype-pcapng-unordered.pcapng"))
    stamps = [f.ts for f in reader]
    assert stamps != sorted(stamps)  # the file really is out of order
    ordered = analyze(str(SAMPLES / "linktype-pcapng-unordered.pcapng"))
    merged = analyze(str(SAMPLES / "linktype-pcapng-multi.pcapng"))  # reordercap'd copy
    assert [(c.client_state, c.server_state, c.history) for c in ordered.connections] == \
        [(c.client_state, c.server_state, c.history) for c in merged.connections]
