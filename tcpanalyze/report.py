"""The result of an analysis: capture summary, connections and findings.

Plain data, no I/O. Every renderer (terminal, JSON, SARIF, JUnit, Zeek, ...) reads a
`Report`; `Report.to_dict()` *is* the versioned JSON contract documented in the README.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from itertools import starmap
from typing import Any, overload

REPORT_VERSION = 1

SEVERITIES = ("info", "low", "medium", "high")
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}

# The finding kinds, in the order reports list them (most actionable first).
FINDING_KINDS = (
    "syn_flood",
    "port_scan",
    "close_wait_leak",
    "half_open",
    "missing_third_ack",
    "time_wait_violation",
    "time_wait_assassination",
    "rst_teardown",
    "connection_refused",
    "fin_wait_2_stuck",
    "last_ack_stuck",
    "data_after_close",
    "invalid_flags",
    "syn_retransmission",
    "retransmission",
    "zero_window",
    "keepalive",
    "simultaneous_open",
    "simultaneous_close",
)

# Packet classes every frame is counted in exactly once.
PACKET_CLASSES = (
    "tcp",
    "other_ip",  # IP but not TCP (UDP, ICMP, ...)
    "non_ip",  # ARP, LLDP, STP, ...
    "fragment",  # IP fragments (not reassembled; never mistaken for TCP)
    "tunnel",  # IP/UDP encapsulation the dpkt decoder does not open (GRE, VXLAN, ...)
    "unsupported_link",  # a link type we do not decode
    "malformed",  # headers that contradict themselves (bad IHL, data offset, ...)
    "truncated",  # cut by the snaplen before the TCP header ended
    "bad_checksum",  # only with --verify-checksums
)


@dataclass
class Finding:
    kind: str
    severity: str
    summary: str  # one plain sentence: who did what, in which state, what it likely means
    time: float  # capture time of the first proving frame
    frames: list[int] = field(default_factory=list)  # frame numbers that prove it
    connection: int | None = None  # connection id, None for aggregates
    subject: str = ""  # 'client -> server' for a connection, 'addr:port' for aggregates
    capture: str | None = None  # which capture, when several are analysed together
    confidence: str = "high"  # 'high', or 'low' when the capture lacks what it would need
    details: dict[str, Any] = field(default_factory=dict)  # numbers (rates, counts, top targets)
    server: str | None = None  # 'addr:port' of the server side: the stable identity for baselines

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "severity": self.severity,
            "connection": self.connection,
            "subject": self.subject,
            "frames": list(self.frames),
            "time": self.time,
            "summary": self.summary,
            "confidence": self.confidence,
        }
        if self.server is not None:
            out["server"] = self.server
        if self.capture is not None:
            out["capture"] = self.capture
        if self.details:
            out["details"] = self.details
        return out


@dataclass(slots=True)
class StateChange:
    time: float
    frame: int
    endpoint: str  # 'client' or 'server'
    old: str
    new: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "frame": self.frame,
            "endpoint": self.endpoint,
            "from": self.old,
            "to": self.new,
            "reason": self.reason,
        }


_CHANGE_FIELDS = tuple(f.name for f in dataclass_fields(StateChange) if f.init)


class Timeline(Sequence[StateChange]):
    """A connection's state changes, made into StateChange objects on first use and
    kept: most timelines are only ever written out (the JSON writer reads `rows`), and
    40,000 connections have some 300,000 changes. Held either as rows of StateChange's
    fields (in the order of `fields`: what a worker sends) or packed as the tracker
    keeps them, three doubles per change (a code into `kinds`, the frame, the time):
    24 bytes a change instead of ~150 for a row."""

    __slots__ = ("_changes", "_kinds", "_packed", "_rows")
    fields = _CHANGE_FIELDS  # the rows' order: StateChange's own

    def __init__(self, rows: tuple[tuple[Any, ...], ...] = ()) -> None:
        self._rows = rows
        self._packed: Sequence[float] | None = None
        self._kinds: Sequence[tuple[str, str, str, str]] = ()
        self._changes: list[StateChange] | None = None

    @classmethod
    def packed(cls, packed: Sequence[float], kinds: Sequence[tuple[str, str, str, str]]
               ) -> Timeline:
        """From (code, frame, time) triples; kinds[code] is (endpoint, old, new, reason)."""
        timeline = cls()
        timeline._packed = packed
        timeline._kinds = kinds
        return timeline

    @property
    def packed_parts(self) -> tuple[Sequence[float], Sequence[tuple[str, str, str, str]]] | None:
        """(packed, kinds) while the timeline is held packed, else None."""
        if self._changes is None and self._packed is not None:
            return self._packed, self._kinds
        return None

    @property
    def rows(self) -> tuple[tuple[Any, ...], ...] | None:
        """The rows, or None once the objects exist (they may have been changed)."""
        if self._changes is not None:
            return None
        p = self._packed
        if p is None:
            return self._rows
        kinds = self._kinds
        return tuple((p[i + 2], int(p[i + 1]), *kinds[int(p[i])]) for i in range(0, len(p), 3))

    def _list(self) -> list[StateChange]:
        if self._changes is None:
            self._changes = list(starmap(StateChange, self.rows or ()))
            self._rows, self._packed = (), None
        return self._changes

    def __len__(self) -> int:
        if self._changes is not None:
            return len(self._changes)
        return len(self._rows) if self._packed is None else len(self._packed) // 3

    @overload
    def __getitem__(self, i: int) -> StateChange: ...
    @overload
    def __getitem__(self, i: slice) -> list[StateChange]: ...

    def __getitem__(self, i: int | slice) -> StateChange | list[StateChange]:
        return self._list()[i]

    def __iter__(self) -> Iterator[StateChange]:
        return iter(self._list())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (Timeline, list)):
            return self._list() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like the list it stands for

    def __repr__(self) -> str:
        return repr(self._list())


# slots: a report can hold tens of thousands of these
@dataclass(slots=True)
class ConnectionSummary:
    id: int
    client: str  # 'ip:port' or '[v6]:port'
    server: str
    start: float
    end: float
    packets_client: int
    packets_server: int
    bytes_client: int  # TCP payload bytes sent by the client
    bytes_server: int
    client_state: str
    server_state: str
    conn_state: str  # Zeek-compatible
    history: str  # Zeek-compatible
    findings: list[str] = field(default_factory=list)  # kinds
    flags_seen: str = ""  # e.g. 'SAFPR'
    quality: dict[str, Any] = field(default_factory=dict)  # handshake_seen, both_directions, gaps
    timeline: Sequence[StateChange] = field(default_factory=list)
    capture: str | None = None
    # Zeek's own records for this connection (its timers may split one connection into
    # several); computed only on request (--format zeek, --zeek-records).
    zeek_records: list[dict[str, Any]] = field(default_factory=list)
    # the connection's VLAN ids, outer first ([] untagged): only with the VLAN-aware key
    # (settings.vlan_tracking), else None and not in the JSON
    vlan: list[int] | None = None

    def to_dict(self, timeline: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "client": self.client,
            "server": self.server,
            "start": self.start,
            "end": self.end,
            "packets": {"client": self.packets_client, "server": self.packets_server},
            "bytes": {"client": self.bytes_client, "server": self.bytes_server},
            "client_state": self.client_state,
            "server_state": self.server_state,
            "conn_state": self.conn_state,
            "history": self.history,
            "findings": list(self.findings),
            "flags_seen": self.flags_seen,
            "quality": self.quality,
        }
        if timeline:
            out["timeline"] = [change.to_dict() for change in self.timeline]
        if self.capture is not None:
            out["capture"] = self.capture
        if self.vlan is not None:
            out["vlan"] = list(self.vlan)
        if self.zeek_records:
            out["zeek_records"] = self.zeek_records
        return out


@dataclass
class CaptureSummary:
    path: str
    format: str  # 'pcap', 'pcapng', 'pcap.gz', ...
    linktypes: list[str]
    packets: int
    tcp_segments: int
    skipped: dict[str, int]  # every PACKET_CLASSES entry except 'tcp'
    first_ts: float | None
    last_ts: float | None
    error: str | None = None  # the one-line error when reading stopped at a fault
    decoder: str = "dpkt"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.path,
            "format": self.format,
            "linktypes": list(self.linktypes),
            "packets": self.packets,
            "tcp_segments": self.tcp_segments,
            "skipped": dict(self.skipped),
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "decoder": self.decoder,
        }
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass
class Report:
    captures: list[CaptureSummary]
    connections: Sequence[ConnectionSummary]
    findings: list[Finding]
    tool_version: str = ""
    stats: dict[str, Any] = field(default_factory=dict)  # evictions, aggregate counters

    @property
    def capture(self) -> CaptureSummary:
        return self.captures[0]

    def to_dict(self, timeline: bool = True) -> dict[str, Any]:
        from tcpanalyze import __version__

        out: dict[str, Any] = {
            "version": REPORT_VERSION,
            "tool": {"name": "tcpanalyze", "version": self.tool_version or __version__},
            "capture": self.captures[0].to_dict() if self.captures else None,
            "connections": [c.to_dict(timeline) for c in self.connections],
            "findings": [f.to_dict() for f in self.findings],
        }
        if len(self.captures) > 1:
            out["captures"] = [c.to_dict() for c in self.captures]
        if self.stats:
            out["stats"] = self.stats
        return out
