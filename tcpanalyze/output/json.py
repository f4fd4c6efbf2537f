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
A chunk of connections is written at once: the leaves of all of them encoded by one call,
their templates joined into one %-format. A timeline held packed (`report.Timeline`) is
one leaf, its text joined from pieces of constant text per kind of change and the texts
of its times and frames.
"""

from __future__ import annotations

import dataclasses
import json
from array import array
from collections.abc import Callable, Sequence
from itertools import chain
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from math import isfinite
from operator import attrgetter
from typing import Any, TextIO

from tcpanalyze.report import ConnectionSummary, Finding, Report

_MARK = "\x00tcpanalyze-list\x00"  # where a list goes in the report's head
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


def _skeleton(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {key: _skeleton(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_skeleton(value) for value in obj]
    return _LEAF


def _str_keys(obj: Any) -> bool:
    """Every dict key is a str (1 == 1.0 == True as keys of a shape, but json.dumps
    writes them differently: such shapes must not share a template)."""
    if isinstance(obj, dict):
        return all(type(key) is str and _str_keys(value) for key, value in obj.items())
    if isinstance(obj, (list, tuple)):
        return all(_str_keys(value) for value in obj)
    return True


# what a gather function finds in an item: its shape, its scalar leaves in the order
# to_dict() lists them, and (leaf index, text) of a part written as one block
_Gathered = tuple[tuple[Any, ...], list[Any], "tuple[int, str] | None"]


def _gather(conn: ConnectionSummary, timeline: bool) -> _Gathered:
    """The connection's shape and leaves, its timeline one block when it is packed."""
    leaves = list(_SCALARS(conn))
    findings = conn.findings
    leaves += findings
    leaves.append(conn.flags_seen)
    quality = conn.quality
    leaves += quality.values()
    changes: int | str = -1
    block = None
    if timeline:
        changes = len(conn.timeline)
        parts = getattr(conn.timeline, "packed_parts", None)
        text = _timeline_block(*parts) if parts is not None and changes else None
        if text is not None:
            block = (len(leaves), text)
            changes = "block"  # one leaf: the whole list, written by _timeline_block
            leaves.append(None)
        else:
            # report.Timeline: the rows, when in to_dict()'s order
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
    # the number of leaves too: a template may only take as many as it was checked with
    # (one chunk's templates are filled by one format: a miscount would shift the rest)
    shape = ("connection", len(findings), tuple(quality), changes, capture is not None,
             tuple(map(tuple, zeek)) if zeek else (), len(leaves))
    return shape, leaves, block


# A state change of a timeline, as json.dumps(indent=2) writes it inside a connection
# (the connection four spaces in, so the change's braces at 8 and its keys at 10): the
# time and frame differ from change to change, the rest is one of few texts per kind.
_TIME = '        {\n          "time": '
_FRAME = ',\n          "frame": '
_CACHED_CHANGES = 64  # timelines up to this long keep their pieces (the usual ones)
# id of a table of kinds -> (the table, the text of each kind, the pieces of whole
# timelines by their codes' bytes): one table per process that made timelines
# (tracker.CHANGE_KINDS, only ever appended to)
_kind_texts: dict[int, tuple[Any, list[str | None], dict[bytes, list[str | None]]]] = {}


def _kind_text(kind: Any) -> str | None:
    """The text after a change's frame, up to its closing brace; None for a kind that
    is not four strings (the rows path writes whatever it is)."""
    if not (type(kind) is tuple and len(kind) == 4 and all(isinstance(s, str) for s in kind)):
        return None
    endpoint, old, new, reason = map(encode_basestring_ascii, kind)
    return (f',\n          "endpoint": {endpoint},\n          "from": {old},'
            f'\n          "to": {new},\n          "reason": {reason}\n        }}')


def _timeline_pieces(codes: array[float], kinds: Any) -> list[str | None] | None:
    """The constant text of a timeline with these kind codes, in pieces around the slots
    (None) of its times (at 1::4) and frames (at 3::4); None when a code is not an index
    of the table or its kind is not writable here."""
    known = _kind_texts.get(id(kinds))
    if known is None or known[0] is not kinds:
        if len(_kind_texts) >= 64:
            _kind_texts.clear()
        known = _kind_texts[id(kinds)] = (kinds, [], {})
    texts, timelines = known[1], known[2]
    key = codes.tobytes()
    pieces = timelines.get(key)
    if pieces is not None:
        return pieces
    if len(texts) < len(kinds):
        texts += map(_kind_text, kinds[len(texts):])
    if not all(code.is_integer() and 0 <= code < len(texts) and texts[int(code)]
               for code in codes):
        return None  # the rows path does as Timeline.rows does (indexes from the end, ...)
    pieces = ["[\n" + _TIME]
    for code in codes:
        pieces += (None, _FRAME, None, f"{texts[int(code)]},\n{_TIME}")
    pieces[-1] = f"{texts[int(codes[-1])]}\n      ]"
    if len(codes) <= _CACHED_CHANGES:
        if len(timelines) >= _MAX_TEMPLATES:
            timelines.clear()
        timelines[key] = pieces
    return pieces


