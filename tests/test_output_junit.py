"""JUnit XML: read back with junitparser (what CI plugins use) and ElementTree."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET

from junitparser import Failure, JUnitXml
from test_output_reports import corpus_report, flood_finding, needs_corpus

from tcpanalyze.gate import parse_fail_on
from tcpanalyze.output import junit
from tcpanalyze.report import FINDING_KINDS, Finding, Report

pytestmark = needs_corpus


def _suites(text: str) -> list:
    return list(JUnitXml.fromstring(text.encode()))


def test_one_testcase_per_kind_and_failures_by_policy() -> None:
    report = corpus_report("pop3-rejects")  # 6 connection_refused (medium)
    report.findings.append(flood_finding())  # 1 syn_flood (high)
    text = junit.render(report, parse_fail_on(["medium"]))
    (suite,) = _suites(text)
    assert suite.name == "capture.pcap"
    assert suite.tests == len(FINDING_KINDS) and suite.failures == 2 and suite.errors == 0
    cases = {case.name: case for case in suite}
    assert set(cases) == set(FINDING_KINDS)
    failed = {name for name, case in cases.items() if not case.is_passed}
    assert failed == {"syn_flood", "connection_refused"}
    (failure,) = [r for r in cases["connection_refused"].result if isinstance(r, Failure)]
    assert failure.text.count("\n") == 5  # six findings, one line each
    assert "192.168.0.4:26242 -> 212.227.15.188:110" in failure.text
    assert failure.message.startswith("6 connection_refused findings")


def test_findings_below_the_threshold_pass_but_are_listed() -> None:
    report = corpus_report("pop3-rejects")
    text = junit.render(report, parse_fail_on(["high"]))
    (suite,) = _suites(text)
    assert suite.failures == 0
    root = ET.fromstring(text)
    case = root.find(".//testcase[@name='connection_refused']")
    assert case is not None and case.find("failure") is None
    assert "212.227.15.171:110" in case.findtext("system-out")
    assert root.get("tests") == str(len(FINDING_KINDS)) and root.get("failures") == "0"


def test_one_suite_per_capture_with_totals() -> None:
    first = corpus_report("pop3-rejects")
    second = corpus_report("modbus-502-resets")  # RSTO + RSTRH -> 2 rst_teardown (low)
    for f in second.findings:
        f.capture = second.capture.path
    report = Report(first.captures + second.captures, first.connections + second.connections,
                    first.findings + second.findings)
    text = junit.render(report, parse_fail_on(["any"]))
    suites = _suites(text)
    assert [s.name for s in suites] == ["capture.pcap", "capture.pcap"]
    assert [s.failures for s in suites] == [1, 1]
    root = ET.fromstring(text)
    assert root.get("tests") == str(2 * len(FINDING_KINDS)) and root.get("failures") == "2"
    props = [s.find("properties/property[@name='capture']").get("value")
             for s in root.findall("testsuite")]
    assert props[1].endswith("modbus-502-resets/capture.pcap")
    rst = root.findall("testsuite")[1].find("testcase[@name='rst_teardown']/failure")
    assert rst.text.count("[low]") == 2


def test_no_findings_all_pass_and_read_error_is_reported() -> None:
    report = corpus_report("http-get")
    assert report.findings == []
    report.captures[0] = dataclasses.replace(
        report.capture, error="capture.pcap: frame 7 (byte offset 4321): truncated record")
    text = junit.render(report)
    (suite,) = _suites(text)
    assert suite.tests == len(FINDING_KINDS) and suite.failures == 0
    assert "truncated record" in ET.fromstring(text).findtext("testsuite/system-err")


def test_control_characters_and_markup_are_escaped() -> None:
    report = corpus_report("http-get")
    report.findings.append(Finding("invalid_flags", "high", "flags <SYN&FIN>\x01 seen", 1.0,
                                   [3], 1, "a -> b"))
    text = junit.render(report)
    root = ET.fromstring(text)  # parses: no raw control character, '<' and '&' escaped
    body = root.find(".//testcase[@name='invalid_flags']/failure").text
    assert "flags <SYN&FIN>? seen" in body
    assert text.isascii()


def test_findings_naming_their_capture_by_base_name_join_its_suite() -> None:
    first = corpus_report("pop3-rejects")
    second = corpus_report("http-get")
    second.captures[0].path = "/tmp/elsewhere/http.pcap"
    for f in first.findings:
        f.capture = "capture.pcap"  # the base name of the first capture's path
    report = Report(first.captures + second.captures, [], first.findings)
    root = ET.fromstring(junit.render(report, parse_fail_on(["medium"])))
    assert [s.get("name") for s in root.findall("testsuite")] == ["capture.pcap", "http.pcap"]
    assert [s.get("failures") for s in root.findall("testsuite")] == ["1", "0"]
