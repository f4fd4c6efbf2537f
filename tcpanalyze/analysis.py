"""Wiring the stages: segments in, findings and a report out.

`Analysis` is sans-I/O: `feed(segment)` returns the findings decided at that segment (new
evidence is looked at by the sweep of capture time, once a second) and `finish()` closes
the books. A live pipe also calls `settle()` whenever its input pauses: the findings the
segments fed so far decide come out then, not when a later packet runs the next sweep.
`analyze()` is the thin loop that drives it from a capture reader and decoder.

Live runs (a pipe that may never end) use `keep_connections=False` and `zeek_view=False`:
only connections with findings are summarised, and no Zeek view is kept per connection,
so memory follows the connections open at once, not the connections seen. The end of a
live run (EOF or Ctrl-C) is, as for a file, the time of the last packet: timers still
running then are not fired by the wall clock.
"""

from __future__ import annotations

import gc
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Final

from mypy_extensions import mypyc_attr

from tcpanalyze.detectors import ABSORBED, RATE_HISTORY, AggregateDetector, ConnectionDetector
from tcpanalyze.flows import FlowTable
from tcpanalyze.ledger import Ledger
from tcpanalyze.report import (
    FINDING_KINDS,
    PACKET_CLASSES,
    SEVERITY_RANK,
    CaptureSummary,
    ConnectionSummary,
    Finding,
    Report,
    Timeline,
)
from tcpanalyze.segment import ACK, FIN, RST, SYN, Segment, format_endpoint, vlan_ids
from tcpanalyze.settings import Settings
from tcpanalyze.summaries import SummaryList
from tcpanalyze.tracker import Connection, final_states
from tcpanalyze.zeek import ZeekView, first_packet_flips


class ZeekRecord:
    """One record as Zeek would log it: Zeek's originator, its timers' splits."""

    __slots__ = ("end", "orig", "orig_pkts", "resp", "resp_pkts", "start", "view")

    def __init__(self, seg: Segment) -> None:
        flip = first_packet_flips(seg)
        self.orig = (seg.dst, seg.dport) if flip else (seg.src, seg.sport)
        self.resp = (seg.src, seg.sport) if flip else (seg.dst, seg.dport)
        self.view = ZeekView(flip)
        self.start = self.end = seg.ts
        self.orig_pkts = self.resp_pkts = 0

    def to_dict(self) -> dict[str, Any]:
        orig, resp = self.orig, self.resp
        o_pkts, r_pkts = self.orig_pkts, self.resp_pkts
        view = self.view
        # Zeek's sizes come from sequence numbers (TCP_Endpoint::Size): bytes never
        # captured count, retransmitted ones once (the connection's own `bytes` are the
        # payload seen)
        o_bytes: int | None = view.orig.size(view.resp)
        r_bytes: int | None = view.resp.size(view.orig)
        # Zeek's duration ends at its connection's last time, which stops moving once
        # both sides closed (the ACK of the last FIN is not in it); a record of no
        # duration (one packet) logs neither duration nor sizes (conn/main.zeek)
        last = view.last_time if view.last_time is not None else self.start
        duration: float | None = last - self.start
        if not duration or duration <= 0.0:
            duration = o_bytes = r_bytes = None
        if view.roles_swapped:  # (view.orig is already Zeek's originator)
            orig, resp = resp, orig
            o_pkts, r_pkts = r_pkts, o_pkts
        return {"orig": format_endpoint(*orig), "resp": format_endpoint(*resp),
                "start": self.start, "end": self.end, "duration": duration,
                "conn_state": view.conn_state(), "history": view.history(),
                "orig_pkts": o_pkts, "resp_pkts": r_pkts,
                "orig_bytes": o_bytes, "resp_bytes": r_bytes}

_KIND_ORDER: Final = {kind: i for i, kind in enumerate(FINDING_KINDS)}

