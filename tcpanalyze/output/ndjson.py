"""Newline-delimited JSON: one line per finding, then one summary line.

Each line is a complete JSON object with a `type` first, so `jq 'select(.type=="finding")'`
works and a live run (`tcpanalyze watch`) can emit a finding the moment it is made.
"""

from __future__ import annotations

import json
from typing import IO, Any

from tcpanalyze.output.summary import counts_by_kind, counts_by_severity
from tcpanalyze.report import REPORT_VERSION, Finding, Report


def _line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False) + "\n"


def finding_line(finding: Finding) -> str:
    """`{"type":"finding", ...finding.to_dict()}` plus the newline."""
    return _line({"type": "finding", **finding.to_dict()})


def summary_dict(report: Report) -> dict[str, Any]:
    from tcpanalyze import __version__

    capture = report.captures[0] if report.captures else None
    out: dict[str, Any] = {
        "type": "summary",
        "version": REPORT_VERSION,
        "tool": {"name": "tcpanalyze", "version": report.tool_version or __version__},
        "captures": [c.path for c in report.captures],
        "packets": sum(c.packets for c in report.captures),
        "tcp_segments": sum(c.tcp_segments for c in report.captures),
        # All connections seen; a live run lists only those with findings.
        "connections": max(report.stats.get("connections", 0), len(report.connections)),
        "findings": len(report.findings),
        "by_severity": counts_by_severity(report.findings),
        "by_kind": {kind: sum(c.values()) for kind, c in counts_by_kind(report.findings).items()},
    }
    errors = [c.error for c in report.captures if c.error]
    if errors:
        out["errors"] = errors
    if capture is not None:
        out["first_ts"] = capture.first_ts
        out["last_ts"] = capture.last_ts
    return out


def summary_line(report: Report) -> str:
    return _line(summary_dict(report))


def write_finding(finding: Finding, stream: IO[str]) -> None:
    """Write one finding line and flush, so a reader of a pipe sees it at once."""
    stream.write(finding_line(finding))
    stream.flush()


def render(report: Report) -> str:
    return "".join(finding_line(f) for f in report.findings) + summary_line(report)
