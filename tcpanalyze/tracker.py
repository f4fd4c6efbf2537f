"""The passive dual-ended TCP state tracker.

Each `Connection` holds two `Endpoint`s (Zeek's shape), each with its own RFC 793 state and
sequence space. The tracker sees the wire, not the hosts, so it works on two rules:

* a segment seen on the wire is assumed to reach the peer (the capture sits between them), and
* that assumption is corrected by evidence: a retransmitted SYN, SYN-ACK or FIN shows the
  sender never received what would have moved it on.

State changes that depend on acknowledgement use sequence numbers, not flags: a FIN is
acknowledged only by an ACK beyond it. All comparisons are modulo 2^32. Nothing here reads
files or prints: segments go in, state changes and notes (raw evidence for the detectors)
come out.
"""

from __future__ import annotations

import math
import struct
from array import array
from typing import Any, Final

from tcpanalyze.segment import (
    ACK,
    FIN,
    RST,
    SYN,
    Segment,
    TcpOptions,
    format_endpoint,
    parse_options,
    seq_add,
    seq_diff,
    seq_ge,
    seq_gt,
)
from tcpanalyze.settings import Settings

# RFC 793 states, named as `ss` and the spec name them, plus UNKNOWN for "cannot be inferred".
CLOSED: Final = "CLOSED"
LISTEN: Final = "LISTEN"
SYN_SENT: Final = "SYN_SENT"
SYN_RCVD: Final = "SYN_RCVD"
ESTABLISHED: Final = "ESTABLISHED"
FIN_WAIT_1: Final = "FIN_WAIT_1"
FIN_WAIT_2: Final = "FIN_WAIT_2"
CLOSING: Final = "CLOSING"
TIME_WAIT: Final = "TIME_WAIT"
CLOSE_WAIT: Final = "CLOSE_WAIT"
LAST_ACK: Final = "LAST_ACK"
UNKNOWN: Final = "UNKNOWN"

STATES: Final = (CLOSED, LISTEN, SYN_SENT, SYN_RCVD, ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2,
          CLOSING, TIME_WAIT, CLOSE_WAIT, LAST_ACK, UNKNOWN)

# States in which an endpoint has received the peer's SYN and may carry data.
SYNCHRONIZED: Final = frozenset({ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSING, TIME_WAIT,
                          CLOSE_WAIT, LAST_ACK})
# States after this endpoint has sent its FIN.
FIN_SENT_STATES: Final = frozenset({FIN_WAIT_1, FIN_WAIT_2, CLOSING, TIME_WAIT, LAST_ACK})
GONE: Final = frozenset({CLOSED, TIME_WAIT})
# States the tracker assumed without the endpoint saying anything (see final_states).
_GUESSED: Final = frozenset({LISTEN, UNKNOWN})

NOTE_CAP: Final = 32  # notes kept per kind and connection
# A SYN identical to the sender's previous one (same seq, flags, window, options, length)
# captured less than this after it is the same packet seen twice (a SPAN/mirror or
# FabricPath copy, two capture interfaces), not a retransmission: no stack resends a SYN
# that soon (Linux's initial SYN RTO is 1 s, its RTO floor 200 ms; RFC 6298: 1 s).
SYN_COPY_WINDOW: Final = 0.010

CLIENT: Final = "client"
SERVER: Final = "server"

_MASK: Final = 0xFFFFFFFF
_HALF: Final = 0x80000000  # serial-number arithmetic: a is after b when 0 < (a - b) mod 2^32 < this
_TS_OPTION: Final = b"\x01\x01\x08\x0a"  # NOP NOP timestamps: all Linux puts on a data segment
_tsval: Final = struct.Struct("!I").unpack_from
# a change as the timeline holds it: three native doubles (its items' own
# conversion, item by item, costs twice as much)
_change: Final = struct.Struct("ddd").pack


class Note:
    """A piece of evidence the tracker records for the detectors (not yet a finding)."""

    __slots__ = ("data", "frame", "kind", "role", "ts")

    def __init__(self, kind: str, role: str, frame: int, ts: float, **data: Any) -> None:
        self.kind = kind
        self.role = role  # the endpoint the note is about
        self.frame = frame
        self.ts = ts
        self.data = data

    def __repr__(self) -> str:
        return f"Note({self.kind}, {self.role}, frame={self.frame}, {self.data})"


class Change:
    """One state change of one endpoint, with the frame that caused it (0 = a timer)."""

    __slots__ = ("frame", "new", "old", "reason", "role", "ts")

    def __init__(self, role: str, old: str, new: str, frame: int, ts: float, reason: str):
        self.role = role
        self.old = old
        self.new = new
        self.frame = frame
        self.ts = ts
        self.reason = reason

    def __repr__(self) -> str:
        return f"{self.role}: {self.old} -> {self.new} @{self.frame} ({self.reason})"


# A connection's timeline is kept packed, three doubles per change (kind code, frame,
# capture time): a live table holds tens of thousands of connections with ~8 changes
# each, and a Change object with its boxed frame and time costs ~130 bytes, a packed
# change 24. The (role, old, new, reason) combinations form a small, bounded set.
_KIND_CODES: Final[dict[tuple[str, str, str, str], int]] = {}
_KINDS: Final[list[tuple[str, str, str, str]]] = []
CHANGE_KINDS: Final = _KINDS  # read by other modules (packed timelines), written only here


def _kind_code(role: str, old: str, new: str, reason: str) -> int:
    key = (role, old, new, reason)
    code = _KIND_CODES.get(key)
    if code is None:
        code = _KIND_CODES[key] = len(_KINDS)
        _KINDS.append(key)
    return code


def _unpack(packed: array[float], start: int = 0) -> list[Change]:
    out = []
    kinds = _KINDS
    for i in range(start, len(packed), 3):
        role, old, new, reason = kinds[int(packed[i])]
        out.append(Change(role, old, new, int(packed[i + 1]), packed[i + 2], reason))
    return out


