"""Zeek-compatible `conn_state` and `history` for one connection record.

A `ZeekView` is fed the same segments as the tracker and reproduces what Zeek's TCP
session adapter would log for them, so a Zeek user can read our output at once.
It follows Zeek's own logic (packet_analysis/protocol/tcp/TCPSessionAdapter.cc,
analyzer/protocol/tcp/TCP_Endpoint.cc and TCP_Reassembler.cc, and the `conn_state`
function of scripts/base/protocols/conn/main.zeek), re-expressed here:

- two endpoints with Zeek's seven states and its per-state update rules;
- history letters: A D I Q once per direction, S H F R again only when the
  relative sequence number changes, C G T W logarithmically (1st, 10th, 100th ...),
  '^' when roles are flipped;
- content gaps ('g') from a minimal reassembler: an ACK above bytes never seen,
  counted only while both endpoints are established (or cleanly closing);
- record splitting (`starts_new_record`): Zeek's session timers (attempt, expire,
  partial-close, close/delete, inactivity) and its `IsReuse` test.

Known simplifications: checksums are not verified (no 'C'), close deferral while
the reassembler still holds data is not modelled, nor 'X' (analysis limits).
Nothing here does I/O.
"""

from __future__ import annotations

import re

from tcpanalyze.segment import ACK, FIN, RST, SYN, Segment

INACTIVE = 0
SYN_SENT = 1
SYN_ACK_SENT = 2
PARTIAL = 3
ESTABLISHED = 4
CLOSED = 5
RESET = 6
STATE_NAMES = ("INACTIVE", "SYN_SENT", "SYN_ACK_SENT", "PARTIAL", "ESTABLISHED",
               "CLOSED", "RESET")

# Zeek's script-level defaults (init-bare.zeek), in seconds.
TCP_SYN_TIMEOUT = 5.0
TCP_SESSION_TIMER = 6.0
TCP_CONNECTION_LINGER = 5.0
TCP_ATTEMPT_DELAY = 5.0
TCP_CLOSE_DELAY = 5.0
TCP_PARTIAL_CLOSE_DELAY = 3.0
TCP_INACTIVITY_TIMEOUT = 300.0
# The TCP analyzer starts a connection with the UDP inactivity timeout and switches
# to the TCP one when the first endpoint leaves the handshake states.
INITIAL_INACTIVITY_TIMEOUT = 60.0

TOO_LARGE_SEQ_DELTA = 1048576

# Ports that Zeek's default (non-bare) scripts put into `likely_server_ports`
# (each protocol analyzer registers its well-known ports there). Used only to
# orient a connection whose first packet is neither a SYN nor a SYN-ACK.
LIKELY_SERVER_PORTS: frozenset[int] = frozenset({
    21, 22, 23, 25, 53, 80, 81, 88, 110, 111, 135, 139, 143, 389, 443, 445, 465,
    502, 514, 563, 585, 587, 614, 636, 989, 990, 992, 993, 994, 995, 1080, 1723,
    1812, 2049, 2811, 3128, 3306, 3389, 5060, 5222, 5223, 5269, 5432, 5672,
    6379, 6666, 6667, 6668, 6669, 8000, 8080, 8443, 8888, 20000,
})

# Per-direction history bits; the responder's are shifted up 16 bits (as in Zeek).
_HIST_SYN = 0x1
_HIST_FIN = 0x2
_HIST_RST = 0x4
_HIST_FIN_RST = 0x8
_HIST_DATA = 0x10
_HIST_ACK = 0x20
_HIST_MULTI_FLAG = 0x40

_RSTOS0 = re.compile(r"\^?S[^HAFGIQ]*R.*")


def seq_delta(a: int, b: int) -> int:
    """Signed 32-bit a - b, Zeek's seq_delta."""
    d = (a - b) & 0xFFFFFFFF
    return d - (1 << 32) if d >= 0x80000000 else d


