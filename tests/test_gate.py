"""The CI gate: fail policy, ignore rules, baselines, exit codes."""

from __future__ import annotations

import io
import json

import pytest
from test_output_reports import corpus_report, flood_finding, needs_corpus, scan_finding

from tcpanalyze import gate
from tcpanalyze.gate import ExitCode, FailPolicy, GateError, IgnoreRule
from tcpanalyze.report import Finding, Report


def _finding(kind: str = "rst_teardown", severity: str = "low", client: str = "10.0.0.1:40001",
             server: str = "10.0.0.2:443", conn: int | None = 1, capture: str | None = None
             ) -> Finding:
    return Finding(kind, severity, f"{kind} on {client} -> {server}", 1.0, [1, 2], conn,
                   f"{client} -> {server}", capture=capture, server=server)


# -- exit codes and the fail policy ---------------------------------------------------


def test_exit_codes_are_the_documented_numbers() -> None:
    assert (ExitCode.OK, ExitCode.FINDINGS, ExitCode.ERROR) == (0, 1, 2)


def test_severity_means_that_level_or_above() -> None:
    policy = gate.parse_fail_on(["medium"])
    assert policy.fails(_finding(severity="high")) and policy.fails(_finding(severity="medium"))
    assert not policy.fails(_finding(severity="low"))
    assert gate.decide_exit([_finding(severity="low")], policy) is ExitCode.OK
    assert gate.decide_exit([_finding(severity="high")], policy) is ExitCode.FINDINGS
    assert gate.decide_exit([], policy) is ExitCode.OK


def test_kinds_and_severities_combine() -> None:
    policy = gate.parse_fail_on(["high", "rst_teardown"])
    assert policy.fails(_finding("rst_teardown", "low"))
    assert not policy.fails(_finding("retransmission", "medium"))
    assert policy.fails(_finding("syn_flood", "high"))
    assert gate.parse_fail_on("high,rst-teardown") == policy  # comma list, '-' spelling
    assert gate.parse_fail_on(["high", "low"]).min_severity == "low"


def test_any_none_and_default() -> None:
    assert gate.parse_fail_on(["any"]).fails(_finding(severity="info"))
    never = gate.parse_fail_on(["none"])
    assert not never.fails(_finding("syn_flood", "high"))
    assert gate.parse_fail_on(None) == FailPolicy() == gate.parse_fail_on([])
    assert FailPolicy().min_severity == "high"  # the issue: the default fails on high


@pytest.mark.parametrize("spec", ["critical", "rst", "none,high"])
def test_bad_fail_on_specs(spec: str) -> None:
    with pytest.raises(GateError):
        gate.parse_fail_on([spec])


# -- ignore rules -----------------------------------------------------------------------


def test_ignore_by_kind_port_address_connection_capture() -> None:
    a = _finding("rst_teardown", client="10.0.0.1:40001", server="10.0.0.2:443", conn=1)
    b = _finding("half_open", client="10.0.0.1:40002", server="10.9.0.5:5432", conn=2)
    c = _finding("rst_teardown", client="[fd00::7]:50000", server="[fd00::1]:80", conn=3,
                 capture="/caps/b.pcap")
    flood = flood_finding("10.1.0.2:80")
    scan = scan_finding()  # subject is the scanning address '10.1.0.9'
    every = [a, b, c, flood, scan]

    def ignored(rule: IgnoreRule) -> list[Finding]:
        return gate.apply_ignores(every, [rule], capture="/caps/a.pcap")[1]

    assert ignored(IgnoreRule(kind="rst_teardown")) == [a, c]
    assert ignored(IgnoreRule(port=443)) == [a]
    assert ignored(IgnoreRule(port=40002)) == [b]  # either side's port
    assert ignored(IgnoreRule(address="10.9.0.0/16")) == [b]
    assert ignored(IgnoreRule(address="10.0.0.1")) == [a, b]  # the client side
    assert ignored(IgnoreRule(address="fd00::/64")) == [c]
    assert ignored(IgnoreRule(address="[fd00::1]", port=80)) == [c]
    assert ignored(IgnoreRule(address="fd00::7", port=80)) == []  # same endpoint for both
    assert ignored(IgnoreRule(address="10.1.0.2")) == [flood]  # aggregate subject
    assert ignored(IgnoreRule(address="10.1.0.9")) == [scan]
    assert ignored(IgnoreRule(connection=2)) == [b]
    assert ignored(IgnoreRule(capture="b.pcap")) == [c]
    assert ignored(IgnoreRule(capture="/caps/a.*")) == [a, b, flood, scan]
    assert ignored(IgnoreRule(kind="rst_teardown", capture="a.pcap")) == [a]


