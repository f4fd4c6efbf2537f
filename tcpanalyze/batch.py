"""Feeding a batch of decoded columns into an `Analysis`, quiet runs in bulk.

Most segments of a large capture change no state (fastpath.py says which). In a batch,
the segments of one connection that pass the stateless part of that test (ACK without
SYN/FIN/RST, a non-zero window, no options but timestamps, not right after a SYN) form
runs, cut where a segment does not follow on from its side's previous one (a
retransmission, a hole, a keepalive). Every run is first tested whole, as arrays for all
connections of the stretch together, and applied whole if it is quiet (whole_runs.py).
A long run (MIN_RUN segments or more) that is not is checked against the connection's
state with array arithmetic of its own (in order, acknowledging nothing unseen, Zeek's
relative numbers and reassembler without gaps, holes included...) and its quiet prefix is
applied at once: counters, last values, the Zeek endpoint's sequence numbers, wraps and
reassembler block. Every other segment (handshakes, teardowns, short runs that are not
quiet after all, the first segment after a quiet prefix) goes through `make_feed`'s feed
one at a time, in capture order, so everything that can change a state, a finding or a
timer happens in the same order as for a per-segment run.

Why the order still comes out the same although a run is applied when it starts:

* a quiet segment changes nothing outside its connection except the table's order of
  recent activity, the table's clock and the analysis' packet counters; those are set at
  the end of each stretch to what per-segment processing gives (recent-activity order by
  each connection's last segment);
* stretches end at each timer sweep (a segment with ts >= the next sweep time), so no
  sweep sees a run half applied;
* a stretch in which the table could fill up (eviction picks the least recently active)
  is processed one segment at a time.

tests/test_batch.py compares whole reports with the per-segment path on every capture;
tests/test_whole_runs.py whole connection states, on real connections edited to break runs.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from itertools import repeat
from operator import itemgetter
from typing import Any, Final

import numpy as np
from mypy_extensions import mypyc_attr

from tcpanalyze.assignment import bucket_of, buckets
from tcpanalyze.capture import Frame
from tcpanalyze.columns import Columns
from tcpanalyze.fastpath import make_feed
from tcpanalyze.flows import flow_key
from tcpanalyze.ledger import Ledger
from tcpanalyze.report import Finding
from tcpanalyze.segment import FIN, SYN, Segment
from tcpanalyze.tracker import ESTABLISHED
from tcpanalyze.whole_runs import TIGHT, WholeRuns, numbers_shape, zeek_sides
from tcpanalyze.zeek import ESTABLISHED as Z_ESTABLISHED
from tcpanalyze.zeek import TOO_LARGE_SEQ_DELTA

__all__ = ["BatchFeed", "BatchRows", "sweep_rows"]

MIN_RUN = 48  # shorter quiet runs are only tested whole (whole_runs.py), longer ones also
SHORT_RUN = 2  # for their quiet prefix (_Side); runs shorter than this go one at a time
_BACK_OFF = 16  # segments taken one at a time after a run was found not quiet (doubling)
_WINDOW = 256  # segments tested at once, doubling while they are all quiet
_MAX_WINDOW: Final = 8192
_MASK: Final = 0xFFFFFFFF
_HALF: Final = 0x80000000
_HIST_DATA: Final = 0x10
_HIST_ACK: Final = 0x20


# the NamedTuple Segment without its Python-level __new__ (the same object, made faster)
_new_tuple: Final = tuple.__new__


def sweep_rows(ts: np.ndarray, next_sweep: float | None) -> tuple[list[int], float | None]:
    """The rows of a batch of TCP segments (times `ts`, capture order) at which
    `Analysis` sweeps its timers, by its rule: the first segment of the capture sets the
    next sweep to its time + 1 s (`next_sweep` None: not seen yet), and the first segment
    at or after that time sweeps and sets it to its own time + 1 s. The first segment
    counts as such a row. Returns the rows and the next sweep time after the batch."""
    rows: list[int] = []
    start, m = 0, len(ts)
    if m and next_sweep is None:
        rows.append(0)
        next_sweep = float(ts[0]) + 1.0
        start = 1
    while start < m:
        later = np.flatnonzero(ts[start:] >= next_sweep)
        if not len(later):
            break
        stop = start + int(later[0])
        rows.append(stop)
        next_sweep = float(ts[stop]) + 1.0
        start = stop + 1
    return rows, next_sweep


@mypyc_attr(allow_interpreted_subclasses=True)  # (as BatchFeed, below)
class BatchRows:
    """A batch's TCP segments and their flows: which records hold TCP (the odd ones
    decoded by `decoder`, which also counts every record) and each segment's assignment
    bucket, what the `--jobs` parent needs to deal segments out (parallel.py); and each
    fast-decoded segment's flow as integers, the start of `BatchFeed`'s work."""

    def __init__(self, decoder: Any, vlan_tracking: bool = False) -> None:
        self.decoder = decoder
        self.vlan_tracking = vlan_tracking  # a tagged odd segment's bucket has its VLAN
        self.odd: dict[int, Segment] = {}

    def tcp_rows(self, cols: Columns) -> np.ndarray:
        """The batch's TCP segments (indices, capture order); decodes and counts the
        odd frames with the ordinary decoder (kept in `odd`), counts the fast ones."""
        fast = cols.fast
        decoder = self.decoder
        decoder.counts["tcp"] += int(fast.sum())
        buf = cols.buf
        odd: dict[int, Segment] = {}
        for i in np.flatnonzero(~fast).tolist():
            at = int(cols.data_at[i])
            linktype = cols.linktype if isinstance(cols.linktype, int) else \
                cols.linktype[i]
            frame = Frame(cols.numbers[i], float(cols.ts[i]), linktype,
                          int(cols.wirelen[i]), buf[at:at + int(cols.caplen[i])])
            seg = decoder.decode(frame)
            if seg is not None:
                odd[i] = seg
        tcp = np.flatnonzero(fast)
        if odd:
            tcp = np.union1d(tcp, np.fromiter(odd, dtype=np.int64, count=len(odd)))
        self.cols = cols
        self.odd = odd
        return tcp

    def tcp_buckets(self, tcp: np.ndarray) -> tuple[list[int], np.ndarray]:
        """The assignment's bucket of each TCP segment `tcp`, as (distinct buckets, index
        of each segment's): for parallel.Assignment. Needs no `_flows`."""
        cols = self.cols
        ka = (cols.src[tcp] << 16) | cols.sport[tcp]
        kb = (cols.dst[tcp] << 16) | cols.dport[tcp]
        bucket = buckets(np.minimum(ka, kb), np.maximum(ka, kb))
        if self.odd:  # (their columns are not decoded: their own addresses)
            tracking = self.vlan_tracking
            for j, i in enumerate(tcp.tolist()):
                seg = self.odd.get(i)
                if seg is not None:
                    bucket[j] = bucket_of(seg.src, seg.sport, seg.dst, seg.dport,
                                          seg.vlan if tracking else 0)
        distinct, kid = np.unique(bucket, return_inverse=True)
        return distinct.tolist(), kid.reshape(-1)

    # -- flows of a batch -------------------------------------------------------------------
    def _flows(self, cols: Columns, tcp: np.ndarray) -> None:
        """Flow numbers for the fast-decoded segments: the FlowTable's key, as integers;
        and which segments may go in quiet runs (`quiet`)."""
        ka = (cols.src << 16) | cols.sport
        kb = (cols.dst << 16) | cols.dport
        lo = np.minimum(ka, kb)
        hi = np.maximum(ka, kb)
        self.sender_lo = ka <= kb
        fast_tcp = tcp[cols.fast[tcp]]
        flow = np.full(len(cols), -1, dtype=np.int64)
        if len(fast_tcp):
            keys, flow[fast_tcp] = _pairs(lo[fast_tcp], hi[fast_tcp])
        else:
            keys = np.empty((0, 2), dtype=np.int64)
        self.flow = flow
        self.keys = keys
        self.key_tuples: list[tuple[bytes, int, bytes, int]] | None = None  # (_flow_keys)
        # a flow that also has odd segments (IP options, say) is never bulk-applied
        self.mixed = np.zeros(len(keys), dtype=bool)
        if self.odd and len(keys):
            lookup = {(int(a), int(b)): f for f, (a, b) in enumerate(keys.tolist())}
            for seg in self.odd.values():
                if len(seg.src) == 4:
                    x = (int.from_bytes(seg.src, "big") << 16) | seg.sport
                    y = (int.from_bytes(seg.dst, "big") << 16) | seg.dport
                    f = lookup.get((min(x, y), max(x, y)))
                    if f is not None:
                        self.mixed[f] = True
        quiet = cols.fast & cols.plain_options & ((cols.flags & 0x17) == 0x10) & (
            cols.window != 0)
        self.quiet = quiet

    def _key(self, f: int) -> tuple[bytes, int, bytes, int]:
        """Flow `f`'s key in the flow table."""
        return self._flow_keys()[f]

    def _flow_keys(self) -> list[tuple[bytes, int, bytes, int]]:
        """Every flow's key, made at the first one asked for (at once: one at a time,
        from the array, each costs as much as all of them together take per flow)."""
        keys = self.key_tuples
        if keys is None:
            keys = self.key_tuples = [
                ((lo >> 16).to_bytes(4, "big"), lo & 0xFFFF, (hi >> 16).to_bytes(4, "big"),
                 hi & 0xFFFF) for lo, hi in self.keys.tolist()]
        return keys


