"""The format registry and the kind descriptions."""

from __future__ import annotations

import pytest
from test_output_reports import corpus_report, needs_corpus

from tcpanalyze import output
from tcpanalyze.output.kinds import KIND_INFO
from tcpanalyze.report import FINDING_KINDS


@pytest.mark.parametrize(("path", "fmt"), [
    ("out.json", "json"), ("out.ndjson", "ndjson"), ("out.jsonl", "ndjson"),
    ("out.csv", "csv"), ("results/junit.xml", "junit"), ("out.sarif", "sarif"),
    ("out.sarif.json", "sarif"), ("conn.log", "zeek"), ("SUMMARY.MD", "markdown"),
    ("report.txt", "terminal"),
])
def test_extension_to_format(path: str, fmt: str) -> None:
    assert output.format_for_path(path) == fmt


@pytest.mark.parametrize("path", ["out.pcap", "noext", ".json", "dir.json/"])
def test_unknown_extension(path: str) -> None:
    with pytest.raises(output.UnknownFormat):
        output.format_for_path(path)


@needs_corpus
@pytest.mark.parametrize("fmt", list(output.FORMATS))
def test_every_format_renders_text(fmt: str) -> None:
    text = output.render(fmt, corpus_report("pop3-rejects"), output.RenderOptions(max_rows=3))
    assert isinstance(text, str) and text.endswith("\n") and text.isascii()


def test_unknown_format() -> None:
    with pytest.raises(output.UnknownFormat, match="expected one of"):
        output.render("yaml", None)  # type: ignore[arg-type]


def test_every_kind_is_described() -> None:
    assert set(KIND_INFO) == set(FINDING_KINDS)
    assert all(info.title and info.help.endswith(".") for info in KIND_INFO.values())