class Endpoint:
    """One side of a connection: its state and its own sequence space."""

    __slots__ = (
        "addr",
        "bytes",
        "data_segments",
        "fin_acked",
        "fin_count",
        "fin_frame",
        "fin_pending",
        "fin_received",
        "fin_seq",
        "fin_ts",
        "first_syn_ts",
        "isn",
        "keepalive_unanswered",
        "keepalives",
        "last_data_ts",
        "last_ts",
        "max_ack",
        "mss",
        "packets",
        "port",
        "pre_fin_state",
        "rejected_ack",
        "rexmit_count",
        "rexmit_first_ts",
        "rexmit_frames",
        "rexmit_repeat",
        "rexmit_seq",
        "role",
        "rst_count",
        "sack_permitted",
        "since",
        "snd_nxt",
        "state",
        "syn_copies",
        "syn_count",
        "syn_fins",
        "syn_frame",
        "syn_last",
        "syn_tsval",
        "synack_count",
        "synack_others",
        "synack_rexmits",
        "tentative",
        "tfo",
        "tsval",
        "window",
        "wscale",
        "zero_window_frame",
        "zero_window_since",
        "zero_windows",
    )

    def __init__(self, role: str, addr: bytes, port: int) -> None:
        self.role = role
        self.addr = addr
        self.port = port
        self.state = UNKNOWN
        self.since = 0.0  # capture time the current state was entered
        self.isn: int | None = None
        self.snd_nxt: int | None = None  # one past the highest sequence number sent
        self.max_ack: int | None = None  # highest ACK this endpoint sent (its rcv_nxt)
        self.fin_seq: int | None = None  # sequence number of its FIN
        self.fin_acked = False
        self.fin_frame = 0
        self.fin_ts = 0.0
        self.fin_received = False  # the peer's FIN reached it (assumed, or proven by its ACK)
        self.fin_pending = False  # its ACKs showed it had not received the peer's FIN
        self.pre_fin_state = UNKNOWN  # its state before it received the peer's FIN
        self.last_data_ts = 0.0
        self.syn_frame = 0
        self.first_syn_ts = 0.0
        self.syn_tsval: int | None = None  # the timestamp its (first) SYN carried
        # the ACK number of a segment it rejected in SYN_SENT: the seq of its RST reply
        self.rejected_ack: int | None = None
        self.tentative = False  # ESTABLISHED only because a third ACK was seen on the wire
        self.syn_count = 0  # SYN segments (no ACK) it put on the wire, copies included
        # of those: capture copies of the SYN before (see _SYN_COPY_WINDOW), and SYN+FIN
        # segments (no stack opens a connection with one: Linux's listener discards it)
        self.syn_copies = 0
        self.syn_fins = 0
        self.syn_last: Segment | None = None  # its last SYN that was not a copy
        self.synack_count = 0  # every SYN-ACK it sent, whatever its ISN
        self.synack_rexmits = 0  # retransmissions of the SYN-ACK with the current ISN
        # the other ISNs its SYN-ACKs carried -> their retransmissions (None: only one ISN)
        self.synack_others: dict[int, int] | None = None
        self.fin_count = 0
        self.rst_count = 0
        self.packets = 0
        self.bytes = 0
        self.data_segments = 0
        self.last_ts = 0.0
        self.window = -1
        self.wscale: int | None = None
        self.mss: int | None = None
        self.sack_permitted = False
        self.tsval: int | None = None
        self.tfo = False
        self.rexmit_count = 0
        # the frames of the current run of retransmissions of one segment (rexmit_seq),
        # its first 20; a list from the first one on (most endpoints never retransmit:
        # no list for the garbage collector to walk)
        self.rexmit_frames: list[int] | tuple[()] = ()
        self.rexmit_seq: int | None = None  # the segment being retransmitted right now
        self.rexmit_repeat = 0
        self.rexmit_first_ts = 0.0
        self.keepalives = 0
        self.keepalive_unanswered = 0  # probes since the peer last said anything
        self.zero_windows = 0
        self.zero_window_since: float | None = None
        self.zero_window_frame = 0

    @property
    def seen(self) -> bool:
        return self.packets > 0

    @property
    def name(self) -> str:
        return format_endpoint(self.addr, self.port)

    @property
    def syns_sent(self) -> int:
        """The SYNs it sent to open a connection: syn_count without capture copies
        and SYN+FIN segments."""
        return self.syn_count - self.syn_copies - self.syn_fins

    def __repr__(self) -> str:
        return (f"Endpoint({self.role} {self.name} {self.state} isn={self.isn} "
                f"snd_nxt={self.snd_nxt} max_ack={self.max_ack} fin_seq={self.fin_seq} "
                f"fin_acked={self.fin_acked})")