def first_packet_flips(seg: Segment,
                       likely_server_ports: frozenset[int] = LIKELY_SERVER_PORTS) -> bool:
    """Whether Zeek makes the *receiver* of a new record's first packet its originator.

    A pure SYN never flips. A SYN-ACK always flips (current Zeek; the one-sided-2745
    baseline shows '^h' for ports that are in no server-port list). Any other first
    packet flips when its source port looks like a server port and the destination
    does not, or both do and the source port is the smaller one.
    """
    syn, ack = bool(seg.flags & SYN), bool(seg.flags & ACK)
    if syn and not ack:
        return False
    if syn and ack:
        return True
    if seg.sport in likely_server_ports:
        if seg.dport in likely_server_ports:
            return seg.sport < seg.dport
        return True
    return False


class _Reassembler:
    """Just enough of Zeek's TCP_Reassembler to find content gaps (relative seqs)."""

    def __init__(self) -> None:
        self.blocks: list[list[int]] = []  # sorted, merged [start, end) above trim_seq
        self.last_reassem = 1
        self.trim_seq = 1

    def data_sent(self, seq: int, length: int, acked: int) -> None:
        upper = seq + length
        if seq < acked:  # already acknowledged part is not buffered
            if upper <= acked:
                return
            seq = acked
        if upper <= self.trim_seq:
            return
        seq = max(seq, self.trim_seq)
        self.blocks.append([seq, upper])
        self.blocks.sort()
        merged: list[list[int]] = []
        for b in self.blocks:
            if merged and b[0] <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b[1])
            else:
                merged.append(b)
        self.blocks = merged
        for b in merged:  # deliver what is now in order
            if b[0] <= self.last_reassem < b[1]:
                self.last_reassem = b[1]

    def ack_received(self, seq: int) -> list[int]:
        """Trim to `seq`; return the lengths of the gaps Zeek would report."""
        if seq <= self.trim_seq:
            return []
        gaps: list[int] = []
        if self.last_reassem < seq:
            for start, end in self.blocks:
                if end <= self.last_reassem:
                    continue
                if start >= seq:
                    break
                if start > self.last_reassem:
                    gaps.append(start - self.last_reassem)
                self.last_reassem = max(self.last_reassem, end)
            if seq > self.last_reassem:
                gaps.append(seq - self.last_reassem)
            self.last_reassem = max(self.last_reassem, seq)
        self.trim_seq = seq
        self.blocks = [[max(s, seq), e] for s, e in self.blocks if e > seq]
        return gaps


class ZeekEndpoint:
    """One side of the connection, with the fields Zeek's TCP_Endpoint keeps."""

    def __init__(self, is_orig: bool) -> None:
        self.is_orig = is_orig
        self.state = INACTIVE
        self.prev_state = INACTIVE
        self.peer: ZeekEndpoint = self
        self.start_seq = 0
        self.last_seq = 0
        self.ack_seq = 0
        self.seq_wraps = 0
        self.ack_wraps = 0
        self.fin_cnt = 0
        self.rst_cnt = 0
        self.fin_seq = 0
        self.did_close = False
        self.last_time = 0.0
        self.hist_last_syn = 0
        self.hist_last_fin = 0
        self.hist_last_rst = 0
        # [count, threshold] for the logarithmic letters
        self.rxmt = [0, 1]
        self.win0 = [0, 1]
        self.gap = [0, 1]
        self.reassembler = _Reassembler()

    def set_state(self, new: int) -> None:
        if new != self.state:
            self.prev_state = self.state
            self.state = new

    def init_seqs(self, start: int, last: int) -> None:
        self.start_seq = start & 0xFFFFFFFF
        self.ack_seq = start & 0xFFFFFFFF
        self.last_seq = last & 0xFFFFFFFF

    def update_last_seq(self, seq: int) -> None:
        if seq < self.last_seq:
            self.seq_wraps += 1
        self.last_seq = seq

    def update_ack_seq(self, seq: int) -> None:
        if seq < self.ack_seq:
            self.ack_wraps += 1
        self.ack_seq = seq

    def to_relative(self, seq: int, wraps: int) -> int:
        return (wraps << 32) + seq - self.start_seq

    def no_data_acked(self) -> bool:
        ack = (self.ack_wraps << 32) + self.ack_seq
        return ack in (self.start_seq, self.start_seq + 1)

    def size(self) -> int:
        """Payload bytes from sequence numbers (Zeek's TCP_Endpoint::Size)."""
        if (self.prev_state == SYN_SENT and self.state == RESET
                and self.peer.state == INACTIVE and not self.no_data_acked()):
            return 0
        last = (self.seq_wraps << 32) + self.last_seq
        ack = (self.ack_wraps << 32) + self.ack_seq
        size = (max(last, ack) - self.start_seq) % (1 << 64)
        if size:
            size -= 1
        if self.fin_cnt and size:
            size -= 1
        return size


