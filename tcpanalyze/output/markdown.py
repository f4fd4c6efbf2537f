"""A Markdown summary for $GITHUB_STEP_SUMMARY / merge-request comments.

Verdict first, then counts by kind and severity, then the findings table, capped at
`max_rows` with an "and N more" line (step summaries are limited to 1 MiB).
"""

from __future__ import annotations

import os

from tcpanalyze.gate import FailPolicy
from tcpanalyze.output.summary import (
    counts_by_kind,
    finding_capture,
    format_duration,
    sorted_findings,
    verdict,
)
from tcpanalyze.report import SEVERITIES, Finding, Report

DEFAULT_MAX_ROWS = 50


def cell(text: str) -> str:
    """Escape text for one GitHub-flavoured Markdown table cell."""
    text = " ".join(str(text).split())  # no newlines inside a row
    for ch in ("\\", "|", "*", "_", "`", "<", "[", "]"):
        text = text.replace(ch, "\\" + ch)
    return text or " "


def _frames(finding: Finding) -> str:
    shown = ", ".join(str(n) for n in finding.frames[:5])
    if len(finding.frames) > 5:
        shown += f", ... ({len(finding.frames)})"
    return shown or "-"


def render(
    report: Report, policy: FailPolicy | None = None, max_rows: int = DEFAULT_MAX_ROWS
) -> str:
    policy = policy or FailPolicy()
    failed, line = verdict(report, policy)
    lines = [f"## tcpanalyze: {'FAIL' if failed else 'PASS'}", "", cell(line), ""]

    multi = len(report.captures) > 1
    for capture in report.captures:
        span = (
            format_duration(capture.last_ts - capture.first_ts)
            if capture.first_ts is not None and capture.last_ts is not None
            else "-"
        )
        name = os.path.basename(capture.path) or capture.path
        if capture.error and not capture.format:  # refused: not a capture it could open
            lines.append(f"- `{name}`: not read: {cell(capture.error)}")
            continue
        lines.append(
            f"- `{name}` ({capture.format}): "
            f"{capture.packets} packets, {capture.tcp_segments} TCP segments, {span}"
        )
        if capture.error:
            lines.append(f"  - reading stopped early: {cell(capture.error)}")
    lines.append(f"- {len(report.connections)} connections, {len(report.findings)} findings")
    lines.append("")

    if not report.findings:
        lines.append("No findings.")
        return "\n".join(lines) + "\n"

    severities = list(reversed(SEVERITIES))
    lines.append("| kind | " + " | ".join(severities) + " | total |")
    lines.append("|---|" + "---:|" * (len(severities) + 1))
    for kind, counts in counts_by_kind(report.findings).items():
        row = [f"`{kind}`", *(str(counts.get(s, 0)) for s in severities)]
        row.append(str(sum(counts.values())))
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")

    ordered = sorted_findings(report.findings)
    shown = ordered[: max(max_rows, 0)]
    header = ["", "severity", "kind", "subject", "frames", "summary"]
    if multi:
        header.insert(1, "capture")
    lines.append("### Findings")
    lines.append("")
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for finding in shown:
        mark = "fail" if policy.fails(finding) else ""
        row = [
            mark,
            finding.severity,
            f"`{finding.kind}`",
            cell(finding.subject),
            _frames(finding),
            cell(finding.summary),
        ]
        if multi:
            row.insert(1, cell(os.path.basename(finding_capture(finding, report))))
        lines.append("| " + " | ".join(row) + " |")
    if len(ordered) > len(shown):
        lines.append("")
        lines.append(f"... and {len(ordered) - len(shown)} more (see the JSON or SARIF report).")
    return "\n".join(lines) + "\n"
