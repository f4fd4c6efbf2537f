"""Quiet runs tested whole, as arrays across every connection of a stretch at once, and
applied one run at a time.

A short run (the request, answer and ACKs of a short connection between its handshake
and its FIN) is not worth an array test of its own (batch._Side: ~300 us a run), and one
segment at a time through the fast path costs ~8 us a segment. Here everything a run's
segments must satisfy among themselves is tested for all runs of a stretch with one set
of array operations: each side's sequence numbers follow on, its acks move forward,
nothing acknowledged that the peer has not sent by then within the run, no gap longer
than the idle timeout, no numbers that wrap or reach 2**31 apart. What depends on the
connection's state when the run starts (both sides ESTABLISHED with no FIN, Zeek's
numbers in the TIGHT shape, the first sequence number of each side, the acks sent before
the peer says anything in the run) is checked when the run's turn comes, in a few dozen
Python operations, and then the run is applied as its segments one at a time through
the fast path would have left the connection: the counters and last values of each
side, Zeek's sequence numbers, reassembler blocks, and the history letters of a side's
first data or ACK, in the order of their segments.

A run is applied whole or not at all. One that is refused goes on as before: a short one
one segment at a time, a long one (batch.MIN_RUN segments or more) to batch._Side, which
finds its quiet prefix (holes in the capture, the HOLED shape, are only handled there).
So every condition here only has to be sufficient: where the exact rule of the fast path
is intricate (an ack of 0, numbers that wrap), the run is refused.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

import numpy as np
from mypy_extensions import mypyc_attr

from tcpanalyze.tracker import ESTABLISHED, Connection, Endpoint
from tcpanalyze.zeek import ESTABLISHED as Z_ESTABLISHED
from tcpanalyze.zeek import ZeekEndpoint, ZeekView

__all__ = ["HOLED", "TIGHT", "Run", "RunSide", "WholeRuns", "numbers_shape", "zeek_sides"]

_MASK: Final = 0xFFFFFFFF
_HALF: Final = 0x80000000
_HIST_DATA: Final = 0x10  # zeek._HIST_DATA / _HIST_ACK (the responder's shifted by 16)
_HIST_ACK: Final = 0x20
TIGHT, HOLED = 1, 2  # the shapes of a side's numbers that bulk updates model


def _rel(value: int, wraps: int, start: int) -> int | None:
    """Zeek's relative sequence number of `value` (None: an underflow)."""
    if wraps == 0:
        r = (value - start) & _MASK
        return None if r >= _HALF else r
    return (wraps << 32) + value - start


def _rel_checked(value: int, wraps: int, start: int) -> int:
    """`_rel` of a number whose underflow was ruled out before."""
    rel = _rel(value, wraps, start)
    assert rel is not None
    return rel


def numbers_shape(ep: Endpoint, z: ZeekEndpoint, zp: ZeekEndpoint) -> int:
    """How this side's numbers stand for quiet segments: 0 not a shape the bulk update
    models; TIGHT when Zeek's and the tracker's numbers agree and everything sent is
    reassembled; HOLED when they agree but a hole (data missing from the capture) keeps
    Zeek's reassembly behind the last block, which new data extends."""
    snd_nxt = ep.snd_nxt
    if snd_nxt is None or z.last_seq != snd_nxt or zp.ack_seq != ep.max_ack:
        return 0
    rel = _rel(snd_nxt, z.seq_wraps, z.start_seq)
    reasm = z.reassembler
    if rel is None or reasm.trim_seq > rel:
        return 0
    blocks = reasm.blocks
    if reasm.last_reassem == rel:
        return TIGHT if not blocks or blocks[-1][1] == rel else 0
    if blocks and blocks[-1][1] == rel and reasm.last_reassem < blocks[-1][0]:
        return HOLED
    return 0


class Run(NamedTuple):
    """One run: its flow (batch.BatchRows.flow), how many segments, the times and frame
    number that end up on the connection, the OR of their flags, and its sides (indices
    in `WholeRuns.sides`, -1: that side sent nothing in the run)."""

    flow: int
    segments: int
    first_ts: float
    last_ts: float
    last_frame: int
    flags: int
    lo_side: int  # the segments sent by the flow key's low end
    hi_side: int


