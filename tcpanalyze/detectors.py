"""Detectors: the tracker's notes and states become findings a person can act on.

Per-connection findings are decided when a connection is looked at (at a timer sweep,
when a live input pauses, when it leaves the flow table, or at the end of the capture);
each kind is reported once per connection (retransmissions, keepalives and zero windows
once per endpoint), and when the connection ends its findings are brought up to date
with its final numbers. Aggregate detectors (SYN flood, port scan) keep bounded
counters per target / per source and report one finding each with their numbers.

Context before alarms: a finding that needs a side of the conversation the capture did
not show is downgraded to info and says so.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from mypy_extensions import mypyc_attr

from tcpanalyze.ids import Ids
from tcpanalyze.ledger import Ledger
from tcpanalyze.report import Finding
from tcpanalyze.segment import format_addr, format_endpoint
from tcpanalyze.settings import Settings
from tcpanalyze.tracker import (
    CLOSE_WAIT,
    CLOSED,
    CLOSING,
    ESTABLISHED,
    FIN_WAIT_2,
    LAST_ACK,
    SYN_RCVD,
    SYN_SENT,
    SYNCHRONIZED,
    Change,
    Connection,
    Endpoint,
    Note,
)

SEVERITY: Final = {
    "syn_flood": "high",
    "port_scan": "high",
    "close_wait_leak": "high",
    "half_open": "high",
    "time_wait_violation": "high",
    "missing_third_ack": "medium",
    "time_wait_assassination": "medium",
    "rst_teardown": "medium",
    "connection_refused": "medium",
    "fin_wait_2_stuck": "medium",
    "last_ack_stuck": "medium",
    "data_after_close": "medium",
    "invalid_flags": "medium",
    "syn_retransmission": "low",
    "retransmission": "low",
    "zero_window": "low",
    "keepalive": "info",
    "simultaneous_open": "info",
    "simultaneous_close": "info",
}

# Kinds whose truth depends on the other side having been captured.
_NEEDS_BOTH_SIDES: Final = frozenset({"half_open", "missing_third_ack", "close_wait_leak",
                               "fin_wait_2_stuck", "last_ack_stuck"})
# Kinds absorbed by an aggregate finding when the connection belongs to a flood or scan.
ABSORBED: Final = frozenset({"half_open", "missing_third_ack", "connection_refused",
                       "syn_retransmission", "rst_teardown"})
_MAX_FRAMES: Final = 10
# States a connection can be stuck in (see _from_states).
_STUCK: Final = frozenset({CLOSE_WAIT, FIN_WAIT_2, LAST_ACK, CLOSING})


def _back_in_syn_rcvd(conn: Connection, note: Note) -> str:
    """The server's SYN_RCVD from the SYN-ACK retransmission `note` on, as far as seen:
    a finding made at a sweep stands in the report however the connection ends, so it
    says what happened (back to SYN_RCVD at that frame, and when it left if it had),
    not a state that may no longer hold (the client's data may still complete the
    handshake; cf. the report's server_state)."""
    text = f"which went back to SYN_RCVD at frame {note.frame}"
    if conn.server.state == SYN_RCVD:
        return text
    # (the move back to SYN_RCVD came with that retransmission, at its capture time)
    left = _left_state(conn, "server", SYN_RCVD, note.ts)
    if left is None:
        return text
    when = f"at frame {left.frame}" if left.frame else f"{left.ts - note.ts:.3f} s later"
    return f"{text} and left it {when} ({left.reason})"


# kinds found for each endpoint on its own: both ends may retransmit, probe or close
# their window, and each gets its finding (the others: one finding per connection)
_PER_ENDPOINT: Final = frozenset({"retransmission", "keepalive", "zero_window"})


def _key(kind: str, about: Endpoint | None) -> tuple[str, str]:
    """What a connection reports once: a kind, or a kind for one endpoint."""
    return (kind, about.role if about is not None and kind in _PER_ENDPOINT else "")


def _refresh(known: Finding, now: Finding) -> None:
    """A finding already emitted, brought up to date; it keeps the time it was found."""
    known.summary, known.frames, known.details = now.summary, now.frames, now.details
    known.severity, known.confidence = now.severity, now.confidence


def _dur(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


class ConnectionDetector:
    """Turns one connection's notes and states into findings (once per kind)."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings

    def findings(self, conn: Connection, now: float, final: bool) -> list[Finding]:
        out: list[Finding] = []

        def add(kind: str, summary: str, frames: list[int], time: float,
                about: Endpoint | None = None, **details: Any) -> None:
            emitted = conn.emitted
            key = _key(kind, about)
            if emitted is None:  # most connections never have a finding: no empty dict
                emitted = conn.emitted = {}
            elif key in emitted:
                if final:  # the connection's end: the finding made earlier (at a sweep)
                    # gets the numbers of the whole connection (a later retransmission...)
                    _refresh(emitted[key],
                             self._finding(conn, kind, summary, frames, time, about, details))
                return
            finding = emitted[key] = self._finding(conn, kind, summary, frames, time, about,
                                                   details)
            out.append(finding)

        if conn.notes:  # (every finding _from_notes makes needs a note)
            self._from_notes(conn, add, final)
        self._from_states(conn, now, final, add)
        return out

    # -- evidence recorded by the tracker -----------------------------------------------

    def _from_notes(self, conn: Connection, add: Any, final: bool) -> None:
        c, s = conn.client, conn.server
        by_kind: dict[str, list[Note]] = {}
        for note in conn.notes:
            by_kind.setdefault(note.kind, []).append(note)
        ep = {"client": c, "server": s}

        for note in by_kind.get("connection_refused", []):
            add("connection_refused",
                f"{s.name} refused {c.name}'s connection with RST: nothing was listening "
                f"on port {s.port}, or a firewall rejected it.",
                [c.syn_frame, note.frame], note.ts, s)
        rsts = [n for n in by_kind.get("rst", [])]
        for note in rsts:
            sender = ep[note.role]
            other = s if sender is c else c
            s_state, o_state = note.data["states"]
            if note.data.get("after_own_fin") and note.data.get("peer_data_after_fin"):
                add("data_after_close",
                    f"{other.role} {other.name} kept sending data after {sender.role} "
                    f"{sender.name} had closed its side (FIN at frame {sender.fin_frame}); "
                    f"{sender.role}'s stack answered with RST: the application wrote to a "
                    "connection its peer had already closed.",
                    [sender.fin_frame, note.frame], note.ts, other)
            if note.data.get("closed_by_rst"):
                continue  # more RSTs answering segments that were in flight: same teardown
            if o_state == "TIME_WAIT":
                continue  # reported as time_wait_assassination
            if o_state == CLOSED and s_state in (CLOSED, "TIME_WAIT"):
                # The connection was already over (both FINs acknowledged, or a timer):
                # a RST from a socket that is gone or in TIME_WAIT tears nothing down
                # (Linux answers segments for a closed socket with RST).
                continue
            believer = o_state in SYNCHRONIZED
            if believer and (note.data.get("first_packet") or s_state == CLOSED):
                add("half_open",
                    f"{sender.role} {sender.name} answered {other.role} {other.name} "
                    f"(in {o_state}) with RST: it no longer had the connection, so "
                    f"{other.role} believed in a connection that no longer existed.",
                    [note.frame], note.ts, other)
                continue
            if s_state in SYNCHRONIZED or o_state in SYNCHRONIZED or s_state == SYN_RCVD:
                why = _rst_reason(s_state, note)
                add("rst_teardown",
                    f"{sender.role} {sender.name} reset the connection in {s_state} "
                    f"while {other.role} was in {o_state}{why}.",
                    [note.frame], note.ts, sender, sender=sender.role, sender_state=s_state,
                    peer_state=o_state)
        for note in by_kind.get("time_wait_assassination", []):
            victim = ep[note.role]
            killer = s if victim is c else c
            add("time_wait_assassination",
                f"A RST from {killer.name} ended {victim.role} {victim.name}'s TIME_WAIT early "
                "(RFC 1337 'TIME-WAIT assassination'): old duplicates of this connection "
                "could now be accepted by a new one on the same ports.",
                [note.frame], note.ts, victim)
        for note in by_kind.get("port_reuse", []):
            tw_role = note.data.get("time_wait")
            if tw_role is None:
                continue
            age = note.data["time_wait_age"]
            advances = note.data["isn_advances"] or note.data["ts_advances"]
            sev = "low" if advances else "high"
            how = ("its ISN/timestamp advanced, so Linux accepts it (RFC 6191), but ports are "
                   "being recycled faster than TIME_WAIT" if advances else
                   "neither its ISN nor its timestamp advanced, so old duplicates can corrupt "
                   "the new connection (RFC 1122 4.2.2.13)")
            add("time_wait_violation",
                f"{c.name} opened a new connection to {s.name} on the same ports "
                f"{_dur(age)} after the {tw_role} entered TIME_WAIT "
                f"(connection {note.data['previous']}); {how}.",
                [note.data.get("time_wait_frame", 0), note.frame], note.ts, c,
                severity=sev, previous=note.data["previous"], time_wait_age=age,
                isn_advances=note.data["isn_advances"], ts_advances=note.data["ts_advances"])
        if "third_ack_lost" in by_kind and (final or ("missing_third_ack", "") not in
                                             (conn.emitted or ())):
            note = by_kind["third_ack_lost"][0]
            # (retransmissions of the SYN-ACK the handshake used: its ISN's, not those
            # of SYN-ACKs with another ISN)
            add("missing_third_ack",
                f"{c.name}'s handshake ACK was on the wire but {s.name} retransmitted its "
                f"SYN-ACK {s.synack_rexmits} time(s): the third ACK was lost between the "
                f"capture point and the server, {_back_in_syn_rcvd(conn, note)}.",
                [s.syn_frame or note.frame, note.frame,
                 *(n.frame for n in by_kind.get("synack_retransmission", ())
                   if n.role == "server" and n.data["isn"] == s.isn)], note.ts, s)
        if "simultaneous_open" in by_kind:
            note = by_kind["simultaneous_open"][0]
            add("simultaneous_open",
                f"{c.name} and {s.name} both sent a SYN before either had the other's "
                "(simultaneous open, RFC 793 figure 8).", [c.syn_frame, note.frame], note.ts)
        if "simultaneous_close" in by_kind:
            note = by_kind["simultaneous_close"][0]
            add("simultaneous_close",
                f"{c.name} and {s.name} sent their FINs before either had the other's "
                f"(simultaneous close: each goes through CLOSING to TIME_WAIT once the "
                f"other's FIN and ACK arrive; client {c.state}, server {s.state} as seen).",
                [c.fin_frame, s.fin_frame], note.ts)
        if "invalid_flags" in by_kind:
            notes = by_kind["invalid_flags"]
            combos = sorted({n.data["combo"] for n in notes})
            who = ep[notes[0].role]
            add("invalid_flags",
                f"{who.role} {who.name} sent {conn.note_counts['invalid_flags']} segment(s) "
                "with invalid flag "
                f"combinations ({', '.join(combos)}): a scanner, a broken stack or an "
                "evasion attempt.", [n.frame for n in notes], notes[0].ts, who,
                combos=combos)
        after = by_kind.get("data_after_fin", []) + by_kind.get("data_to_closed", []) + \
            by_kind.get("data_after_rst", [])
        if after:
            note = after[0]
            who = ep[note.role]
            what = {"data_after_fin": "after its own FIN",
                    "data_to_closed": "to an endpoint that had already reset the connection",
                    "data_after_rst": "after the connection was reset"}[note.kind]
            add("data_after_close",
                f"{who.role} {who.name} sent data {what}: segments of a closed connection.",
                [n.frame for n in after], note.ts, who)
        if "zero_window" in by_kind:
            notes = by_kind["zero_window"]
            who = ep[notes[0].role]
            reopened = by_kind.get("window_reopened", [])
            longest = max((n.data["duration"] for n in reopened), default=0.0)
            since = who.zero_window_since
            still = since is not None
            if since is not None:
                longest = max(longest, conn.last - since)
            if longest >= self.s.zero_window_threshold:
                tail = " and was still closed at the end" if still else ""
                add("zero_window",
                    f"{who.role} {who.name} closed its receive window (advertised zero) "
                    f"{who.zero_windows} time(s) (longest {_dur(longest)}){tail}: its application "
                    "is not reading fast enough, so the peer had to stop sending.",
                    [n.frame for n in notes], notes[0].ts, who, count=who.zero_windows,
                    longest=longest)
        for role in ("client", "server"):
            who = ep[role]
            other = s if who is c else c
            if who.keepalives:
                notes = [n for n in by_kind.get("keepalive", []) if n.role == role]
                if notes:
                    add("keepalive",
                        f"{role} {who.name} sent {who.keepalives} keepalive probe(s) on an "
                        "idle connection.", [n.frame for n in notes], notes[0].ts, who)
            if who.rexmit_count >= self.s.retransmission_min:
                notes = [n for n in by_kind.get("retransmission", []) if n.role == role]
                if notes and (final or ("retransmission", role) not in (conn.emitted or ())):
                    add("retransmission",
                        f"{role} {who.name} retransmitted {who.rexmit_count} data segment(s) "
                        f"({who.data_segments} sent in all): loss between it and {other.name}"
                        " or a slow receiver.", [n.frame for n in notes], notes[0].ts, who,
                        count=who.rexmit_count)
        sent = c.syns_sent  # (not capture copies, not SYN+FIN probes)
        if sent > 1:
            notes = by_kind.get("syn_retransmission", [])
            if notes:
                if s.seen:
                    outcome = "getting an answer"
                elif c.max_ack is not None:  # it acknowledged a SYN-ACK it received
                    outcome = ("getting an answer (not captured: the client went on to "
                               "acknowledge the server's SYN-ACK)")
                else:
                    outcome = "giving up or the capture ended"
                add("syn_retransmission",
                    f"{c.name} sent its SYN {sent} times before {outcome}.",
                    [c.syn_frame] + [n.frame for n in notes], notes[0].ts, c,
                    count=sent)

    # -- states as of `now` -------------------------------------------------------------

    def _from_states(self, conn: Connection, now: float, final: bool, add: Any) -> None:
        c, s = conn.client, conn.server
        st = self.s
        # A SYN nobody answered. Decided only when the connection is over (its SYN
        # timer ran out, or the capture ended), since an answer may still come.
        # (A SYN+FIN probe opens nothing: see invalid_flags.)
        waited = now - c.first_syn_ts
        if final and c.syns_sent and not s.seen and c.state in (SYN_SENT, CLOSED) and \
                not c.rst_count and not conn.flipped:
            # Less than the initial SYN RTO (1 s): too soon to call the SYNs unanswered,
            # however many were sent (the count is the sender's doing, not the network's)
            short = waited < 1.0
            add("half_open",
                f"{c.name} sent {c.syns_sent} SYN(s) to {s.name} and got no answer in "
                f"{_dur(waited)}: "
                + ("the capture ended too soon to tell." if short else
                   "a firewall dropping them or a host that is down."),
                [c.syn_frame], c.first_syn_ts, c, **({"severity": "info"} if short else {}))
        # The server answered but the handshake never completed.
        if final and s.synack_count and s.state in (SYN_RCVD, CLOSED) and c.syn_count and \
                not conn.handshake_seen and not c.rst_count and not s.rst_count and \
                c.state != ESTABLISHED:
            short = now - s.first_syn_ts < 1.0 and s.synack_count == 1
            add("missing_third_ack",
                f"{s.name} answered {c.name}'s SYN with {s.synack_count} SYN-ACK(s) but the "
                "handshake's third ACK never came: "
                + ("the capture ended too soon to tell." if short else
                   "the server holds a SYN_RCVD entry (client gone, spoofed, or the ACK "
                   "lost)."),
                [c.syn_frame, s.syn_frame], s.first_syn_ts, s,
                **({"severity": "info"} if short else {}))
        # A peer that vanished: data retransmitted and never acknowledged.
        # (Each loop below runs only when one of the two ends may qualify.)
        rexmit_min = st.half_open_rexmit_min
        for who, other in ((c, s), (s, c)) if c.rexmit_repeat >= rexmit_min or \
                s.rexmit_repeat >= rexmit_min else ():
            if who.rexmit_repeat >= st.half_open_rexmit_min and \
                    other.last_ts < who.rexmit_first_ts:
                add("half_open",
                    f"{who.role} {who.name} retransmitted the same data "
                    f"{who.rexmit_repeat} times over {_dur(who.last_ts - who.rexmit_first_ts)} "
                    f"and {other.name} never answered: the peer vanished (crashed, unplugged, "
                    f"or a firewall/NAT dropped the flow) while {who.role} is still "
                    f"{who.state}.", who.rexmit_frames[:_MAX_FRAMES], who.rexmit_first_ts,
                    who)
        probes = st.keepalive_probes
        for who, other in ((c, s), (s, c)) if c.keepalive_unanswered >= probes or \
                s.keepalive_unanswered >= probes else ():
            if who.keepalive_unanswered >= st.keepalive_probes:
                add("half_open",
                    f"{who.role} {who.name} sent {who.keepalive_unanswered} keepalive probes "
                    f"that {other.name} never answered: the peer is gone, and after "
                    f"{st.keepalive_probes} probes {who.role}'s kernel drops the connection.",
                    [n.frame for n in conn.notes if n.kind == "keepalive"
                     and n.role == who.role][-_MAX_FRAMES:], who.last_ts, who,
                    probes=who.keepalive_unanswered)
        # a fin_wait_2_stuck found at a sweep, looked at again at the connection's end
        look_again = final and ("fin_wait_2_stuck", "") in (conn.emitted or ())
        for who, other in ((c, s), (s, c)) if c.state in _STUCK or s.state in _STUCK or \
                look_again else ():
            age = now - who.since
            # a FIN on the wire that the waiting side never acknowledged did not arrive
            unacked = (f"sent at frame {other.fin_frame} but never acknowledged"
                       if other.fin_frame else "which never came")
            if who.state == CLOSE_WAIT and age >= st.close_wait_threshold:
                add("close_wait_leak",
                    f"{who.role} {who.name} has been in CLOSE_WAIT for {_dur(age)}: "
                    f"{other.role} closed (FIN at frame {other.fin_frame}) and {who.role} "
                    f"never sent its own FIN: the application did not call close() - a "
                    f"socket leak if it keeps happening.", [other.fin_frame], who.since, who,
                    duration=age)
            elif who.state == FIN_WAIT_2 and age >= st.fin_wait_2_threshold:
                why = (f" {other.name} acknowledged the FIN and has been silent since: it "
                       "either never closed its socket or is gone." if other.state == CLOSE_WAIT
                       else "")
                add("fin_wait_2_stuck",
                    f"{who.role} {who.name} has waited in FIN_WAIT_2 for {_dur(age)} for "
                    f"{other.name}'s FIN, {unacked}.{why}", [who.fin_frame], who.since,
                    who, duration=age)
            elif who.state != FIN_WAIT_2 and look_again and conn.emitted is not None:
                # found at a sweep, and the wait has since ended: say how (the text
                # made then, 'silent since', would stand against the packets after it)
                known = conn.emitted[("fin_wait_2_stuck", "")]
                left = _left_state(conn, who.role, FIN_WAIT_2, known.time)
                if left is not None:
                    came = (f"which came only at frame {left.frame}" if left.new == "TIME_WAIT"
                            else unacked)
                    acked = any(ch.role == other.role and ch.new == CLOSE_WAIT
                                and ch.ts <= left.ts for ch in conn.timeline)
                    why = f" ({other.name} had acknowledged the FIN)" if acked else ""
                    at = f"at frame {left.frame}" if left.frame else "when its timer ran out"
                    add("fin_wait_2_stuck",
                        f"{who.role} {who.name} waited in FIN_WAIT_2 for "
                        f"{_dur(left.ts - known.time)} for {other.name}'s FIN, {came}{why}; "
                        f"it left FIN_WAIT_2 {at}: {left.reason}.", [who.fin_frame],
                        known.time, who, duration=left.ts - known.time)
            if who.state in (LAST_ACK, CLOSING) and age >= st.last_ack_threshold:
                add("last_ack_stuck",
                    f"{who.role} {who.name} sent its FIN (frame {who.fin_frame}) and has "
                    f"waited {_dur(age)} in {who.state} for an ACK that never came "
                    f"({who.fin_count} FIN(s) sent): {other.name} is gone.",
                    [who.fin_frame], who.since, who, duration=age)

    # -- building findings ------------------------------------------------------------

    def _finding(self, conn: Connection, kind: str, summary: str, frames: list[int],
                 time: float, about: Endpoint | None, details: dict[str, Any]) -> Finding:
        severity = details.pop("severity", SEVERITY[kind])
        confidence = "high"
        if kind in _NEEDS_BOTH_SIDES:
            unseen = [ep for ep in (conn.client, conn.server) if not ep.seen]
            blind = unseen and not (kind == "half_open" and about is not None
                                    and about.state == SYN_SENT)
            if blind or (conn.midstream and kind != "half_open"):
                confidence = "low"
                severity = "info"
                missing = unseen[0].role if unseen else "start of the"
                summary += (f" (uncertain: the {missing} side was not captured)" if unseen
                            else " (uncertain: the capture began mid-connection)")
        frames = sorted({f for f in frames if f})[:_MAX_FRAMES]
        return Finding(kind=kind, severity=severity, summary=summary, time=time, frames=frames,
                       connection=conn.id, subject=conn.subject,
                       server=conn.server.name, confidence=confidence, details=details)


def _left_state(conn: Connection, role: str, state: str, since: float) -> Change | None:
    """The change that took `role` out of `state`, entered at capture time `since`
    (None if it has not left it)."""
    inside = False
    for change in conn.timeline:
        if change.role != role:
            continue
        if change.new == state and change.ts == since:
            inside = True
        elif inside and change.old == state:
            return change
    return None


def _rst_reason(state: str, note: Note) -> str:
    if state == SYN_RCVD:
        return ": the handshake was aborted"
    if state == ESTABLISHED:
        return (": an abortive close (SO_LINGER 0, close() with unread data, a killed "
                "process) or a middlebox")
    if state == CLOSE_WAIT:
        return ": it aborted instead of closing after the peer's FIN"
    if state in (FIN_WAIT_2,):
        return ": data arrived after it had closed"
    return ""


# -- aggregates -------------------------------------------------------------------------

_MAX_SOURCES: Final = 65536  # distinct sources remembered per target; more are counted, not stored
_MAX_TARGETS: Final = 4096  # ports/hosts remembered per scanning source
# A source's ports per host (hosts per port) are a tuple while this few (most clients
# talk to one or two servers on one port: 48 bytes instead of a 216-byte set), then a set.
_SMALL_GROUP: Final = 8
# Live runs keep per-second SYN counts for this long (capture time) behind the newest
# second; older seconds leave only their peak (a bounded memory for an endless stream).
RATE_HISTORY: Final = 300


def _add_member(groups: dict[Any, Any], key: Any, member: Any) -> None:
    """groups[key] |= {member}, as a tuple while small, at most _MAX_TARGETS members."""
    members = groups.get(key)
    if members is None:
        groups[key] = (member,)
    elif type(members) is tuple:
        if member not in members:
            groups[key] = (*members, member) if len(members) < _SMALL_GROUP \
                else {*members, member}
    elif len(members) < _MAX_TARGETS:
        members.add(member)


@dataclass
class _Target:
    """Connection attempts toward one server address:port (SYN flood detector)."""

    syns: int = 0
    completed: int = 0
    synacks: int = 0
    synack_rexmits: int = 0
    cookie_hints: int = 0
    cookie_connections: int = 0  # SYN-ACKs never retransmitted: no state kept
    first: float = 0.0
    last: float = 0.0
    first_frame: int = 0
    per_second: Counter[int] = field(default_factory=Counter)
    sources: set[bytes] = field(default_factory=set)
    sources_overflow: int = 0
    connections: Ids = field(default_factory=Ids)
    seq: int = 0  # order of creation (the order findings are reported in)
    peak_dropped: int = 0  # highest count among the seconds dropped from per_second


_MAX_ONCE: Final = 262_144  # seen-once sources remembered (about 100 bytes each)


class _Once:
    """A source with a single attempt so far, kept small."""

    __slots__ = ("completed", "conn_id", "dport", "dst", "frame", "refused", "ts")

    # (defaults: a compiled class is unpickled by calling it without arguments; a --jobs
    # worker sends its detector to the parent)
    def __init__(self, ts: float = 0.0, frame: int = 0, dst: bytes = b"", dport: int = 0,
                 conn_id: int = 0) -> None:
        self.ts, self.frame, self.dst, self.dport, self.conn_id = ts, frame, dst, dport, conn_id
        self.completed = 0
        self.refused = 0

    def promote(self) -> _Source:
        src = _Source(attempts=1, completed=self.completed, refused=self.refused,
                      first=self.ts, last=self.ts, first_frame=self.frame)
        src.ports_by_host[self.dst] = (self.dport,)
        src.hosts_by_port[self.dport] = (self.dst,)
        src.connections.add(self.conn_id)
        return src


@dataclass(slots=True)
class _Source:
    """Connection attempts from one client address (port scan detector). The groups
    are tuples or sets (see _add_member)."""

    attempts: int = 0
    completed: int = 0
    refused: int = 0
    first: float = 0.0
    last: float = 0.0
    first_frame: int = 0
    ports_by_host: dict[bytes, Any] = field(default_factory=dict)
    hosts_by_port: dict[int, Any] = field(default_factory=dict)
    connections: Ids = field(default_factory=Ids)
    seq: int = 0  # order of creation (the order findings are reported in)


@mypyc_attr(allow_interpreted_subclasses=True)  # (the --jobs workers' counting one)
class AggregateDetector:
    """SYN floods (per target) and scans (per source), from bounded counters."""

    # Member ids remembered per target / source. Only members seen before an aggregate is
    # reported need remembering: later ones are absorbed as their findings appear.
    # (ClassVar: class attributes also when compiled, which tests lower)
    member_limit: ClassVar[int] = 65_536
    source_member_limit: ClassVar[int] = 1_024

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.targets: dict[tuple[bytes, int], _Target] = {}
        self.sources: dict[bytes, _Source] = {}
        # Sources seen once (a spoofed flood: one SYN each) stay in this small, capped
        # form; a second attempt promotes them to a full _Source for scan detection.
        self._once: OrderedDict[bytes, _Once] = OrderedDict()
        self.members: set[int] = set()  # connection ids absorbed by a reported aggregate
        self._reported: dict[tuple[str, Any], Finding] = {}
        # Per-second SYN counts kept (seconds behind the newest); None: all (the
        # parallel merge sums the workers' counts second by second). Live runs set it.
        self.rate_history: int | None = None
        # What changed since the last look: only an attempt can make a target or a
        # source newly qualify (completions only lower the share that decides), so the
        # per-second look needs only these; the first look and the final one see all
        # (nothing is tracked before the first look: a parallel worker never looks).
        self._changed_targets: set[tuple[bytes, int]] = set()
        self._changed_sources: set[bytes] = set()
        self._looked = False
        # a --jobs worker's (parallel.py): the evidence below is also written there, for
        # the parent to replay in one process's order
        self.ledger: Ledger | None = None

    def on_attempt(self, conn: Connection, frame: int, ts: float) -> None:
        """A client's first SYN of a connection."""
        client, server, port = conn.client.addr, conn.server.addr, conn.server.port
        if self.ledger is not None:
            self.ledger.attempt(client, server, port, conn.id, frame, ts)
        self.attempt(client, server, port, conn.id, frame, ts)

    # The evidence as plain values (what on_attempt, on_completed and on_connection_end
    # take from a connection): a --jobs worker records these calls for the parent, which
    # replays them in one process's order (parallel._replay_aggregates).
    def attempt(self, client: bytes, server: bytes, port: int, conn_id: int, frame: int,
                ts: float) -> None:
        key = (server, port)
        t = self.targets.get(key)
        if t is None:
            t = self.targets[key] = _Target(first=ts, first_frame=frame, seq=len(self.targets))
        t.syns += 1
        t.last = ts
        second = int(ts)
        per_second = t.per_second
        if second in per_second:
            per_second[second] += 1
        else:
            per_second[second] = 1
            if self.rate_history is not None and len(per_second) > 2 * self.rate_history:
                self._drop_old_seconds(t, second - self.rate_history)
        if self._looked:
            self._changed_targets.add(key)
        if len(t.sources) < _MAX_SOURCES:
            t.sources.add(client)
        else:
            t.sources_overflow += client not in t.sources
        if len(t.connections) < self.member_limit:
            t.connections.add(conn_id)
        addr = client
        src = self.sources.get(addr)
        if src is None:
            once = self._once.pop(addr, None)
            if once is None:
                self._once[addr] = _Once(ts, frame, server, port, conn_id)
                if len(self._once) > _MAX_ONCE:
                    self._once.popitem(last=False)  # forgotten: at most one attempt lost
                return
            src = once.promote()
            src.seq = len(self.sources)
            self.sources[addr] = src
        src.attempts += 1
        src.last = ts
        _add_member(src.ports_by_host, server, port)
        _add_member(src.hosts_by_port, port, server)
        if len(src.connections) < self.source_member_limit:
            src.connections.add(conn_id)
        if self._looked:
            self._changed_sources.add(addr)

    @staticmethod
    def _drop_old_seconds(t: _Target, before: int) -> None:
        per_second = t.per_second
        old = [second for second in per_second if second < before]
        t.peak_dropped = max([t.peak_dropped, *(per_second.pop(s) for s in old)])

    def on_completed(self, conn: Connection) -> None:
        """A client's handshake completed (it spoke after its SYN)."""
        if self.ledger is not None:
            self.ledger.completion(conn.client.addr, conn.server.addr, conn.server.port)
        self.completion(conn.client.addr, conn.server.addr, conn.server.port)

    def completion(self, client: bytes, server: bytes, port: int) -> None:
        t = self.targets.get((server, port))
        if t is not None:
            t.completed += 1
        src = self.sources.get(client) or self._once.get(client)
        if src is not None:
            src.completed += 1

    def on_connection_end(self, conn: Connection) -> None:
        """Record the outcome of an attempt (handshake completed, refused, answered)."""
        if not conn.client.syn_count:
            return
        # Completed only if the client itself spoke after its SYN (spoofed ones never do).
        done = not conn.completion_counted and (
            conn.handshake_seen or conn.client.packets > conn.client.syn_count)
        kinds = {n.kind for n in conn.notes}
        client, server, port = conn.client.addr, conn.server.addr, conn.server.port
        synacks = conn.server.synack_count
        hint, cookie, refused = ("synack_without_options" in kinds, "syn_cookie" in kinds,
                                 "connection_refused" in kinds)
        if self.ledger is not None:
            self.ledger.outcome(client, server, port, done, synacks, hint, cookie, refused)
        self.outcome(client, server, port, done, synacks, hint, cookie, refused)

    def outcome(self, client: bytes, server: bytes, port: int, done: bool, synacks: int,
                cookie_hint: bool, cookie: bool, refused: bool) -> None:
        t = self.targets.get((server, port))
        src = self.sources.get(client) or self._once.get(client)
        if t is not None:
            t.completed += done
            t.synacks += synacks
            t.synack_rexmits += max(0, synacks - 1)
            t.cookie_hints += cookie_hint
            t.cookie_connections += cookie
        if src is not None:
            src.completed += done
            src.refused += refused

    def findings(self, final: bool = False) -> list[Finding]:
        """Newly detected aggregates. With final=True, the ones reported earlier (live)
        are brought up to date in place with the final numbers."""
        out: list[Finding] = []
        st = self.s
        targets: Iterable[tuple[tuple[bytes, int], _Target]]
        sources: Iterable[tuple[bytes, _Source]]
        if final or not self._looked:
            targets, sources = self.targets.items(), self.sources.items()
            self._looked = True
        else:  # only what an attempt changed, in the order of the full dicts
            targets = sorted(((k, self.targets[k]) for k in self._changed_targets),
                             key=lambda kv: kv[1].seq)
            sources = sorted(((a, self.sources[a]) for a in self._changed_sources
                              if a in self.sources), key=lambda kv: kv[1].seq)
        self._changed_targets = set()
        self._changed_sources = set()
        for (addr, port), t in targets:
            known = self._reported.get(("flood", (addr, port)))
            if (known is None and t.syns < st.syn_flood_min_syns) or (known and not final):
                continue
            peak = max(t.peak_dropped, max(t.per_second.values()))
            n_sources = len(t.sources) + t.sources_overflow
            ratio = t.completed / t.syns
            if known is None and (peak < st.syn_flood_rate or n_sources < st.syn_flood_sources
                                  or ratio > st.syn_flood_completion):
                continue
            self.members.update(t.connections)
            span = max(t.last - t.first, 1e-6)
            cookies = t.cookie_connections > 0 or (t.cookie_hints > 0 and t.synack_rexmits == 0)
            target = format_endpoint(addr, port)
            if not cookies:
                cookie_text = ""
            elif t.synack_rexmits:
                cookie_text = (f" The server kept state for some attempts ({t.synack_rexmits} "
                               "SYN-ACK retransmissions) and answered others statelessly: its "
                               "SYN queue overflowed and SYN cookies took over.")
            else:
                cookie_text = (" The server never retransmitted a SYN-ACK: it answered with "
                               "SYN cookies and kept no state.")
            finding = Finding(
                kind="syn_flood", severity=SEVERITY["syn_flood"], time=t.first,
                frames=[t.first_frame], connection=None, subject=target, server=target,
                summary=(f"SYN flood against {target}: {t.syns} SYNs from {n_sources} "
                         f"sources in {_dur(span)} (peak {peak}/s), only {ratio:.0%} "
                         f"completed the handshake.{cookie_text}"),
                details={"syns": t.syns, "peak_syns_per_second": peak,
                         "mean_syns_per_second": round(t.syns / span, 1),
                         "distinct_sources": n_sources, "completion_ratio": round(ratio, 4),
                         "completed": t.completed, "synacks": t.synacks,
                         "stateless_synacks": t.cookie_connections,
                         "synack_retransmissions": t.synack_rexmits,
                         "syn_cookies_suspected": cookies, "duration": span})
            self._record(("flood", (addr, port)), finding, known, out)
        for addr, src in sources:
            known = self._reported.get(("scan", addr))
            if known and not final:
                continue
            max_ports = max((len(p) for p in src.ports_by_host.values()), default=0)
            max_hosts = max((len(h) for h in src.hosts_by_port.values()), default=0)
            ratio = src.completed / max(src.attempts, 1)
            if known is None and ((max_ports < st.scan_ports and max_hosts < st.scan_hosts)
                                  or ratio > st.scan_completion):
                continue
            self.members.update(src.connections)
            who = format_addr(addr)
            top_hosts = sorted(src.ports_by_host.items(), key=lambda kv: -len(kv[1]))[:5]
            top_ports = sorted(src.hosts_by_port.items(), key=lambda kv: -len(kv[1]))[:5]
            kind_text = (f"{max_ports} ports on one host" if max_ports >= st.scan_ports
                         else f"{max_hosts} hosts on one port")
            finding = Finding(
                kind="port_scan", severity=SEVERITY["port_scan"], time=src.first,
                frames=[src.first_frame], connection=None, subject=who, server=None,
                summary=(f"{who} probed {kind_text} ({src.attempts} attempts, "
                         f"{src.completed} completed, {src.refused} refused) in "
                         f"{_dur(max(src.last - src.first, 0.0))}: a port scan."),
                details={"attempts": src.attempts, "completed": src.completed,
                         "refused": src.refused, "max_ports_per_host": max_ports,
                         "max_hosts_per_port": max_hosts,
                         "top_hosts": [[format_addr(h), len(p)] for h, p in top_hosts],
                         "top_ports": [[p, len(h)] for p, h in top_ports],
                         "duration": max(src.last - src.first, 0.0)})
            self._record(("scan", addr), finding, known, out)
        return out

    def could_have_reported(self) -> bool:
        """Whether any target or source reached, by the end, the counts a report needs at
        any time: its SYNs, peak rate and sources (a flood), its ports or hosts (a scan).
        These only grow, so if none did, no look at any earlier time reported anything
        either (the completion ratio, which can fall and rise again, is not looked at)."""
        st = self.s
        for t in self.targets.values():
            peak = max(t.peak_dropped, max(t.per_second.values(), default=0))
            if t.syns >= st.syn_flood_min_syns and peak >= st.syn_flood_rate and \
                    len(t.sources) + t.sources_overflow >= st.syn_flood_sources:
                return True
        for src in self.sources.values():
            if max(map(len, src.ports_by_host.values()), default=0) >= st.scan_ports or \
                    max(map(len, src.hosts_by_port.values()), default=0) >= st.scan_hosts:
                return True
        return False

    def _record(self, key: tuple[str, Any], finding: Finding, known: Finding | None,
                out: list[Finding]) -> None:
        if known is None:
            self._reported[key] = finding
            out.append(finding)
        else:  # refresh the numbers of a finding already emitted
            known.summary, known.details = finding.summary, finding.details

    def source_items(self) -> list[tuple[bytes, _Source]]:
        """Every source, the seen-once ones as full _Source objects (for merging)."""
        return [*self.sources.items(), *((a, o.promote()) for a, o in self._once.items())]

    def answers_with_cookies(self, addr: bytes, port: int) -> bool:
        t = self.targets.get((addr, port))
        return t is not None and t.cookie_connections > 0

    def absorbs(self, finding: Finding) -> bool:
        return finding.kind in ABSORBED and finding.connection in self.members