def _timeline_block(packed: Any, kinds: Any) -> str | None:
    """A packed timeline (report.Timeline) as the text of its JSON list; None when a time
    is not finite (json.dumps must raise its own error for it) or the timeline is not
    packed as the tracker packs it (the rows path writes it)."""
    if not isinstance(packed, array) or packed.typecode != "d" or len(packed) % 3:
        return None
    times = packed[2::3]
    # a sum that is not finite: a time is inf or nan, or finite ones overflowed (checked)
    if not isfinite(sum(times)) and not all(map(isfinite, times)):
        return None
    pieces = _timeline_pieces(packed[::3], kinds)
    if pieces is None:
        return None
    pieces = pieces.copy()
    # as json.dumps writes to_dict()'s values: float.__repr__ of the time, int of the frame
    pieces[1::4] = map(float.__repr__, times)
    pieces[3::4] = map(int.__repr__, map(int, packed[1::3]))
    return "".join(pieces)  # type: ignore[arg-type]


def _gather_finding(finding: Finding, timeline: bool = True) -> _Gathered:
    """The finding's shape and leaves (`timeline`: the signature of _gather)."""
    leaves = [finding.kind, finding.severity, finding.connection, finding.subject]
    frames = finding.frames
    leaves += frames
    leaves += (finding.time, finding.summary, finding.confidence)
    server, capture, details = finding.server, finding.capture, finding.details
    if server is not None:
        leaves.append(server)
    if capture is not None:
        leaves.append(capture)
    if details:
        leaves += details.values()
    shape = ("finding", len(frames), server is not None, capture is not None,
             tuple(details) if details else (), len(leaves))
    return shape, leaves, None


def _encoded(leaves: list[Any]) -> list[str] | None:
    """Each leaf's JSON text, or None when a leaf is not a scalar (a nested list or dict
    needs its own indentation) or cannot be written (json.dumps will say why)."""
    try:
        text = _encode_leaves(leaves)
    except (TypeError, ValueError, RecursionError):
        return None
    if text[1] in "[{" or "\n[" in text or "\n{" in text:
        return None
    return text[1:-1].split("\n")


def _fill(template: str, leaves: list[Any], block: tuple[int, str] | None = None
          ) -> str | None:
    """The template filled with the encoded leaves (and the leaf at block[0] replaced by
    the text block[1]), or None when a leaf is not a scalar."""
    parts = _encoded(leaves)
    if parts is None:
        return None
    if block is not None:
        parts[block[0]] = block[1]
    return template % tuple(parts)


def _template(data: dict[str, Any], shape: tuple[Any, ...], leaves: list[Any],
              block: tuple[int, str] | None = None) -> str | None:
    """Made by json.dumps itself from the item's to_dict() with placeholder leaves (the
    timeline one leaf when it comes as a block), kept only if it reproduces this item's
    plain text exactly."""
    if not _str_keys(data):
        return None
    skeleton = _skeleton(data)
    if block is not None:
        skeleton["timeline"] = _LEAF
    template = _indented(_plain(skeleton).replace("%", "%%").replace(_LEAF_TEXT, "%s"))
    try:
        ok = _fill(template, leaves, block) == _indented(_plain(data))
    except (TypeError, ValueError, RecursionError):
        return None  # this item cannot be written at all: json.dumps will say why
    if len(_templates) >= _MAX_TEMPLATES:
        _templates.clear()
    _templates[shape] = template if ok else None
    return _templates[shape]


def _text(shape: tuple[Any, ...], leaves: list[Any], to_dict: Callable[[], dict[str, Any]],
          block: tuple[int, str] | None = None) -> str:
    template = _templates.get(shape, False)
    if template is False:
        template = _template(to_dict(), shape, leaves, block)
    if template is not None:
        text = _fill(template, leaves, block)
        if text is not None:
            return text
    return _indented(_plain(to_dict()))