class RunSide(NamedTuple):
    """What one endpoint sent in a run."""

    segments: int
    seq_first: int
    ack_first: int
    ack_last: int
    window: int  # the last one
    last_ts: float
    end_last: int  # its snd_nxt after the run
    nbytes: int
    n_data: int
    data_ts: float  # of its last data segment
    tsval: int  # the last TS value, -1: none
    nopeer_last: int  # the last ack sent before the peer's first segment, -1: none
    first_data: int  # run order of its first data segment (n: none)
    first_ack: int  # ... of its first segment without data


@mypyc_attr(allow_interpreted_subclasses=True)  # (tests count what apply() takes)
class WholeRuns:
    """The runs of one stretch. `members[s]`: the positions (in the stretch) of run
    s's segments; `before[s]`: the position of the segment of its connection just before
    it in the stretch, or -1 when the run opens its connection's part of the stretch."""

    def __init__(self, cols: Any, flow: np.ndarray, sender_lo: np.ndarray, pos: np.ndarray,
                 order: np.ndarray, starts: list[int], lengths: list[int],
                 first_of_flow: list[bool], idle: float) -> None:
        """Runs given by `starts` (indices in `order`, the stretch grouped by flow) and
        `lengths`; `pos`: the stretch's batch rows; `first_of_flow[s]`: run s opens its
        flow's group."""
        n_runs = len(starts)
        at = np.concatenate([np.arange(s, s + n) for s, n in zip(starts, lengths,
                                                                strict=True)])
        members = order[at]  # positions in the stretch, capture order within each run
        rows = pos[members]
        n = len(rows)
        rid = np.repeat(np.arange(n_runs), lengths)
        first = np.zeros(n, dtype=bool)
        run_first = np.zeros(n_runs, dtype=np.int64)
        np.cumsum(lengths[:-1], out=run_first[1:])
        first[run_first] = True
        seq = cols.seq[rows]
        ack = cols.ack[rows]
        plen = cols.payload_len[rows]
        ts = cols.ts[rows]
        lo = sender_lo[rows]
        end = seq + plen  # not masked: past 2**32 is a wrap, refused
        bad = (end > _MASK) | (ack == 0)
        gap = np.zeros(n, dtype=bool)
        gap[1:] = (ts[1:] - ts[:-1]) > idle
        bad |= gap & ~first
        # each side's segments in order: (run, side) groups, capture order inside
        o2 = np.argsort(rid * 2 + lo, kind="stable")
        k2 = (rid * 2 + lo)[o2]
        same = np.zeros(n, dtype=bool)
        same[1:] = k2[1:] == k2[:-1]
        s_seq, s_end, s_ack = seq[o2], end[o2], ack[o2]
        b2 = np.zeros(n, dtype=bool)
        b2[1:] = same[1:] & ((s_seq[1:] != s_end[:-1]) | (s_ack[1:] < s_ack[:-1])
                             | (s_ack[1:] - s_ack[:-1] >= _HALF))
        bad[o2] |= b2
        gidx = np.flatnonzero(~same)  # each group's first, in o2 order
        glast = np.append(gidx[1:], n) - 1
        # spans below 2**31: relative numbers at the ends bound all between
        g_bad = (s_end[glast] - s_seq[gidx] >= _HALF) | (s_ack[glast] - s_ack[gidx] >= _HALF)
        # acks against the peer's end just before them in the run (its snd_nxt then)
        idx = np.arange(n)
        last_lo = np.maximum.accumulate(np.where(lo, idx, -1))
        last_hi = np.maximum.accumulate(np.where(~lo, idx, -1))
        peer = np.where(lo, last_hi, last_lo)
        has_peer = peer >= run_first[rid]
        pe = end[np.maximum(peer, 0)]
        bad |= has_peer & ((((pe - ack) & _MASK) >= _HALF) | (pe < ack))
        run_bad = np.logical_or.reduceat(bad, run_first)
        g_run = rid[o2][gidx]
        run_bad[g_run[g_bad]] = True
        # per side of a run
        s_plen = plen[o2]
        data = s_plen > 0
        s_rows = rows[o2]
        s_ts = ts[o2]
        s_tsval = cols.tsval[s_rows]
        count = np.diff(np.append(gidx, n))
        n_data = np.add.reduceat(data.astype(np.int64), gidx)
        nbytes = np.add.reduceat(s_plen, gidx)
        last_data = np.maximum.reduceat(np.where(data, idx, -1), gidx)  # (o2 positions)
        last_tsval = np.maximum.reduceat(np.where(s_tsval >= 0, idx, -1), gidx)
        first_data = np.minimum.reduceat(np.where(data, o2, n), gidx)  # (run order)
        first_ack = np.minimum.reduceat(np.where(data, n, o2), gidx)
        nopeer_last = np.maximum.reduceat(np.where(has_peer[o2], -1, s_ack), gidx)
        tsval_last = np.where(last_tsval >= 0, s_tsval[np.maximum(last_tsval, 0)], -1)
        data_ts = s_ts[np.maximum(last_data, 0)]
        self.sides: list[RunSide] = list(map(RunSide._make, zip(
            count.tolist(), s_seq[gidx].tolist(), s_ack[gidx].tolist(),
            s_ack[glast].tolist(), cols.window[s_rows[glast]].tolist(),
            s_ts[glast].tolist(), s_end[glast].tolist(), nbytes.tolist(), n_data.tolist(),
            data_ts.tolist(), tsval_last.tolist(), nopeer_last.tolist(),
            first_data.tolist(), first_ack.tolist(), strict=True)))
        side_lo = np.full(n_runs, -1, dtype=np.int64)
        side_hi = np.full(n_runs, -1, dtype=np.int64)
        g_lo = lo[o2][gidx]
        side_lo[g_run[g_lo]] = np.flatnonzero(g_lo)
        side_hi[g_run[~g_lo]] = np.flatnonzero(~g_lo)
        run_last = np.append(run_first[1:], n) - 1
        flags = np.bitwise_or.reduceat(cols.flags[rows], run_first)
        numbers = cols.numbers
        self.runs: list[Run] = list(map(Run._make, zip(
            flow[rows[run_first]].tolist(), lengths, ts[run_first].tolist(),
            ts[run_last].tolist(), [numbers[i] for i in rows[run_last].tolist()],
            flags.tolist(), side_lo.tolist(), side_hi.tolist(), strict=True)))
        self.ok = (~run_bad).tolist()
        self.members = [members[a:a + length] for a, length in
                        zip(run_first.tolist(), lengths, strict=True)]
        self.before = [-1 if opens else int(order[s - 1])
                       for s, opens in zip(starts, first_of_flow, strict=True)]

    def apply(self, s: int, conn: Connection, zeek_on: bool, idle: float) -> bool:
        """Apply run `s` to `conn` (its connection) if every segment is quiet; False,
        having changed nothing, if not."""
        if not self.ok[s]:
            return False
        run = self.runs[s]
        lo_side, hi_side, ts_last = run.lo_side, run.hi_side, run.last_ts
        c, sv = conn.client, conn.server
        if c.state != ESTABLISHED or sv.state != ESTABLISHED or c.fin_seq is not None or \
                sv.fin_seq is not None or c.fin_pending or sv.fin_pending or \
                c.snd_nxt is None or sv.snd_nxt is None or c.max_ack is None or \
                sv.max_ack is None or run.first_ts - conn.last > idle:
            return False
        client_lo = (c.addr, c.port) <= (sv.addr, sv.port)
        # (endpoint, its peer, the side's numbers, from the client)
        sides: list[tuple[Endpoint, Endpoint, RunSide, bool]] = []
        if lo_side >= 0:
            sides.append((c, sv, self.sides[lo_side], True) if client_lo else
                         (sv, c, self.sides[lo_side], False))
        if hi_side >= 0:
            sides.append((sv, c, self.sides[hi_side], False) if client_lo else
                         (c, sv, self.sides[hi_side], True))
        for ep, peer, side, _ in sides:
            ack_first, max_ack, psnd = side.ack_first, ep.max_ack, peer.snd_nxt
            if max_ack is None or psnd is None:  # (ruled out above; for the types)
                return False
            if ep.window == 0 or side.seq_first != ep.snd_nxt or ack_first < max_ack or \
                    ack_first - max_ack >= _HALF:
                return False
            # acks sent before the peer's first segment in the run
            if side.nopeer_last >= 0 and (
                    side.nopeer_last > psnd or psnd - ack_first >= _HALF):
                return False
        view = conn.zeek if zeek_on else None
        if zeek_on and (view is None or not _zeek_quiet(view, c, sv, sides)):
            return False
        # -- quiet: apply ------------------------------------------------------------------
        conn.last = ts_last
        conn.last_frame = run.last_frame
        conn.flags_seen |= run.flags
        for ep, peer, side, _ in sides:
            ep.packets += side.segments
            ep.last_ts = side.last_ts
            peer.keepalive_unanswered = 0
            if side.n_data:
                ep.bytes += side.nbytes
                ep.data_segments += side.n_data
                ep.last_data_ts = side.data_ts
                ep.snd_nxt = side.end_last
            if side.tsval >= 0:
                ep.tsval = side.tsval
            ep.tentative = False
            ep.max_ack = side.ack_last
            ep.window = side.window
        if view is not None:
            _zeek_apply(view, run, sides)
        return True