LINKTYPE_NAMES: Final = {
    0: "NULL", 1: "EN10MB", 9: "PPP", 12: "RAW", 14: "RAW", 101: "RAW", 104: "C_HDLC",
    108: "LOOP", 113: "LINUX_SLL", 228: "IPV4", 229: "IPV6", 239: "NFLOG",
    276: "LINUX_SLL2",
}


def flags_seen_text(flags: int) -> str:
    return _FLAGS_SEEN_TEXT[flags & (SYN | ACK | FIN | RST)]


_FLAGS_SEEN_TEXT: Final = {
    flags: "".join(letter for bit, letter in ((SYN, "S"), (ACK, "A"), (FIN, "F"), (RST, "R"))
                   if flags & bit)
    for flags in range((SYN | ACK | FIN | RST) + 1)
}


# (tests watch it through subclasses: ClosingAnalysis in tests/test_batch.py)
@mypyc_attr(allow_interpreted_subclasses=True)
@dataclass
class Analysis:
    settings: Settings = field(default_factory=Settings)
    capture: str | None = None  # capture name stamped on findings (multi-capture runs)
    keep_connections: bool = True  # False: keep only connections with findings (live runs)
    zeek_records: bool = False  # also split connections into records as Zeek would
    zeek_view: bool = True  # Zeek's conn_state/history per connection (off: less memory)
    findings: list[Finding] = field(default_factory=list)
    # every connection's summary for the report (on disk past settings.summaries_in_memory)
    connections: SummaryList = field(default_factory=SummaryList)
    connections_total: int = 0

    def __post_init__(self) -> None:
        self.connections.spill_at = self.settings.summaries_in_memory
        self.table = FlowTable(self.settings)
        self.connection_detector = ConnectionDetector(self.settings)
        self.aggregates = AggregateDetector(self.settings)
        if not self.keep_connections:  # a live run: per-second SYN counts kept bounded
            self.aggregates.rate_history = RATE_HISTORY
        self._next_sweep = 0.0
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self.segments = 0  # fed so far (a live view's packet rate)
        # Findings of the end already decided when the workers' evidence was replayed
        # (parallel._replay_aggregates): finish() hands them out with its own.
        self.found_at_end: list[Finding] = []
        # a --jobs worker's (parallel.py): where its connections are created, its table
        # changes size and its findings are emitted
        self.ledger: Ledger | None = None
        # a --jobs worker's whose findings are streamed: each finding as emitted (one
        # process prints it then), before the connection's end brings it up to date
        self.streamed: list[Finding] | None = None

    # -- streaming API ----------------------------------------------------------------

    def feed(self, seg: Segment) -> list[Finding]:
        ts = seg.ts
        self.segments += 1
        if self.first_ts is None:
            self.first_ts = ts
            self._next_sweep = ts + 1.0
        if self.last_ts is None or ts > self.last_ts:
            self.last_ts = ts
        table = self.table
        conn, _, _ = table.add(seg)
        if self.ledger is not None:
            self.ledger.added(conn.id)
        client = conn.client
        if self.zeek_view:
            view = conn.zeek
            if view is None:
                view = conn.zeek = ZeekView(conn.flipped)
            view.feed(seg, seg.sport == client.port and seg.src == client.addr)
        if self.zeek_records:
            self._zeek_record(conn, seg)
        if conn.completion_counted:
            pass  # (the usual case: neither an attempt nor a completion to count)
        elif client.packets + conn.server.packets == 1 and seg.flags & (SYN | ACK) == SYN:
            self.aggregates.on_attempt(conn, seg.frame, ts)
        elif client.syn_count and (conn.handshake_seen or client.packets > client.syn_count):
            # Counted as the handshake completes, not when the connection ends (after
            # TIME_WAIT): a busy server's completion ratio must be current.
            conn.completion_counted = True
            self.aggregates.on_completed(conn)
        new: list[Finding] = []
        if ts >= self._next_sweep:
            new.extend(self._sweep(ts))
        if table._finished:
            for done in table.pop_finished():
                new.extend(self._close(done, ts))
        if len(new) > 1:  # several at one frame: in connection order, as --jobs merges them
            new.sort(key=_stream_order)
        return new

    def finish(self) -> list[Finding]:
        """End of input: fire timers as of the last packet, close every connection."""
        end = self.last_ts if self.last_ts is not None else 0.0
        new = self._sweep(end) + self.found_at_end
        for conn in self.table.drain(end):
            new.extend(self._close(conn, end))
        new.extend(self._emit(self.aggregates.findings(final=True)))
        # Per-connection findings absorbed by an aggregate (a flood's or a scan's members).
        if self.aggregates.members:
            self.findings = [f for f in self.findings if not self.aggregates.absorbs(f)]
            keep = {f.connection for f in self.findings}
            members = self.aggregates.members

            def unabsorb(summary: ConnectionSummary) -> None:
                if summary.id in members and summary.id not in keep:
                    summary.findings = [k for k in summary.findings if k not in ABSORBED]

            self.connections.apply(unabsorb)
            if not self.keep_connections:  # kept only for findings that are now absorbed
                self.connections = SummaryList((c for c in self.connections if c.findings),
                                               spill_at=self.settings.summaries_in_memory)
        self.findings.sort(key=lambda f: (f.time, _KIND_ORDER.get(f.kind, 99),
                                          f.connection or 0))
        self.connections.sort(key=lambda c: c.id)
        return sorted((f for f in new if not self.aggregates.absorbs(f)), key=_stream_order)

    def track_pauses(self) -> None:
        """The input is a live pipe that may pause: collect the connections that get new
        evidence, for `settle()` (a file never pauses and collects nothing)."""
        if self.table.evident is None:
            self.table.evident = {}

    def settle(self) -> list[Finding]:
        """The input paused (a pipe with nothing more to read now): the findings that
        the packets fed so far already decide, without waiting for a later packet to run
        the next sweep. Connections with new evidence since the last pause are looked at
        as of the last packet's time, the aggregates first (as a sweep does: a flood's or
        scan's members are then absorbed, not printed). Timers are not run: what needs
        capture time to pass (a CLOSE_WAIT threshold, a SYN nobody answers) still waits
        for a packet that shows it has."""
        evident = self.table.evident
        if not evident or self.last_ts is None:
            return []
        self.table.evident = {}
        now = self.last_ts
        new = self._emit(self.aggregates.findings())
        detector = self.connection_detector
        for conn in evident.values():
            if not conn.finished:  # (a closed one was looked at as it closed)
                new.extend(self._emit(detector.findings(conn, now, final=False), conn))
        if len(new) > 1:
            new.sort(key=_stream_order)
        return new

    # -- internals --------------------------------------------------------------------

    def _sweep(self, now: float) -> list[Finding]:
        self._next_sweep = now + 1.0
        new = self._emit(self.aggregates.findings())
        for conn in self.table.sweep(now):
            new.extend(self._emit(self.connection_detector.findings(conn, now, final=False),
                                  conn))
        return new

    def _close(self, conn: Connection, now: float) -> list[Finding]:
        server = conn.server
        if server.state == "SYN_RCVD" and server.synack_count == 1 and \
                self.aggregates.answers_with_cookies(server.addr, server.port):
            # Too young to judge alone, but this port answers statelessly.
            conn._set(server, "CLOSED", 0, now,
                      "no state kept: this server port was answering with SYN cookies")
        self.aggregates.on_connection_end(conn)
        found = self._emit(self.connection_detector.findings(conn, max(now, conn.last),
                                                             final=True), conn)
        self.connections_total += 1
        emitted = conn.emitted
        kinds = sorted({kind for kind, _ in emitted},
                       key=lambda k: (_KIND_ORDER.get(k, 99), k)) if emitted else []
        if conn.absorbed:
            kinds = [k for k in kinds if k not in ABSORBED]
        if self.keep_connections or kinds:
            self.connections.append(self._summarize(conn, kinds))
        return found

    @staticmethod
    def _zeek_record(conn: Connection, seg: Segment) -> None:
        records: list[ZeekRecord] | None = conn.zeek_records
        if records is None:
            records = conn.zeek_records = []
        from_orig = False
        if records:
            rec = records[-1]
            from_orig = (seg.src, seg.sport) == rec.orig
            if rec.view.starts_new_record(seg, from_orig, seg.ts):
                records.append(ZeekRecord(seg))
        else:
            records.append(ZeekRecord(seg))
        rec = records[-1]
        from_orig = (seg.src, seg.sport) == rec.orig
        # Zeek believes the IP header's length, and keeps payload the capture cut short
        # out of its reassembly (see Segment.payload_cut, .ip_short)
        rec.view.feed(seg._replace(payload_len=seg.payload_len + seg.ip_short)
                      if seg.ip_short else seg, from_orig, not seg.payload_cut)
        rec.end = seg.ts
        if from_orig:
            rec.orig_pkts += 1
        else:
            rec.resp_pkts += 1

    def _in_reported_aggregate(self, conn: Connection) -> bool:
        """The connection is an attempt toward a target already reported as flooded, or
        from a source already reported as scanning: its handshake findings are part of
        that aggregate (decided here at once, so a long flood neither prints nor keeps a
        finding per spoofed source)."""
        reported = self.aggregates._reported
        if not reported or not conn.client.syn_count:
            return False
        return (("flood", (conn.server.addr, conn.server.port)) in reported
                or ("scan", conn.client.addr) in reported)

    def _emit(self, findings: Iterable[Finding], conn: Connection | None = None
              ) -> list[Finding]:
        out = []
        absorbed = False
        if conn is not None and findings:
            absorbed = self._in_reported_aggregate(conn)
            if absorbed:
                conn.absorbed = True
        for finding in findings:
            if self.aggregates.absorbs(finding) or (absorbed and finding.kind in ABSORBED):
                continue
            finding.capture = self.capture
            self.findings.append(finding)
            out.append(finding)
        if self.streamed is not None:
            self.streamed += [replace(f, frames=list(f.frames), details=dict(f.details))
                              for f in out]
        if self.ledger is not None and out:
            attempt = None if conn is None or not conn.client.syn_count else (
                conn.client.addr, conn.server.addr, conn.server.port)
            self.ledger.emitted(len(out), conn.id if conn is not None else 0, attempt)
        return out

    def _summarize(self, conn: Connection, kinds: list[str]) -> ConnectionSummary:
        c, s = conn.client, conn.server
        client_state, server_state = final_states(conn)
        view = conn.zeek
        return ConnectionSummary(
            id=conn.id, client=c.name, server=s.name, start=conn.start, end=conn.last,
            packets_client=c.packets, packets_server=s.packets, bytes_client=c.bytes,
            bytes_server=s.bytes, client_state=client_state, server_state=server_state,
            conn_state=view.conn_state() if view is not None else "",
            history=view.history() if view is not None else "",
            findings=kinds, flags_seen=flags_seen_text(conn.flags_seen),
            quality=conn.quality(),
            timeline=Timeline.packed(*conn.packed_timeline()),
            capture=self.capture,
            zeek_records=[r.to_dict() for r in conn.zeek_records or ()],
            vlan=vlan_ids(conn.vlan) if self.settings.vlan_tracking else None)


