"""A `--jobs` worker's ledger: where each thing happened that the merge must put in one
process's order.

A position counts frames in the order they are analysed (time order, which for a
multi-interface pcapng is not frame-number order): the frame being fed, or past every
frame at the end. The worker's Analysis, its aggregate detector and its batch feeder
write here as they go (`Analysis.ledger`, None in one process), as plain calls from the
compiled core: the Python hooks this replaced (wrapped `add` and `_emit`, a logging
detector subclass) cost a worker 0.26 s of its 2.58 s of CPU on the bench capture.
parallel.py reads the ledger for the merge and moves its events to a file in chunks;
nothing here does I/O.
"""

from __future__ import annotations

from array import array
from typing import Any, Final

from tcpanalyze.flows import FlowTable

__all__ = ["ATTEMPT", "COMPLETION", "EMISSION", "LOOK", "OUTCOME", "Ledger"]

# An event of the aggregate evidence: (position, phase, kind, ...). At one position one
# process counts an attempt or completion first (phase 0: as the segment is added), then
# looks at the aggregates (phase 1: a timer sweep), then closes connections and emits
# their findings (phase 2).
ATTEMPT: Final = 0
COMPLETION: Final = 1
OUTCOME: Final = 2
LOOK: Final = 3
EMISSION: Final = 4


class Ledger:
    """Positions of a worker's new connections, its table sizes, its findings, and its
    aggregate evidence (`events`, taken away in chunks by the worker)."""

    def __init__(self, table: FlowTable, dealt: bool) -> None:
        self.table = table  # the worker's: its size is recorded as it changes
        self.dealt = dealt  # positions from `order` (a dealt batch), else base + row + 1
        self.order: list[int] = []  # the position of each row of the batch being fed
        self.base = 0  # frames analysed before the batch being fed
        self.position = 0
        # (position, local id) of each connection created, in order
        self.created = array("q")
        # (position, phase, tracked): the table's size whenever it changed, right after
        # the flow table's add (phase 1, where one process checks its peak) or at the end
        # of the frame (phase 2, after timers); the parent adds them up for the peak
        self.sizes = array("q")
        self.emitted_at = array("q")  # the position at which each finding was emitted
        self.events: list[tuple[Any, ...]] = []
        self._tracked = 0
        self._last_id = 0

    def at(self, row: int) -> None:
        """Row `row` of the batch is being fed."""
        self.position = self.order[row] if self.dealt else self.base + row + 1

    def added(self, conn_id: int) -> None:
        """A segment went into the flow table, of connection `conn_id`."""
        tracked = len(self.table.active)
        if conn_id > self._last_id:  # ids only grow: a new connection
            self._last_id = conn_id
            self.created.append(self.position)
            self.created.append(conn_id)
        if tracked != self._tracked:
            self._size(1, tracked)

    def settled(self) -> None:
        """The frame is done (timers fired, connections closed)."""
        tracked = len(self.table.active)
        if tracked != self._tracked:
            self._size(2, tracked)

    def _size(self, phase: int, tracked: int) -> None:
        self._tracked = tracked
        sizes = self.sizes
        sizes.append(self.position)
        sizes.append(phase)
        sizes.append(tracked)

    def emitted(self, count: int, conn_id: int, attempt: Any) -> None:
        """`count` findings were emitted (for connection `conn_id`, 0: none); `attempt`:
        (client, server, port) when that connection's client sent a SYN, else None (what
        one process asks before it keeps them: an attempt toward a reported flood or from
        a reported scanner)."""
        position = self.position
        for _ in range(count):
            self.emitted_at.append(position)
        self.events.append((position, 2, EMISSION, conn_id, count, attempt))

    def attempt(self, client: bytes, server: bytes, port: int, conn_id: int, frame: int,
                ts: float) -> None:
        self.events.append((self.position, 0, ATTEMPT, client, server, port, conn_id,
                            frame, ts))

    def completion(self, client: bytes, server: bytes, port: int) -> None:
        self.events.append((self.position, 0, COMPLETION, client, server, port))

    def outcome(self, client: bytes, server: bytes, port: int, done: bool, synacks: int,
                cookie_hint: bool, cookie: bool, refused: bool) -> None:
        self.events.append((self.position, 2, OUTCOME, client, server, port, done, synacks,
                            cookie_hint, cookie, refused))

    def look(self) -> None:
        """The aggregates were looked at (a timer sweep, or the end)."""
        self.events.append((self.position, 1, LOOK))
