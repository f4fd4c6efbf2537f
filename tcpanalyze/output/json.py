"""The report as JSON: `Report.to_dict()`, the versioned contract, unchanged."""

from __future__ import annotations

import dataclasses
import json
from typing import TextIO

from tcpanalyze.report import Report

_MARK = "__tcpanalyze_connections__"


def render(report: Report, indent: int | None = 2, timeline: bool = True) -> str:
    """Keys keep the contract's order (not sorted) so diffs between runs stay small.

    Non-ASCII is escaped, so the text is plain ASCII whatever the summaries contain.
    """
    return json.dumps(report.to_dict(timeline=timeline), indent=indent, allow_nan=False) + "\n"


def write(report: Report, stream: TextIO, indent: int | None = 2,
          timeline: bool = True) -> None:
    """The same text as render(), written one connection at a time, so a capture with
    many connections never needs the whole document in memory at once."""
    if indent != 2 or not report.connections:
        stream.write(render(report, indent, timeline))
        return
    head = dataclasses.replace(report, connections=[]).to_dict(timeline=timeline)
    head["connections"] = _MARK
    before, after = json.dumps(head, indent=2, allow_nan=False).split(f'"{_MARK}"')
    stream.write(before + "[\n")
    last = len(report.connections) - 1
    for i, conn in enumerate(report.connections):
        text = json.dumps(conn.to_dict(timeline), indent=2, allow_nan=False)
        stream.write("    " + text.replace("\n", "\n    ") + (",\n" if i < last else "\n"))
    stream.write("  ]" + after + "\n")
