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
the texts between the leaves (the templates, in pieces) and the leaves' texts joined by
one call. A timeline held packed (`report.Timeline`) is one leaf, its text joined from
pieces of constant text per kind of change and the texts of its times and frames, all
the chunk's numbers formatted together.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import tempfile
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from math import isfinite
from operator import attrgetter
from typing import IO, Any, TextIO

import numpy as np
import numpy.typing as npt

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

# shape -> template, or None: use json.dumps. A template is the item's text in pieces:
# literal text at the even indexes, a slot (None) for each leaf's text between them.
_Template = list["str | None"]
_templates: dict[tuple[Any, ...], _Template | None] = {}


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


# a packed timeline to be written as one block: the pieces of its constant text, with
# slots (None) for its times and frames at 1::2, and its packed changes
_Packed = tuple[list["str | None"], "array[float]"]
# a timeline written as one block: (its leaf index, the timeline, the leaf indexes of the
# connection's start and end when they are its first and last times, else -1)
_Block = tuple[int, _Packed, int, int]
# what a gather function finds in an item: its shape, its scalar leaves in the order
# to_dict() lists them, and its timeline block
_Gathered = tuple[tuple[Any, ...], list[Any], "_Block | None"]
_START, _END = 3, 4  # the leaf indexes of a connection's start and end (_SCALARS)


def _gather(conn: ConnectionSummary, timeline: bool) -> _Gathered:
    """The connection's shape and leaves, its timeline one block when it is packed (its
    text made later, with the other timelines of its chunk)."""
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
        packed = _packed_timeline(*parts) if parts is not None and changes else None
        if packed is not None:
            # the start and end are most often the first and last times: written once
            # (equal floats, not zeros: the same repr)
            first, last = packed[1][2], packed[1][-1]
            start, end = conn.start, conn.end
            start_at = _START if type(start) is float and start == first != 0 else -1
            end_at = _END if type(end) is float and end == last != 0 else -1
            if start_at >= 0:
                leaves[_START] = None
            if end_at >= 0:
                leaves[_END] = None
            block = (len(leaves), packed, start_at, end_at)
            changes = "block"  # one leaf: the whole list, written by _timeline_texts
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
    vlan = conn.vlan
    if vlan is not None:
        leaves += vlan
    zeek = conn.zeek_records
    for record in zeek:
        leaves += record.values()
    # the number of leaves too: a template may only take as many as it was checked with
    # (a chunk's templates are filled at once: a miscount would shift the rest)
    shape = ("connection", len(findings), tuple(quality), changes, capture is not None,
             -1 if vlan is None else len(vlan), tuple(map(tuple, zeek)) if zeek else (),
             len(leaves))
    return shape, leaves, block


# A state change of a timeline, as json.dumps(indent=2) writes it inside a connection
# (the connection four spaces in, so the change's braces at 8 and its keys at 10): the
# time and frame differ from change to change, the rest is one of few texts per kind.
_TIME = '        {\n          "time": '
_FRAME = ',\n          "frame": '
_NEXT = ",\n" + _TIME  # from one change's closing brace to the next one's time
_CLOSE = "\n      ]"
_CACHED_CHANGES = 64  # timelines up to this long keep their pieces (the usual ones)
# id of a table of kinds -> (the table, each kind's text after a change's frame up to the
# next change's time, the pieces of whole timelines by their codes' bytes): one table
# per process that made timelines (tracker.CHANGE_KINDS, only ever appended to)
_kind_texts: dict[int, tuple[Any, list[str | None], dict[bytes, list[str | None]]]] = {}


def _kind_text(kind: Any) -> str | None:
    """The text after a change's frame up to the next change's time; None for a kind
    that is not four strings (the rows path writes whatever it is)."""
    if not (type(kind) is tuple and len(kind) == 4 and all(isinstance(s, str) for s in kind)):
        return None
    endpoint, old, new, reason = map(encode_basestring_ascii, kind)
    return (f',\n          "endpoint": {endpoint},\n          "from": {old},'
            f'\n          "to": {new},\n          "reason": {reason}\n        }}{_NEXT}')


def _timeline_pieces(codes: array[float], kinds: Any) -> list[str | None] | None:
    """The constant text of a timeline with these kind codes, in pieces around the slots
    (None) of its times and frames (at 1::2: time, frame, time, ...); None when a code is
    not an index of the table or its kind is not writable here."""
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
    for code in codes:  # the kinds' own texts: cached timelines share them
        pieces += (None, _FRAME, None, texts[int(code)])
    pieces[-1] = pieces[-1][:-len(_NEXT)] + _CLOSE  # type: ignore[index]
    if len(codes) <= _CACHED_CHANGES:
        if len(timelines) >= _MAX_TEMPLATES:
            timelines.clear()
        timelines[key] = pieces
    return pieces


