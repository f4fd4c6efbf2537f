"""SARIF 2.1.0: schema-valid, one rule per kind, one result per finding."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from test_output_reports import CORPUS, corpus_report, flood_finding, needs_corpus, scan_finding

from tcpanalyze.output import sarif
from tcpanalyze.report import FINDING_KINDS, Report

SCHEMA = json.loads((Path(__file__).parent / "data/sarif-schema-2.1.0.json").read_text())

pytestmark = needs_corpus


def _validate(doc: dict) -> None:
    validator = jsonschema.Draft4Validator(SCHEMA)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors[:5]]


def test_schema_catches_a_broken_document() -> None:
    # the validation below can fail: a result with a bad level is rejected
    doc = json.loads(sarif.render(corpus_report("pop3-rejects")))
    doc["runs"][0]["results"][0]["level"] = "fatal"
    with pytest.raises(AssertionError):
        _validate(doc)


@pytest.mark.parametrize("item", ["pop3-rejects", "ftp-ipv6", "http-get", "modbus-502-resets"])
def test_valid_against_the_oasis_schema(item: str) -> None:
    report = corpus_report(item)
    report.findings += [flood_finding(), scan_finding()]
    _validate(json.loads(sarif.render(report, base_dir=str(CORPUS))))


def test_rules_results_levels_and_locations() -> None:
    report = corpus_report("pop3-rejects")
    report.findings.append(flood_finding())
    doc = json.loads(sarif.render(report, base_dir=str(CORPUS)))
    assert doc["version"] == "2.1.0"
    (run,) = doc["runs"]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == list(FINDING_KINDS)
    assert all(r["shortDescription"]["text"] and r["help"]["text"] for r in rules)
    results = run["results"]
    assert len(results) == 7
    for result in results:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
    refused = results[0]
    assert refused["ruleId"] == "connection_refused" and refused["level"] == "warning"
    assert results[-1]["level"] == "error"  # high
    location = refused["locations"][0]["physicalLocation"]["artifactLocation"]
    assert location["uri"] == "zeek/pop3-rejects/capture.pcap"  # relative to base_dir
    assert run["artifacts"][location["index"]]["location"]["uri"] == location["uri"]
    assert refused["message"]["text"] == report.findings[0].summary
    assert refused["properties"]["frames"] == report.findings[0].frames
    assert refused["properties"]["connection"] == 1
    assert results[-1]["properties"]["details"]["sources"] == 1830


def test_levels_for_each_severity() -> None:
    assert sarif.LEVELS == {"high": "error", "medium": "warning", "low": "note", "info": "note"}


def test_fingerprint_ignores_the_ephemeral_client_port() -> None:
    report = corpus_report("pop3-rejects")  # the same server refused ports 26242 and 26245
    doc = json.loads(sarif.render(report))
    prints = {}
    for finding, result in zip(report.findings, doc["runs"][0]["results"], strict=True):
        prints.setdefault(finding.server, set()).add(result["partialFingerprints"]["tcpanalyze/v1"])
    assert len(prints) == 2 and all(len(p) == 1 for p in prints.values())


def test_no_findings_and_stdin() -> None:
    report = corpus_report("http-get")
    report.captures[0].path = "-"
    doc = json.loads(sarif.render(report))
    _validate(doc)
    assert doc["runs"][0]["results"] == []
    assert doc["runs"][0]["artifacts"][0]["location"]["uri"] == "stdin"


def test_empty_report_and_uri_encoding() -> None:
    _validate(json.loads(sarif.render(Report([], [], []))))
    assert sarif.artifact_uri("caps/with space#1.pcap") == "caps/with%20space%231.pcap"
    assert sarif.artifact_uri("/a/b/c.pcap", base_dir="/a") == "b/c.pcap"
