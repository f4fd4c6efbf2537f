"""The report as JSON: `Report.to_dict()`, the versioned contract, unchanged.

The text is exactly `json.dumps(report.to_dict(), indent=2, allow_nan=False)` plus a
newline. With an indent, `json.dumps` runs CPython's pure-Python encoder (its C encoder
only runs without one): ~100 us per connection, seconds for a large capture. So each
connection's scalar leaves are encoded by one call of the C encoder and dropped into an
indented template. A template is made once per shape (number of findings and state
changes, quality keys, ...) by `json.dumps(indent=2)` itself on a skeleton of the
connection's own `to_dict()`, and checked against the plain text of that connection
before it is used; any connection the templates cannot express exactly (a nested value
where a scalar was expected, a shape that failed its check) is written by `json.dumps`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from itertools import chain
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from operator import attrgetter
from typing import Any, TextIO

from tcpanalyze.report import ConnectionSummary, Report

_MARK = "__tcpanalyze_connections__"
_LEAF = "\x00tcpanalyze-leaf\x00"  # a skeleton's scalar leaf; json.dumps escapes it so:
_LEAF_TEXT = encode_basestring_ascii(_LEAF)
_PREFIX = "    "  # a connection sits in the report's "connections" list, two levels deep
_CHUNK = 256  # connections per write: few write calls, memory independent of the report
_MAX_TEMPLATES = 4096  # shapes remembered (a hostile capture must not grow this forever)


def _no_default(obj: Any) -> Any:
    raise TypeError(f"Object of type {obj.__class__.__name__} is not JSON serializable")


# Scalars joined by a newline: an encoded string never holds a raw newline (escaped), so
# splitting on it gives one encoded leaf per item. Same leaf text as json.dumps: both
# encoders use encode_basestring_ascii, float.__repr__ and int.__repr__.
if c_make_encoder is not None:
    _encode_list = c_make_encoder(None, _no_default, encode_basestring_ascii, None,
                                  ":", "\n", False, False, False)

    def _encode_leaves(leaves: list[Any]) -> str:
        return "".join(_encode_list(leaves, 0))
else:  # pragma: no cover - CPython always has the C encoder
    _encode_leaves = json.JSONEncoder(separators=("\n", ":"), allow_nan=False,
                                      check_circular=False).encode

_SCALARS = attrgetter("id", "client", "server", "start", "end", "packets_client",
                      "packets_server", "bytes_client", "bytes_server", "client_state",
                      "server_state", "conn_state", "history")
_CHANGE_NAMES = ("time", "frame", "endpoint", "old", "new", "reason")  # to_dict()'s order
_CHANGE = attrgetter(*_CHANGE_NAMES)

# shape -> template (a %-format string, one %s per leaf), or None: use json.dumps
_templates: dict[tuple[Any, ...], str | None] = {}


def _plain(obj: Any) -> str:
    return json.dumps(obj, indent=2, allow_nan=False)


def _indented(text: str) -> str:
    return _PREFIX + text.replace("\n", "\n" + _PREFIX)


def _plain_connection(conn: ConnectionSummary, timeline: bool) -> str:
    return _indented(_plain(conn.to_dict(timeline)))


def _skeleton(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {key: _skeleton(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_skeleton(value) for value in obj]
    return _LEAF


def _gather(conn: ConnectionSummary, timeline: bool) -> tuple[tuple[Any, ...], list[Any]]:
    """The connection's shape and its scalar leaves in the order to_dict() lists them."""
    leaves = list(_SCALARS(conn))
    findings = conn.findings
    leaves += findings
    leaves.append(conn.flags_seen)
    quality = conn.quality
    leaves += quality.values()
    changes = -1
    if timeline:
        changes = len(conn.timeline)
        # parallel.Timeline: the rows as received from a worker, when in to_dict()'s order
        rows = getattr(conn.timeline, "rows", None)
        if rows is not None and getattr(conn.timeline, "fields", None) == _CHANGE_NAMES:
            leaves += chain.from_iterable(rows)
        else:
            leaves += chain.from_iterable(map(_CHANGE, conn.timeline))
    capture = conn.capture
    if capture is not None:
        leaves.append(capture)
    zeek = conn.zeek_records
    for record in zeek:
        leaves += record.values()
    shape = (len(findings), tuple(quality), changes, capture is not None,
             tuple(tuple(record) for record in zeek))
    return shape, leaves