def _packed_timeline(packed: Any, kinds: Any) -> _Packed | None:
    """A packed timeline (report.Timeline) that can be written as one block; None when a
    time is not finite (json.dumps must raise its own error for it) or the timeline is not
    packed as the tracker packs it (the rows path writes it)."""
    if not isinstance(packed, array) or packed.typecode != "d" or len(packed) % 3:
        return None
    # a sum that is not finite: a time is inf or nan, or finite ones overflowed (checked)
    times = packed[2::3]
    if not isfinite(sum(times)) and not all(map(isfinite, times)):
        return None
    pieces = _timeline_pieces(packed[::3], kinds)
    return None if pieces is None else (pieces, packed)


def _timeline_texts(timelines: Sequence[_Packed]) -> list[tuple[str, str, str]]:
    """The text of each timeline's JSON list, and of its first and last times, their
    numbers formatted all at once."""
    packed = array("d")
    for _, changes in timelines:
        packed += changes
    numbers = _number_texts(packed[2::3], packed[1::3])
    texts = []
    at = 0
    for pieces, changes in timelines:
        end = at + len(changes) // 3 * 2
        filled = pieces.copy()
        filled[1::2] = numbers[at:end]
        texts.append(("".join(filled), numbers[at], numbers[end - 2]))  # type: ignore[arg-type]
        at = end
    return texts


def _number_texts(times: array[float], frames: array[float]) -> list[str]:
    """The text of each time and frame, alternating, as json.dumps writes to_dict()'s
    values: float.__repr__ of the time, the int() of the frame."""
    if len(times) >= _NUMPY_FROM:
        texts = _grid_number_texts(times, frames)
        if texts is not None:
            return texts
    texts = [""] * (2 * len(times))
    texts[::2] = map(float.__repr__, times)
    texts[1::2] = map(int.__repr__, map(int, frames))
    return texts


# float.__repr__ (the shortest decimal that rounds to the float) takes ~0.4 us for a
# capture time: it was a third of the writing. A time on the microsecond grid, as a pcap
# holds it, is written by numpy (digits from tables) when it is in [1e-4, 2**32): there
# its repr is its six decimals without their trailing zeros. Below 2**32 an ulp is
# < 1e-6, so at most one multiple of 1e-6 rounds to the time; when one does (checked:
# micros / 1e6 == t, both exact, the quotient correctly rounded), no other decimal is as
# short: one with fewer decimals is a multiple of 1e-6 too, one with more has more
# significant digits. From 1e-4 to 1e16 repr writes no exponent, and at least one digit
# on each side of the point.
_NUMPY_FROM = 64  # numbers from which numpy is worth its fixed cost (~50 us)


@functools.cache
def _digit_words() -> tuple[npt.NDArray[np.uint32], ...]:
    """0..9999 as four ASCII digits in a uint32, NUL for a digit left out: all digits;
    leading zeros left out (0: '0'); the same (0: nothing); trailing zeros left out
    (0: '0'); the same (0: nothing)."""
    def words(texts: Iterable[str]) -> npt.NDArray[np.uint32]:
        return np.frombuffer("".join(texts).encode("ascii"), np.uint32)

    full = [f"{i:04d}" for i in range(10_000)]
    lead = [str(i).rjust(4, "\0") for i in range(10_000)]
    trail = [text.rstrip("0").ljust(4, "\0") for text in full]
    trail[0] = "0\0\0\0"
    return (words(full), words(lead), words(["\0" * 4, *lead[1:]]), words(trail),
            words(["\0" * 4, *trail[1:]]))


_POINT, _NEWLINE = np.frombuffer(b".\0\0\0\n\0\0\0", np.uint32)


def _grid_number_texts(times: array[float], frames: array[float]) -> list[str] | None:
    """_number_texts by numpy: each number as 28 bytes (12 digits, '.', 8 decimals and a
    newline; NUL for what is left out), joined, without the NULs, and split. A time off
    the grid or the range, or a frame not a whole number in [0, 1e12), by Python; None
    when most times are off the grid (nanosecond captures): all by Python is faster."""
    full, lead, lead_none, trail, trail_none = _digit_words()
    t = np.frombuffer(times, np.float64)
    f = np.frombuffer(frames, np.float64)
    with np.errstate(over="ignore"):  # a huge time: off the range anyway
        micros = np.rint(t * 1e6)
    on_grid = (t >= 1e-4) & (t < 2.0 ** 32) & (micros / 1e6 == t)
    if np.count_nonzero(on_grid) * 2 < len(t):
        return None
    whole_frame = (f >= 0) & (f < 1e12) & (np.floor(f) == f)
    whole = np.empty(2 * len(t), np.int64)  # the integer parts: time, frame, time, ...
    whole[::2], fraction = np.divmod(np.where(on_grid, micros, 0).astype(np.int64), 10**6)
    whole[1::2] = np.where(whole_frame, f, 0)
    words = np.zeros((len(whole), 7), np.uint32)
    high, low = np.divmod(whole, 10_000)
    top, middle = np.divmod(high, 10_000)
    words[:, 0] = lead_none[top]
    words[:, 1] = np.where(top > 0, full[middle], lead_none[middle])
    words[:, 2] = np.where(high > 0, full[low], lead[low])
    first, last = np.divmod(fraction, 100)  # four decimals, two (and two zeros)
    last *= 100
    words[::2, 3] = _POINT
    words[::2, 4] = np.where(last > 0, full[first], trail[first])
    words[::2, 5] = trail_none[last]
    words[:, 6] = _NEWLINE
    texts = words.tobytes().translate(None, b"\0").decode("ascii").split("\n")
    texts.pop()
    for i in np.flatnonzero(~on_grid).tolist():
        texts[2 * i] = float.__repr__(times[i])
    for i in np.flatnonzero(~whole_frame).tolist():
        texts[2 * i + 1] = int.__repr__(int(frames[i]))  # as Timeline.rows: raises for nan
    return texts


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