def zeek_sides(view: ZeekView) -> tuple[ZeekEndpoint, ZeekEndpoint]:
    """Zeek's endpoints of the tracker's client and server."""
    return (view.resp, view.orig) if view.roles_swapped else (view.orig, view.resp)


def _zeek_quiet(view: ZeekView, c: Endpoint, sv: Endpoint,
                sides: list[tuple[Endpoint, Endpoint, RunSide, bool]]) -> bool:
    """Whether Zeek's view takes the run as quiet segments one at a time would."""
    if view.first_packet_seen != 3 or view.is_partial:
        return False
    zc, zs = zeek_sides(view)
    for z in (zc, zs):
        if z.state != Z_ESTABLISHED or z.did_close or z.fin_cnt or \
                z.seq_wraps != z.ack_wraps:
            return False
    if numbers_shape(c, zc, zs) != TIGHT or numbers_shape(sv, zs, zc) != TIGHT:
        return False
    for _, _, side, from_client in sides:
        z, zp = (zc, zs) if from_client else (zs, zc)
        if z.seq_wraps == 0 and (
                (side.seq_first - z.start_seq) & _MASK >= _HALF or
                (side.end_last - z.start_seq) & _MASK >= _HALF):
            return False
        # the fast path's in-order reassembly: data at or past what is acked
        if side.n_data and (z.ack_wraps << 32) + z.ack_seq - z.start_seq > \
                _rel_checked(side.seq_first, z.seq_wraps, z.start_seq):
            return False
        if zp.ack_wraps == 0 and (
                (side.ack_first - zp.start_seq) & _MASK >= _HALF or
                (side.ack_last - zp.start_seq) & _MASK >= _HALF):
            return False
    return True