# -- driving the analysis from a capture ---------------------------------------------------


def analyze(path: str, settings: Settings | None = None, *,
            decoder: str = "dpkt", verify_checksums: bool = False, zeek_records: bool = False,
            on_finding: Callable[[Finding], Any] | None = None,
            on_progress: Callable[[int, int], Any] | None = None,
            capture_name: str | None = None, keep_connections: bool = True,
            stdin: Any = None) -> Report:
    """Analyse one capture; read faults end the reading, never the report."""
    settings = settings or Settings()
    analysis = Analysis(settings, capture=capture_name, keep_connections=keep_connections,
                        zeek_records=zeek_records)
    summary = read_into(analysis, path, decoder=decoder, verify_checksums=verify_checksums,
                        on_finding=on_finding, on_progress=on_progress, stdin=stdin)
    for finding in analysis.finish():
        if on_finding is not None:
            on_finding(finding)
    return build_report([summary], analysis)


def read_into(analysis: Analysis, path: str, *, decoder: str = "dpkt",
              verify_checksums: bool = False,
              on_finding: Callable[[Finding], Any] | None = None,
              on_progress: Callable[[int, int], Any] | None = None,
              stdin: Any = None, interrupt: Any = None, batch: bool = True,
              feeder: Any = None) -> CaptureSummary:
    """Feed every segment of a capture into `analysis`; returns the capture summary.

    `interrupt` (live.Interrupt) makes Ctrl-C/SIGTERM end the reading between two
    frames, never inside one: the summary then says `interrupted` and, for stdin, that is
    a normal end of a live run (no error). `feeder`: the class that feeds batches of
    columns (batch.BatchFeed; tests pass a subclass that watches it)."""
    if decoder == "tshark":
        from tcpanalyze.tshark import read_tshark_into

        if interrupt is None:
            return read_tshark_into(analysis, path, on_finding=on_finding, stdin=stdin)
        interrupt.waiting = True  # no clean point between frames: Ctrl-C raises at once
        try:
            return read_tshark_into(analysis, path, on_finding=on_finding, stdin=stdin)
        finally:
            interrupt.waiting = False
    from tcpanalyze.capture import CaptureError, open_capture, time_ordered
    from tcpanalyze.decode import Decoder

    reader = open_capture(path, stdin=stdin)
    dec = Decoder(verify_checksums=verify_checksums)
    from tcpanalyze.fastpath import make_feed

    frames = 0
    # Connection state holds no reference cycles (tests/test_general_path.py), so the
    # cyclic collector has little to find, but by default it walks every tracked object
    # every few thousand allocations: a fifth of the run on a large file. Fewer passes.
    thresholds = gc.get_threshold()
    gc.set_threshold(100_000, 50, 100)
    # Thousands of frames at a time into columns (columns.py, batch.py), Ctrl-C between
    # two batches or while a pipe is waited for. A pipe's batches are what it holds when
    # read (capture._fill): a live stream's findings come at once, a file sent through a
    # pipe goes in large batches.
    columnar = batch
    feed = make_feed(analysis)  # analysis.feed, with quiet segments short-cut
    decode = dec.decode
    try:
        if columnar:
            reader.interrupt = interrupt
            frames = _read_batches(analysis, reader, dec, feed, on_finding, on_progress,
                                   interrupt, feeder)
        frames_in = iter(()) if columnar else time_ordered(reader)
        if interrupt is not None:
            frames_in = _until_interrupted(frames_in, interrupt)
        for frame in frames_in:
            frames += 1
            _feed_frames((frame,), decode, feed, on_finding)
            if on_progress is not None and not frames & 0x3FFF:
                on_progress(frames, reader.position)
    except CaptureError as exc:  # a reader that raises instead of setting .error
        reader.error = exc
    except KeyboardInterrupt:
        if interrupt is None:
            raise
    finally:
        gc.set_threshold(*thresholds)
    interrupted = interrupt is not None and interrupt.requested
    error = reader.error
    if interrupted and error is None and path != "-":
        error = CaptureError(path, f"interrupted after {frames} frame(s)")
    counts = dict(dec.counts)
    skipped = {name: counts.get(name, 0) for name in PACKET_CLASSES if name != "tcp"}
    return CaptureSummary(
        path=path, format=reader.format,
        linktypes=sorted(LINKTYPE_NAMES.get(lt, f"LINKTYPE_{lt}") for lt in reader.linktypes),
        packets=frames, tcp_segments=counts.get("tcp", 0), skipped=skipped,
        first_ts=analysis.first_ts, last_ts=analysis.last_ts,
        error=str(error) if error is not None else None, decoder="dpkt")