@mypyc_attr(allow_interpreted_subclasses=True)  # (tests watch it: read_into's feeder)
class BatchFeed(BatchRows):
    """Feeds `Columns` batches into `analysis` (with decoder for the odd frames)."""

    def __init__(self, analysis: Any, decoder: Any,
                 on_finding: Callable[[Finding], Any] | None = None,
                 share: Any = None) -> None:
        """`share` (parallel.py's worker): `owned(feed, tcp)` says which segments are
        this process's, `foreign(ts)` moves the clock for another worker's segment; the
        worker's `analysis.ledger` is told of each segment fed one at a time; `feed.frame`
        is the frame being fed."""
        self.share = share
        self.ledger: Ledger | None = getattr(analysis, "ledger", None)
        self.frame = 0
        self.row = 0  # the batch row being fed (frame: its number)
        self.analysis = analysis
        super().__init__(decoder, analysis.settings.vlan_tracking)
        self.on_finding = on_finding
        self.feed = make_feed(analysis)
        # Zeek records need every segment (they split connections): no bulk then
        self.bulk = not analysis.zeek_records
        self.zeek_on = getattr(analysis, "zeek_view", True)
        self.idle = analysis.settings.idle_timeout
        self.bulk_segments = 0  # how many segments took the bulk path (for tests)
        self.whole_segments = 0  # of them, in runs applied whole (whole_runs.py)
        self.whole_refused = 0  # runs tested whole and found not quiet

    # -- a batch -------------------------------------------------------------------------
    def process(self, cols: Columns) -> None:
        if len(cols) == 0:
            return
        tcp = self.tcp_rows(cols)
        if not len(tcp):
            return
        self._lists(cols)
        share = self.share
        if self.bulk or share is not None:
            self._flows(cols, tcp)
        mine = share.owned(self, tcp) if share is not None else None
        if not self.bulk:
            for j, i in enumerate(tcp.tolist()):
                self._one_or_foreign(i, mine is None or bool(mine[j]))
            return
        analysis = self.analysis
        m = len(tcp)
        cuts, _ = sweep_rows(cols.ts[tcp],
                             None if analysis.first_ts is None else analysis._next_sweep)
        start = 0
        for stop in [*cuts, m]:
            if stop > start:
                self._stretch(tcp[start:stop], None if mine is None else mine[start:stop])
            if stop < m:  # the sweep (or, first of all, setting its clock) in its feed
                self._one_or_foreign(int(tcp[stop]), mine is None or bool(mine[stop]))
            start = stop + 1

    def _one_or_foreign(self, i: int, own: bool) -> None:
        if own:
            self._one(i)
        else:
            self.frame = self.cols.numbers[i]
            self.row = i
            ledger = self.ledger
            if ledger is not None:
                ledger.at(i)
            self.share.foreign(self.l_ts[i])
            if ledger is not None:
                ledger.settled()

    # -- per segment -------------------------------------------------------------------
    def _lists(self, cols: Columns) -> None:
        self.l_ts: list[float] = cols.ts.tolist()
        # a row's integer fields, taken out one row at a time by `_one`: most rows go in
        # runs and never need them as Python values
        self.fields = np.stack((cols.data_at, cols.sport, cols.dport, cols.seq, cols.ack,
                                cols.flags, cols.window, cols.payload_len, cols.thl), axis=1)
        # whether the capture cut the payload short (Segment.payload_cut); meaningless,
        # like the fields, for the rows the decoder takes (a fast row's ip_short is 0: its
        # IP length fits the frame)
        self.l_cut: list[bool] = (cols.caplen < 34 + cols.thl + cols.payload_len).tolist()

    def _one(self, i: int) -> None:
        seg = self.odd.get(i) if self.odd else None
        if seg is None:  # the Segment, built here (`_segments` builds the events' at once)
            cols = self.cols
            row: list[int] = self.fields[i].tolist()
            at, sport, dport, seq, ack, flags, window, plen, thl = row
            buf: bytes = cols.buf
            seg = _new_tuple(Segment, (
                cols.numbers[i], self.l_ts[i], buf[at + 26:at + 30], buf[at + 30:at + 34],
                sport, dport, seq, ack, flags, window, plen,
                buf[at + 54:at + 34 + thl] if thl > 20 else b"", 0, self.l_cut[i], 0))
        self._built(i, seg)

    def _built(self, i: int, seg: Segment) -> None:
        """Feed batch row `i`, whose Segment is `seg` (`_one`, `_segments`)."""
        self.frame = seg.frame
        self.row = i
        ledger = self.ledger
        if ledger is not None:
            ledger.at(i)
        new = self.feed(seg)
        if new and self.on_finding is not None:
            for finding in new:
                self.on_finding(finding)
        if ledger is not None:
            ledger.settled()

    def _segments(self, rows: list[int]) -> list[Segment]:
        """The Segments `_one` would build for batch rows `rows`, built at once: the
        events of a stretch (~2 us a segment one at a time, a third of that here)."""
        cols = self.cols
        fields: list[list[int]] = self.fields[rows].T.tolist()
        # (typed: compiled, the offsets are added and the buffer sliced as C ints and
        # bytes, not as objects)
        at = fields[0]
        thl = fields[8]
        buf: bytes = cols.buf
        numbers: list[int] = cols.numbers
        l_ts: list[float] = self.l_ts
        l_cut: list[bool] = self.l_cut
        _, sport, dport, seq, ack, flags, window, plen, _ = fields
        segs = list(map(_new_tuple, repeat(Segment), zip(
            [numbers[i] for i in rows], [l_ts[i] for i in rows],
            [buf[a + 26:a + 30] for a in at], [buf[a + 30:a + 34] for a in at],
            sport, dport, seq, ack, flags, window, plen,
            # (compiled, a slice that ends before it starts is an error, not b"": an odd
            # row's fields are anything, and with no options thl is 20)
            [buf[a + 54:a + 34 + t] if t > 20 else b"" for a, t in zip(at, thl, strict=True)],
            repeat(0, len(rows)),  # (vlan: a fast row is untagged Ethernet)
            [l_cut[i] for i in rows], repeat(0, len(rows)), strict=True)))
        odd = self.odd
        if odd:
            for k, i in enumerate(rows):
                seg = odd.get(i)
                if seg is not None:
                    segs[k] = seg
        return segs

    # -- a stretch without a timer sweep ---------------------------------------------------
    def _stretch(self, pos: np.ndarray, mine: np.ndarray | None = None) -> None:
        """Segments `pos` (batch indices, capture order) between two sweeps; with
        `mine`, only those are this process's, the others only move the clock."""
        analysis = self.analysis
        table = analysis.table
        if len(table.active) + len(pos) > analysis.settings.max_connections:
            # the table may fill: evictions need the exact order
            for j, i in enumerate(pos.tolist()):
                self._one_or_foreign(i, mine is None or bool(mine[j]))
            return
        if mine is not None:
            if not mine.all():
                self._clock(pos[~mine])
            pos = pos[mine]
            if not len(pos):
                return
        flow = self.flow[pos]
        quiet = self.quiet[pos] & (flow >= 0)
        if quiet.any():
            quiet &= ~self.mixed[np.maximum(flow, 0)]
            self._breaks(pos, flow, quiet)
        # group by flow, keeping capture order inside each group
        order = np.argsort(flow, kind="stable")
        g_flow = flow[order]
        g_quiet = quiet[order]
        k = len(order)
        new_group = np.ones(k, dtype=bool)
        new_group[1:] = g_flow[1:] != g_flow[:-1]
        # the segment after a SYN is mostly the handshake's ACK, a state change: keep it
        # out of the runs (a run that starts with it cannot be applied in bulk)
        g_syn = (self.cols.flags[pos[order]] & SYN) != 0
        g_quiet[1:] &= ~(g_syn[:-1] & ~new_group[1:])
        prev_quiet = np.zeros(k, dtype=bool)
        prev_quiet[1:] = g_quiet[:-1]
        run_start = g_quiet & (new_group | ~prev_quiet)
        run_id = np.cumsum(run_start) - 1
        run_len = np.bincount(run_id[g_quiet], minlength=int(run_start.sum()))
        g_len = np.zeros(k, dtype=np.int64)
        g_len[g_quiet] = run_len[run_id[g_quiet]]
        long_run = g_len >= MIN_RUN
        whole_run = g_len >= SHORT_RUN  # tested whole first (whole_runs.py)
        short_run = whole_run & ~long_run
        # (typed lists, and methods called as methods: compiled, C calls and C ints)
        rows: list[int] = pos.tolist()
        if not long_run.any() and not short_run.any():
            for i, seg in zip(rows, self._segments(rows), strict=True):
                self._built(i, seg)
            return
        # runs: their segments (positions in `pos`), and what comes before them
        starts = np.flatnonzero(run_start & long_run)
        runs: list[np.ndarray] = []
        after: dict[int, int] = {}  # index in pos of the segment just before a run -> run
        first_runs: list[int] = []
        lengths = run_len[run_id[starts]]
        for r, (s, length) in enumerate(zip(starts.tolist(), lengths.tolist(), strict=True)):
            runs.append(order[s:s + length])
            if new_group[s]:
                first_runs.append(r)
            else:
                after[int(order[s - 1])] = r
        in_run = np.empty(k, dtype=bool)
        in_run[order] = long_run | short_run
        # every run tested whole: short ones after the segment before them (or at once),
        # long ones first whole, then (`_try_run`) for their quiet prefix
        after_short: dict[int, int] = {}  # as `after`, for short runs
        first_short: list[int] = []
        whole_of_long: list[int | None] = [None] * len(runs)  # long run r -> its test
        w_starts = np.flatnonzero(run_start & whole_run)
        whole = WholeRuns(self.cols, self.flow, self.sender_lo, pos, order,
                          w_starts.tolist(), g_len[w_starts].tolist(),
                          new_group[w_starts].tolist(), self.idle) if len(w_starts) else None
        if whole is not None:
            long_at = {s: r for r, s in enumerate(starts.tolist())}
            for w, (s, j) in enumerate(zip(w_starts.tolist(), whole.before, strict=True)):
                long_r = long_at.get(s)
                if long_r is not None:
                    whole_of_long[long_r] = w
                elif j >= 0:
                    after_short[j] = w
                else:
                    first_short.append(w)
        events: list[int] = np.flatnonzero(~in_run).tolist()
        # forced: (index in pos, run, offset of the next segment in the run or -1)
        forced: list[tuple[int, int, int]] = []
        self._pos = pos
        self._runs = runs
        self._forced = forced
        self._misses: dict[int, int] = {}
        applied = False
        for r in first_runs:
            applied |= self._long_run(whole, whole_of_long[r], r)
        if whole is not None:  # (else no short runs)
            for w in first_short:
                applied |= self._short_run(whole, w)
        ev = 0
        n_events = len(events)
        ev_rows = [rows[j] for j in events]
        ev_segs = self._segments(ev_rows)
        while ev < n_events or forced:
            if forced and (ev >= n_events or forced[0][0] < events[ev]):
                j, r, nxt = heapq.heappop(forced)
                self._one(rows[j])
                if nxt >= 0:
                    applied |= self._try_run(r, nxt)
                continue
            j = events[ev]
            self._built(ev_rows[ev], ev_segs[ev])
            ev += 1
            after_r = after.get(j)
            if after_r is not None:
                applied |= self._long_run(whole, whole_of_long[after_r], after_r)
            elif after_short and whole is not None:
                after_w = after_short.get(j)
                if after_w is not None:
                    applied |= self._short_run(whole, after_w)
        if applied:
            self._settle(pos)

    def _breaks(self, pos: np.ndarray, flow: np.ndarray, quiet: np.ndarray) -> None:
        """Take out of `quiet` the segments that do not follow on from their side's
        previous segment in the stretch (a retransmission, a hole, a keepalive, an ack
        that goes back): they change state, and runs cut there can be tested whole. (Only
        a matter of speed: WholeRuns tests its runs itself.)"""
        cols = self.cols
        side = flow * 2 + self.sender_lo[pos]
        o = np.argsort(side, kind="stable")
        rows = pos[o]
        seq = cols.seq[rows]
        ack = cols.ack[rows]
        flags = cols.flags[rows]
        end = (seq + cols.payload_len[rows] + (flags & SYN != 0) + (flags & FIN != 0)) & _MASK
        s_side = side[o]
        brk = (s_side[1:] == s_side[:-1]) & ((seq[1:] != end[:-1]) | (ack[1:] < ack[:-1]))
        quiet[o[1:][brk]] = False

    def _short_run(self, whole: WholeRuns, w: int) -> bool:
        """Short run `w` (of `whole`) in bulk if it is quiet, else its segments one at a
        time (in capture order, among the events)."""
        if self._whole_run(whole, w):
            return True
        for j in whole.members[w].tolist():
            heapq.heappush(self._forced, (j, -1, -1))
        return False

    def _long_run(self, whole: WholeRuns | None, w: int | None, r: int) -> bool:
        """Long run `r` whole if it is quiet (`w`: its test in `whole`), else as far as it
        is quiet (`_try_run`)."""
        return (whole is not None and w is not None and self._whole_run(whole, w)) or \
            self._try_run(r, 0)

    def _whole_run(self, whole: WholeRuns, w: int) -> bool:
        """Run `w` of `whole` applied whole if every segment is quiet."""
        run = whole.runs[w]
        conn = self.analysis.table.active.get(self._key(run.flow))
        if conn is None:
            return False
        if not whole.apply(w, conn, self.zeek_on, self.idle):
            self.whole_refused += 1
            return False
        n = run.segments
        if hasattr(self.analysis, "segments"):
            self.analysis.segments += n
        self.bulk_segments += n
        self.whole_segments += n
        return True

    def _try_run(self, r: int, offset: int) -> bool:
        """Apply run `r` from `offset` in bulk as far as it is quiet. A window of the run
        is tested at a time (a window that is all quiet is applied and the next, larger
        one tested), so a run broken often (loss recovery) costs no quadratic work; a
        test that finds little quiet makes the next segments go one at a time, more of
        them each time, before the next test."""
        members = self._runs[r]
        total = len(members)
        forced = self._forced
        applied = False
        window = _WINDOW
        while True:
            remaining = total - offset
            if remaining <= 0:
                return applied
            if remaining < MIN_RUN:
                for m in members[offset:].tolist():
                    heapq.heappush(forced, (m, r, -1))
                return applied
            chunk = members[offset:offset + window]
            idx = self._pos[chunk]
            conn = self.analysis.table.active.get(self._key(int(self.flow[idx[0]])))
            done = self._quiet_prefix(conn, idx) if conn is not None else 0
            if done == len(chunk):
                applied = True
                offset += done
                window = min(window * 2, _MAX_WINDOW)
                self._misses[r] = 0
                continue
            if done >= MIN_RUN // 2:  # worth it: carry on after the loud segment
                heapq.heappush(forced, (int(chunk[done]), r, offset + done + 1))
                return True
            misses = self._misses.get(r, 0)
            self._misses[r] = misses + 1
            skip = done + min(_BACK_OFF << misses, _MAX_WINDOW)
            for m in members[offset:offset + skip].tolist()[done:]:
                heapq.heappush(forced, (m, r, -1))
            if offset + skip < total:
                heapq.heappush(forced, (int(members[offset + skip]), r, offset + skip + 1))
            return applied or done > 0

    def _clock(self, pos: np.ndarray) -> None:
        """Other workers' segments within a stretch: the clock only (no sweep is due)."""
        analysis = self.analysis
        ts_max = float(self.cols.ts[pos].max())
        if analysis.last_ts is None or ts_max > analysis.last_ts:
            analysis.last_ts = ts_max
        if ts_max > analysis.table.now:
            analysis.table.now = ts_max

    def _settle(self, pos: np.ndarray) -> None:
        """After bulk runs: the table's recent-activity order, clock and the counters, as
        one segment at a time would have left them."""
        analysis = self.analysis
        table = analysis.table
        active = table.active
        ts_max = float(self.cols.ts[pos].max())
        if analysis.last_ts is None or ts_max > analysis.last_ts:
            analysis.last_ts = ts_max
        if ts_max > table.now:
            table.now = ts_max
        move = getattr(active, "move_to_end", None)
        if move is None:
            return
        # each flow's last segment in the stretch, then the flows in that order
        flow = self.flow[pos]
        fast = np.flatnonzero(flow >= 0)
        f = flow[fast][::-1]
        flows, back = np.unique(f, return_index=True)
        last: list[tuple[int, Any]] = list(zip(fast[len(f) - 1 - back].tolist(),
                                               flows.tolist(), strict=True))
        odd: dict[Any, int] = {}  # odd segments (IP options, ...) by their five-tuple
        tracking = table.vlan_tracking
        for j in np.flatnonzero(flow < 0).tolist():
            odd[flow_key(self.odd[int(pos[j])], tracking)] = j
        last += ((j, key) for key, j in odd.items())
        last.sort(key=itemgetter(0))
        for _, key in last:
            if not isinstance(key, tuple):
                key = self._key(key)
            if key in active:
                move(key)

    # -- the bulk test and update ------------------------------------------------------------
    def _quiet_prefix(self, conn: Any, idx: np.ndarray) -> int:
        """How many of the segments `idx` (one connection, capture order) are quiet, given
        the connection's state now; applies them. 0 when the state is not a quiet one."""
        c, s = conn.client, conn.server
        if c.state != ESTABLISHED or s.state != ESTABLISHED or c.fin_seq is not None or \
                s.fin_seq is not None or c.fin_pending or s.fin_pending or \
                c.snd_nxt is None or s.snd_nxt is None or c.max_ack is None or \
                s.max_ack is None:
            return 0
        zeek_on = self.zeek_on
        view = None
        if zeek_on:
            view = conn.zeek
            if view is None or view.first_packet_seen != 3:
                return 0
            zc, zs = zeek_sides(view)
            for z in (zc, zs):
                if z.state != Z_ESTABLISHED or z.did_close or z.fin_cnt:
                    return 0
            c_shape = numbers_shape(c, zc, zs)
            s_shape = numbers_shape(s, zs, zc)
            if not c_shape or not s_shape:
                return 0
        cols = self.cols
        ts = cols.ts[idx]
        seq = cols.seq[idx]
        ack = cols.ack[idx]
        plen = cols.payload_len[idx]
        n = len(idx)
        client_lo = (c.addr, c.port) <= (s.addr, s.port)
        from_client = self.sender_lo[idx] == client_lo
        bad = n
        if ts[0] - conn.last > self.idle:
            bad = 0
        else:
            over = ((ts[1:] - ts[:-1]) > self.idle).nonzero()[0]
            if len(over):
                bad = int(over[0]) + 1
        cs = _Side(c, from_client.nonzero()[0], seq, ack, plen)
        ss = _Side(s, (~from_client).nonzero()[0], seq, ack, plen)
        if zeek_on:
            cs.z, ss.z = zc, zs
            cs.zp, ss.zp = zs, zc
            cs.tight, ss.tight = c_shape == TIGHT, s_shape == TIGHT
        # (each side's methods take the other one: sides that referred to each other
        # would wait for a cyclic collection, which reading makes rare (read_into), and
        # their freed arrays fragment the heap: +140 MB on the bench capture)
        bad = self._check_sides(bad, cs, ss, view)
        if bad <= 0:
            return 0
        self._apply_sides(bad, idx, ts, cs, ss, view)
        conn.last = float(ts[bad - 1])
        last = int(idx[bad - 1])
        conn.last_frame = cols.numbers[last]
        conn.flags_seen |= int(np.bitwise_or.reduce(cols.flags[idx[:bad]]))
        if hasattr(self.analysis, "segments"):
            self.analysis.segments += bad
        self.bulk_segments += bad
        return bad

    def _check_sides(self, bad: int, cs: _Side, ss: _Side, view: Any) -> int:
        """The first segment of the run (index) that is not quiet, at most `bad`."""
        bad = min(bad, cs.check_tracker(ss), ss.check_tracker(cs))
        if view is not None:
            bad = min(bad, cs.check_zeek_own(view._hist_seen),
                      ss.check_zeek_own(view._hist_seen))
            partial = view.is_partial
            bad = min(bad, cs.check_zeek_cross(partial, ss), ss.check_zeek_cross(partial, cs))
        return bad

    def _apply_sides(self, bad: int, idx: np.ndarray, ts: np.ndarray, cs: _Side, ss: _Side,
                     view: Any) -> None:
        """Apply the first `bad` segments of the run."""
        cols = self.cols
        tsval = cols.tsval[idx]
        window = cols.window[idx]
        cs.apply(bad, ts, tsval, window, view is not None, ss)
        ss.apply(bad, ts, tsval, window, view is not None, cs)
        if view is not None:
            cs.apply_reassembler(ss)
            ss.apply_reassembler(cs)
            view.packets += bad
            view.last_time = float(ts[bad - 1])


