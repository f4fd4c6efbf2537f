"""The flow table: five-tuples to connection instances.

With `settings.vlan_tracking`, a tagged segment's key also holds its VLAN ids
(Segment.vlan), above each port's 16 bits: (src, sport | vlan << 16, dst, dport |
vlan << 16). The key stays four fields of the same types (the table, the batch keys of
batch.py and the compiled code keep theirs), the two ends compare as before, and an
untagged segment's key, or any key with tracking off, is the plain five-tuple.

Both directions of a five-tuple share one entry. A new SYN with a new ISN on a tuple
whose connection is over (FIN or RST seen) starts a new connection instance: port reuse.
Connections leave the table when they are finished (both ends CLOSED, TIME_WAIT expired by
capture time), idle too long, or evicted because the table is full; the caller gets each
one exactly once through `pop_finished()` / `drain()`.

Memory stays bounded on endless streams: every connection has one deadline in a heap (its
next timer: TIME_WAIT, SYN/SYN-ACK retries, a detector threshold, or idleness), so a timer
costs O(log n) when it is due and nothing before. An endpoint that never answered holds
nothing, so a SYN nobody (or only a SYN cookie) answered leaves once its timers ran out:
spoofed-source floods do not pile up. The table is ordered by last activity, so evicting
the longest-idle connection when it is full is O(1).
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Iterator
from typing import Final

from mypy_extensions import mypyc_attr

from tcpanalyze.segment import ACK, SYN, Segment, parse_options, seq_gt
from tcpanalyze.settings import Settings
from tcpanalyze.tracker import (
    CLOSE_WAIT,
    CLOSED,
    CLOSING,
    FIN_WAIT_2,
    LAST_ACK,
    LISTEN,
    SYN_RCVD,
    SYN_SENT,
    TIME_WAIT,
    UNKNOWN,
    Connection,
    Endpoint,
    Note,
)

# Ports that say "server" when a capture starts mid-connection (no SYN to tell us).
_SERVICE_PORT_LIMIT: Final = 1024
_EPHEMERAL_START: Final = 32768

Key = tuple[bytes, int, bytes, int]

# A closed connection stays in the table this long (capture time) so that stragglers
# (retransmissions, RSTs answering in-flight data) are not taken for a new connection.
CLOSE_LINGER: Final = 5.0
# A handshake that never completed has no in-flight data to straggle in: its attempt
# leaves after a shorter linger (a spoofed-source flood brings thousands per second).
EMBRYONIC_LINGER: Final = 1.0
# A connection nothing happens to is still looked at this often (capture time), so that
# evidence-based findings (a peer that vanished) appear during a live run.
QUIET_RECHECK: Final = 60.0
# New evidence on a connection is looked at within a second, at most this often.
EVIDENCE_RECHECK: Final = 10.0
# Timer arithmetic in floats: look a hair after the deadline so `expire` sees it passed.
_EPSILON: Final = 1e-6
# The states with a timer of their own (see next_check).
_TIMED: Final = frozenset({TIME_WAIT, FIN_WAIT_2, CLOSE_WAIT, LAST_ACK, CLOSING, SYN_SENT,
                          SYN_RCVD})


def flow_key(seg: Segment, vlan_tracking: bool = False) -> Key:
    sport, dport = seg.sport, seg.dport
    if vlan_tracking and seg.vlan:
        sport |= seg.vlan << 16
        dport |= seg.vlan << 16
    a = (seg.src, sport)
    b = (seg.dst, dport)
    return (seg.src, sport, seg.dst, dport) if a <= b else (seg.dst, dport, seg.src, sport)


def sender_is_client(seg: Segment) -> bool:
    """Decide the roles from the first segment of a connection.

    A bare SYN's sender is the client and a SYN-ACK's receiver is; otherwise the
    side using a service port (below 1024, or the non-ephemeral one) is the server,
    and failing all that the first sender is the client."""
    flags = seg.flags
    if flags & SYN:
        return not flags & ACK
    sport, dport = seg.sport, seg.dport
    if (sport < _SERVICE_PORT_LIMIT) != (dport < _SERVICE_PORT_LIMIT):
        return dport < _SERVICE_PORT_LIMIT
    if (sport >= _EPHEMERAL_START) != (dport >= _EPHEMERAL_START):
        return sport >= _EPHEMERAL_START
    return True


def _gone(ep: Endpoint) -> bool:
    """The endpoint holds no connection: CLOSED, or it never sent anything (a SYN's
    target that never answered keeps no state)."""
    state = ep.state
    return state == CLOSED or (not ep.packets and state in (UNKNOWN, LISTEN))


def _linger(conn: Connection) -> float:
    c = conn.client
    if not conn.handshake_seen and c.packets == c.syn_count and not c.rst_count:
        return EMBRYONIC_LINGER
    return CLOSE_LINGER


def is_done(conn: Connection) -> bool:
    """Nothing more can happen to this connection but stragglers.

    Besides both ends being gone, a "client" that only ever sent SYNs, facing a server
    that gave up on it (SYN-ACK retries exhausted, or a SYN cookie: no state), is done:
    a spoofed source that never existed."""
    c, s = conn.client, conn.server
    state = s.state
    if state == CLOSED or (not s.packets and state in (UNKNOWN, LISTEN)):  # _gone(s)
        return _gone(c) or (c.packets == c.syn_count and not conn.handshake_seen)
    return False


@mypyc_attr(allow_interpreted_subclasses=True)  # (a --jobs worker wraps its `add`)
class FlowTable:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.vlan_tracking = settings.vlan_tracking
        # ordered by last activity (least recent first): eviction pops the front
        self.active: OrderedDict[Key, Connection] = OrderedDict()
        self.next_id = 1
        self.now = 0.0
        self.evicted = 0  # connections pushed out because the table was full
        self.idled = 0  # connections that left after idle_timeout without a close
        self.peak = 0  # most connections tracked at once
        self._finished: list[Connection] = []
        # (deadline, id): when to look at a connection again. Each connection has one live
        # entry (its `due`); entries with another time, or of a connection no longer in
        # `_by_id`, are stale and skipped. Ids, not objects: an evicted connection must
        # not be kept alive by its heap entry until its deadline.
        self._deadlines: list[tuple[float, int]] = []
        self._by_id: dict[int, Connection] = {}
        # A live pipe's (Analysis.track_pauses): the connections that got new evidence
        # (notes) since the input last paused, looked at when it does (Analysis.settle).
        # None for a file: nothing is collected.
        self.evident: dict[int, Connection] | None = None

    def __len__(self) -> int:
        return len(self.active)

    def add(self, seg: Segment) -> tuple[Connection, int, list[Note]]:
        """Feed a segment to its connection, creating or splitting as needed; returns
        the connection, the number of state changes and the notes it caused."""
        src, sport, dst, dport = seg.src, seg.sport, seg.dst, seg.dport
        if self.vlan_tracking and seg.vlan:  # (the module's note)
            sport |= seg.vlan << 16
            dport |= seg.vlan << 16
        # flow_key(seg), comparing (src, sport) <= (dst, dport) without the pairs
        key = (src, sport, dst, dport) if src < dst or (src == dst and sport <= dport) else (
            dst, dport, src, sport)
        active = self.active
        conn = active.get(key)
        ts = seg.ts
        if ts > self.now:
            self.now = ts
        notes: list[Note] = []
        # (only a bare SYN or a long silence can start a new connection: _starts_new)
        if conn is not None and (seg.flags & (SYN | ACK) == SYN
                                 or ts - conn.last > self.settings.idle_timeout) \
                and self._starts_new(conn, seg):
            notes = self._reuse_notes(conn, seg)
            self._finish(conn)
            conn = None
        if conn is None:
            conn = Connection(self.next_id, seg, sender_is_client(seg), self.settings)
            self.next_id += 1
            if notes:
                conn.notes.extend(notes)
            active[key] = conn
            self._by_id[conn.id] = conn
            if len(active) > self.settings.max_connections:
                self._evict_one()
            if len(active) > self.peak:
                self.peak = len(active)
            changes, new_notes = conn.step(seg)
            self._schedule(conn, ts, new=True)
            if (new_notes or notes) and self.evident is not None:
                self.evident[conn.id] = conn
        else:
            active.move_to_end(key)
            changes, new_notes = conn.step(seg)
            if new_notes:
                if ts - conn.evidence_check >= EVIDENCE_RECHECK:
                    # new evidence (a reset, a retransmission): look at it at the next
                    # sweep, so a run reports it within a second of capture time; at most
                    # every few seconds per connection (the detectors read all its notes)
                    conn.evidence_check = ts
                    self._schedule(conn, ts, soon=True)
                elif changes:
                    self._schedule(conn, ts)
                if self.evident is not None:  # a live pipe: also when the input pauses
                    self.evident[conn.id] = conn
            elif changes:
                self._schedule(conn, ts)
        if notes:
            new_notes = notes + new_notes
        return conn, changes, new_notes

    def _starts_new(self, conn: Connection, seg: Segment) -> bool:
        if seg.ts - conn.last > self.settings.idle_timeout:
            return True
        if not seg.flags & SYN or seg.flags & ACK:
            return False
        sender, peer = conn.endpoints(seg)
        if sender.rst_count or peer.rst_count:
            return True  # a retry after a reset is a new attempt, even with the same ISN
        if sender.isn is not None and seg.seq == sender.isn:
            return False  # a retransmitted SYN of this very connection
        conn.expire(seg.ts)
        return conn.is_over()

    def _reuse_notes(self, old: Connection, seg: Segment) -> list[Note]:
        """Evidence about a port reuse, recorded on the new connection."""
        tw = old.time_wait_end()
        if tw is None:
            return [Note("port_reuse", "client", seg.frame, seg.ts, previous=old.id,
                         time_wait=None)]
        tw_ep, tw_since = tw
        # The TIME_WAIT socket is consumed by the new connection (Linux reuses it).
        old._set(tw_ep, CLOSED, seg.frame, seg.ts,
                 "TIME_WAIT ended by a new connection on the same ports")
        sender, _ = old.endpoints(seg)
        isn_advances = sender.snd_nxt is None or seq_gt(seg.seq, sender.snd_nxt)
        ts_advances = False
        if seg.options and sender.tsval is not None:
            tsval = parse_options(seg.options).tsval
            ts_advances = tsval is not None and seq_gt(tsval, sender.tsval)
        return [Note("port_reuse", "client", seg.frame, seg.ts, previous=old.id,
                     time_wait=tw_ep.role, time_wait_age=seg.ts - tw_since,
                     time_wait_frame=old.last_frame, isn_advances=isn_advances,
                     ts_advances=ts_advances,
                     same_side=tw_ep.addr == seg.src and tw_ep.port == seg.sport)]

    # -- timers -----------------------------------------------------------------------

    def next_check(self, conn: Connection, now: float) -> float:
        """The capture time at which something may next happen to `conn` without a
        packet: a TCP timer running out, a detector threshold crossed, the close linger
        or the idle timeout (whichever comes first after `now`)."""
        s = self.settings
        last = conn.last
        if is_done(conn):
            return max(last + _linger(conn), now)
        due = min(last + s.idle_timeout, now + min(QUIET_RECHECK, s.idle_timeout))
        client, server = conn.client, conn.server
        if client.state not in _TIMED and server.state not in _TIMED:
            return due + _EPSILON  # (the usual case: no TCP timer running)
        for ep in (client, server):
            state = ep.state
            if state not in _TIMED:
                continue
            since = ep.since
            # t: the state's timer; t2: a second one (FIN_WAIT_2, SYN_RCVD), else t
            if state == TIME_WAIT:
                t = t2 = since + s.time_wait
            elif state == FIN_WAIT_2:
                t, t2 = since + s.fin_wait_2_threshold, since + s.fin_timeout
            elif state == CLOSE_WAIT:
                t = t2 = since + s.close_wait_threshold
            elif state == SYN_SENT:
                t = t2 = ep.first_syn_ts + s.syn_timeout
            elif state == SYN_RCVD:
                t, t2 = ep.first_syn_ts + 1.5 * s.synack_rto, ep.first_syn_ts + s.synack_timeout
            else:  # LAST_ACK, CLOSING
                t = t2 = since + s.last_ack_threshold
            if now < t < due:
                due = t
            if now < t2 < due:
                due = t2
        return due + _EPSILON

    def _schedule(self, conn: Connection, now: float, new: bool = False,
                  soon: bool = False) -> None:
        due = now + _EPSILON if soon else self.next_check(conn, now)
        # Only an earlier deadline needs a new entry; a later one is found when the
        # current entry comes up.
        if new or due < conn.due:
            conn.due = due
            heapq.heappush(self._deadlines, (due, conn.id))

    # -- leaving the table ------------------------------------------------------------

    def _finish(self, conn: Connection) -> None:
        if conn.finished:
            return
        conn.finished = True
        vlan = conn.vlan << 16  # (0 unless vlan_tracking: the module's note)
        key = (conn.client.addr, conn.client.port | vlan, conn.server.addr,
               conn.server.port | vlan)
        a = (key[0], key[1])
        b = (key[2], key[3])
        if a > b:
            key = (key[2], key[3], key[0], key[1])
        if self.active.get(key) is conn:
            del self.active[key]
        self._by_id.pop(conn.id, None)
        self._finished.append(conn)

    def _evict_one(self) -> None:
        """Table full: push out the connection idle the longest (counted, not lost: it
        is closed like any other, its findings and counts kept)."""
        _, oldest = self.active.popitem(last=False)
        self.evicted += 1
        oldest.evicted = True
        oldest.expire(self.now)
        self._finish(oldest)

    def sweep(self, now: float) -> list[Connection]:
        """Run timers up to capture time `now`; returns the connections still open
        whose deadlines passed (for duration-based detectors)."""
        due: list[Connection] = []
        by_id = self._by_id
        if len(self._deadlines) > 2 * len(by_id) + 4096:
            # mostly entries of connections gone early (evicted, split) or rescheduled:
            # drop them (amortised O(1) per entry)
            self._deadlines = [e for e in self._deadlines
                               if e[1] in by_id and by_id[e[1]].due == e[0]]
            heapq.heapify(self._deadlines)
        deadlines = self._deadlines
        idle_timeout = self.settings.idle_timeout
        while deadlines and deadlines[0][0] <= now:
            when, conn_id = heapq.heappop(deadlines)
            conn = by_id.get(conn_id)
            if conn is None or conn.due != when:
                continue  # gone already, or a stale entry (rescheduled earlier)
            conn.expire(now)
            if is_done(conn) and now - conn.last >= _linger(conn):
                self._finish(conn)
                continue
            if now - conn.last > idle_timeout:
                self.idled += 1
                self._finish(conn)
                continue
            due.append(conn)
            nxt = self.next_check(conn, now)
            conn.due = nxt
            heapq.heappush(deadlines, (nxt, conn.id))
        return due

    def pop_finished(self) -> list[Connection]:
        out, self._finished = self._finished, []
        return out

    def drain(self, end: float) -> Iterator[Connection]:
        """End of capture: every remaining connection, timers fired up to `end`. Each
        leaves the table as it is handed out, so a caller that summarises and drops
        them never holds the whole table and all the summaries at once."""
        yield from self.pop_finished()
        self._deadlines.clear()
        active = self.active
        for key in list(active):
            conn = active.get(key)
            if conn is None:
                continue
            conn.expire(end)
            self._finish(conn)
            yield from self.pop_finished()
        self._by_id.clear()