class ZeekView:
    """Zeek's view of one connection record: endpoint states, history, conn_state.

    `flipped` says the originator is the receiver of the record's first packet
    (see `first_packet_flips`); `feed(seg, from_orig)` takes the direction relative
    to that originator. If Zeek flips roles again mid-way (a SYN arriving after its
    SYN-ACK), `roles_swapped` becomes True and later `from_orig` values are mapped.
    """

    def __init__(self, flipped: bool = False) -> None:
        self.orig = ZeekEndpoint(True)
        self.resp = ZeekEndpoint(False)
        self.orig.peer, self.resp.peer = self.resp, self.orig
        self._history: list[str] = ["^"] if flipped else []
        self._hist_seen = 0
        self.roles_swapped = False
        self.is_partial = False
        self.first_packet_seen = 0  # 1: orig, 2: resp
        self.is_active = True
        self.last_time: float | None = None
        self.removed = False  # a timer ended this record
        self.inactivity_timeout = INITIAL_INACTIVITY_TIMEOUT
        self._timers: list[tuple[float, str]] = []
        self.packets = 0

    # --- history -----------------------------------------------------------------
    def history(self) -> str:
        return "".join(self._history)

    def _add_history(self, code: str, is_orig: bool) -> None:
        self._history.append(code if is_orig else code.lower())

    def _check_history(self, mask: int, code: str, is_orig: bool) -> bool:
        """Add `code` the first time `mask` is seen; True if it was seen before."""
        if not is_orig:
            mask <<= 16
        if self._hist_seen & mask:
            return True
        self._hist_seen |= mask
        self._add_history(code, is_orig)
        return False

    def _scaled(self, counter: list[int], code: str, is_orig: bool) -> None:
        counter[0] += 1
        if counter[0] == counter[1]:
            self._add_history(code, is_orig)
            counter[1] *= 10

    def _update_history(self, flags: int, ep: ZeekEndpoint, rel_seq: int,
                        length: int) -> None:
        syn, fin, rst = bool(flags & SYN), bool(flags & FIN), bool(flags & RST)
        o = ep.is_orig
        bits = syn + fin + rst
        if bits > 1:
            if fin and rst:
                self._check_history(_HIST_FIN_RST, "I", o)
            else:
                self._check_history(_HIST_MULTI_FLAG, "Q", o)
        elif bits == 1:
            if syn:
                code = "H" if flags & ACK else "S"
                if self._check_history(_HIST_SYN, code, o) and rel_seq != ep.hist_last_syn:
                    self._add_history(code, o)
                ep.hist_last_syn = rel_seq
            if fin:  # a FIN's number is at the end of its data
                if (self._check_history(_HIST_FIN, "F", o)
                        and rel_seq + length != ep.hist_last_fin):
                    self._add_history("F", o)
                ep.hist_last_fin = rel_seq + length
            if rst:
                if self._check_history(_HIST_RST, "R", o) and rel_seq != ep.hist_last_rst:
                    self._add_history("R", o)
                ep.hist_last_rst = rel_seq
        elif length:
            self._check_history(_HIST_DATA, "D", o)
        elif flags & ACK:
            self._check_history(_HIST_ACK, "A", o)

    # --- conn_state -------------------------------------------------------------
    def conn_state(self) -> str:
        """Zeek's conn_state() from scripts/base/protocols/conn/main.zeek."""
        os_, rs = self.orig.state, self.resp.state
        o_inactive = os_ in (INACTIVE, PARTIAL)
        r_inactive = rs in (INACTIVE, PARTIAL)
        if rs == RESET:
            if os_ in (SYN_SENT, SYN_ACK_SENT) or (
                    os_ == RESET and self.orig.size() == 0 and self.resp.size() == 0):
                return "REJ"
            return "RSTRH" if o_inactive else "RSTR"
        if os_ == RESET:
            if r_inactive:
                return "RSTOS0" if _RSTOS0.fullmatch(self.history()) else "OTH"
            return "RSTO"
        if rs == CLOSED and os_ == CLOSED:
            return "SF"
        if os_ == CLOSED:
            return "SH" if r_inactive else "S2"
        if rs == CLOSED:
            return "SHR" if o_inactive else "S3"
        if os_ == SYN_SENT and rs == INACTIVE:
            return "S0"
        if os_ == ESTABLISHED and rs == ESTABLISHED:
            return "S1"
        return "OTH"

    def endpoint_states(self) -> tuple[str, str]:
        return STATE_NAMES[self.orig.state], STATE_NAMES[self.resp.state]

    # --- record splitting --------------------------------------------------------
    def _closed(self) -> bool:
        return self.orig.did_close or self.resp.did_close

    def _add_timer(self, when: float, kind: str) -> None:
        self._timers.append((when, kind))

    def advance(self, ts: float) -> bool:
        """Run the Zeek timers due by `ts`; True if one of them removed the record."""
        if self.removed:
            return True
        if self.last_time is not None and ts >= self.last_time + self.inactivity_timeout:
            self.removed = True
            return True
        while self._timers:
            self._timers.sort()
            when, kind = self._timers[0]
            if when > ts:
                break
            self._timers.pop(0)
            if self._fire(when, kind):
                self.removed = True
                return True
        return False

    def _fire(self, t: float, kind: str) -> bool:
        o, r = self.orig, self.resp
        last = self.last_time if self.last_time is not None else t
        if kind == "delete":
            return True
        if not self.is_active:
            return False
        if kind == "attempt":
            if o.state in (SYN_SENT, SYN_ACK_SENT) and r.state == INACTIVE:
                self.is_active = False
                return True
            return False
        if kind == "partial_close":
            if (o.state != INACTIVE and r.state != INACTIVE
                    and not (o.did_close and r.did_close)):
                return not (o.state == RESET or r.state == RESET)
            return False
        # "expire": Zeek's ExpireTimer
        if last + TCP_CONNECTION_LINGER < t:
            # idle and closed on one side: both closed, one reset, or half-closed
            if (o.did_close or r.did_close) and (
                    (o.did_close and r.did_close) or RESET in (o.state, r.state)
                    or INACTIVE in (o.state, r.state)):
                self.is_active = False
                return True
            if r.state == INACTIVE and o.state == INACTIVE:
                return True
        self._add_timer(t + TCP_SESSION_TIMER, "expire")
        return False

    def is_reuse(self, seg: Segment, from_orig: bool) -> bool:
        """Zeek's TCPSessionAdapter::IsReuse: does this SYN start a new connection?"""
        if not seg.flags & SYN:
            return False
        conn_orig = self.orig
        if seg.flags & ACK:
            if self.orig.state != INACTIVE:
                return False  # not a half connection
            conn_orig = self.resp
        if not self._closed():
            if seg.seq == conn_orig.start_seq:
                return False
            if (not seg.flags & ACK and conn_orig.state == SYN_ACK_SENT
                    and self.resp.state == INACTIVE and seg.seq == self.resp.start_seq):
                return False  # SYN/SYN-ACK reordering, fixed by a flip in feed()
        return True

    def starts_new_record(self, seg: Segment, from_orig: bool, ts: float) -> bool:
        """True when Zeek would log this record and open a new one for `seg`.

        Either a session timer removed the record before `ts` (attempt timer 5 s
        after an unanswered SYN, close delay 5 s after a complete close or a reset,
        partial-close 3 s, expire/linger, inactivity), or `seg` is a SYN that Zeek
        treats as connection reuse (any SYN after one side closed or reset, or a
        SYN whose sequence number differs from the originator's initial one).
        Runs the timers, so call it once per segment, before `feed`.
        """
        if self.packets == 0:
            return False
        return self.advance(ts) or self.is_reuse(seg, from_orig)

    # --- the packet path ---------------------------------------------------------
    def feed(self, seg: Segment, from_orig: bool, payload_captured: bool = True) -> None:
        """Process one segment, as TCPSessionAdapter::Process does.

        `payload_captured` False means the capture cut the payload short (snaplen):
        Zeek then keeps the bytes out of reassembly, so an ACK for them is a gap.
        """
        is_orig = from_orig != self.roles_swapped
        self.packets += 1
        t = seg.ts
        if self.packets == 1:  # Zeek's first ExpireTimer, tcp_SYN_timeout after creation
            self._add_timer(t + TCP_SYN_TIMEOUT, "expire")
        flags = seg.flags
        syn, fin, rst, ack = (bool(flags & SYN), bool(flags & FIN),
                              bool(flags & RST), bool(flags & ACK))
        ep = self.orig if is_orig else self.resp
        peer = ep.peer
        length = seg.payload_len
        base_seq, ack_seq = seg.seq, seg.ack

        self._set_partial_status(flags, is_orig)
        seg_len = length + syn + fin - (length if rst else 0)
        seq_past = (base_seq + seg_len) & 0xFFFFFFFF
        self._init_endpoint(ep, flags, base_seq, seq_past)

        rel_seq, underflow = self._relative_seq(ep, base_seq, ep.last_seq, ep.seq_wraps)
        self._update_history(flags, ep, rel_seq, length)
        if seg.window == 0 and not rst and peer.state != CLOSED and ep.state != RESET:
            self._scaled(ep.win0, "W", ep.is_orig)
        if not (self.orig.did_close and self.resp.did_close) or self.last_time is None:
            self.last_time = t
        if fin:
            ep.fin_cnt += 1
            ep.fin_seq = rel_seq + seg_len
        if rst:
            ep.rst_cnt += 1

        rel_ack = 0
        if ack:
            if peer.state == INACTIVE:
                rel_ack = 1
                peer.init_seqs(ack_seq - 1, ack_seq - 1)
            else:
                rel_ack, ack_underflow = self._relative_seq(
                    peer, ack_seq, peer.ack_seq, peer.ack_wraps)
                if ack_underflow:
                    rel_ack = 0
                elif not rst:  # acks in RSTs are not trusted
                    delta_ack = seq_delta(ack_seq, peer.ack_seq)
                    # an ack of 0 far ahead is more likely broken than a wrap
                    if delta_ack > 0 and not (ack_seq == 0 and delta_ack > TOO_LARGE_SEQ_DELTA):
                        peer.update_ack_seq(ack_seq)

        delta_last = self._update_last_seq(ep, seq_past, flags, length)
        ep.last_time = t
        do_close, gen_event = self._update_state_machine(
            t, ep, peer, base_seq, ack_seq, length, delta_last, is_orig, flags)
        if ack:
            self._ack_received(peer, rel_ack)
        rel_data_seq = rel_seq + 1 if syn else rel_seq
        if length > 0 and not rst and not underflow and payload_captured:
            acked = ep.to_relative(ep.ack_seq, ep.ack_wraps)
            ep.reassembler.data_sent(rel_data_seq, length, acked)
        if do_close:
            self._connection_closed(ep, peer, gen_event)

    def _set_partial_status(self, flags: int, is_orig: bool) -> None:
        if is_orig:
            if not self.first_packet_seen & 1:
                self.is_partial = not flags & SYN or bool(flags & ACK)
        elif not self.first_packet_seen & 2 and not self.is_partial:
            self.is_partial = not flags & SYN
        self.first_packet_seen |= 1 if is_orig else 2

    @staticmethod
    def _init_endpoint(ep: ZeekEndpoint, flags: int, first_seq: int, last_seq: int) -> None:
        syn = bool(flags & SYN)
        if ep.state == INACTIVE:
            if syn:
                ep.init_seqs(first_seq, last_seq)
            else:  # partial: number as though a SYN had been seen
                ep.init_seqs(first_seq - 1, first_seq)
        elif ep.state in (SYN_SENT, SYN_ACK_SENT):
            if syn and first_seq != ep.start_seq:
                ep.init_seqs(first_seq, last_seq)
        elif ep.state in (ESTABLISHED, PARTIAL):
            if syn:
                ep.init_seqs(first_seq, last_seq)
        elif ep.state == RESET and syn and ep.prev_state == INACTIVE:
            # the earlier RST may have been injected: trust the SYN instead
            ep.init_seqs(first_seq, last_seq)

    @staticmethod
    def _relative_seq(ep: ZeekEndpoint, cur: int, last: int, wraps: int) -> tuple[int, bool]:
        delta = seq_delta(cur, last)
        if delta < 0:
            if wraps and cur > last:
                wraps -= 1
        elif delta > 0 and cur < last:
            wraps += 1
        if wraps == 0:
            d = seq_delta(cur, ep.start_seq)
            return d, d < 0
        return ep.to_relative(cur, wraps), False

    def _update_last_seq(self, ep: ZeekEndpoint, last_seq: int, flags: int,
                         length: int) -> int:
        delta = seq_delta(last_seq, ep.last_seq)
        if flags & (SYN | RST) and abs(delta) > TOO_LARGE_SEQ_DELTA:
            pass
        elif flags & FIN and ep.last_seq == (ep.start_seq + 1) & 0xFFFFFFFF:
            ep.update_last_seq(last_seq)
        elif ep.state == RESET:
            pass  # nothing after a reset is trusted
        elif delta > 0:
            ep.update_last_seq(last_seq)
        elif length > 0:
            self._scaled(ep.rxmt, "T", ep.is_orig)
        return delta

    def _ack_received(self, ep: ZeekEndpoint, seq: int) -> None:
        if ep.fin_cnt and seq >= ep.fin_seq:
            seq = ep.fin_seq - 1
        if seq <= 2 and self.is_partial and seq > ep.reassembler.trim_seq:
            # Zeek ignores the first "gap" of a partial connection
            ep.reassembler.trim_seq = seq
            return
        gaps = ep.reassembler.ack_received(seq)
        clean = all(e.state == ESTABLISHED or (e.state == CLOSED and e.prev_state == ESTABLISHED)
                    for e in (ep, ep.peer))
        if clean:
            for _ in gaps:
                self._scaled(ep.gap, "G", ep.is_orig)

    # --- Zeek's UpdateStateMachine -----------------------------------------------
    def _update_state_machine(self, t: float, ep: ZeekEndpoint, peer: ZeekEndpoint,
                              base_seq: int, ack_seq: int, length: int, delta_last: int,
                              is_orig: bool, flags: int) -> tuple[bool, bool]:
        if ep.state == INACTIVE:
            return self._update_inactive(t, ep, peer, base_seq, length, is_orig, flags)
        if ep.state in (SYN_SENT, SYN_ACK_SENT):
            return self._update_syn_sent(ep, flags)
        if ep.state in (ESTABLISHED, PARTIAL):
            return self._update_established(ep, peer, flags)
        if ep.state == CLOSED:
            if flags & RST and peer.state != CLOSED:
                ep.set_state(RESET)
                return not ep.did_close, False
            return False, False
        return False, False  # RESET: only weirds in Zeek

    def _set_state(self, ep: ZeekEndpoint, new: int) -> None:
        handshake = (INACTIVE, SYN_SENT, SYN_ACK_SENT)
        if (new != ep.state and new not in handshake and ep.state in handshake
                and ep.peer.state in handshake):
            self.inactivity_timeout = TCP_INACTIVITY_TIMEOUT
        ep.set_state(new)

    def _update_inactive(self, t: float, ep: ZeekEndpoint, peer: ZeekEndpoint,
                         base_seq: int, length: int, is_orig: bool,
                         flags: int) -> tuple[bool, bool]:
        do_close = gen_event = False
        syn, fin, rst, ack = (bool(flags & SYN), bool(flags & FIN),
                              bool(flags & RST), bool(flags & ACK))
        if syn:
            if is_orig:
                self._set_state(ep, SYN_ACK_SENT if ack else SYN_SENT)
                self._add_timer(t + TCP_ATTEMPT_DELAY, "attempt")
            else:
                if (not ack and peer.state == SYN_ACK_SENT
                        and base_seq == ep.start_seq):
                    # SYN/SYN-ACK reversal: Zeek flips the roles and establishes
                    self.is_partial = False
                    self._flip_roles()
                    self._set_state(peer, ESTABLISHED)
                    self.first_packet_seen |= 1
                if peer.state == SYN_SENT:
                    self._set_state(peer, ESTABLISHED)
                self._set_state(ep, ESTABLISHED)
        if fin:
            self._set_state(ep, CLOSED)
            do_close = gen_event = True
        if rst:
            self._set_state(ep, RESET)
            if is_orig:
                is_reject = peer.state == ESTABLISHED
            else:
                is_reject = peer.state in (SYN_SENT, SYN_ACK_SENT)
            do_close = True
            gen_event = not is_reject
        if ep.state == INACTIVE:  # no control flag changed the state
            if not is_orig and length == 0 and self.orig.state == SYN_SENT:
                pass  # an ACK of the SYN before the SYN-ACK is not "partial"
            elif ack and peer.state == ESTABLISHED:
                self._set_state(ep, ESTABLISHED)  # missed the SYN, saw the SYN-ACK
                self.is_partial = False
            else:
                self._set_state(ep, PARTIAL)
        return do_close, gen_event

    def _update_syn_sent(self, ep: ZeekEndpoint, flags: int) -> tuple[bool, bool]:
        do_close = gen_event = False
        if flags & FIN:
            self._set_state(ep, CLOSED)
            do_close = gen_event = True
        if flags & RST:
            self._set_state(ep, RESET)
            self.is_active = False  # ConnectionReset()
            do_close = True
        return do_close, gen_event

    def _update_established(self, ep: ZeekEndpoint, peer: ZeekEndpoint,
                            flags: int) -> tuple[bool, bool]:
        do_close = gen_event = False
        if (flags & SYN and ep.state == PARTIAL and peer.state == INACTIVE
                and not flags & ACK):
            self._set_state(ep, SYN_SENT)
        if flags & FIN and not flags & RST:
            self._set_state(ep, CLOSED)
            if peer.state == RESET and peer.prev_state == CLOSED:
                # the peer's FIN then RST was a normal close after all
                self._set_state(peer, CLOSED)
            do_close = gen_event = True
        if flags & RST:
            self._set_state(ep, RESET)
            do_close = True
            if peer.state != RESET or peer.prev_state != ESTABLISHED:
                self.is_active = False  # ConnectionReset()
        return do_close, gen_event

    def _flip_roles(self) -> None:
        self.orig, self.resp = self.resp, self.orig
        self.orig.is_orig, self.resp.is_orig = True, False
        fps = self.first_packet_seen
        self.first_packet_seen = (2 if fps & 1 else 0) | (1 if fps & 2 else 0)
        self.is_partial = False
        self.roles_swapped = not self.roles_swapped
        self._history.append("^")

    def _connection_closed(self, ep: ZeekEndpoint, peer: ZeekEndpoint,
                           gen_event: bool) -> None:
        if ep.did_close:
            return
        ep.did_close = True
        last = self.last_time if self.last_time is not None else 0.0
        if ep.state == RESET or peer.did_close or peer.state == INACTIVE:
            if (ep.prev_state != INACTIVE or peer.state != INACTIVE) and gen_event:
                self.is_active = False  # ConnectionFinished()
            self._timers.clear()  # CancelTimers()
            self._add_timer(last + TCP_CLOSE_DELAY, "delete")
        elif ep.prev_state == INACTIVE:
            self._add_timer(last + TCP_PARTIAL_CLOSE_DELAY, "partial_close")
        else:
            self._add_timer(last + TCP_SESSION_TIMER, "expire")
