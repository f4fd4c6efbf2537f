"""`--jobs N`: one capture file analysed by N worker processes, merged into one result.

Each worker tracks only the connections whose five-tuple is assigned to it
(`Assignment`), so each connection's segments stay in order in one process. A capture
file (pcap or pcapng, compressed or not) is dealt: the parent reads it, decodes just each
frame's flow, assigns each TCP segment, and sends each worker the file offsets of its own
segments and of the few others that move its clock (`_Dealer`); the worker reads and
decodes just those. Frames that are not one piece of the file go as their bytes: a
compressed file's records, and a multi-interface pcapng's frames, which are analysed in
time order, as Frames. For Zeek conn.log records (`--format zeek`), which need every
segment, every worker reads and decodes the whole file, runs the same deterministic
assignment and skips the segments that are not its own. Either way, the other workers'
segments still move a worker's clock where it matters: timer sweeps happen at exactly
the capture times they happen at in a single process, so duration findings and timer
state changes come out the same.

The parent merges: connection ids are renumbered in the order the connections were
created in the capture (the order of their first frames, which is how one process numbers
them). Each worker logs its aggregate evidence (attempts, completions, outcomes at close,
its timer sweeps' looks, the findings it emits) with the position at which it came. If
the workers' counters, summed, show that no SYN flood or scan could have been reported at
any time (the usual case), the logs are dropped unread. Otherwise the parent replays them
in one process's order through its own detector: a flood is reported at the look where one
process reports it, with that look's numbers (streamed so with ndjson), even if by the end
it no longer qualifies; a member's finding is absorbed if one process would have absorbed
it when it was emitted (`_replay_aggregates`).

Known limits (none is met by any capture in the test corpus): a connection whose server
port answers with SYN cookies is judged only with the cookie evidence of its own worker;
eviction (`max_connections`) applies per worker. Findings streamed as they are found
(`--format ndjson` with an explicit `--jobs N`; without it, ndjson runs one process) come
after the workers, in one process's order.
"""

from __future__ import annotations

import copy
import gc
import multiprocessing as mp
import os
import pickle
import re
import signal
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from itertools import repeat
from typing import Any

from tcpanalyze.analysis import Analysis
from tcpanalyze.assignment import Assignment
from tcpanalyze.capture import CaptureError, open_capture
from tcpanalyze.decode import Decoder
from tcpanalyze.detectors import AggregateDetector, _Source, _Target
from tcpanalyze.ledger import ATTEMPT, COMPLETION, LOOK, OUTCOME, Ledger
from tcpanalyze.report import (
    PACKET_CLASSES,
    CaptureSummary,
    ConnectionSummary,
    Finding,
)
from tcpanalyze.settings import Settings
from tcpanalyze.summaries import ID_AT, from_row, summary_row
from tcpanalyze.tracker import CHANGE_KINDS

__all__ = ["Assignment", "analyze_parallel", "read_into_parallel"]


def _write_rows(summaries: Iterable[ConnectionSummary]) -> tuple[str | None, Any, Any]:
    """A worker's summaries as rows (summaries.summary_row: plain values, a timeline as
    the tracker's array, several times cheaper to pickle than the objects) in a temporary
    file, a few hundred to a pickle, since they may be more than fit in memory: (path,
    how many, the tracker's table of kinds); where no temporary file can be made, (None,
    the rows, kinds) in the message itself."""
    try:
        out = tempfile.NamedTemporaryFile(  # noqa: SIM115  # closed by the with below
            "wb", prefix="tcpanalyze-worker-", delete=False)
    except OSError:
        return None, [summary_row(summary) for summary in summaries], CHANGE_KINDS
    count = 0
    with out:
        # a pickle per _ROWS_AT_ONCE rows: half the time of one per row, both ways
        for chunk in _chunked(map(summary_row, summaries), _ROWS_AT_ONCE):
            pickle.dump(chunk, out, pickle.HIGHEST_PROTOCOL)
            count += len(chunk)
    return out.name, count, CHANGE_KINDS


_ROWS_AT_ONCE = 256