def _zeek_apply(view: ZeekView, run: Run,
                sides: list[tuple[Endpoint, Endpoint, RunSide, bool]]) -> None:
    """Zeek's view after the run, as its segments one at a time leave it."""
    zc, zs = zeek_sides(view)
    letters: list[tuple[int, str, int]] = []
    hist = view._hist_seen
    for _, _, side, from_client in sides:
        z, zp = (zc, zs) if from_client else (zs, zc)
        z.last_time = side.last_ts
        if side.n_data:
            z.last_seq = side.end_last
        zp.ack_seq = side.ack_last
        shift = 0 if z.is_orig else 16
        if side.n_data and not hist & (_HIST_DATA << shift):
            letters.append((side.first_data, "D" if z.is_orig else "d",
                            _HIST_DATA << shift))
        if side.segments > side.n_data and not hist & (_HIST_ACK << shift):
            letters.append((side.first_ack, "A" if z.is_orig else "a",
                            _HIST_ACK << shift))
    if letters:  # in the order of the segments that wrote them
        letters.sort()
        for _, letter, bit in letters:
            view._hist_seen |= bit
            view._history += letter
    view.packets += run.segments
    view.last_time = run.last_ts
    # each side's reassembler: its data extends the last block, the peer's acks trim
    # (one trim to the highest ack, as their sequence of trims)
    for _, _, side, from_client in sides:
        if not side.n_data:
            continue
        z = zc if from_client else zs
        reasm = z.reassembler
        upper = _rel_checked(side.end_last, z.seq_wraps, z.start_seq)
        if reasm.blocks:
            reasm.blocks[-1][1] = upper
        else:
            reasm.blocks = [[_rel_checked(side.seq_first, z.seq_wraps, z.start_seq), upper]]
        reasm.last_reassem = upper
    for _, _, side, from_client in sides:
        z = zs if from_client else zc  # the acks of this side trim the peer's data
        reasm = z.reassembler
        top = _rel_checked(side.ack_last, z.ack_wraps, z.start_seq)
        if top > reasm.trim_seq:
            reasm.trim_seq = top
            reasm.blocks = [[max(b0, top), b1] for b0, b1 in reasm.blocks if b1 > top]