def _fill(template: str, leaves: list[Any]) -> str | None:
    """The template filled with the encoded leaves, or None when a leaf is not a scalar
    (a nested list or dict needs its own indentation)."""
    try:
        text = _encode_leaves(leaves)
    except (TypeError, ValueError, RecursionError):
        return None  # json.dumps will raise its own error for it
    if text[1] in "[{" or "\n[" in text or "\n{" in text:
        return None
    return template % tuple(text[1:-1].split("\n"))


def _template(conn: ConnectionSummary, timeline: bool, shape: tuple[Any, ...],
              leaves: list[Any]) -> str | None:
    """Made by json.dumps itself from the connection's to_dict() with placeholder leaves,
    kept only if it reproduces this connection's plain text exactly."""
    keys = list(shape[1]) + [key for record in shape[4] for key in record]
    if not all(type(key) is str for key in keys):  # 1 == True: shapes must not collide
        return None
    data = conn.to_dict(timeline)
    text = _plain(_skeleton(data)).replace("%", "%%").replace(_LEAF_TEXT, "%s")
    template = _indented(text)
    try:
        ok = _fill(template, leaves) == _indented(_plain(data))
    except (TypeError, ValueError, RecursionError):
        return None  # this connection cannot be written at all: json.dumps will say why
    if len(_templates) >= _MAX_TEMPLATES:
        _templates.clear()
    _templates[shape] = template if ok else None
    return _templates[shape]


def connection_text(conn: ConnectionSummary, timeline: bool = True) -> str:
    """One connection as it appears in the report's "connections" list (indented four
    spaces, no trailing comma or newline)."""
    shape, leaves = _gather(conn, timeline)
    template = _templates.get(shape, False)
    if template is False:
        template = _template(conn, timeline, shape, leaves)
    if template is not None:
        text = _fill(template, leaves)
        if text is not None:
            return text
    return _plain_connection(conn, timeline)


def render(report: Report, indent: int | None = 2, timeline: bool = True) -> str:
    """Keys keep the contract's order (not sorted) so diffs between runs stay small.

    Non-ASCII is escaped, so the text is plain ASCII whatever the summaries contain.
    """
    if indent == 2 and report.connections:
        parts: list[str] = []
        _write(report, parts.append, timeline)
        return "".join(parts)
    return json.dumps(report.to_dict(timeline=timeline), indent=indent, allow_nan=False) + "\n"


def write(report: Report, stream: TextIO, indent: int | None = 2,
          timeline: bool = True) -> None:
    """The same text as render(), written a few connections at a time, so a capture with
    many connections never needs the whole document in memory at once."""
    if indent != 2 or not report.connections:
        stream.write(render(report, indent, timeline))
        return
    _write(report, stream.write, timeline)


def _write(report: Report, out: Callable[[str], Any], timeline: bool) -> None:
    head = dataclasses.replace(report, connections=[]).to_dict(timeline=timeline)
    head["connections"] = _MARK
    before, after = _plain(head).split(f'"{_MARK}"')
    out(before + "[\n")
    connections = report.connections
    for start in range(0, len(connections), _CHUNK):
        chunk = [connection_text(conn, timeline)
                 for conn in connections[start:start + _CHUNK]]
        out(",\n".join(chunk) + (",\n" if start + _CHUNK < len(connections) else "\n"))
    out("  ]" + after + "\n")