def _chunked(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _read_rows(written: tuple[str | None, Any, Any], remap: _Remap | None
               ) -> Iterator[ConnectionSummary]:
    """The summaries of `_write_rows` again, with their global ids (`remap` None: their
    worker's); removes the file."""
    path, rows, kinds = written  # rows: how many in the file, or the rows themselves
    if path is None:
        for row in rows:
            if remap is not None:
                row[ID_AT] = remap[row[ID_AT]]
            yield from_row(row, kinds)
        return
    try:
        with open(path, "rb") as stored:
            left = rows
            while left > 0:
                chunk = pickle.load(stored)
                left -= len(chunk)
                for row in chunk:
                    if remap is not None:
                        row[ID_AT] = remap[row[ID_AT]]
                    yield from_row(row, kinds)
    finally:
        _remove(path)


def _early_rows(written: tuple[str | None, Any, Any], limit: int
                ) -> list[ConnectionSummary] | None:
    """The summaries of a worker that finished before the others, read while they still
    run (with its own ids, mapped in `_merge`); None when they are more than `limit` (the
    summaries kept in memory: more wait in the file until the merge)."""
    path, rows, _ = written
    count = rows if path is not None else len(rows)
    if count > limit:
        return None
    return list(_read_rows(written, None))


def _await(results: Any, seconds: float) -> None:
    """Wait for a worker's result, at most `seconds` (at once when it comes)."""
    reader = getattr(results, "_reader", None)  # SimpleQueue's end of its pipe
    if reader is not None:
        reader.poll(seconds)
    else:
        time.sleep(seconds)


def _remove(path: str) -> None:
    with suppress(OSError):
        os.unlink(path)


class _Remap:
    """A worker's local connection ids (1, 2, ...) -> global ids, 8 bytes an entry."""

    def __init__(self, local: Any, global_ids: Any) -> None:
        import numpy as np

        self._table = np.zeros(int(local.max()) + 1 if len(local) else 1, dtype=np.int64)
        self._table[local] = global_ids

    def __getitem__(self, local: int) -> int:
        if 0 < local < len(self._table) and self._table[local]:
            return int(self._table[local])
        raise KeyError(local)


_EVENTS_AT_ONCE = 8192  # events a worker holds in memory (~1 MB); more go to its file


class _EventLog:
    """A worker's aggregate events in the order they happened (its ledger's, taken after
    each batch), spilled to a temporary file in pickled chunks (a long flood is millions
    of attempts: not kept in memory)."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.file: Any = None  # False: none could be made (all kept in memory)
        self.chunks = 0

    def extend(self, events: list[tuple[Any, ...]]) -> None:
        self.events += events
        if len(self.events) >= _EVENTS_AT_ONCE and self.file is not False:
            self._spill()

    def _spill(self) -> None:
        if self.file is None:
            try:
                self.file = tempfile.NamedTemporaryFile(  # noqa: SIM115  # closed in written()
                    "wb", prefix="tcpanalyze-events-", delete=False)
            except OSError:
                self.file = False
                return
        pickle.dump(self.events, self.file, pickle.HIGHEST_PROTOCOL)
        self.chunks += 1
        self.events = []

    def written(self) -> tuple[str | None, int, list[tuple[Any, ...]]]:
        """(the file or None, how many chunks it holds, the events after them): all in the
        file when one could be made, so the parent unpickles them only if it replays."""
        if self.events and self.file is not False:
            self._spill()
        if not self.file:
            return None, 0, self.events
        self.file.close()
        return self.file.name, self.chunks, self.events


def _read_events(written: tuple[str | None, int, list[tuple[Any, ...]]]
                 ) -> Iterator[tuple[Any, ...]]:
    """The events of `_EventLog.written()` again, in order; removes the file."""
    path, chunks, rest = written
    if path is not None:
        try:
            with open(path, "rb") as stored:
                for _ in range(chunks):
                    yield from pickle.load(stored)
        finally:
            _remove(path)
    yield from rest


class _CountingAggregates(AggregateDetector):
    """A worker's aggregate detector: counts, never decides. Its evidence goes to the
    worker's ledger (AggregateDetector.ledger) with the position at which it came: when
    the summed counters show that a flood or scan may have been reported at some time,
    the parent replays the logs in one process's order (_replay_aggregates). Its own
    counts judge SYN cookies at a close (Analysis._close) with this worker's evidence
    only."""

    def findings(self, final: bool = False) -> list[Finding]:
        assert self.ledger is not None
        self.ledger.look()
        return []


def _worker(path: str, settings: Settings, me: int, jobs: int, options: dict[str, Any],
            progress: Any, results: Any, inbox: Any = None) -> None:
    # Fewer cyclic-GC passes: the worker's heap grows to every summary it keeps, and the
    # default thresholds walk it again and again (bench capture, one process: 21.2 s ->
    # 16.1 s CPU, same peak memory; cyclic garbage is still collected, just in bigger
    # batches). This process's own setting: the parent keeps its defaults.
    gc.set_threshold(100_000, 50, 100)
    try:
        results.put((me, _work(path, settings, me, jobs, options, progress, inbox)))
    except BaseException as exc:  # the parent must hear about it, not wait forever
        results.put((me, exc))


def _work(path: str, settings: Settings, me: int, jobs: int, options: dict[str, Any],
          progress: Any, inbox: Any = None) -> dict[str, Any]:
    """Track this worker's connections: from the whole file, or (`inbox`: a dealt read)
    from the batches the parent deals out."""
    analysis = Analysis(settings, capture=options["capture"],
                        keep_connections=options["keep_connections"],
                        zeek_records=options["zeek_records"])
    # a later Analysis field (live runs switch the Zeek view off); absent is on
    analysis.zeek_view = options["zeek_view"]
    if options.get("stream"):
        analysis.streamed = []
    aggregates = analysis.aggregates = _CountingAggregates(settings)
    table = analysis.table
    dealt = inbox is not None
    ledger = analysis.ledger = aggregates.ledger = Ledger(table, dealt)
    log = _EventLog()

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides about Ctrl-C
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    reader = open_capture(path) if inbox is None else None
    dec = Decoder(verify_checksums=options["verify_checksums"])
    assignment = Assignment(jobs, settings.idle_timeout)

    def foreign(ts: float) -> None:
        # Another worker's segment: only the clock moves (Analysis.feed's
        # bookkeeping without the connection).
        if analysis.first_ts is None:
            analysis.first_ts = ts
            analysis._next_sweep = ts + 1.0
        if analysis.last_ts is None or ts > analysis.last_ts:
            analysis.last_ts = ts
        if ts > table.now:
            table.now = ts
        if ts >= analysis._next_sweep:
            analysis._sweep(ts)
            for done in table.pop_finished():
                analysis._close(done, ts)

    # the columnar path (batch.py), this worker's segments only
    # (imported here: numpy is not needed, nor its memory spent, by live runs)
    from tcpanalyze.batch import BatchFeed
    from tcpanalyze.columns import capture_columns

    feeder = BatchFeed(analysis, dec, share=_BatchShare(assignment, me, foreign))

    def logged() -> None:  # the batch's evidence, to the log (its file past a few MB)
        if ledger.events:
            log.extend(ledger.events)
            ledger.events = []

    # Positions (the ledger's): in a dealt read, from the batch's `order` (the frames'
    # numbers, or their positions where time order differs); else counted from `base`,
    # the frames analysed before its batch (a multi-interface pcapng is analysed in time
    # order, not in the order of its numbers).
    position = 0
    if inbox is not None:  # a dealt read: the parent reads, this worker tracks
        for cols, mine, positions, last, at in _dealt(inbox, path, options["layout"],
                                                      dec.verify_checksums,
                                                      options["room"][me]):
            if cols is not None:
                feeder.share.dealt = mine
                ledger.order = cols.numbers if positions is None else positions.tolist()
                feeder.process(cols)
                logged()
            position = last
            if progress is not None:
                progress[0] = position
                progress[1] = at
    else:
        try:
            for cols in capture_columns(reader, dec.verify_checksums):
                ledger.base = position
                feeder.process(cols)
                logged()
                position += len(cols)
                if progress is not None:
                    progress[0] = position
                    progress[1] = reader.position
        except CaptureError as exc:
            reader.error = exc
        position = reader.frames_read
    frames = position
    ledger.position = frames + 1  # the end comes after every frame, as in finish()
    # finish() without the aggregate decisions: sweep, then close what is left
    end = analysis.last_ts if analysis.last_ts is not None else 0.0
    analysis._sweep(end)
    for conn in table.drain(end):
        analysis._close(conn, end)
    logged()
    if progress is not None:
        progress[0] = frames
    if reader is None:  # a dealt read: the parent read the file and says what it held
        read: dict[str, Any] = {"counts": {}, "format": "", "linktypes": [], "error": None}
    else:
        read = {"counts": dict(dec.counts), "format": reader.format,
                "linktypes": sorted(reader.linktypes),
                "error": str(reader.error) if reader.error is not None else None}
    # the detector goes to the parent without its ledger (a compiled AggregateDetector
    # pickles its own attributes)
    aggregates.ledger = None
    return {
        "frames": frames, **read,
        "first_ts": analysis.first_ts, "last_ts": analysis.last_ts,
        "connections": _write_rows(analysis.connections), "findings": analysis.findings,
        "total": analysis.connections_total, "evicted": table.evicted,
        "aggregates": aggregates, "events": log.written(), "created": ledger.created,
        "idled": getattr(table, "idled", 0), "sizes": ledger.sizes,
        "emitted_at": ledger.emitted_at, "streamed": analysis.streamed,
    }


class _BatchShare:
    """What batch.BatchFeed needs from a worker: which segments are its own."""

    def __init__(self, assignment: Assignment, me: int, foreign: Callable[[float], None]
                 ) -> None:
        self.assignment = assignment
        self.me = me
        self.foreign = foreign
        self.dealt: Any = None  # a dealt batch: which of its segments are this worker's

    def owned(self, feeder: Any, tcp: Any) -> Any:
        if self.dealt is not None:
            return self.dealt[tcp]
        keys, kid = feeder.tcp_buckets(tcp)
        return self.assignment.workers(keys, kid, feeder.cols.ts[tcp]) == self.me


def read_into_parallel(analysis: Any, path: str, jobs: int, *, verify_checksums: bool = False,
                       on_finding: Callable[[Finding], Any] | None = None,
                       on_progress: Callable[[int, int], Any] | None = None,
                       interrupt: Any = None) -> CaptureSummary:
    """Like analysis.read_into, with `jobs` processes; `analysis` ends up holding the
    merged connections, per-connection findings and aggregate counters, ready for
    `analysis.finish()`.

    Findings reach `on_finding` after all workers are done, in the order one process
    emits them: by the frame at which they were emitted, and at one frame (a timer sweep,
    the end of the capture) by connection (analysis._stream_order; the end after every
    frame). `interrupt.requested` (live.Interrupt) stops the workers and raises
    KeyboardInterrupt: a file read in parallel has no partial result. A pipe or FIFO can
    be read only once: this process reads it alone (analysis.read_into)."""
    from tcpanalyze.analysis import LINKTYPE_NAMES, _regular_file, read_into

    if not _regular_file(path):  # a pipe or FIFO (`<(tcpdump -w -)`) can be read only once
        return read_into(analysis, path, verify_checksums=verify_checksums,
                         on_finding=on_finding, on_progress=on_progress, interrupt=interrupt)
    with open_capture(path) as probe:  # not a capture at all: CaptureError here, as read_into
        # a plain file: a dealt read (the file is read and decoded once, here)
        dealing = _dealable(probe, path)
        layout = probe.record_layout if dealing else None
    # the workers' columnar path, loaded once before the fork: its pages (numpy's above
    # all, ~20 MB) are then shared by every worker instead of loaded by each
    import tcpanalyze.batch
    import tcpanalyze.columns  # noqa: F401

    ctx = mp.get_context("fork")
    progress = ctx.Array("q", 2, lock=False) if on_progress is not None else None
    results = ctx.SimpleQueue()
    options = {"capture": analysis.capture, "keep_connections": analysis.keep_connections,
               "zeek_records": analysis.zeek_records, "verify_checksums": verify_checksums,
               "zeek_view": getattr(analysis, "zeek_view", True),
               "stream": on_finding is not None}
    dealing = dealing and not analysis.zeek_records  # (Zeek records: every segment)
    if dealing:
        options["layout"] = layout
    inboxes = [ctx.Queue(_MOST_IN_FLIGHT) if dealing else None for _ in range(jobs)]
    rooms = _Rooms(ctx, jobs) if dealing else None
    if rooms is not None:
        options["room"] = rooms.free
    workers = [ctx.Process(target=_worker, args=(path, analysis.settings, k, jobs, options,
                                                 progress if k == 0 else None, results,
                                                 inboxes[k]),
                           daemon=True) for k in range(jobs)]
    for w in workers:
        w.start()
    parts: list[dict[str, Any]] = [{}] * jobs
    read: dict[str, Any] | None = None

    def check_workers() -> None:
        if interrupt is not None and interrupt.requested:
            raise KeyboardInterrupt
        if any(not parts[k] and not w.is_alive() for k, w in enumerate(workers)) and \
                results.empty():
            codes = [w.exitcode for w in workers]
            raise RuntimeError(f"analysis workers ended without a result: {codes}")

    def check() -> None:  # while dealing
        check_workers()
        if not results.empty():  # only a failure comes before the end of the dealing
            raise _Stalled

    def show() -> None:
        if on_progress is not None and progress is not None:
            on_progress(progress[0], progress[1])

    with _collector_paused():
        try:
            pending = jobs
            if rooms is not None:  # (dealing)
                with suppress(_Stalled):  # a worker failed: its result says why
                    read = _deal(path, jobs, analysis.settings, verify_checksums, inboxes,
                                 rooms, check, show)
            while pending:
                while results.empty():
                    check_workers()
                    show()
                    _await(results, 0.1)
                me, part = results.get()
                if isinstance(part, BaseException):
                    raise part
                parts[me] = part
                pending -= 1
                if pending:  # a core is idle until the others are done: read its rows now
                    part["early"] = _early_rows(part["connections"],
                                                analysis.settings.summaries_in_memory)
        finally:
            for inbox in inboxes:
                if inbox is not None and pending:
                    inbox.cancel_join_thread()  # nobody may read what is still queued
            for w in workers:
                if w.is_alive() and pending:
                    w.terminate()
                w.join()
            if pending:  # no merge: the files of those that finished are not read
                _remove_files(parts)
        try:
            stream = _merge(analysis, parts)
        except BaseException:
            _remove_files(parts)  # (a merge that failed leaves nothing in the temp dir)
            raise
    if on_finding is not None:
        for finding in stream:
            on_finding(finding)
    first = parts[0] if read is None else {**parts[0], **read}
    counts = first["counts"]
    return CaptureSummary(
        path=path, format=first["format"],
        linktypes=sorted(LINKTYPE_NAMES.get(lt, f"LINKTYPE_{lt}") for lt in first["linktypes"]),
        packets=first["frames"], tcp_segments=counts.get("tcp", 0),
        skipped={name: counts.get(name, 0) for name in PACKET_CLASSES if name != "tcp"},
        first_ts=analysis.first_ts, last_ts=analysis.last_ts, error=first["error"],
        decoder="dpkt")


# -- a dealt read: the parent reads and decodes the file once ---------------------------

class _Stalled(Exception):
    """A worker failed while the parent was dealing."""


def _dealable(reader: Any, path: str) -> bool:
    """Whether `path` can be read by dealing: pcap or pcapng, compressed or not, in a
    file (a pipe is read by one process)."""
    from tcpanalyze.analysis import _regular_file

    return reader.format.split("+")[0] in ("pcap", "pcap-ns", "pcapng") and \
        _regular_file(path)


_IN_FLIGHT = 32  # batches dealt to a worker and not yet taken: how far the parent may run
# ahead of the worker furthest ahead (a few MB of offsets), so a worker busy with a heavy
# batch does not stall the other
_MOST_IN_FLIGHT = 4 * _IN_FLIGHT  # ahead of the one furthest behind (an inbox's bound)


class _Rooms:
    """How far the parent may deal ahead: it waits for the worker furthest ahead, not
    for the one furthest behind (as one bounded queue per worker would make it).

    Waiting for the slowest worker keeps the parent dealing until near the end, a third
    process on the cores, however far ahead the other worker is. Waiting for the fastest,
    it is done sooner (bench capture, `--jobs 2`: dealing ended 3.5-3.9 s into the run
    instead of 3.9-4.2 s) and the run is faster: 12 alternating runs against bounded
    queues of 32, 5.85 s against 6.04 s on average (deeper bounded queues, 256, gained
    nothing in session 7)."""

    def __init__(self, ctx: Any, jobs: int) -> None:
        # one semaphore per worker, of rooms free in its inbox: the parent takes one
        # for each batch it deals that worker, the worker frees one for each it takes
        self.free = [ctx.Semaphore(_IN_FLIGHT) for _ in range(jobs)]
        self.owed = [0] * jobs  # batches dealt beyond _IN_FLIGHT (no room was free)

    def wait(self, check: Callable[[], None]) -> None:
        """After a batch was dealt to every worker: take its rooms, waiting (calling
        `check` every 0.2 s) only while the worker furthest ahead has none free."""
        owed, free = self.owed, self.free
        for w in range(len(owed)):
            owed[w] += 1
            while owed[w] and free[w].acquire(False):
                owed[w] -= 1
        ahead = owed.index(min(owed))
        while owed[ahead]:
            if free[ahead].acquire(timeout=0.2):
                owed[ahead] -= 1
            else:
                check()


class _Dealer:
    """The parent's part of a dealt read: it reads the file, decodes each frame's flow
    (keys-only columns) and decides each TCP segment's worker (the same `Assignment` the
    workers would run), and gives each worker its own segments and the few others that
    move its clock: the first segment of the capture, each segment at which the timers
    are swept (`batch.sweep_rows`) and, between two sweeps, the latest of the others'
    segments (a worker's clock jumps to it: BatchFeed._clock). Frames that lie in the
    file as pcap records or pcapng EPBs are dealt as file offsets (the worker reads and
    decodes just those), or as their bytes when the file is compressed; the rest (other
    pcapng blocks, time-ordered interfaces) as the Frames themselves."""

    def __init__(self, jobs: int, settings: Settings, decoder: Decoder) -> None:
        from tcpanalyze.batch import BatchRows

        self.jobs = jobs
        self.rows = BatchRows(decoder, settings.vlan_tracking)
        self.assignment = Assignment(jobs, settings.idle_timeout)
        self.next_sweep: float | None = None

    def picks(self, cols: Any) -> list[tuple[Any, Any] | None]:
        """For each worker, (the batch rows it needs, which of them are its own), or
        None when it needs none."""
        import numpy as np

        from tcpanalyze.batch import sweep_rows

        rows = self.rows
        tcp = rows.tcp_rows(cols)
        if not len(tcp):
            return [None] * self.jobs
        keys, kid = rows.tcp_buckets(tcp)
        ts = cols.ts[tcp]
        owner = self.assignment.workers(keys, kid, ts)
        cuts, self.next_sweep = sweep_rows(ts, self.next_sweep)
        out: list[tuple[Any, Any] | None] = []
        for w in range(self.jobs):
            mine = owner == w
            take = mine.copy()
            take[cuts] = True
            start = 0
            for stop in [*cuts, len(tcp)]:
                others = np.flatnonzero(~mine[start:stop])
                if len(others):
                    take[start + int(others[np.argmax(ts[start:stop][others])])] = True
                start = stop + 1
            pick = np.flatnonzero(take)
            out.append((tcp[pick], mine[pick]) if len(pick) else None)
        return out

    @staticmethod
    def parcel(cols: Any, source: tuple[Any, ...], head: int, rows: Any, mine: Any,
               done: int) -> tuple[Any, ...]:
        """What a worker gets for `rows` of a batch from `source` (columns.Source), of
        which `mine` are its own, when `done` frames were analysed before the batch;
        `head`: how far into a record (block) its frame's data starts. Records and blocks
        go as where they are in the file, or for compressed input as their bytes."""
        import numpy as np

        if source[0] == "frames":
            frames = [source[1][i] for i in rows.tolist()]
            positions = done + 1 + rows
            if all(f.number == p for f, p in zip(frames, positions.tolist(), strict=True)):
                positions = None  # (file order: a frame's position is its number)
            return ("frames", frames, positions, mine)
        # records and blocks are numbered on from the batch's first, in file order
        numbers = cols.numbers[0] + rows
        positions = None if cols.numbers[0] == done + 1 else done + 1 + rows
        data_at = cols.data_at[rows]
        record = data_at - head
        layout = source[2] if source[0] == "blocks" else None
        if source[1] is None:  # compressed: the records themselves, one piece per run
            # of consecutive rows (they lie one after another in the buffer)
            first = np.ones(len(rows), dtype=bool)
            first[1:] = rows[1:] != rows[:-1] + 1
            run = first.cumsum() - 1
            begin = record[first]
            last = np.flatnonzero(np.append(first[1:], True))
            end = data_at[last] + cols.caplen[rows[last]]
            out = np.zeros(len(begin), dtype=np.int64)  # where each run goes in the parcel
            np.cumsum((end - begin)[:-1], out=out[1:])
            view = memoryview(cols.buf)
            data = b"".join([view[b:e] for b, e in zip(begin.tolist(), end.tolist(),
                                                          strict=True)])
            return (source[0], data, len(data), record - begin[run] + out[run], numbers,
                    layout, positions, mine)
        lo = int(record[0])  # (records and blocks lie in the buffer in file order)
        length = int((data_at + cols.caplen[rows]).max()) - lo
        return (source[0], source[1] + lo, length, record - lo, numbers, layout, positions,
                mine)


def _deal(path: str, jobs: int, settings: Settings, verify_checksums: bool,
          inboxes: list[Any], rooms: _Rooms, check: Callable[[], None],
          show: Callable[[], None]) -> dict[str, Any]:
    """Read `path` once and deal its segments to the workers' `inboxes`; `check()` runs
    after each batch and while waiting for a worker (it raises to give up), `show()`
    after each batch. Returns what the file held: frames, counts of each packet class,
    format, link types, error."""
    import queue

    from tcpanalyze.columns import capture_sources

    reader = open_capture(path)
    dec = Decoder(verify_checksums=verify_checksums)
    dealer = _Dealer(jobs, settings, dec)
    head = {"records": 16 + reader.record_layout["extra"], "blocks": 28}  # to frame data

    def put(w: int, item: Any) -> None:
        while True:
            try:
                inboxes[w].put(item, timeout=0.2)
                return
            except queue.Full:
                check()

    done = 0  # frames analysed before the batch (its first position is done + 1)
    try:
        for cols, source in capture_sources(reader, verify_checksums, keys_only=True):
            h = head.get(source[0], 0)
            at = reader.position
            for w, pick in enumerate(dealer.picks(cols)):
                parcel = None if pick is None else dealer.parcel(cols, source, h, *pick, done)
                put(w, (parcel, done + len(cols), at))
            rooms.wait(check)
            done += len(cols)
            check()
            show()
    except CaptureError as exc:
        reader.error = exc
    finally:
        reader.close()
    for w in range(jobs):
        put(w, None)
    return {"frames": reader.frames_read, "counts": dict(dec.counts), "format": reader.format,
            "linktypes": sorted(reader.linktypes),
            "error": str(reader.error) if reader.error is not None else None}


def _dealt(inbox: Any, path: str, layout: dict[str, Any] | None, verify_checksums: bool,
           room: Any) -> Iterator[tuple[Any, Any, Any, int, int]]:
    """A worker's side of a dealt read: (columns of the frames dealt to it or None, which
    are its own, their positions in the order of analysis or None when those are their
    numbers, position reached after the batch, file position reached) per batch. Each
    batch taken frees a `room` (_Rooms.free) for the parent."""
    import queue

    parent = os.getppid()
    with open(path, "rb", buffering=0) as stored:
        fd = stored.fileno()
        while True:
            try:
                batch = inbox.get(timeout=1.0)
                room.release()
            except queue.Empty:
                if os.getppid() != parent:  # the parent is gone: nobody will deal
                    raise RuntimeError("the parent process ended") from None
                continue
            if batch is None:
                return
            parcel, last, at = batch
            if parcel is None:
                yield None, None, None, last, at
                continue
            cols, mine, positions = _opened(parcel, fd, path, layout, verify_checksums)
            yield cols, mine, positions, last, at


def _opened(parcel: tuple[Any, ...], fd: int, path: str, layout: dict[str, Any] | None,
            verify_checksums: bool) -> tuple[Any, Any, Any]:
    """A parcel of `_Dealer.parcel` as a worker reads it: (columns of its frames, which
    are the worker's own, their positions or None); `fd`: the file, open for reading."""
    from tcpanalyze.columns import decode_blocks, decode_frames, decode_records

    kind, mine = parcel[0], parcel[-1]
    if kind == "frames":
        _, frames, positions, _ = parcel
        return decode_frames(frames, verify_checksums), mine, positions
    _, start, length, records, numbers, block_layout, positions, _ = parcel
    if isinstance(start, bytes):  # compressed input: the records themselves
        buf = start
    else:
        buf = os.pread(fd, length, start)
        if len(buf) != length:
            raise CaptureError(path, "the file changed while it was being read", start,
                               int(numbers[0]))
    if kind == "blocks":
        cols = decode_blocks(buf, records, 0, **block_layout,
                             verify_checksums=verify_checksums, numbers=numbers.tolist())
    else:  # pcap records, laid out as the file's header says (`layout`)
        assert layout is not None
        cols = decode_records(buf, records, 0, **layout, verify_checksums=verify_checksums,
                              numbers=numbers.tolist())
    return cols, mine, positions


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic GC while the workers' results arrive and merge: unpickling and rebuilding
    40,000 summaries allocates millions of objects, and the collector would walk the
    growing heap again and again (0.25 s -> 0.04 s of CPU per worker's result on the
    bench capture). Nothing in there makes cyclic garbage."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


_PREVIOUS = re.compile(r"\(connection (\d+)\)")


def _merge(analysis: Any, parts: list[dict[str, Any]]) -> list[Finding]:
    """Merge the workers' results into `analysis`; returns the findings one process
    would have streamed so far, in its order."""
    import numpy as np

    # Global ids: one process numbers connections in the order it creates them (sorted
    # by position, worker and local id, as arrays: 8 bytes a connection, not objects)
    created = [np.frombuffer(p["created"], dtype=np.int64).reshape(-1, 2)
               if len(p["created"]) else np.empty((0, 2), dtype=np.int64) for p in parts]
    position = np.concatenate([c[:, 0] for c in created])
    worker = np.concatenate([np.full(len(c), k, dtype=np.int64) for k, c in enumerate(created)])
    local = np.concatenate([c[:, 1] for c in created])
    global_ids = np.empty(len(local), dtype=np.int64)
    global_ids[np.lexsort((local, worker, position))] = np.arange(1, len(local) + 1)
    ids: list[_Remap] = []
    start = 0
    for c in created:
        ids.append(_Remap(c[:, 1], global_ids[start:start + len(c)]))
        start += len(c)
    emitted: list[tuple[int, int, Finding]] = []
    as_emitted: dict[int, Finding] = {}  # a streamed run's: id(finding) -> as emitted
    for k, part in enumerate(parts):
        remap = ids[k]
        early = part.get("early")
        if early is None:
            analysis.connections += _read_rows(part["connections"], remap)
        else:
            for summary in early:
                summary.id = remap[summary.id]
            analysis.connections += early
        streamed = part.get("streamed")
        for i, finding in enumerate(part["findings"]):
            _renumber(finding, remap)
            if streamed is not None:  # as it was when emitted: what one process prints
                streamed[i].connection = finding.connection
                if "previous" in streamed[i].details:
                    _renumber(streamed[i], remap, connection=False)
                as_emitted[id(finding)] = streamed[i]
            emitted.append((part["emitted_at"][i], finding.connection or 0, finding))
        analysis.connections_total += part["total"]
        analysis.table.evicted += part["evicted"]
    if hasattr(analysis.table, "peak"):
        analysis.table.idled += sum(p["idled"] for p in parts)
        analysis.table.peak = _peak(parts)
    firsts = [p["first_ts"] for p in parts if p["first_ts"] is not None]
    lasts = [p["last_ts"] for p in parts if p["last_ts"] is not None]
    analysis.first_ts = min(firsts) if firsts else None
    analysis.last_ts = max(lasts) if lasts else None
    summed = _summed_aggregates(analysis.settings, [p["aggregates"] for p in parts])
    if summed.could_have_reported():
        # A flood or scan may have been reported on the way, with the numbers of then,
        # and have absorbed the findings of its members from then on: only one process's
        # order of the evidence tells (a merge of final counters would miss one that no
        # longer qualified at the end, and report another only at the end).
        stream = _replay_aggregates(analysis, parts, ids)
    else:
        for part in parts:
            _remove_events(part)
        # Nothing was reported at any time, nor will finish() report anything: every
        # finding stands, in one process's emission order, and the parent's own (empty)
        # aggregates say as much.
        emitted.sort(key=lambda e: (e[0], e[1]))
        analysis.findings.extend(f for _, _, f in emitted)
        stream = list(analysis.findings)
    return [as_emitted.get(id(f), f) for f in stream] if as_emitted else stream


def _renumber(finding: Finding, remap: _Remap, connection: bool = True) -> None:
    """A worker's finding with the global connection ids."""
    if connection and finding.connection is not None:
        finding.connection = remap[finding.connection]
    previous = finding.details.get("previous")
    if previous is not None:  # port reuse: the earlier connection, same worker
        finding.details["previous"] = remap[previous]
        finding.summary = _PREVIOUS.sub(f"(connection {remap[previous]})", finding.summary)


def _remove_files(parts: list[dict[str, Any]]) -> None:
    """The workers' files (summary rows, evidence logs) that are still there."""
    for part in parts:
        if part and part["connections"][0] is not None:
            _remove(part["connections"][0])
        if part:
            _remove_events(part)


def _remove_events(part: dict[str, Any]) -> None:
    path = part.get("events", (None,))[0]
    if path is not None:
        _remove(path)


def _event_order(tagged: tuple[int, tuple[Any, ...]]) -> tuple[int, int]:
    return tagged[1][0], tagged[1][1]  # (position, phase)


def _replay_aggregates(analysis: Any, parts: list[dict[str, Any]], ids: list[_Remap]
                       ) -> list[Finding]:
    """Run the workers' aggregate evidence through `analysis.aggregates` in the order one
    process meets it (by position and phase; heapq.merge keeps each worker's order and,
    at equal keys, the workers' order: what happens at one position in several workers
    are connection closes, whose counts add up in any order). Per-connection findings
    are kept or absorbed as one process decides when it emits them (`Analysis._emit`),
    aggregate findings come at the looks that report them. Adds them to
    `analysis.findings` and returns them in the order one process streams them."""
    import heapq

    from tcpanalyze.analysis import _stream_order
    from tcpanalyze.detectors import ABSORBED

    detector = analysis.aggregates  # fresh: made by the parent's Analysis, never fed
    reported = detector._reported
    taken = [iter(part["findings"]) for part in parts]  # as each worker's emissions come
    kept: list[tuple[int, tuple[bool, int], Finding]] = []
    at_end: list[Finding] = []  # aggregate findings of the end (finish(), below)
    end = max(part["frames"] for part in parts) + 1  # the end comes after every frame
    absorbed_ids: set[int] = set()
    looked = -1
    tagged = [zip(repeat(k), _read_events(part["events"])) for k, part in enumerate(parts)]
    for k, event in heapq.merge(*tagged, key=_event_order):
        position, kind = event[0], event[2]
        if kind == ATTEMPT:
            client, server, port, local, frame, ts = event[3:]
            detector.attempt(client, server, port, ids[k][local], frame, ts)
        elif kind == COMPLETION:
            detector.completion(*event[3:])
        elif kind == OUTCOME:
            detector.outcome(*event[3:])
        elif kind == LOOK:
            if position == looked:
                continue  # every worker looks at the same positions
            looked = position
            for finding in detector.findings():
                finding.capture = analysis.capture
                if position == end:
                    at_end.append(finding)
                else:
                    kept.append((position, (True, 0), finding))
        else:  # EMISSION: the next `count` findings of worker k
            local, count, attempt = event[3:]
            in_reported = attempt is not None and reported and (
                ("flood", attempt[1:]) in reported or ("scan", attempt[0]) in reported)
            if in_reported:
                absorbed_ids.add(ids[k][local])
            for _ in range(count):
                finding = next(taken[k])
                if finding.kind in ABSORBED and (
                        in_reported or finding.connection in detector.members):
                    continue
                kept.append((position, _stream_order(finding), finding))
    kept.sort(key=lambda e: (e[0], e[1]))  # (stable: a look's own order stays)
    before = analysis.findings  # (a fresh analysis has none)
    analysis.findings = before + [f for _, _, f in kept] + at_end
    # What one process finds at the end it streams once finish() has brought its
    # aggregate findings up to date: the aggregates' then (finish() hands them out),
    # the connections' now, without those absorbed by then (decided on a copy).
    analysis.found_at_end = at_end
    probe = copy.deepcopy(detector)
    probe.findings(final=True)
    stream = before + [f for p, _, f in kept if p < end or not probe.absorbs(f)]
    if absorbed_ids:  # their summaries list no absorbed kinds (Analysis._close)
        def unabsorb(summary: ConnectionSummary) -> None:
            if summary.id in absorbed_ids:
                summary.findings = [k for k in summary.findings if k not in ABSORBED]

        analysis.connections.apply(unabsorb)
    return stream


def _peak(parts: list[dict[str, Any]]) -> int:
    """Most connections tracked at once by one process: the workers' table sizes added
    up frame by frame, looked at where one process looks (right after a flow-table add)."""
    events = sorted((sizes[i], sizes[i + 1], k, sizes[i + 2]) for k, part in enumerate(parts)
                    for sizes in (part["sizes"],) for i in range(0, len(sizes), 3))
    current = [0] * len(parts)
    total = peak = 0
    for _frame, phase, k, n in events:
        total += n - current[k]
        current[k] = n
        if phase == 1 and total > peak:
            peak = total
    return peak


def _summed_aggregates(settings: Settings, workers: list[_CountingAggregates]
                       ) -> AggregateDetector:
    """The workers' counters added up, for `could_have_reported()`: SYNs and seconds
    summed, sources, ports and hosts united (in no particular order, and not cut to the
    limits one process keeps: more is only more careful there)."""
    merged = AggregateDetector(settings)
    targets, sources = merged.targets, merged.sources
    for w in workers:
        for key, t in w.targets.items():
            m = targets.get(key)
            if m is None:
                m = targets[key] = _Target()
            m.syns += t.syns
            m.per_second.update(t.per_second)
            m.peak_dropped = max(m.peak_dropped, t.peak_dropped)
            m.sources |= t.sources
            m.sources_overflow += t.sources_overflow
        for addr, s in w.source_items():  # (with those this worker saw once)
            m2 = sources.get(addr)
            if m2 is None:
                m2 = sources[addr] = _Source()
            for host, ports in s.ports_by_host.items():
                m2.ports_by_host.setdefault(host, set()).update(ports)
            for port, hosts in s.hosts_by_port.items():
                m2.hosts_by_port.setdefault(port, set()).update(hosts)
    return merged


def default_jobs() -> int:
    """The number of cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def analyze_parallel(path: str, settings: Settings | None = None, jobs: int = 2, *,
                     verify_checksums: bool = False, zeek_records: bool = False,
                     capture_name: str | None = None, keep_connections: bool = True) -> Any:
    """`analysis.analyze()` with `jobs` worker processes; returns the Report."""
    from tcpanalyze.analysis import build_report

    analysis = Analysis(settings or Settings(), capture=capture_name,
                        keep_connections=keep_connections, zeek_records=zeek_records)
    summary = read_into_parallel(analysis, path, jobs, verify_checksums=verify_checksums)
    analysis.finish()
    return build_report([summary], analysis)
