"""The flow table: five-tuples to connection instances.

Both directions of a five-tuple share one entry. A new SYN with a new ISN on a tuple
whose connection is over (FIN or RST seen) starts a new connection instance: port reuse.
Connections leave the table when they are finished (both ends CLOSED, TIME_WAIT expired by
capture time), idle too long, or evicted because the table is full; the caller gets each
one exactly once through `pop_finished()` / `drain()`.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

from tcpanalyze.segment import ACK, SYN, Segment, parse_options, seq_gt
from tcpanalyze.settings import Settings
from tcpanalyze.tracker import (
    CLOSED,
    TIME_WAIT,
    Change,
    Connection,
    Note,
)

# Ports that say "server" when a capture starts mid-connection (no SYN to tell us).
_SERVICE_PORT_LIMIT = 1024
_EPHEMERAL_START = 32768

Key = tuple[bytes, int, bytes, int]

# A closed connection stays in the table this long (capture time) so that stragglers
# (retransmissions, RSTs answering in-flight data) are not taken for a new connection.
CLOSE_LINGER = 5.0


def flow_key(seg: Segment) -> Key:
    a = (seg.src, seg.sport)
    b = (seg.dst, seg.dport)
    return (seg.src, seg.sport, seg.dst, seg.dport) if a <= b else (
        seg.dst, seg.dport, seg.src, seg.sport)


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


class FlowTable:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.active: dict[Key, Connection] = {}
        self.next_id = 1
        self.now = 0.0
        self.evicted = 0  # connections pushed out because the table was full
        self._finished: list[Connection] = []
        # (deadline, id, connection): when to look at a connection again (timers, idle)
        self._deadlines: list[tuple[float, int, Connection]] = []
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self.active)

    def add(self, seg: Segment) -> tuple[Connection, list[Change], list[Note]]:
        """Feed a segment to its connection, creating or splitting as needed."""
        key = flow_key(seg)
        conn = self.active.get(key)
        ts = seg.ts
        if ts > self.now:
            self.now = ts
        notes: list[Note] = []
        if conn is not None and self._starts_new(conn, seg):
            notes = self._reuse_notes(conn, seg)
            self._finish(conn)
            conn = None
        if conn is None:
            conn = Connection(self.next_id, seg, sender_is_client(seg), self.settings)
            self.next_id += 1
            if notes:
                conn.notes.extend(notes)
            self.active[key] = conn
            heapq.heappush(self._deadlines, (ts + 1.0, conn.id, conn))
            if len(self.active) > self.settings.max_connections:
                self._evict_one()
        changes, new_notes = conn.feed(seg)
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

    # -- leaving the table ------------------------------------------------------------

    def _finish(self, conn: Connection) -> None:
        if conn.finished:
            return
        conn.finished = True
        key = (conn.client.addr, conn.client.port, conn.server.addr, conn.server.port)
        a = (key[0], key[1])
        b = (key[2], key[3])
        if a > b:
            key = (key[2], key[3], key[0], key[1])
        if self.active.get(key) is conn:
            del self.active[key]
        self._finished.append(conn)

    def _evict_one(self) -> None:
        """Table full: push out the connection idle the longest (counted, not lost)."""
        oldest = min(self.active.values(), key=lambda c: c.last)
        self.evicted += 1
        oldest.expire(self.now)
        self._finish(oldest)

    def sweep(self, now: float) -> list[Connection]:
        """Run timers up to capture time `now`; returns the connections still open
        whose deadlines passed (for duration-based detectors)."""
        due: list[Connection] = []
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            _, _, conn = heapq.heappop(deadlines)
            if conn.finished:
                continue
            conn.expire(now)
            if conn.client.state == CLOSED and conn.server.state == CLOSED \
                    and now - conn.last >= CLOSE_LINGER:
                self._finish(conn)
                continue
            if now - conn.last > self.settings.idle_timeout:
                self._finish(conn)
                continue
            due.append(conn)
            heapq.heappush(deadlines, (now + self._recheck(conn), conn.id, conn))
        return due

    def _recheck(self, conn: Connection) -> float:
        # Closing connections are looked at every second; quiet ones rarely.
        c, s = conn.client.state, conn.server.state
        if c == CLOSED and s == CLOSED:
            return CLOSE_LINGER
        if TIME_WAIT in (c, s) or c != s:
            return 1.0
        return min(60.0, self.settings.idle_timeout)

    def pop_finished(self) -> list[Connection]:
        out, self._finished = self._finished, []
        return out

    def drain(self, end: float) -> Iterator[Connection]:
        """End of capture: every remaining connection, timers fired up to `end`."""
        for conn in list(self.active.values()):
            conn.expire(end)
            self._finish(conn)
        yield from self.pop_finished()
