"""Renderers: a `Report` in, text out. One module per format; this is the registry.

`render(fmt, report, options)` dispatches by format name; `format_for_path` picks the
format from an `--output FILE.ext` name.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from tcpanalyze.gate import FailPolicy
from tcpanalyze.report import Report


@dataclass(frozen=True)
class RenderOptions:
    policy: FailPolicy | None = None  # what fails (junit, markdown, terminal verdict)
    indent: int | None = 2  # json, sarif
    timeline: bool = True  # json: include each connection's state changes
    max_rows: int = 50  # terminal, markdown
    width: int = 80  # terminal text written to a file
    base_dir: str | None = None  # sarif: artifact URIs relative to this directory
    jobs: int = 1  # json: processes that may write a large report's connections


def _terminal(report: Report, o: RenderOptions) -> str:
    from tcpanalyze.output import terminal

    return terminal.render(report, o.policy, width=o.width, max_rows=o.max_rows)


def _json(report: Report, o: RenderOptions) -> str:
    from tcpanalyze.output import json

    return json.render(report, indent=o.indent, timeline=o.timeline)


def _ndjson(report: Report, o: RenderOptions) -> str:
    from tcpanalyze.output import ndjson

    return ndjson.render(report)


def _csv(report: Report, o: RenderOptions) -> str:
    from tcpanalyze.output import csv

    return csv.render(report)


def _junit(report: Report, o: RenderOptions) -> str:
    from tcpanalyze.output import junit

    return junit.render(report, o.policy)


def _sarif(report: Report, o: RenderOptions) -> str:
    from tcpanalyze.output import sarif

    return sarif.render(report, indent=o.indent, base_dir=o.base_dir)


def _zeek(report: Report, o: RenderOptions) -> str:
    from tcpanalyze.output import zeek

    return zeek.render(report)


def _markdown(report: Report, o: RenderOptions) -> str:
    from tcpanalyze.output import markdown

    return markdown.render(report, o.policy, max_rows=o.max_rows)


Renderer = Callable[[Report, RenderOptions], str]

# format name -> renderer; 'terminal' renders plain text when not printed to a console.
FORMATS: dict[str, Renderer] = {
    "terminal": _terminal,
    "json": _json,
    "ndjson": _ndjson,
    "csv": _csv,
    "junit": _junit,
    "sarif": _sarif,
    "zeek": _zeek,
    "markdown": _markdown,
}

# file extension -> format, for --output FILE.ext (longest suffix wins: .sarif.json)
EXTENSIONS: dict[str, str] = {
    ".sarif.json": "sarif",
    ".json": "json",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".csv": "csv",
    ".xml": "junit",
    ".sarif": "sarif",
    ".log": "zeek",
    ".md": "markdown",
    ".txt": "terminal",
}


class UnknownFormat(ValueError):
    pass


def format_for_path(path: str) -> str:
    """The format an output file name implies; UnknownFormat when it implies none."""
    name = os.path.basename(path).lower()
    for ext in sorted(EXTENSIONS, key=len, reverse=True):
        if name.endswith(ext) and len(name) > len(ext):
            return EXTENSIONS[ext]
    raise UnknownFormat(
        f"cannot tell the output format from {path!r}: use one of "
        f"{', '.join(sorted(EXTENSIONS))} or give --format"
    )


def render(fmt: str, report: Report, options: RenderOptions | None = None) -> str:
    try:
        renderer = FORMATS[fmt]
    except KeyError:
        raise UnknownFormat(
            f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)}"
        ) from None
    return renderer(report, options or RenderOptions())
