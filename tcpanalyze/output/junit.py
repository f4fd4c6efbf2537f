"""JUnit XML for CI test reports (Jenkins, GitLab, Azure, GitHub test reporters).

One <testsuite> per capture and one <testcase> per finding kind in that capture, so the
test count is stable from run to run and a kind turns red when any of its findings
matches the fail policy. Findings below the threshold are listed in <system-out>.
"""

from __future__ import annotations

import os
import re
import time
import xml.etree.ElementTree as ET

from tcpanalyze.gate import FailPolicy
from tcpanalyze.output.kinds import kind_info
from tcpanalyze.output.summary import finding_capture, sorted_findings
from tcpanalyze.report import FINDING_KINDS, Finding, Report

# XML 1.0 forbids most control characters even when escaped.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _text(value: str) -> str:
    return _XML_INVALID.sub("?", value)


def _finding_text(finding: Finding) -> str:
    where = f"connection {finding.connection}" if finding.connection is not None else "aggregate"
    frames = ",".join(str(n) for n in finding.frames[:20])
    if len(finding.frames) > 20:
        frames += f",... ({len(finding.frames)} frames)"
    return (
        f"[{finding.severity}] {finding.subject} ({where}; frames {frames or '-'}): "
        f"{finding.summary}"
    )


def _suite_name(path: str) -> str:
    return os.path.basename(path) or path


def render(report: Report, policy: FailPolicy | None = None) -> str:
    """`policy` decides which findings fail a testcase; the default is `FailPolicy()`."""
    policy = policy or FailPolicy()
    paths = [c.path for c in report.captures] or ["-"]
    by_capture: dict[str, list[Finding]] = {path: [] for path in paths}
    for finding in sorted_findings(report.findings):
        by_capture.setdefault(finding_capture(finding, report), []).append(finding)
    captures = {c.path: c for c in report.captures}

    root = ET.Element("testsuites", name="tcpanalyze")
    total_tests = total_failures = 0
    for path, findings in by_capture.items():
        capture = captures.get(path)
        suite = ET.SubElement(root, "testsuite", name=_text(_suite_name(path)))
        kinds = list(FINDING_KINDS) + sorted({f.kind for f in findings} - set(FINDING_KINDS))
        failures = 0
        for kind in kinds:
            of_kind = [f for f in findings if f.kind == kind]
            bad = [f for f in of_kind if policy.fails(f)]
            case = ET.SubElement(
                suite,
                "testcase",
                name=kind,
                classname=_text(f"tcpanalyze.{_suite_name(path)}"),
                time="0",
            )
            if bad:
                failures += 1
                failure = ET.SubElement(
                    case,
                    "failure",
                    message=_text(
                        f"{len(bad)} {kind} finding{'s' if len(bad) != 1 else ''}: "
                        f"{kind_info(kind).title}"
                    ),
                    type=kind,
                )
                failure.text = _text("\n".join(_finding_text(f) for f in bad))
            passed = [f for f in of_kind if not policy.fails(f)]
            if passed:
                out = ET.SubElement(case, "system-out")
                out.text = _text(
                    "below the fail policy:\n" + "\n".join(_finding_text(f) for f in passed)
                )
        suite.set("tests", str(len(kinds)))
        suite.set("failures", str(failures))
        suite.set("errors", "0")
        suite.set("skipped", "0")
        suite.set("time", "0")
        if capture is not None and capture.first_ts is not None:
            suite.set(
                "timestamp", time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(capture.first_ts))
            )
        if capture is not None:
            props = ET.SubElement(suite, "properties")
            for name, value in (
                ("capture", capture.path),
                ("format", capture.format),
                ("packets", str(capture.packets)),
                ("tcp_segments", str(capture.tcp_segments)),
                ("fail_policy", policy.describe()),
            ):
                ET.SubElement(props, "property", name=name, value=_text(value))
            # properties must come first for strict JUnit schemas
            suite.remove(props)
            suite.insert(0, props)
            if capture.error:
                err = ET.SubElement(suite, "system-err")
                what = "capture read stopped early" if capture.format else "capture not read"
                err.text = _text(f"{what}: {capture.error}")
        total_tests += len(kinds)
        total_failures += failures
    root.set("tests", str(total_tests))
    root.set("failures", str(total_failures))
    root.set("errors", "0")
    root.set("time", "0")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