def test_ignore_spec_parsing() -> None:
    assert gate.parse_ignore_spec("rst-teardown") == IgnoreRule(kind="rst_teardown")
    assert gate.parse_ignore_spec("kind=half_open, port=5432") == IgnoreRule(
        kind="half_open", port=5432)
    for bad in ("port=http", "kind=nope", "colour=red", "port=", "address=not-an-ip"):
        with pytest.raises(GateError):
            gate.parse_ignore_spec(bad)
    with pytest.raises(GateError):
        IgnoreRule()  # matches everything: almost certainly a mistake
    with pytest.raises(GateError):
        IgnoreRule(port=70000)


# -- baselines --------------------------------------------------------------------------


def _report(findings: list[Finding], path: str = "/ci/run-1/capture.pcap") -> Report:
    from tcpanalyze.report import CaptureSummary
    return Report([CaptureSummary(path, "pcap", ["EN10MB"], 10, 10, {}, 0.0, 1.0)], [], findings)


def test_baseline_matches_server_endpoint_not_client_port() -> None:
    known = _report([_finding(client="10.0.0.1:40001"), flood_finding()])
    stream = io.StringIO()
    gate.write_baseline(known, stream)
    data = json.loads(stream.getvalue())
    assert data["version"] == gate.BASELINE_VERSION
    assert {(e["kind"], e["endpoint"], e["capture"]) for e in data["findings"]} == {
        ("rst_teardown", "10.0.0.2:443", "capture.pcap"),
        ("syn_flood", "10.1.0.2:80", "capture.pcap"),
    }
    baseline = gate.baseline_from_dict(data)
    # a later run: new client ports and another directory, same problem -> known
    again = _finding(client="10.0.0.1:51515")
    other_server = _finding(server="10.0.0.3:443")
    other_kind = _finding("half_open")
    other_capture = _finding(capture="/ci/run-2/other.pcap")
    new, known_list = gate.split_by_baseline(
        [again, other_server, other_kind, other_capture, flood_finding()], baseline,
        capture="/ci/run-2/capture.pcap")
    assert known_list == [again, flood_finding()]
    assert new == [other_server, other_kind, other_capture]


def test_baseline_counts_and_round_trip_through_a_file(tmp_path) -> None:
    report = _report([_finding(), _finding(client="10.0.0.1:40002"), flood_finding()])
    path = tmp_path / "baseline.json"
    with path.open("w") as stream:
        gate.write_baseline(report, stream)
    baseline = gate.read_baseline(str(path))
    new, known = gate.split_by_baseline(report.findings, baseline, report.capture.path)
    assert new == [] and known == report.findings
    entries = json.loads(path.read_text())["findings"]
    assert sum(e["count"] for e in entries) == len(report.findings)


@needs_corpus
def test_baseline_of_a_corpus_report() -> None:
    # pop3-rejects: six refused attempts against two servers (.188 and .171, port 110)
    report = corpus_report("pop3-rejects")
    data = gate.baseline_dict(report)
    assert [(e["endpoint"], e["count"]) for e in data["findings"]] == [
        ("212.227.15.171:110", 3), ("212.227.15.188:110", 3)]


def test_bad_baseline_files(tmp_path) -> None:
    for content, message in (("{", "not valid JSON"), ('{"version": 99, "findings": []}',
                             "version 99"), ('{"findings": [{"kind": 1}]}', "version"),
                             ('{"version": 1, "findings": [{"kind": 1}]}', r"findings\[0\]"),
                             ("[]", "not a tcpanalyze baseline")):
        path = tmp_path / "b.json"
        path.write_text(content)
        with pytest.raises(GateError, match=message):
            gate.read_baseline(str(path))
    with pytest.raises(GateError, match="cannot read"):
        gate.read_baseline(str(tmp_path / "missing.json"))


# -- the whole check --------------------------------------------------------------------


def test_check_applies_ignores_then_baseline_then_policy() -> None:
    old = _finding("half_open", "medium", server="10.0.0.9:22")
    baseline = gate.baseline_from_dict(gate.baseline_dict(_report([old])))
    noisy = _finding("rst_teardown", "high", server="10.0.0.2:443")
    fresh = _finding("close_wait_leak", "medium", server="10.0.0.4:3306")
    minor = _finding("retransmission", "low", server="10.0.0.5:80")
    report = _report([old, noisy, fresh, minor])
    result = gate.check(report, gate.parse_fail_on(["medium"]), [IgnoreRule(port=443)], baseline)
    assert result.ignored == [noisy] and result.known == [old]
    assert result.considered == [fresh, minor] and result.failing == [fresh]
    assert result.exit_code is ExitCode.FINDINGS
    ok = gate.check(_report([old, minor]), gate.parse_fail_on(["medium"]), [], baseline)
    assert ok.exit_code is ExitCode.OK and ok.failing == []