def _fill(template: _Template, leaves: list[Any], texts: Sequence[tuple[int, str]] = ()
          ) -> str | None:
    """The template filled with the encoded leaves (those at the indexes of `texts`
    replaced by their text), or None when a leaf is not a scalar or the template has not
    as many slots."""
    parts = _encoded(leaves)
    if parts is None or 2 * len(parts) + 1 != len(template):
        return None
    for index, text in texts:
        parts[index] = text
    filled = template.copy()
    filled[1::2] = parts
    return "".join(filled)  # type: ignore[arg-type]


def _template(data: dict[str, Any], shape: tuple[Any, ...], leaves: list[Any],
              texts: Sequence[tuple[int, str]] = ()) -> _Template | None:
    """Made by json.dumps itself from the item's to_dict() with placeholder leaves (the
    timeline one leaf when it comes as a block), kept only if it reproduces this item's
    plain text exactly."""
    if not _str_keys(data):
        return None
    skeleton = _skeleton(data)
    if texts:  # a timeline block
        skeleton["timeline"] = _LEAF
    literals = _indented(_plain(skeleton)).split(_LEAF_TEXT)
    template: _Template = [None] * (2 * len(literals) - 1)
    template[::2] = literals
    try:
        ok = _fill(template, leaves, texts) == _indented(_plain(data))
    except (TypeError, ValueError, RecursionError):
        return None  # this item cannot be written at all: json.dumps will say why
    if len(_templates) >= _MAX_TEMPLATES:
        _templates.clear()
    _templates[shape] = template if ok else None
    return _templates[shape]


def _block_texts(block: _Block | None) -> list[tuple[int, str]]:
    """(leaf index, text) of a gathered timeline block and of the times it shares with
    the connection's start and end, made alone."""
    if block is None:
        return []
    index, packed, start_at, end_at = block
    text, first, last = _timeline_texts([packed])[0]
    return [(i, t) for i, t in ((index, text), (start_at, first), (end_at, last)) if i >= 0]


def _text(shape: tuple[Any, ...], leaves: list[Any], to_dict: Callable[[], dict[str, Any]],
          texts: Sequence[tuple[int, str]] = ()) -> str:
    template = _templates.get(shape, False)
    if template is False:
        template = _template(to_dict(), shape, leaves, texts)
    if template is not None:
        text = _fill(template, leaves, texts)
        if text is not None:
            return text
    return _indented(_plain(to_dict()))


def connection_text(conn: ConnectionSummary, timeline: bool = True) -> str:
    """One connection as it appears in the report's "connections" list (indented four
    spaces, no trailing comma or newline)."""
    shape, leaves, block = _gather(conn, timeline)
    return _text(shape, leaves, lambda: conn.to_dict(timeline), _block_texts(block))


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


_ONE_SLOT: _Template = ["", None, ""]  # an item written whole: its text is one leaf's


