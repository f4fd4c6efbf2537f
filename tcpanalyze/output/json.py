"""The report as JSON: `Report.to_dict()`, the versioned contract, unchanged."""

from __future__ import annotations

import json

from tcpanalyze.report import Report


def render(report: Report, indent: int | None = 2, timeline: bool = True) -> str:
    """Keys keep the contract's order (not sorted) so diffs between runs stay small.

    Non-ASCII is escaped, so the text is plain ASCII whatever the summaries contain.
    """
    return json.dumps(report.to_dict(timeline=timeline), indent=indent, allow_nan=False) + "\n"
