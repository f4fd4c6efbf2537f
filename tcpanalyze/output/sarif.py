"""SARIF 2.1.0 (OASIS) for code-scanning dashboards (GitHub, GitLab, Azure DevOps).

One run; the driver lists a rule per finding kind; one result per finding, located in
the capture file (a relative URI), with frames and connection in `properties`. The
`partialFingerprints` use the same identity as baselines (kind, server endpoint, capture
name) so dashboards keep tracking one problem across runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Any
from urllib.parse import quote

from tcpanalyze.gate import stable_identity
from tcpanalyze.output.kinds import kind_info
from tcpanalyze.output.summary import finding_capture
from tcpanalyze.report import FINDING_KINDS, Report

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"

LEVELS = {"high": "error", "medium": "warning", "low": "note", "info": "note"}


def _rule_name(kind: str) -> str:
    """'close_wait_leak' -> 'CloseWaitLeak' (SARIF rule names are PascalCase by convention)."""
    return "".join(part.capitalize() for part in kind.split("_"))


def artifact_uri(path: str, base_dir: str | None = None) -> str:
    """A relative URI reference for a capture path: relative to `base_dir` (default: the
    working directory), '/'-separated, percent-encoded; 'stdin' for '-'."""
    if path == "-":
        return "stdin"
    if os.path.isabs(path):
        try:
            path = os.path.relpath(path, base_dir or os.getcwd())
        except ValueError:  # another drive on Windows: keep it absolute
            return "file://" + quote(path.replace(os.sep, "/"))
    return quote(path.replace(os.sep, "/"))


def _rule(kind: str) -> dict[str, Any]:
    info = kind_info(kind)
    return {
        "id": kind,
        "name": _rule_name(kind),
        "shortDescription": {"text": info.title},
        "fullDescription": {"text": info.help},
        "help": {"text": info.help},
        "defaultConfiguration": {"level": "warning"},
        "properties": {"tags": ["tcp", "network"]},
    }


def _fingerprint(kind: str, identity: str, capture: str) -> str:
    return hashlib.sha256(f"{kind}|{identity}|{capture}".encode()).hexdigest()[:32]


_CONTROL = re.compile(r"[\x00-\x1f]")


def render(report: Report, indent: int | None = 2, base_dir: str | None = None) -> str:
    from tcpanalyze import __version__

    kinds = list(FINDING_KINDS) + sorted({f.kind for f in report.findings} - set(FINDING_KINDS))
    rule_index = {kind: i for i, kind in enumerate(kinds)}

    paths = [c.path for c in report.captures]
    for finding in report.findings:
        path = finding_capture(finding, report)
        if path not in paths:
            paths.append(path)
    artifact_index = {path: i for i, path in enumerate(paths)}
    artifacts = [{"location": {"uri": artifact_uri(path, base_dir)}} for path in paths]

    results = []
    for finding in report.findings:
        path = finding_capture(finding, report)
        properties: dict[str, Any] = {
            "severity": finding.severity,
            "confidence": finding.confidence,
            "time": finding.time,
            "frames": list(finding.frames),
            "connection": finding.connection,
            "subject": finding.subject,
        }
        if finding.server is not None:
            properties["server"] = finding.server
        if finding.details:
            properties["details"] = finding.details
        results.append(
            {
                "ruleId": finding.kind,
                "ruleIndex": rule_index[finding.kind],
                "level": LEVELS.get(finding.severity, "note"),
                "message": {"text": _CONTROL.sub(" ", finding.summary) or finding.kind},
                "locations": [
                    {
                        "physicalLocation": {
                            "artifactLocation": {
                                "uri": artifact_uri(path, base_dir),
                                "index": artifact_index[path],
                            }
                        },
                        "logicalLocations": [
                            {"name": finding.subject or finding.kind, "kind": "object"}
                        ],
                    }
                ],
                "partialFingerprints": {
                    "tcpanalyze/v1": _fingerprint(
                        finding.kind, stable_identity(finding), os.path.basename(path)
                    )
                },
                "properties": properties,
            }
        )

    notifications = [
        {"level": "warning", "message": {"text": c.error}} for c in report.captures if c.error
    ]
    invocation: dict[str, Any] = {"executionSuccessful": True}
    if notifications:
        invocation["toolExecutionNotifications"] = notifications

    doc = {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "tcpanalyze",
                        "version": report.tool_version or __version__,
                        "rules": [_rule(kind) for kind in kinds],
                    }
                },
                "invocations": [invocation],
                "artifacts": artifacts,
                "results": results,
                "columnKind": "unicodeCodePoints",
            }
        ],
    }
    return json.dumps(doc, indent=indent, allow_nan=False) + "\n"
