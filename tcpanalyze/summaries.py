"""The report's connection summaries, kept on disk past a limit.

The state of an analysis follows the connections open at once, but a file's report lists
every connection it saw: one summary each (~1.4 KB in memory). `SummaryList` holds them
like a list and, past `spill_at` summaries (the `summaries-in-memory` setting, by
default `SPILL_AT`), writes them to an anonymous temporary file as compact rows (~400
bytes each; only their id and place stay in memory, 24 bytes), so a capture with
millions of connections needs disk, not RAM. Reading them back (iteration, indexing)
makes the summaries again, one at a time.

Summaries on disk cannot be changed in place: changes made after the fact (a flood
absorbing its members' findings, a merged run renumbering connections) go through
`apply`, which changes those in memory at once and those on disk as they are read.

Rows are also what `--jobs` workers send (parallel.py): the dataclass fields in order,
with a timeline still packed by this process's tracker as its array.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import tempfile
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from operator import attrgetter
from typing import IO, Any, overload

from tcpanalyze.report import ConnectionSummary, StateChange, Timeline
from tcpanalyze.tracker import CHANGE_KINDS

__all__ = ["SPILL_AT", "SummaryList", "from_row", "summary_row"]

SPILL_AT = 50_000  # summaries held in memory before they go to disk (~70 MB)

SUMMARY_FIELDS = tuple(f.name for f in dataclasses.fields(ConnectionSummary) if f.init)
CHANGE_FIELDS = tuple(f.name for f in dataclasses.fields(StateChange) if f.init)
ID_AT = SUMMARY_FIELDS.index("id")
TIMELINE_AT = SUMMARY_FIELDS.index("timeline")
_fields = attrgetter(*SUMMARY_FIELDS)
_change = attrgetter(*CHANGE_FIELDS)

Kinds = list[tuple[str, str, str, str]]


def summary_row(summary: ConnectionSummary) -> list[Any]:
    """The summary's constructor arguments in order; a timeline packed by this process's
    tracker stays packed (its array), any other becomes rows of StateChange fields."""
    row = list(_fields(summary))
    timeline = summary.timeline
    parts = getattr(timeline, "packed_parts", None)
    if parts is not None and parts[1] is CHANGE_KINDS:
        row[TIMELINE_AT] = parts[0]
    else:
        rows = getattr(timeline, "rows", None)
        packed = rows is not None and getattr(timeline, "fields", None) == CHANGE_FIELDS
        row[TIMELINE_AT] = rows if packed else tuple(map(_change, timeline))
    return row


def from_row(row: list[Any], kinds: Kinds) -> ConnectionSummary:
    """A summary again; `kinds` is the table of the tracker that packed its timeline."""
    timeline = row[TIMELINE_AT]
    row[TIMELINE_AT] = Timeline.packed(timeline, kinds) if isinstance(timeline, array) \
        else Timeline(timeline)
    return ConnectionSummary(*row)


class SummaryList(Sequence[ConnectionSummary]):
    """Summaries in the order they were added (or sorted by id, see `sort`): the ones on
    disk first, then the ones in memory."""

    def __init__(self, items: Iterable[ConnectionSummary] = (),
                 spill_at: int | None = None) -> None:
        self.spill_at = SPILL_AT if spill_at is None else spill_at
        self._memory: list[ConnectionSummary] = []
        self._file: IO[bytes] | None = None
        # per record on disk, in the order written: offset, length, connection id
        self._offsets = array("q")
        self._lengths = array("q")
        self._ids = array("q")
        self._order: array[int] | None = None  # records in list order (None: as written)
        # changes for records on disk: (function, how many records existed then)
        self._changes: list[tuple[Callable[[ConnectionSummary], Any], int]] = []
        self.extend(items)

    # -- adding ----------------------------------------------------------------------------

    def append(self, summary: ConnectionSummary) -> None:
        self._memory.append(summary)
        if len(self._memory) >= self.spill_at:
            self._spill()

    def extend(self, items: Iterable[ConnectionSummary]) -> None:
        for summary in items:
            self.append(summary)

    def __iadd__(self, items: Iterable[ConnectionSummary]) -> SummaryList:
        self.extend(items)
        return self

    def _spill(self) -> None:
        if self._file is None:
            try:
                # lives as long as the list (closed by __del__; never has a name on disk)
                self._file = tempfile.TemporaryFile(  # noqa: SIM115
                    prefix="tcpanalyze-summaries-")
            except OSError:  # no usable temporary directory: keep them in memory
                self.spill_at = 1 << 62
                return
        out = self._file
        out.seek(0, 2)
        at = out.tell()
        order = self._order
        for summary in self._memory:
            data = pickle.dumps(summary_row(summary), pickle.HIGHEST_PROTOCOL)
            out.write(data)
            if order is not None:
                order.append(len(self._ids))
            self._offsets.append(at)
            self._lengths.append(len(data))
            self._ids.append(summary.id)
            at += len(data)
        out.flush()  # read back by os.pread
        self._memory = []

    # -- changing --------------------------------------------------------------------------

    def apply(self, change: Callable[[ConnectionSummary], Any]) -> None:
        """Call `change` on every summary: now for those in memory, as they are read
        for those on disk (every read gives a fresh object, changed again)."""
        for summary in self._memory:
            change(summary)
        if len(self._ids):
            self._changes.append((change, len(self._ids)))

    def renumber(self, shift: int) -> None:
        """Add `shift` to every connection id (runs over several captures)."""
        def change(summary: ConnectionSummary) -> None:
            summary.id += shift

        self.apply(change)
        ids = self._ids
        for k in range(len(ids)):
            ids[k] += shift

    def sort(self, *, key: Callable[[ConnectionSummary], Any]) -> None:
        """Sort by connection id, the only order reports use (`key` must give the id)."""
        if not len(self._ids):
            self._memory.sort(key=key)
            return
        self._spill()  # everything on disk: one order over all records
        ids = self._ids
        self._order = array("q", sorted(range(len(ids)), key=ids.__getitem__))

    def ids(self) -> array[int]:
        """The connection ids in list order, without reading the summaries."""
        disk = self._ids
        out = array("q", disk) if self._order is None else \
            array("q", (disk[k] for k in self._order))
        out.extend(s.id for s in self._memory)
        return out

    # -- reading ---------------------------------------------------------------------------

    def _read(self, record: int) -> ConnectionSummary:
        assert self._file is not None
        # pread, not seek and read: a process forked to write part of a report (the JSON
        # writer's) shares the file's offset with this one
        data = os.pread(self._file.fileno(), self._lengths[record], self._offsets[record])
        summary = from_row(pickle.loads(data), CHANGE_KINDS)
        for change, before in self._changes:
            if record < before:
                change(summary)
        return summary

    def __len__(self) -> int:
        return len(self._ids) + len(self._memory)

    def __iter__(self) -> Iterator[ConnectionSummary]:
        order = self._order if self._order is not None else range(len(self._ids))
        for record in order:
            yield self._read(record)
        yield from list(self._memory)

    @overload
    def __getitem__(self, i: int) -> ConnectionSummary: ...
    @overload
    def __getitem__(self, i: slice) -> list[ConnectionSummary]: ...

    def __getitem__(self, i: int | slice) -> ConnectionSummary | list[ConnectionSummary]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("summary index out of range")
        disk = len(self._ids)
        if i >= disk:
            return self._memory[i - disk]
        return self._read(self._order[i] if self._order is not None else i)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (SummaryList, list)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other,
                                                                           strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like the list it stands for

    def __repr__(self) -> str:
        return f"SummaryList({list(self)!r})"

    def __del__(self) -> None:
        if self._file is not None:
            self._file.close()