class Connection:
    """One TCP connection instance (a five-tuple may carry several in sequence)."""

    # Slots: a live table holds tens of thousands of these (no per-instance __dict__).
    __slots__ = (
        "_timeline",
        "absorbed",
        "client",
        "completion_counted",
        "due",
        "emitted",
        "evicted",
        "evidence_check",
        "finished",
        "first_frame",
        "flags_seen",
        "flipped",
        "gaps",
        "handshake_seen",
        "holes",
        "id",
        "last",
        "last_frame",
        "midstream",
        "note_counts",
        "notes",
        "server",
        "settings",
        "simultaneous_open",
        "start",
        "third_ack_lost",
        "vlan",
        "zeek",
        "zeek_records",
    )

    def __init__(self, conn_id: int, seg: Segment, client_is_sender: bool,
                 settings: Settings) -> None:
        self.id = conn_id
        self.settings = settings
        if client_is_sender:
            self.client = Endpoint(CLIENT, seg.src, seg.sport)
            self.server = Endpoint(SERVER, seg.dst, seg.dport)
        else:
            self.client = Endpoint(CLIENT, seg.dst, seg.dport)
            self.server = Endpoint(SERVER, seg.src, seg.sport)
        self.flipped = not client_is_sender  # the first packet came from the server
        self.start = seg.ts
        self.last = seg.ts
        self.first_frame = seg.frame
        # its VLAN ids (Segment.vlan) when they are part of the key, else 0
        self.vlan = seg.vlan if settings.vlan_tracking else 0
        self.last_frame = seg.frame
        self.midstream = not (seg.flags & SYN)  # picked up without seeing a SYN
        self.handshake_seen = False  # SYN, SYN-ACK and the ACK of the SYN-ACK all seen
        self.gaps = 0  # ACKs of data that never appeared in the capture
        self.holes = 0  # sequence jumps: data missing in the capture
        self.flags_seen = 0
        self._timeline = array("d")  # packed changes: see _kind_code
        self.notes: list[Note] = []
        self.note_counts: dict[str, int] = {}
        self.finished = False
        self.simultaneous_open = False
        self.third_ack_lost = False  # the server showed it missed a handshake ACK
        self.completion_counted = False  # the aggregates counted this handshake as done
        # Set by the other stages (flows, detectors, analysis), created when first needed.
        self.due = math.inf  # flows: capture time of this connection's live heap entry
        self.evidence_check = -math.inf  # flows: when new evidence was last scheduled
        self.evicted = False  # flows: pushed out of a full table
        # detectors: (kind, endpoint or "") -> the Finding reported
        self.emitted: dict[tuple[str, str], Any] | None = None
        self.absorbed = False  # analysis: its handshake findings belong to an aggregate
        self.zeek: Any = None  # analysis: its ZeekView, when kept
        self.zeek_records: list[Any] | None = None  # analysis: Zeek's record split

    # -- public -----------------------------------------------------------------------

    def endpoints(self, seg: Segment) -> tuple[Endpoint, Endpoint]:
        """(sender, receiver) of a segment that belongs to this connection."""
        c = self.client
        if seg.sport == c.port and seg.src == c.addr:
            return c, self.server
        return self.server, c

    def feed(self, seg: Segment) -> tuple[list[Change], list[Note]]:
        """Apply one segment; return the state changes and notes it caused."""
        start = len(self._timeline)
        count, notes = self.step(seg)
        return (_unpack(self._timeline, start) if count else []), notes

    def step(self, seg: Segment) -> tuple[int, list[Note]]:
        """`feed` for the flow table: the number of state changes, not the changes."""
        n_changes, n_notes = len(self._timeline), len(self.notes)
        c = self.client
        if seg.sport == c.port and seg.src == c.addr:
            sender, peer = c, self.server
        else:
            sender, peer = self.server, c
        flags = seg.flags
        ts = seg.ts
        self.last = ts
        self.last_frame = seg.frame
        self.flags_seen |= flags
        sender.packets += 1
        sender.last_ts = ts
        last_syn = sender.syn_last
        if last_syn is not None and ts - last_syn.ts >= SYN_COPY_WINDOW:
            # no copy of that SYN can come any more: not kept for the connection's life
            # (the bench capture: 11 MB at its peak, every connection in TIME_WAIT)
            sender.syn_last = None
        peer.keepalive_unanswered = 0  # the peer's probes, if any, got an answer
        plen = seg.payload_len
        if plen:
            sender.bytes += plen
            sender.data_segments += 1
            sender.last_data_ts = ts

        if not flags & ACK or (flags & SYN and flags & (FIN | RST)):
            self._check_flags(seg, sender)  # (with ACK, only SYN+FIN/RST can be invalid)
        if peer.state == SYN_SENT and flags & ACK and seg.options and \
                self._paws_rejects(seg, peer):
            return (len(self._timeline) - n_changes) // 3, self.notes[n_notes:]
        if flags & RST:
            self._on_rst(seg, sender, peer)
        elif flags & SYN:
            if flags & ACK:
                self._on_synack(seg, sender, peer)
            else:
                self._on_syn(seg, sender, peer)
        else:
            self._on_segment(seg, sender, peer)
        if flags & SYN:
            sender.window = seg.window  # (a SYN's window, even with RST: as _on_window)
        elif not flags & RST:
            window = seg.window
            if window and sender.window:
                sender.window = window  # open and open: nothing to note
            else:
                self._on_window(seg, sender, peer)
        return (len(self._timeline) - n_changes) // 3, self.notes[n_notes:]

    def expire(self, now: float) -> list[Change]:
        """Fire the timers that would have run out by capture time `now`."""
        s = self.settings
        changes: list[Change] = []
        for ep in (self.client, self.server):
            state = ep.state
            if state == TIME_WAIT and now - ep.since >= s.time_wait:
                changes.append(self._timer(ep, ep.since + s.time_wait,
                                           f"TIME_WAIT expired ({s.time_wait:g} s)"))
            elif state == FIN_WAIT_2 and now - ep.since >= s.fin_timeout:
                changes.append(self._timer(ep, ep.since + s.fin_timeout,
                                           f"FIN_WAIT_2 timed out ({s.fin_timeout:g} s, "
                                           "orphaned socket assumed)"))
            elif state == SYN_SENT and now - ep.first_syn_ts >= s.syn_timeout:
                changes.append(self._timer(ep, ep.first_syn_ts + s.syn_timeout,
                                           f"SYN retries exhausted ({s.syn_timeout:g} s)"))
            elif state == SYN_RCVD and ep.synack_count == 1 and not ep.tentative and \
                    now - ep.first_syn_ts >= 1.5 * s.synack_rto:
                # A server holding a SYN_RCVD entry retransmits its SYN-ACK after the
                # initial RTO; one that never does kept no state (SYN cookies).
                changes.append(self._timer(ep, ep.first_syn_ts + 1.5 * s.synack_rto,
                                           "no SYN-ACK retransmission: no state kept "
                                           "(SYN cookies)"))
                self.notes.append(Note("syn_cookie", ep.role, 0, now))
            elif state == SYN_RCVD and now - ep.first_syn_ts >= s.synack_timeout:
                changes.append(self._timer(ep, ep.first_syn_ts + s.synack_timeout,
                                           f"SYN-ACK retries exhausted ({s.synack_timeout:g} s)"))
        return changes

    def is_closed(self) -> bool:
        """Both ends are gone (CLOSED) or on their way out with nothing left to say."""
        return self.client.state in GONE and self.server.state in GONE

    def is_over(self) -> bool:
        """A new SYN on this tuple starts a new connection (a FIN or RST has been seen)."""
        c, s = self.client, self.server
        return (c.fin_seq is not None or s.fin_seq is not None or c.rst_count > 0
                or s.rst_count > 0 or (c.state == CLOSED and s.state == CLOSED))

    def time_wait_end(self) -> tuple[Endpoint, float] | None:
        """The endpoint in TIME_WAIT and the time its TIME_WAIT began, if any."""
        for ep in (self.client, self.server):
            if ep.state == TIME_WAIT:
                return ep, ep.since
        return None

    @property
    def timeline(self) -> list[Change]:
        """Every state change so far, oldest first (a new list: record changes with
        `_set`, not by appending here)."""
        return _unpack(self._timeline)

    def packed_timeline(self) -> tuple[array[float], list[tuple[str, str, str, str]]]:
        """A copy of the packed timeline, (code, frame, time) per change, and the table
        its codes index: (endpoint role, old state, new state, reason)."""
        return array("d", self._timeline), _KINDS

    @property
    def subject(self) -> str:
        return f"{self.client.name} -> {self.server.name}"

    def quality(self) -> dict[str, Any]:
        return {
            "handshake_seen": self.handshake_seen,
            "midstream": self.midstream,
            "client_seen": self.client.packets > 0,
            "server_seen": self.server.packets > 0,
            "both_directions": self.client.packets > 0 and self.server.packets > 0,
            "gaps": self.gaps,
            "holes": self.holes,
        }

    # -- state bookkeeping ------------------------------------------------------------

    def _set(self, ep: Endpoint, new: str, frame: int, ts: float, reason: str) -> None:
        old = ep.state
        ep.state = new
        ep.since = ts
        if new != ESTABLISHED:
            ep.tentative = False
        self._timeline.frombytes(_change(_kind_code(ep.role, old, new, reason), frame, ts))

    def _timer(self, ep: Endpoint, ts: float, reason: str) -> Change:
        """A timer ran out at capture time `ts`: `ep` is CLOSED (frame 0)."""
        change = Change(ep.role, ep.state, CLOSED, 0, ts, reason)
        self._set(ep, CLOSED, 0, ts, reason)
        return change

    def _move(self, ep: Endpoint, new: str, seg: Segment, reason: str) -> None:
        if ep.state != new:
            self._set(ep, new, seg.frame, seg.ts, reason)

    def _note(self, kind: str, ep: Endpoint, seg: Segment, **data: Any) -> None:
        # Repetitive evidence (retransmissions, keepalives, ...) is kept up to a cap per
        # kind: the endpoint counters hold the totals, so a long connection's memory and
        # the detectors' work stay bounded.
        counts = self.note_counts
        seen = counts.get(kind, 0)
        counts[kind] = seen + 1
        if seen < NOTE_CAP:
            self.notes.append(Note(kind, ep.role, seg.frame, seg.ts, **data))

    # -- segment handlers -------------------------------------------------------------

    def _check_flags(self, seg: Segment, sender: Endpoint) -> None:
        flags = seg.flags
        bad = None
        if flags & SYN and flags & FIN:
            bad = "SYN+FIN"
        elif flags & SYN and flags & RST:
            bad = "SYN+RST"
        elif not flags & (SYN | FIN | RST | ACK | 0x08 | 0x20):
            bad = "no flags"
        elif flags & FIN and not flags & ACK:
            bad = "FIN without ACK"
        if bad:
            self._note("invalid_flags", sender, seg, combo=bad)

    def _learn_options(self, seg: Segment, ep: Endpoint) -> TcpOptions | None:
        """Learn the endpoint's options; returns them (None without options)."""
        options = seg.options
        if not options:
            return None
        opts = parse_options(options)
        if seg.flags & SYN:
            ep.mss = opts.mss
            ep.wscale = opts.wscale
            ep.sack_permitted = opts.sack_permitted
            if opts.fastopen is not None:
                ep.tfo = True
        if opts.tsval is not None:
            ep.tsval = opts.tsval
        return opts

    def _advance(self, ep: Endpoint, seq_end: int) -> None:
        if ep.snd_nxt is None or seq_gt(seq_end, ep.snd_nxt):
            ep.snd_nxt = seq_end

    def _on_syn(self, seg: Segment, sender: Endpoint, peer: Endpoint) -> None:
        seq = seg.seq
        if seg.flags & FIN:
            sender.syn_fins += 1  # (as before otherwise: its SYN is on the wire)
        else:
            last = sender.syn_last
            if last is not None and seq == last.seq and \
                    abs(seg.ts - last.ts) < SYN_COPY_WINDOW and seg.flags == last.flags and \
                    seg.window == last.window and seg.options == last.options and \
                    seg.payload_len == last.payload_len:
                # The same SYN captured twice: evidence of nothing (not a retransmission,
                # not a sign that a SYN-ACK was lost).
                sender.syn_count += 1
                sender.syn_copies += 1
                self._note("syn_copy", sender, seg, of=last.frame)
                return
            sender.syn_last = seg
        if sender.isn is not None and seq == sender.isn and sender.syn_count:
            # Same ISN: a retransmission; it restarts nothing. If we had assumed the
            # peer's SYN-ACK reached the sender, this proves it did not.
            sender.syn_count += 1
            self._note("syn_retransmission", sender, seg, count=sender.syn_count)
            if sender.state == ESTABLISHED and sender.tentative:
                self._move(sender, SYN_SENT, seg, "SYN retransmitted: the SYN-ACK never arrived")
            return
        if sender.syn_count and sender.isn is not None:
            self._note("syn_new_isn", sender, seg, old_isn=sender.isn, new_isn=seq)
        sender.isn = seq
        sender.syn_count += 1
        sender.syn_frame = sender.syn_frame or seg.frame
        if not sender.first_syn_ts:
            sender.first_syn_ts = seg.ts
        opts = self._learn_options(seg, sender)
        sender.syn_tsval = opts.tsval if opts is not None else None
        sender.snd_nxt = seq_add(seq, 1 + seg.payload_len)
        if peer.state == SYN_SENT and peer.syn_count:
            # Both sides sent a bare SYN: simultaneous open (RFC 793 figure 8).
            self.simultaneous_open = True
            self._move(sender, SYN_SENT, seg, "sent SYN while the peer's SYN was in flight")
            self._note("simultaneous_open", sender, seg)
            return
        self._move(sender, SYN_SENT, seg, "sent SYN")
        if peer.state == UNKNOWN:
            peer.state = LISTEN  # implied; reported as CLOSED if it never answers

    def _on_synack(self, seg: Segment, sender: Endpoint, peer: Endpoint) -> None:
        seq = seg.seq
        isn = sender.isn
        if isn is not None and seq == isn and sender.synack_count:
            sender.synack_count += 1
            sender.synack_rexmits += 1
            self._note("synack_retransmission", sender, seg, count=sender.synack_count,
                       isn=seq)
            if sender.tentative:
                # The third ACK we saw never reached the server.
                self._move(sender, SYN_RCVD, seg,
                           "SYN-ACK retransmitted: the third ACK did not arrive")
                self._note("third_ack_lost", sender, seg)
                self.third_ack_lost = True
            self._ack_effects(seg, sender, peer)
            return
        first_synack = sender.synack_count == 0
        if not first_synack and isn is not None:
            # A SYN-ACK with another ISN than the last one: retransmissions are counted
            # per ISN, so a second stack (or an earlier incarnation) answering the same
            # SYN does not make the current SYN-ACK look retransmitted.
            others = sender.synack_others
            if others is None:
                others = sender.synack_others = {}
            ack = peer.max_ack
            if ack is not None and 0 < seq_diff(ack, isn) <= 0x40000000:
                # The peer acknowledged the current SYN-ACK: the handshake chose its ISN;
                # a SYN-ACK with another one is not this connection's and moves nothing.
                sender.synack_count += 1
                others[seq] = others.get(seq, -1) + 1
                self._note("synack_other_isn", sender, seg, isn=isn, other_isn=seq)
                return
            others[isn] = sender.synack_rexmits
            if seq in others:  # an ISN sent before: that SYN-ACK again
                sender.synack_rexmits = others.pop(seq) + 1
                self._note("synack_retransmission", sender, seg,
                           count=sender.synack_count + 1, isn=seq)
            else:
                sender.synack_rexmits = 0
                self._note("synack_new_isn", sender, seg, old_isn=isn, new_isn=seq)
            # (its sequence space starts again at the new ISN)
            sender.snd_nxt = seq_add(seq, 1 + seg.payload_len)
        sender.isn = seq
        sender.synack_count += 1
        if not sender.first_syn_ts or (first_synack and sender.state != SYN_SENT):
            sender.first_syn_ts = seg.ts
        opts = self._learn_options(seg, sender)
        self._advance(sender, seq_add(seq, 1 + seg.payload_len))
        if first_synack and peer.syn_count and (peer.mss is not None or peer.wscale is not None):
            # SYN cookies drop the options the SYN offered (RFC 4987 s3.6); record the hint.
            lacks = opts is None or (peer.wscale is not None and opts.wscale is None) or (
                peer.sack_permitted and not opts.sack_permitted)
            if lacks:
                self._note("synack_without_options", sender, seg)
        if sender.state in (SYN_SENT, UNKNOWN, LISTEN, CLOSED):
            reason = ("answered the peer's SYN with SYN-ACK (simultaneous open)"
                      if sender.state == SYN_SENT else "answered SYN with SYN-ACK")
            self._move(sender, SYN_RCVD, seg, reason)
        self._ack_effects(seg, sender, peer)
        # The peer receives the SYN-ACK: an active opener is established by it.
        if peer.state == SYN_SENT and peer.isn is not None and seg.flags & ACK \
                and seq_gt(seg.ack, peer.isn):
            self._move(peer, ESTABLISHED, seg, "received SYN-ACK")
            peer.tentative = True  # until it speaks; a SYN retransmission would disprove it
        elif peer.state in (UNKNOWN, LISTEN) and not peer.seen:
            # We never saw the SYN (capture started after it, or one direction only).
            peer.isn = seq_add(seg.ack, -1)
            self._move(peer, ESTABLISHED, seg, "received SYN-ACK (its SYN was not captured)")

    def _paws_rejects(self, seg: Segment, receiver: Endpoint) -> bool:
        """Whether `receiver`, in SYN_SENT, discards `seg` (which carries an ACK) for its
        timestamp echo: Linux (tcp_rcv_synsent_state_process) accepts only an echo of
        a timestamp it sent since its first SYN, and answers anything else but a RST
        with a RST (seq = SEG.ACK), staying in SYN_SENT. Injected segments (evasion
        tools, suricata-verify/ts-evasion-linux) fail this; the real peer's pass."""
        first = receiver.syn_tsval
        if first is None:
            return False
        tsecr = parse_options(seg.options).tsecr
        if not tsecr:
            return False  # no echo (or 0): Linux does not check
        # its timestamp clock ticks at most 1000 times a second (RFC 7323), plus a second
        newest = (seg.ts - receiver.first_syn_ts + 1.0) * 1000.0
        if 0 <= seq_diff(tsecr, first) <= newest:
            return False
        sender = self.server if receiver is self.client else self.client
        states = (sender.state, receiver.state)
        why = (f"its timestamp echo {tsecr} is none the SYN_SENT receiver sent "
               f"(its SYN: {first}); Linux discards it (PAWS)")
        if seg.flags & RST:
            self._note("rst_ignored", sender, seg, states=states, why=why)
        else:
            receiver.rejected_ack = seg.ack
            self._note("segment_rejected", sender, seg, states=states, why=why)
        return True

    def _on_rst(self, seg: Segment, sender: Endpoint, peer: Endpoint) -> None:
        if sender.state == SYN_SENT and seg.seq == sender.rejected_ack:
            # The RST a SYN_SENT endpoint sends in reply to a segment it rejected
            # (RFC 793 SYN-SENT: <SEQ=SEG.ACK><CTL=RST>): it stays in SYN_SENT, and
            # resets only whatever sent that segment, which the tracker set aside.
            sender.rejected_ack = None
            self._note("rst_reply", sender, seg, states=(sender.state, peer.state))
            return
        # rst_count counts the RSTs the receiver accepted: an ignored one (injected, out
        # of window) ends nothing, so it must not make a later real RST look like a
        # repeat of an earlier teardown, nor make a retried SYN a new connection.
        before = (sender.state, peer.state)
        if peer.state == SYN_SENT and not sender.synack_count:
            # A RST answering a SYN: refused (acceptable only if it acks the SYN).
            if seg.flags & ACK and peer.isn is not None and seq_gt(seg.ack, peer.isn):
                sender.rst_count += 1
                self._note("connection_refused", sender, seg, states=before)
                self._move(peer, CLOSED, seg, "SYN refused by RST")
                self._move(sender, CLOSED, seg, "refused the SYN with RST")
            else:
                self._note("rst_ignored", sender, seg, states=before,
                           why="RST in reply to a SYN does not acknowledge it")
            return
        if not self._rst_acceptable(seg, sender, peer):
            # Linux answers an out-of-window RST with a challenge ACK (RFC 5961) and
            # keeps the connection; so do we.
            self._note("rst_ignored", sender, seg, states=before,
                       why="sequence number outside the receiver's window")
            return
        sender.rst_count += 1
        if peer.state == TIME_WAIT:
            self._note("time_wait_assassination", peer, seg, states=before)
        self._note("rst", sender, seg, states=before, first_packet=sender.packets == 1,
                   closed_by_rst=sender.rst_count > 1,
                   after_own_fin=sender.fin_seq is not None,
                   peer_data_after_fin=sender.fin_seq is not None
                   and peer.last_data_ts > sender.fin_ts)
        if peer.state == SYN_RCVD:
            self._move(peer, CLOSED, seg, "received RST in SYN_RCVD (back to LISTEN)")
        elif peer.state != CLOSED:
            self._move(peer, CLOSED, seg, f"received RST in {peer.state}")
        if sender.state != CLOSED:
            self._move(sender, CLOSED, seg, f"sent RST in {sender.state}")

    def _rst_acceptable(self, seg: Segment, sender: Endpoint, peer: Endpoint) -> bool:
        # The receiver's idea of the next sequence number it expects from the sender.
        expected = peer.max_ack if peer.max_ack is not None else sender.snd_nxt
        if expected is None:
            return True
        window = max(peer.window << (peer.wscale or 0), 65535) if peer.window > 0 else 65535
        d = seq_diff(seg.seq, expected)
        if 0 <= d <= window:
            return True
        # A RST from an endpoint that lost the connection carries the peer's ACK
        # (RFC 793: seq = SEG.ACK), which also lands on what the receiver sent.
        return sender.snd_nxt is not None and seg.seq == sender.snd_nxt

    def _ack_effects(self, seg: Segment, sender: Endpoint, peer: Endpoint) -> None:
        """What the sender's ACK number tells the peer (delivery assumed)."""
        if not seg.flags & ACK:
            return
        ack = seg.ack
        max_ack = sender.max_ack
        if max_ack is None or (ack != max_ack and (ack - max_ack) & _MASK < _HALF):
            sender.max_ack = ack
        pfin = peer.fin_seq
        if pfin is not None:
            covers = seq_ge(ack, seq_add(pfin, 1))
            if covers and sender.fin_pending:
                sender.fin_pending = False
                self._receive_fin(sender, seg, "acknowledged the peer's FIN")
            elif not covers and sender.fin_received and (
                    seg.flags & FIN or seg.ts - peer.fin_ts > self._in_flight()):
                self._fin_not_received(sender, seg)
        peer_nxt = peer.snd_nxt
        if peer_nxt is not None and ack != peer_nxt and (ack - peer_nxt) & _MASK < _HALF:
            if peer.packets and seq_diff(ack, peer_nxt) < 0x40000000:
                # ACK of bytes the capture never showed: a gap in the capture.
                self.gaps += 1
                self._note("gap", sender, seg, missing=seq_diff(ack, peer_nxt))
            peer.snd_nxt = ack
        # The peer's FIN is acknowledged only by an ACK beyond it.
        fin = peer.fin_seq
        if fin is not None and not peer.fin_acked and seq_ge(ack, seq_add(fin, 1)):
            peer.fin_acked = True
            if peer.state == FIN_WAIT_1:
                if seg.flags & FIN:
                    return  # FIN+ACK: handled by the FIN receipt, straight to TIME_WAIT
                self._move(peer, FIN_WAIT_2, seg, "its FIN was acknowledged")
            elif peer.state == CLOSING:
                self._move(peer, TIME_WAIT, seg, "its FIN was acknowledged (simultaneous close)")
            elif peer.state == LAST_ACK:
                self._move(peer, CLOSED, seg, "its FIN was acknowledged")

    def _on_segment(self, seg: Segment, sender: Endpoint, peer: Endpoint) -> None:
        """A segment without SYN or RST: ACKs, data, FIN."""
        flags = seg.flags
        seq = seg.seq
        plen = seg.payload_len
        if not flags & ACK:
            # Without ACK (and no SYN/RST) every stack discards the segment (RFC 9293
            # 3.10.7.4; Linux tcp_rcv_state_process): it is evidence of nothing.
            return
        if peer.fin_pending and sender.fin_seq is not None and \
                seq_gt(seq, sender.fin_seq):
            # This segment follows the sender's FIN in its sequence space, so (in order)
            # the FIN reached the peer before it.
            peer.fin_pending = False
            self._receive_fin(peer, seg, "received FIN (before this later segment)")
        options = seg.options
        if options:
            if len(options) == 12 and options[:4] == _TS_OPTION:
                sender.tsval = _tsval(options, 4)[0]  # what _learn_options finds, sooner
            else:
                self._learn_options(seg, sender)
        state = sender.state

        # Handshake completion and mid-stream pickup, from the sender's own behaviour.
        if state == ESTABLISHED:
            pass  # (the usual case: none of the handshake steps below)
        elif state == SYN_SENT and flags & ACK:
            self._move(sender, ESTABLISHED, seg, "sent the third ACK")
            if not peer.seen and peer.state in (UNKNOWN, LISTEN):
                # Only one direction captured: the ACK proves a SYN-ACK was sent.
                peer.isn = seq_add(seg.ack, -1)
                peer.snd_nxt = seg.ack
                self._move(peer, ESTABLISHED, seg,
                           "inferred: the peer's ACK acknowledges a SYN-ACK not captured")
        elif state == SYN_RCVD and flags & ACK:
            # A server only speaks after its SYN is acked; this confirms ESTABLISHED.
            if (sender.isn is not None and seq_gt(seq, sender.isn)) or plen:
                self._move(sender, ESTABLISHED, seg, "sent data/ACK after the handshake")
        elif state in (UNKNOWN, LISTEN, CLOSED) and not sender.syn_count \
                and not sender.synack_count and sender.packets == 1 and peer.state != SYN_SENT:
            self._move(sender, ESTABLISHED, seg, "picked up mid-stream")
            if sender.isn is None:
                sender.isn = seq_add(seq, -1)
        # Any segment without SYN from an endpoint proves it left the handshake.
        sender.tentative = False

        seq_end = (seq + plen) & _MASK
        # Retransmissions, keepalives and holes (sender's sequence space).
        snd_nxt = sender.snd_nxt
        if snd_nxt is not None and seq != snd_nxt:
            d = (seq - snd_nxt) & _MASK
            if d >= _HALF:
                d -= 1 << 32
            if plen and d < 0:
                if plen <= 1 and d == -1 and not flags & FIN:
                    sender.keepalives += 1
                    sender.keepalive_unanswered += 1
                    self._note("keepalive", sender, seg)
                elif peer.window == 0 and plen <= 1:
                    pass  # zero-window probe
                else:
                    self._on_rexmit(seg, sender)
            elif not plen and d == -1 and not flags & FIN and sender.state in SYNCHRONIZED \
                    and peer.window != 0:  # with a zero window it is a window probe
                sender.keepalives += 1
                sender.keepalive_unanswered += 1
                self._note("keepalive", sender, seg)
            elif d > 0 and sender.packets:
                self.holes += 1
                self._note("hole", sender, seg, missing=d)
        if plen:
            if sender.fin_seq is not None and seq_ge(seq, seq_add(sender.fin_seq, 1)):
                self._note("data_after_fin", sender, seg)
            elif peer.state == CLOSED and peer.seen and peer.rst_count \
                    and seg.ts - peer.since > self._in_flight():
                self._note("data_to_closed", sender, seg, peer_state=peer.state)
            elif sender.state == CLOSED and sender.rst_count:
                self._note("data_after_rst", sender, seg)
        snd_nxt = sender.snd_nxt
        if snd_nxt is None or (seq_end != snd_nxt and (seq_end - snd_nxt) & _MASK < _HALF):
            sender.snd_nxt = seq_end  # (_advance)

        # ACK effects on the peer (FIN acknowledged, handshake completed). Without a FIN
        # from the peer and with nothing unseen acknowledged, only max_ack moves.
        ack = seg.ack
        peer_nxt = peer.snd_nxt
        if peer.fin_seq is not None or (peer_nxt is not None and ack != peer_nxt
                                        and (ack - peer_nxt) & _MASK < _HALF):
            self._ack_effects(seg, sender, peer)
        else:
            max_ack = sender.max_ack
            if max_ack is None or (ack != max_ack and (ack - max_ack) & _MASK < _HALF):
                sender.max_ack = ack
        if peer.state == SYN_RCVD and peer.isn is not None \
                and seq_gt(seg.ack, peer.isn) and (plen or not self.third_ack_lost):
            # (Once the server has shown it misses these ACKs, another bare ACK is no
            # evidence; data or the server's own segments are.)
            reason = "its SYN-ACK was acknowledged"
            if plen:
                reason += " by a data segment"
            self._set(peer, ESTABLISHED, seg.frame, seg.ts, reason)
            peer.tentative = True  # a SYN-ACK retransmission would show the ACK was lost
            if sender.syn_count and peer.synack_count:
                self.handshake_seen = True

        if flags & FIN:
            self._on_fin(seg, sender, peer, seq_end)

    def _on_rexmit(self, seg: Segment, sender: Endpoint) -> None:
        sender.rexmit_count += 1
        if sender.rexmit_seq == seg.seq:
            sender.rexmit_repeat += 1
            frames = sender.rexmit_frames
            if len(frames) < 20:
                frames.append(seg.frame)  # type: ignore[union-attr]
        else:
            sender.rexmit_seq = seg.seq
            sender.rexmit_repeat = 1
            sender.rexmit_first_ts = seg.ts
            sender.rexmit_frames = [seg.frame]
        self._note("retransmission", sender, seg, repeat=sender.rexmit_repeat)

    def _in_flight(self) -> float:
        """How long segments sent before a close may keep arriving: two handshake
        round trips when the handshake was seen, else a second."""
        c, s = self.client, self.server
        if self.handshake_seen and c.first_syn_ts and s.first_syn_ts:
            rtt = max(s.first_syn_ts - c.first_syn_ts, 0.0) * 2
            return max(2 * rtt, 0.2)
        return 1.0

    def _on_fin(self, seg: Segment, sender: Endpoint, peer: Endpoint, fin_seq: int) -> None:
        sender.fin_count += 1
        if sender.fin_seq is not None:
            if fin_seq == sender.fin_seq:
                self._note("fin_retransmission", sender, seg, count=sender.fin_count)
                acked = peer.max_ack is not None and seq_gt(peer.max_ack, fin_seq)
                if peer.fin_received and not acked:
                    # Retransmitted and never acknowledged on the wire: the first copy
                    # did not arrive either, so neither did our assumption.
                    self._fin_not_received(peer, seg)
                elif peer.state == TIME_WAIT:
                    peer.since = seg.ts  # Linux restarts TIME_WAIT on a retransmitted FIN
                return
            self._note("fin_moved", sender, seg, old=sender.fin_seq, new=fin_seq)
        sender.fin_seq = fin_seq
        sender.fin_frame = seg.frame
        sender.fin_ts = seg.ts
        self._advance(sender, seq_add(fin_seq, 1))
        # The sender's own state: it called close() (or shutdown).
        state = sender.state
        if state in (ESTABLISHED, SYN_RCVD, UNKNOWN, LISTEN, SYN_SENT):
            self._move(sender, FIN_WAIT_1, seg, "sent FIN (active close)")
        elif state == CLOSE_WAIT:
            self._move(sender, LAST_ACK, seg, "sent FIN after the peer's (passive close)")
        # The peer receives the FIN (delivery assumed) unless it has already shown,
        # by its ACKs, that the FIN did not reach it; then only its ACK will tell.
        if not peer.fin_pending:
            self._receive_fin(peer, seg, "received FIN")

    def _receive_fin(self, ep: Endpoint, seg: Segment, how: str) -> None:
        """`ep` receives its peer's FIN."""
        state = ep.state
        ep.pre_fin_state = state
        ep.fin_received = True
        if state in (ESTABLISHED, SYN_RCVD) or (state == UNKNOWN and self.midstream):
            self._move(ep, CLOSE_WAIT, seg, f"{how} (passive close)")
        elif state == FIN_WAIT_1:
            if ep.fin_acked:
                self._move(ep, TIME_WAIT, seg, f"{how} with the ACK of its own FIN")
            else:
                self._move(ep, CLOSING, seg, f"{how} before its own FIN was acked")
                self._note("simultaneous_close", ep, seg)
        elif state == FIN_WAIT_2:
            self._move(ep, TIME_WAIT, seg, how)
        else:
            ep.fin_received = state in SYNCHRONIZED

    def _fin_not_received(self, ep: Endpoint, seg: Segment) -> None:
        """`ep` sent something whose ACK does not cover the FIN we assumed it had
        received: take the assumption back."""
        ep.fin_received = False
        ep.fin_pending = True
        state = ep.state
        if state == CLOSE_WAIT:
            back = ep.pre_fin_state if ep.pre_fin_state in (ESTABLISHED, SYN_RCVD) \
                else ESTABLISHED
        elif state == CLOSING:
            back = FIN_WAIT_1
        elif state == TIME_WAIT:
            back = FIN_WAIT_2 if ep.fin_acked else FIN_WAIT_1
        else:
            return
        self._move(ep, back, seg, "its ACK shows the peer's FIN had not reached it")

    def _on_window(self, seg: Segment, sender: Endpoint, peer: Endpoint) -> None:
        if seg.flags & (RST | SYN):
            if seg.flags & SYN:
                sender.window = seg.window
            return
        window = seg.window
        if window == 0 and sender.window != 0:
            sender.zero_windows += 1
            sender.zero_window_since = seg.ts
            sender.zero_window_frame = seg.frame
            self._note("zero_window", sender, seg)
        elif window and sender.window == 0 and sender.zero_window_since is not None:
            self._note("window_reopened", sender, seg,
                       duration=seg.ts - sender.zero_window_since)
            sender.zero_window_since = None
        sender.window = window


def final_states(conn: Connection) -> tuple[str, str]:
    """The states to report: LISTEN and UNKNOWN of an endpoint that never answered
    become CLOSED, since it holds no connection (ss would not list one)."""
    c, s = conn.client, conn.server
    if c.state not in _GUESSED and s.state not in _GUESSED:
        return c.state, s.state  # (the usual case: nothing to turn into CLOSED)
    out = []
    for ep, other in ((c, s), (s, c)):
        state = ep.state
        never_answered = not ep.seen and other.state not in SYNCHRONIZED
        if state == LISTEN or (state == UNKNOWN and never_answered):
            state = CLOSED
        out.append(state)
    return out[0], out[1]