def _regular_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _read_batches(analysis: Analysis, reader: Any, dec: Any,
                  feed: Callable[[Segment], list[Finding]],
                  on_finding: Callable[[Finding], Any] | None,
                  on_progress: Callable[[int, int], Any] | None,
                  interrupt: Any = None, feeder: Any = None) -> int:
    """The columnar path; returns the frames read. Errors are left in `reader.error`, as
    for frame-by-frame reading. An interrupt ends the reading between two batches (a
    fraction of a second of work on a regular file) or while a pipe is waited for.
    `feed` (fastpath.make_feed) takes the frames of a pipe's small reads one at a time."""
    from tcpanalyze.capture import capture_batches

    # the columnar path is loaded at the first large batch: numpy with it (a quiet live
    # stream, a frame or a few at a time, never needs it)
    batch_feed: Any = None
    decode_columns: Any = None
    frames = 0
    # a pipe's few new frames (a live stream) go one at a time: cheaper than columns
    small = _FEW_FRAMES if reader.is_pipe else 0
    if small:  # a pipe: what the packets read so far decide is found when it pauses
        analysis.track_pauses()
    try:
        for batch in capture_batches(reader, small=small):
            if batch[0] == "frames" and len(batch[1]) < small:
                _feed_frames(batch[1], dec.decode, feed, on_finding)
                frames += len(batch[1])
            else:
                if batch_feed is None:
                    from tcpanalyze.batch import BatchFeed
                    from tcpanalyze.columns import decode_batch

                    batch_feed = (feeder or BatchFeed)(analysis, dec, on_finding)
                    # (a name of its own: compiled, an import binds the module's global)
                    decode_columns = decode_batch
                cols, _ = decode_columns(batch, reader, dec.verify_checksums)
                batch_feed.process(cols)
                frames += len(cols)
            if small and reader.paused():
                # Nothing more to read now: findings that wait only for the next sweep (a
                # later packet's time) are decided now, not when the next packet comes.
                found = analysis.settle()
                if found and on_finding is not None:
                    for finding in found:
                        on_finding(finding)
            if on_progress is not None:
                on_progress(frames, reader.position)
            if interrupt is not None and interrupt.requested:
                break
    except KeyboardInterrupt:  # raised only while a pipe was waited for
        if interrupt is None:
            raise
    return frames