def _chunk_text(items: Sequence[Any], kind: _Items, timeline: bool, end: str) -> str:
    """Items of one list as json.dumps writes them there, joined by ",\n", then `end`:
    the leaves of all of them encoded by one call of the C encoder, their timelines'
    numbers formatted together, all their templates' pieces joined at once (item by
    item, most of the time went to calls and small lists; a %-format scans its text)."""
    pieces: _Template = []  # the items' templates, one after the other
    leaves: list[Any] = []  # a leaf for each slot of the pieces
    texts: list[tuple[int, str]] = []  # (index among the leaves, text to put there)
    blocks: list[_Block] = []  # timeline blocks, their indexes among the leaves
    for item in items:
        if leaves:  # the comma between two items: a slot between their texts
            texts.append((len(leaves), ",\n"))
            leaves.append(None)
            pieces.append(None)
        shape, item_leaves, block = kind.gather(item, timeline)
        template = _templates.get(shape, False)
        if template is False:
            template = _template(kind.to_dict(item, timeline), shape, item_leaves,
                                 _block_texts(block))
        if template is None:  # the item as json.dumps writes it, in the place of a leaf
            texts.append((len(leaves), _indented(_plain(kind.to_dict(item, timeline)))))
            leaves.append(None)
            pieces += _ONE_SLOT
            continue
        if block is not None:
            index, packed, start_at, end_at = block
            at = len(leaves)
            blocks.append((at + index, packed, at + start_at if start_at >= 0 else -1,
                           at + end_at if end_at >= 0 else -1))
        pieces += template
        leaves += item_leaves
    parts = _encoded(leaves)
    if parts is None:  # a nested or unwritable leaf somewhere: item by item
        return ",\n".join([kind.text(item, timeline) for item in items]) + end
    for index, text in texts:
        parts[index] = text
    if blocks:
        for (index, _, start_at, end_at), (text, first, last) in zip(
                blocks, _timeline_texts([b[1] for b in blocks]), strict=True):
            parts[index] = text
            if start_at >= 0:
                parts[start_at] = first
            if end_at >= 0:
                parts[end_at] = last
    pieces[1::2] = parts
    pieces.append(end)
    return "".join(pieces)  # type: ignore[arg-type]


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
          timeline: bool = True, jobs: int = 1) -> None:
    """The same text as render(), written a few connections at a time, so a capture with
    many connections never needs the whole document in memory at once. With `jobs` > 1,
    the connections of a large report are written by that many processes at once
    (`_write_chunks`)."""
    if indent != 2:
        stream.write(render(report, indent, timeline))
        return
    _write(report, stream.write, timeline, jobs)


def _write(report: Report, out: Callable[[str], Any], timeline: bool, jobs: int = 1
           ) -> None:
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
        _write_chunks(items, kind, timeline, out, jobs if kind is _CONNECTIONS else 1)
        out("  ]")
    out(text + "\n")


# -- writing a report's connections in several processes -------------------------------

_FORK_FROM = 16  # chunks a process must have for forking to pay (~10 ms a fork)


def _chunk_texts(items: Sequence[Any], kind: _Items, timeline: bool,
                 starts: Sequence[int]) -> Iterator[str]:
    n = len(items)
    for start in starts:
        yield _chunk_text(items[start:start + _CHUNK], kind, timeline,
                          ",\n" if start + _CHUNK < n else "\n")


def _write_chunks(items: Sequence[Any], kind: _Items, timeline: bool,
                  out: Callable[[str], Any], jobs: int) -> None:
    """The chunks of `items`, in order. With `jobs` > 1 and enough of them, forked
    processes write the later parts into anonymous temporary files while this one writes
    the first, then copies theirs after it: the same text (the same code writes the same
    chunks), in less time on several cores. A part whose process failed is written here."""
    starts = range(0, len(items), _CHUNK)
    if jobs < 2 or len(starts) < _FORK_FROM * jobs or not hasattr(os, "fork"):
        for text in _chunk_texts(items, kind, timeline, starts):
            out(text)
        return
    parts = [starts[k * len(starts) // jobs:(k + 1) * len(starts) // jobs]
             for k in range(jobs)]
    elsewhere = [_write_elsewhere(items, kind, timeline, part) for part in parts[1:]]
    for text in _chunk_texts(items, kind, timeline, parts[0]):
        out(text)
    for part, (pid, written) in zip(parts[1:], elsewhere, strict=True):
        ok = False
        if pid is not None:
            _, status = os.waitpid(pid, 0)
            ok = os.waitstatus_to_exitcode(status) == 0
        if ok and written is not None:
            written.seek(0)
            while data := written.read(1 << 20):
                out(data.decode("ascii"))
        else:
            for text in _chunk_texts(items, kind, timeline, part):
                out(text)
        if written is not None:
            written.close()


def _write_elsewhere(items: Sequence[Any], kind: _Items, timeline: bool,
                     part: Sequence[int]) -> tuple[int | None, IO[bytes] | None]:
    """A forked process writing the chunks `part` into an anonymous temporary file:
    (its pid, the file), or Nones when there is no temporary directory or no fork."""
    try:
        written = tempfile.TemporaryFile(prefix="tcpanalyze-json-")  # noqa: SIM115
    except OSError:
        return None, None
    try:
        pid = os.fork()
    except OSError:
        written.close()
        return None, None
    if pid == 0:  # the child: write, then leave without running this process's exit code
        code = 1
        try:
            for text in _chunk_texts(items, kind, timeline, part):
                written.write(text.encode("ascii"))  # (json.dumps escapes non-ASCII)
            written.flush()
            code = 0
        finally:
            os._exit(code)
    return pid, written