def _pairs(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (lo, hi) pairs in lexicographic order, and each element's index
    among them: np.unique(..., axis=0, return_inverse=True), without its row sort on a
    structured dtype (several times slower). Each value is ranked on its own, and the
    pair of ranks, which fits in one int64, is made unique."""
    u_lo, r_lo = np.unique(lo, return_inverse=True)
    r_lo = r_lo.reshape(-1)
    if len(hi):
        # (when the rank of lo times the span of hi fits, the pair needs no rank of hi:
        # one sort fewer, the usual case)
        hi_min = int(hi.min())
        span = int(hi.max()) - hi_min + 1
        if len(u_lo) * span < 1 << 62:
            pair, inverse = np.unique(r_lo * span + (hi - hi_min), return_inverse=True)
            keys = np.empty((len(pair), 2), dtype=np.int64)
            keys[:, 0] = u_lo[pair // span]
            keys[:, 1] = pair % span + hi_min
            return keys, inverse.reshape(-1)
    u_hi, r_hi = np.unique(hi, return_inverse=True)
    width = len(u_hi)
    pair, inverse = np.unique(r_lo * width + r_hi.reshape(-1),
                              return_inverse=True)
    keys = np.empty((len(pair), 2), dtype=np.int64)
    keys[:, 0] = u_lo[pair // width]
    keys[:, 1] = u_hi[pair % width]
    return keys, inverse.reshape(-1)


class _Side:
    """One direction of a run: the segments one endpoint sent, as arrays."""

    def __init__(self, ep: Any, where: np.ndarray, seq: np.ndarray, ack: np.ndarray,
                 plen: np.ndarray) -> None:
        self.ep = ep
        self.where = where  # positions in the run
        self.seq = seq[where]
        self.ack = ack[where]
        self.plen = plen[where]
        self.end = (self.seq + self.plen) & _MASK
        self.data = self.plen > 0
        self.prev_ack = np.empty(len(self.ack), dtype=np.int64)
        if len(where):
            self.prev_ack[0] = ep.max_ack
            self.prev_ack[1:] = self.ack[:-1]
        self.z: Any = None
        self.zp: Any = None
        self.tight = True

    def _first_bad(self, bad: np.ndarray) -> int:
        hit = int(bad.argmax())  # (the first True, or 0 when there is none)
        return int(self.where[hit]) if bad[hit] else 1 << 62

    def _before(self, other_where: np.ndarray) -> np.ndarray:
        """For each of my segments, the index in `other_where` of the other side's last
        segment before it (-1: none in this run)."""
        return np.searchsorted(other_where, self.where) - 1

    def check_tracker(self, other: _Side) -> int:
        if not len(self.where):
            return 1 << 62
        ep = self.ep
        first = int(self.where[0])
        if ep.window == 0:
            return first
        expected = np.empty(len(self.seq), dtype=np.int64)
        expected[0] = ep.snd_nxt
        expected[1:] = self.end[:-1]
        bad = self.seq != expected
        bad |= ((self.ack - self.prev_ack) & _MASK) >= _HALF  # acks only move forward
        peer_snd = np.full(len(self.where), other.ep.snd_nxt, dtype=np.int64)
        before = self._before(other.where)
        has = before >= 0
        peer_snd[has] = other.end[before[has]]
        bad |= ((peer_snd - self.ack) & _MASK) >= _HALF  # acks nothing unseen
        return self._first_bad(bad)

    def check_zeek_own(self, hist: int) -> int:
        """My sequence numbers in Zeek's terms (and the acks I send, on the peer's)."""
        if not len(self.where):
            self.rel_ack = np.empty(0, dtype=np.int64)
            self.awraps = np.empty(0, dtype=np.int64)
            self.rel_seq = np.empty(0, dtype=np.int64)
            return 1 << 62
        z, zp = self.z, self.zp
        shift = 0 if z.is_orig else 16
        bad = np.zeros(len(self.where), dtype=bool)
        if not hist & (_HIST_DATA << shift):
            bad |= self.data
        if not hist & (_HIST_ACK << shift):
            bad |= ~self.data
        # seq wraps: Zeek's last_seq moves to each data segment's end
        ends = self.end[self.data]
        prev_end = np.empty(len(ends), dtype=np.int64)
        if len(ends):
            prev_end[0] = z.last_seq
            prev_end[1:] = ends[:-1]
        dec = np.zeros(len(ends) + 1, dtype=np.int64)
        (ends < prev_end).cumsum(out=dec[1:])
        self.seq_dec = dec
        start = z.start_seq
        if dec[-1]:  # the numbers wrap inside the run
            data_before = self.data.cumsum() - self.data
            wraps = z.seq_wraps + dec[data_before]
            rel_seq = np.where(wraps == 0, (self.seq - start) & _MASK,
                               (wraps << 32) + self.seq - start)
            bad |= (wraps == 0) & (rel_seq >= _HALF)
        elif z.seq_wraps:  # (the usual cases, without the arrays of wraps)
            rel_seq = (z.seq_wraps << 32) + self.seq - start
        else:
            rel_seq = (self.seq - start) & _MASK
            bad |= rel_seq >= _HALF
        self.rel_seq = rel_seq
        # acks: Zeek's peer.ack_seq follows them, with its own wraps
        prev = self.prev_ack
        moved = self.ack != prev
        adec = (moved & (self.ack < prev)).cumsum()
        self.ack_dec = adec
        self.ack_moved = moved
        pstart = zp.start_seq
        if adec[-1]:
            awraps = zp.ack_wraps + adec
            rel_ack = np.where(awraps == 0, (self.ack - pstart) & _MASK,
                               (awraps << 32) + self.ack - pstart)
            bad |= (awraps == 0) & (rel_ack >= _HALF)
        elif zp.ack_wraps:
            awraps = zp.ack_wraps  # the same for every segment
            rel_ack = (awraps << 32) + self.ack - pstart
        else:
            awraps = 0
            rel_ack = (self.ack - pstart) & _MASK
            bad |= rel_ack >= _HALF
        delta = (self.ack - prev) & _MASK
        bad |= moved & (self.ack == 0) & (delta > TOO_LARGE_SEQ_DELTA)
        self.rel_ack = rel_ack
        self.awraps = awraps
        return self._first_bad(bad)

    def check_zeek_cross(self, partial: bool, other: _Side) -> int:
        """My acks against the peer's stream; my data against the peer's acks."""
        if not len(self.where):
            return 1 << 62
        z, zp = self.z, self.zp
        bad = np.zeros(len(self.where), dtype=bool)
        # the reassembler of the peer's data, as it stands at each of my acks
        preasm = zp.reassembler
        trim = np.maximum.accumulate(np.concatenate(([preasm.trim_seq], self.rel_ack)))[:-1]
        peer_data = other.where[other.data]
        peer_upper = other.rel_seq[other.data] + other.plen[other.data]
        last_reassem = np.full(len(self.where), preasm.last_reassem, dtype=np.int64)
        if other.tight:  # else a hole holds the peer's reassembly where it is
            before = np.searchsorted(peer_data, self.where) - 1
            has = before >= 0
            last_reassem[has] = peer_upper[before[has]]
        ahead = self.rel_ack > trim
        bad |= ahead & ((last_reassem < self.rel_ack) | ((self.rel_ack <= 2) & partial))
        # my data against what the peer has acknowledged of it by then
        if self.data.any():
            mine = z.reassembler
            before = self._before(other.where)
            has = before >= 0
            acked = np.full(len(self.where), (z.ack_wraps << 32) + z.ack_seq - z.start_seq,
                            dtype=np.int64)
            if len(other.where):
                peer_acked = (other.awraps << 32) + other.ack - z.start_seq
                acked[has] = peer_acked[before[has]]
                ptrim = np.maximum.accumulate(np.maximum(other.rel_ack, mine.trim_seq))
                trim_now = np.full(len(self.where), mine.trim_seq, dtype=np.int64)
                trim_now[has] = ptrim[before[has]]
            else:
                trim_now = np.full(len(self.where), mine.trim_seq, dtype=np.int64)
            bad |= self.data & ((self.rel_seq < acked) | (self.rel_seq < trim_now))
        return self._first_bad(bad)

    # -- applying a quiet prefix ----------------------------------------------------------
    def apply(self, limit: int, ts: np.ndarray, tsval: np.ndarray, window: np.ndarray,
              zeek_on: bool, other: _Side) -> None:
        k = int(np.searchsorted(self.where, limit))
        self.k = k
        if not k:
            return
        ep = self.ep
        where = self.where[:k]
        last = int(where[-1])
        ep.packets += k
        ep.last_ts = float(ts[last])
        data = self.data[:k]
        n_data = int(data.sum())
        if n_data:
            data_where = where[data]
            ep.bytes += int(self.plen[:k].sum())
            ep.data_segments += n_data
            ep.last_data_ts = float(ts[int(data_where[-1])])
            ep.snd_nxt = int(self.end[:k][data][-1])
        tsv = tsval[where]
        has_ts = (tsv >= 0).nonzero()[0]
        if len(has_ts):
            ep.tsval = int(tsv[has_ts[-1]])
        ep.tentative = False
        ep.max_ack = int(self.ack[k - 1])
        ep.window = int(window[last])
        other.ep.keepalive_unanswered = 0
        if zeek_on:
            z, zp = self.z, self.zp
            z.last_time = float(ts[last])
            if n_data:
                z.last_seq = ep.snd_nxt
                z.seq_wraps += int(self.seq_dec[n_data])
            if self.ack_moved[:k].any():
                zp.ack_seq = int(self.ack[k - 1])
                zp.ack_wraps += int(self.ack_dec[k - 1])

    def apply_reassembler(self, other: _Side) -> None:
        """My data's reassembler after the prefix: the last block grows, the peer's
        acks trim (one trim to the highest ack equals the sequence of trims)."""
        k = self.k
        reasm = self.z.reassembler
        pk = other.k
        trim = reasm.trim_seq
        if pk:
            top = int(other.rel_ack[:pk].max())
            if top > trim:
                trim = top
        data = self.data[:k]
        if data.any():
            upper = int((self.rel_seq[:k] + self.plen[:k])[data][-1])
            if reasm.blocks:
                reasm.blocks[-1][1] = upper
            else:
                reasm.blocks = [[int(self.rel_seq[:k][data][0]), upper]]
            if self.tight:
                reasm.last_reassem = upper
        if trim != reasm.trim_seq:
            reasm.trim_seq = trim
            reasm.blocks = [[max(b0, trim), b1] for b0, b1 in reasm.blocks if b1 > trim]
