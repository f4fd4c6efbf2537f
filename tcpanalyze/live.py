"""Live runs: ending cleanly on Ctrl-C/SIGTERM, and the `watch` view.

`Interrupt` turns SIGINT and SIGTERM into a request to stop reading. While the reader
waits for input the handler raises KeyboardInterrupt (a blocked pipe read would otherwise
wait for the next packet); while a frame is being analysed it only sets `requested`, so
no connection is left half-updated. The run then closes the books as at the end of a
file: timers fire as of the last packet's time, and the final report is printed.

`WatchView` is a rich renderable for `tcpanalyze watch -`: packets and new connections
per second, the connections tracked now by state on each side (a live `ss -tan` for the
wire), and the newest findings. It is drawn by rich's refresh thread about once a second
and only reads counters the analysis keeps anyway.
"""

from __future__ import annotations

import signal
import time
from collections import Counter, deque
from types import FrameType, TracebackType
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from tcpanalyze.analysis import Analysis
from tcpanalyze.report import Finding
from tcpanalyze.tracker import STATES

SEVERITY_STYLES = {"high": "bold red", "medium": "yellow", "low": "cyan", "info": "dim"}
NEWEST_FINDINGS = 8


class Interrupt:
    """SIGINT/SIGTERM end the reading between frames; use as a context manager."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self.waiting = False  # the reader is blocked on input: safe to raise there
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        self.signal = signum
        if self.waiting:
            raise KeyboardInterrupt

    def __enter__(self) -> Interrupt:
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class WatchView:
    """What `watch` shows, rebuilt from the analysis on every refresh."""

    def __init__(self, analysis: Analysis, source: str) -> None:
        self.analysis = analysis
        self.source = "<stdin>" if source == "-" else source
        self.findings: deque[Finding] = deque(maxlen=NEWEST_FINDINGS)
        self.findings_total = 0
        self._started = time.monotonic()
        self._last = (self._started, 0, 0)  # (wall time, segments, connections) at last draw
        self._rates = (0.0, 0.0)

    def on_finding(self, finding: Finding) -> None:
        self.findings.append(finding)
        self.findings_total += 1

    def _update_rates(self) -> tuple[float, float]:
        now = time.monotonic()
        then, segments, conns = self._last
        seg_now = self.analysis.segments
        conn_now = self.analysis.table.next_id - 1
        if now - then >= 0.5:
            self._rates = ((seg_now - segments) / (now - then),
                           (conn_now - conns) / (now - then))
            self._last = (now, seg_now, conn_now)
        return self._rates

    def state_counts(self) -> tuple[Counter[str], Counter[str]]:
        """Connections tracked now, by client state and by server state."""
        # list() copies the table in one C call, under the GIL: the reading thread
        # cannot change it midway.
        conns = list(self.analysis.table.active.values())
        client: Counter[str] = Counter()
        server: Counter[str] = Counter()
        for conn in conns:
            client[conn.client.state] += 1
            server[conn.server.state] += 1
        return client, server

    def __rich__(self) -> RenderableType:
        a = self.analysis
        pps, cps = self._update_rates()
        client, server = self.state_counts()
        elapsed = time.monotonic() - self._started
        head = Text.assemble(
            ("tcpanalyze watch ", "bold"), (self.source, "bold cyan"),
            f"   {elapsed:,.0f} s   {pps:,.0f} packets/s   {cps:,.0f} new connections/s\n",
            f"{a.segments:,} TCP packets, {a.table.next_id - 1:,} connections "
            f"({len(a.table):,} tracked, {a.connections_total:,} closed, "
            f"{a.table.evicted:,} evicted), {self.findings_total:,} findings "
            "(Ctrl-C: stop and report)")
        states = Table(title="Connections now (like ss -tan, both ends)", title_justify="left",
                       expand=False)
        states.add_column("state")
        states.add_column("client side", justify="right")
        states.add_column("server side", justify="right")
        for state in STATES:
            if client[state] or server[state]:
                states.add_row(state, f"{client[state]:,}", f"{server[state]:,}")
        newest = Table(title="Newest findings", title_justify="left", expand=True)
        newest.add_column("severity")
        newest.add_column("kind")
        newest.add_column("summary", ratio=1, overflow="fold")
        for f in reversed(self.findings):
            newest.add_row(Text(f.severity, SEVERITY_STYLES.get(f.severity, "")), f.kind,
                           f.summary)
        return Group(head, states, newest)


def live_display(view: WatchView, console: Console) -> Live:
    """A rich Live of `view`, redrawn once a second; it vanishes when stopped (the final
    report follows)."""
    return Live(view, console=console, refresh_per_second=1, transient=True,
                redirect_stdout=False, redirect_stderr=False)