# Fewer frames than this, read from a pipe at once, are fed one at a time: a batch of
# columns costs 0.2-0.6 ms however small (decoding, flows), a frame ~5 us
_FEW_FRAMES: Final = 128


def _feed_frames(frames: Iterable[Any], decode: Callable[[Any], Segment | None],
                 feed: Callable[[Segment], list[Finding]],
                 on_finding: Callable[[Finding], Any] | None) -> None:
    for frame in frames:
        seg = decode(frame)
        if seg is not None:
            new = feed(seg)
            if new and on_finding is not None:
                for finding in new:
                    on_finding(finding)


def _until_interrupted(frames: Iterator[Any], interrupt: Any) -> Iterator[Any]:
    """The signal handler raises only while we wait for input; while a frame is being
    analysed it just sets `requested`, which is checked before the next one."""
    while not interrupt.requested:
        interrupt.waiting = True
        try:
            frame = next(frames)
        except StopIteration:
            return
        finally:
            interrupt.waiting = False
        yield frame


def _stream_order(finding: Finding) -> tuple[bool, int]:
    """Findings emitted at one frame (a timer sweep, several closes, the end of input)
    go out by connection, the aggregate ones last: an order `--jobs` workers, each with
    its own timers and table, can reproduce (parallel.read_into_parallel)."""
    return finding.connection is None, finding.connection or 0


def build_report(captures: list[CaptureSummary], analysis: Analysis) -> Report:
    return Report(captures=captures, connections=analysis.connections,
                  findings=analysis.findings,
                  stats={"connections": analysis.connections_total,
                         "evicted": analysis.table.evicted,
                         "idle_closed": analysis.table.idled,
                         "peak_tracked": analysis.table.peak})


def worst_severity(findings: Iterable[Finding]) -> str | None:
    worst = None
    for f in findings:
        if worst is None or SEVERITY_RANK[f.severity] > SEVERITY_RANK[worst]:
            worst = f.severity
    return worst