def connection_text(conn: ConnectionSummary, timeline: bool = True) -> str:
    """One connection as it appears in the report's "connections" list (indented four
    spaces, no trailing comma or newline)."""
    shape, leaves, block = _gather(conn, timeline)
    return _text(shape, leaves, lambda: conn.to_dict(timeline), block)


def finding_text(finding: Finding) -> str:
    """One finding as it appears in the report's "findings" list."""
    shape, leaves, _ = _gather_finding(finding)
    return _text(shape, leaves, finding.to_dict)


@dataclasses.dataclass(frozen=True)
class _Items:
    """How to write the items of one of the report's lists."""

    gather: Callable[[Any, bool], _Gathered]
    to_dict: Callable[[Any, bool], dict[str, Any]]
    text: Callable[[Any, bool], str]  # one item, when its chunk cannot go in one piece


_CONNECTIONS = _Items(_gather, lambda conn, timeline: conn.to_dict(timeline), connection_text)
_FINDINGS = _Items(_gather_finding, lambda finding, _: finding.to_dict(),
                   lambda finding, _: finding_text(finding))


def _chunk_text(items: Sequence[Any], kind: _Items, timeline: bool) -> str:
    """Items of one list as json.dumps writes them there, joined by ",\n": the leaves of
    all of them encoded by one call of the C encoder and all their templates filled by one
    %-format (per item, most of the time went to calls and small lists)."""
    formats: list[str] = []
    leaves: list[Any] = []
    texts: list[tuple[int, str]] = []  # (index among the leaves, text to put there)
    for item in items:
        shape, item_leaves, block = kind.gather(item, timeline)
        template = _templates.get(shape, False)
        if template is False:
            template = _template(kind.to_dict(item, timeline), shape, item_leaves, block)
        if template is None:  # the item as json.dumps writes it, in place of one leaf
            texts.append((len(leaves), _indented(_plain(kind.to_dict(item, timeline)))))
            formats.append("%s")
            leaves.append(None)
            continue
        if block is not None:
            texts.append((len(leaves) + block[0], block[1]))
        formats.append(template)
        leaves += item_leaves
    parts = _encoded(leaves)
    if parts is None:  # a nested or unwritable leaf somewhere: item by item
        return ",\n".join([kind.text(item, timeline) for item in items])
    for index, text in texts:
        parts[index] = text
    return ",\n".join(formats) % tuple(parts)


def render(report: Report, indent: int | None = 2, timeline: bool = True) -> str:
    """Keys keep the contract's order (not sorted) so diffs between runs stay small.

    Non-ASCII is escaped, so the text is plain ASCII whatever the summaries contain.
    """
    if indent == 2:
        parts: list[str] = []
        _write(report, parts.append, timeline)
        return "".join(parts)
    return json.dumps(report.to_dict(timeline=timeline), indent=indent, allow_nan=False) + "\n"


def write(report: Report, stream: TextIO, indent: int | None = 2,
          timeline: bool = True) -> None:
    """The same text as render(), written a few connections at a time, so a capture with
    many connections never needs the whole document in memory at once."""
    if indent != 2:
        stream.write(render(report, indent, timeline))
        return
    _write(report, stream.write, timeline)


def _write(report: Report, out: Callable[[str], Any], timeline: bool) -> None:
    lists: dict[str, tuple[Sequence[Any], _Items]] = {
        "connections": (report.connections, _CONNECTIONS),
        "findings": (report.findings, _FINDINGS),
    }
    head = dataclasses.replace(report, connections=[], findings=[]).to_dict(timeline=timeline)
    for name, (items, _) in lists.items():
        if items:  # an empty list stays in the head: json.dumps writes it as []
            head[name] = _MARK + name
    text = _plain(head)
    if any(text.count(encode_basestring_ascii(_MARK + name)) != (1 if items else 0)
           for name, (items, _) in lists.items()):  # a name in the head that looks like one
        out(_plain(report.to_dict(timeline=timeline)) + "\n")
        return
    for name, (items, kind) in lists.items():
        if not items:
            continue
        before, text = text.split(encode_basestring_ascii(_MARK + name))
        out(before + "[\n")
        for start in range(0, len(items), _CHUNK):
            chunk = _chunk_text(items[start:start + _CHUNK], kind, timeline)
            out(chunk + (",\n" if start + _CHUNK < len(items) else "\n"))
        out("  ]")
    out(text + "\n")
