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
from bisect import bisect_left, bisect_right
from typing import Final

from tcpanalyze.segment import ACK, FIN, RST, SYN, Segment

INACTIVE: Final = 0  # (the three handshake states are the lowest numbers: see _set_state)
SYN_SENT: Final = 1
SYN_ACK_SENT: Final = 2
PARTIAL: Final = 3
ESTABLISHED: Final = 4
CLOSED: Final = 5
RESET: Final = 6
STATE_NAMES: Final = ("INACTIVE", "SYN_SENT", "SYN_ACK_SENT", "PARTIAL", "ESTABLISHED",
               "CLOSED", "RESET")

# Zeek's script-level defaults (init-bare.zeek), in seconds.
TCP_SYN_TIMEOUT: Final = 5.0
TCP_SESSION_TIMER: Final = 6.0
TCP_CONNECTION_LINGER: Final = 5.0
TCP_ATTEMPT_DELAY: Final = 5.0
TCP_CLOSE_DELAY: Final = 5.0
TCP_PARTIAL_CLOSE_DELAY: Final = 3.0
TCP_INACTIVITY_TIMEOUT: Final = 300.0
# The TCP analyzer starts a connection with the UDP inactivity timeout and switches
# to the TCP one when the first endpoint leaves the handshake states.
INITIAL_INACTIVITY_TIMEOUT: Final = 60.0

TOO_LARGE_SEQ_DELTA: Final = 1048576

# Ports that Zeek's default (non-bare) scripts put into `likely_server_ports`
# (each protocol analyzer registers its well-known ports there). Used only to
# orient a connection whose first packet is neither a SYN nor a SYN-ACK.
LIKELY_SERVER_PORTS: Final[frozenset[int]] = frozenset({
    21, 22, 23, 25, 53, 80, 81, 88, 110, 111, 135, 139, 143, 389, 443, 445, 465,
    502, 514, 563, 585, 587, 614, 636, 989, 990, 992, 993, 994, 995, 1080, 1723,
    1812, 2049, 2811, 3128, 3306, 3389, 5060, 5222, 5223, 5269, 5432, 5672,
    6379, 6666, 6667, 6668, 6669, 8000, 8080, 8443, 8888, 20000,
})

# Per-direction history bits; the responder's are shifted up 16 bits (as in Zeek).
_HIST_SYN: Final = 0x1
_HIST_FIN: Final = 0x2
_HIST_RST: Final = 0x4
_HIST_FIN_RST: Final = 0x8
_HIST_DATA: Final = 0x10
_HIST_ACK: Final = 0x20
_HIST_MULTI_FLAG: Final = 0x40

_RSTOS0: Final = re.compile(r"\^?S[^HAFGIQ]*R.*")

# The logarithmic letters (C G T W) are written at the 1st, 10th, 100th ... occurrence.
_LOG_MARKS: Final = frozenset(10 ** k for k in range(40))
_MASK: Final = 0xFFFFFFFF
_HALF: Final = 0x80000000
_WRAP: Final = 1 << 32
_CONTROL: Final = SYN | FIN | RST
_INF: Final = float("inf")  # sorts after every block end: [x, _INF] bisects right of [x, e]


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

    __slots__ = ("blocks", "last_reassem", "trim_seq")

    def __init__(self) -> None:
        # [start, end) blocks, sorted and merged: disjoint, with a gap between any two
        # (touching blocks are merged), so their ends are sorted too
        self.blocks: list[list[int]] = []
        self.last_reassem = 1
        self.trim_seq = 1

    def data_sent(self, seq: int, length: int, acked: int) -> None:
        upper = seq + length
        if seq < acked:  # already acknowledged part is not buffered
            if upper <= acked:
                return
            seq = acked
        trim = self.trim_seq
        if upper <= trim:
            return
        if seq < trim:
            seq = trim
        blocks = self.blocks
        # Merge [seq, upper) with the blocks it overlaps or touches, in place: they are
        # consecutive (from the first ending at or after seq to the last starting at or
        # before upper), so the list stays sorted and merged as a full re-sort would.
        if not blocks or seq > blocks[-1][1]:
            blocks.append([seq, upper])  # beyond everything (the usual case)
        else:
            i = bisect_left(blocks, [seq])  # first block starting at or after seq
            if i and blocks[i - 1][1] >= seq:
                i -= 1
            j = bisect_right(blocks, [upper, _INF], i)  # first block starting after upper
            if i == j:
                blocks.insert(i, [seq, upper])
            else:
                first, last = blocks[i], blocks[j - 1]
                if first[0] < seq:
                    seq = first[0]
                if last[1] > upper:
                    upper = last[1]
                blocks[i:j] = [[seq, upper]]
        # deliver what is now in order: the one block holding last_reassem, if any
        reassem = self.last_reassem
        k = bisect_right(blocks, [reassem, _INF]) - 1
        if k >= 0 and reassem < blocks[k][1]:
            self.last_reassem = blocks[k][1]

    def ack_received(self, seq: int) -> list[int]:
        """Trim to `seq`; return the lengths of the gaps Zeek would report."""
        if seq <= self.trim_seq:
            return []
        gaps: list[int] = []
        blocks = self.blocks
        reassem = self.last_reassem
        if reassem < seq:
            for start, end in blocks:
                if end <= reassem:
                    continue
                if start >= seq:
                    break
                if start > reassem:
                    gaps.append(start - reassem)
                reassem = end  # end > reassem: smaller ones were skipped
            if seq > reassem:
                gaps.append(seq - reassem)
                reassem = seq
            self.last_reassem = reassem
        self.trim_seq = seq
        # Drop the blocks wholly below seq (a prefix: ends are sorted) and cut the next.
        if blocks:
            k = 0
            n = len(blocks)
            while k < n and blocks[k][1] <= seq:
                k += 1
            if k:
                del blocks[:k]
            if blocks and blocks[0][0] < seq:
                blocks[0] = [seq, blocks[0][1]]
        return gaps


class ZeekEndpoint:
    """One side of the connection, with the fields Zeek's TCP_Endpoint keeps.

    It holds no reference to its peer (the view pairs them): a view is then free of
    reference cycles, so it is freed as soon as its connection is, without waiting
    for a full collection of the garbage collector."""

    __slots__ = ("ack_seq", "ack_wraps", "did_close", "fin_cnt", "fin_seq", "gap",
                 "hist_last_fin", "hist_last_rst", "hist_last_syn", "is_orig", "last_seq",
                 "last_time", "prev_state", "reassembler", "rst_cnt", "rxmt",
                 "seq_wraps", "start_seq", "state", "win0")

    def __init__(self, is_orig: bool) -> None:
        self.is_orig = is_orig
        self.state = INACTIVE
        self.prev_state = INACTIVE
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
        # occurrences so far of the logarithmic letters (see _LOG_MARKS)
        self.rxmt = 0
        self.win0 = 0
        self.gap = 0
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

    def no_data_acked(self) -> bool:
        ack = (self.ack_wraps << 32) + self.ack_seq
        return ack in (self.start_seq, self.start_seq + 1)

    def size(self, peer: ZeekEndpoint) -> int:
        """Payload bytes from sequence numbers (Zeek's TCP_Endpoint::Size)."""
        if (self.prev_state == SYN_SENT and self.state == RESET
                and peer.state == INACTIVE and not self.no_data_acked()):
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

    __slots__ = ("_hist_seen", "_history", "_timers", "first_packet_seen",
                 "inactivity_timeout", "is_active", "is_partial", "last_time", "orig",
                 "packets", "removed", "resp", "roles_swapped")

    def __init__(self, flipped: bool = False) -> None:
        self.orig = ZeekEndpoint(True)
        self.resp = ZeekEndpoint(False)
        # The history letters as one string and the timers as a tuple: objects the
        # garbage collector does not walk (a table of 40,000 connections made its full
        # collections cost seconds).
        self._history = "^" if flipped else ""
        self._hist_seen = 0
        self.roles_swapped = False
        self.is_partial = False
        self.first_packet_seen = 0  # 1: orig, 2: resp
        self.is_active = True
        self.last_time: float | None = None
        self.removed = False  # a timer ended this record
        self.inactivity_timeout = INITIAL_INACTIVITY_TIMEOUT
        self._timers: tuple[tuple[float, str], ...] = ()
        self.packets = 0

    # --- history -----------------------------------------------------------------
    def history(self) -> str:
        return self._history

    def _add_history(self, code: str, is_orig: bool) -> None:
        self._history += code if is_orig else code.lower()

    def _check_history(self, mask: int, code: str, is_orig: bool) -> bool:
        """Add `code` the first time `mask` is seen; True if it was seen before."""
        if not is_orig:
            mask <<= 16
        if self._hist_seen & mask:
            return True
        self._hist_seen |= mask
        self._add_history(code, is_orig)
        return False

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
            # The letter is written the first time, and again when the relative
            # sequence number moved (a new SYN, FIN or RST, not a retransmission).
            if syn:
                code = "H" if flags & ACK else "S"
                mask, moved = _HIST_SYN, rel_seq != ep.hist_last_syn
                ep.hist_last_syn = rel_seq
            elif fin:  # a FIN's number is at the end of its data
                code = "F"
                mask, moved = _HIST_FIN, rel_seq + length != ep.hist_last_fin
                ep.hist_last_fin = rel_seq + length
            else:
                code = "R"
                mask, moved = _HIST_RST, rel_seq != ep.hist_last_rst
                ep.hist_last_rst = rel_seq
            if not o:
                mask <<= 16
            if moved or not self._hist_seen & mask:
                self._hist_seen |= mask
                self._history += code if o else code.lower()
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
                    os_ == RESET and self.orig.size(self.resp) == 0
                    and self.resp.size(self.orig) == 0):
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
        self._timers += ((when, kind),)

    def advance(self, ts: float) -> bool:
        """Run the Zeek timers due by `ts`; True if one of them removed the record."""
        if self.removed:
            return True
        if self.last_time is not None and ts >= self.last_time + self.inactivity_timeout:
            self.removed = True
            return True
        while self._timers:
            timers = sorted(self._timers)
            when, kind = timers[0]
            if when > ts:
                break
            self._timers = tuple(timers[1:])  # (_fire may add one)
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
        # One function on purpose (every segment the fast path does not take comes
        # here): Zeek's small steps are inlined, the rarer ones stay methods.
        is_orig = from_orig != self.roles_swapped
        self.packets += 1
        t = seg.ts
        if self.packets == 1:  # Zeek's first ExpireTimer, tcp_SYN_timeout after creation
            self._add_timer(t + TCP_SYN_TIMEOUT, "expire")
        flags = seg.flags
        syn = (flags >> 1) & 1  # SYN is 0x02, FIN 0x01: 0 or 1 for the arithmetic
        fin = flags & FIN
        rst = flags & RST
        ack = flags & ACK
        ep, peer = (self.orig, self.resp) if is_orig else (self.resp, self.orig)
        length = seg.payload_len
        base_seq = seg.seq

        # Zeek's SetPartialStatus
        fps = self.first_packet_seen
        if is_orig:
            if not fps & 1:
                self.is_partial = not syn or bool(ack)
            self.first_packet_seen = fps | 1
        else:
            if not fps & 2 and not self.is_partial:
                self.is_partial = not syn
            self.first_packet_seen = fps | 2
        seg_len = length + syn + fin - (length if rst else 0)
        seq_past = (base_seq + seg_len) & _MASK

        # Zeek's InitEndpoint
        state = ep.state
        if state == INACTIVE:
            if syn:
                ep.init_seqs(base_seq, seq_past)
            else:  # partial: number as though a SYN had been seen
                ep.init_seqs(base_seq - 1, base_seq)
        elif syn and (state in (ESTABLISHED, PARTIAL)
                      or (state in (SYN_SENT, SYN_ACK_SENT) and base_seq != ep.start_seq)
                      or (state == RESET and ep.prev_state == INACTIVE)):
            # (after a RST: the earlier RST may have been injected, trust the SYN)
            ep.init_seqs(base_seq, seq_past)

        # relative sequence number, with Zeek's wrap counting
        last_seq = ep.last_seq
        wraps = ep.seq_wraps
        delta = (base_seq - last_seq) & _MASK
        if delta >= _HALF:
            delta -= _WRAP
        if delta < 0:
            if wraps and base_seq > last_seq:
                wraps -= 1
        elif delta > 0 and base_seq < last_seq:
            wraps += 1
        if wraps == 0:
            rel_seq = (base_seq - ep.start_seq) & _MASK
            underflow = rel_seq >= _HALF
            if underflow:
                rel_seq -= _WRAP
        else:
            rel_seq = (wraps << 32) + base_seq - ep.start_seq
            underflow = False

        # history: D and A once per direction; the control flags in _update_history
        if flags & _CONTROL:
            self._update_history(flags, ep, rel_seq, length)
        elif length or ack:
            if length:
                mask, code = _HIST_DATA, ("D" if is_orig else "d")
            else:
                mask, code = _HIST_ACK, ("A" if is_orig else "a")
            if not is_orig:
                mask <<= 16
            if not self._hist_seen & mask:
                self._hist_seen |= mask
                self._history += code
        if seg.window == 0 and not rst and peer.state != CLOSED and ep.state != RESET:
            ep.win0 += 1
            if ep.win0 in _LOG_MARKS:
                self._history += "W" if is_orig else "w"
        if not (ep.did_close and peer.did_close) or self.last_time is None:
            self.last_time = t
        if fin:
            ep.fin_cnt += 1
            ep.fin_seq = rel_seq + seg_len
        if rst:
            ep.rst_cnt += 1

        rel_ack = 0
        if ack:
            ack_seq = seg.ack
            if peer.state == INACTIVE:
                rel_ack = 1
                peer.init_seqs(ack_seq - 1, ack_seq - 1)
            else:
                peer_ack = peer.ack_seq
                awraps = peer.ack_wraps
                delta_ack = (ack_seq - peer_ack) & _MASK
                if delta_ack >= _HALF:
                    delta_ack -= _WRAP
                if delta_ack < 0:
                    if awraps and ack_seq > peer_ack:
                        awraps -= 1
                elif delta_ack > 0 and ack_seq < peer_ack:
                    awraps += 1
                if awraps == 0:
                    rel_ack = (ack_seq - peer.start_seq) & _MASK
                    underflow_ack = rel_ack >= _HALF
                    if underflow_ack:
                        rel_ack = 0
                else:
                    rel_ack = (awraps << 32) + ack_seq - peer.start_seq
                    underflow_ack = False
                # acks in RSTs are not trusted; an ack of 0 far ahead is more likely
                # broken than a wrap
                if not underflow_ack and not rst and delta_ack > 0 and not (
                        ack_seq == 0 and delta_ack > TOO_LARGE_SEQ_DELTA):
                    if ack_seq < peer_ack:  # (update_ack_seq)
                        peer.ack_wraps += 1
                    peer.ack_seq = ack_seq

        # Zeek's UpdateLastSeq
        last_seq = ep.last_seq
        delta_last = (seq_past - last_seq) & _MASK
        if delta_last >= _HALF:
            delta_last -= _WRAP
        if flags & (SYN | RST) and abs(delta_last) > TOO_LARGE_SEQ_DELTA:
            pass
        elif fin and last_seq == (ep.start_seq + 1) & _MASK:
            ep.update_last_seq(seq_past)
        elif ep.state == RESET:
            pass  # nothing after a reset is trusted
        elif delta_last > 0:
            if seq_past < last_seq:  # (update_last_seq)
                ep.seq_wraps += 1
            ep.last_seq = seq_past
        elif length > 0:
            ep.rxmt += 1
            if ep.rxmt in _LOG_MARKS:
                self._history += "T" if is_orig else "t"
        ep.last_time = t
        if ep.state == INACTIVE or flags & _CONTROL:
            do_close, gen_event = self._update_state_machine(
                t, ep, peer, base_seq, seg.ack, length, delta_last, is_orig, flags)
        else:  # a plain segment changes no established/closing state
            do_close = gen_event = False
        if ack and rel_ack > peer.reassembler.trim_seq:  # (else nothing to do)
            self._ack_received(peer, rel_ack)
        if length > 0 and not rst and not underflow and payload_captured:
            acked = (ep.ack_wraps << 32) + ep.ack_seq - ep.start_seq
            ep.reassembler.data_sent(rel_seq + 1 if syn else rel_seq, length, acked)
        if do_close:
            self._connection_closed(ep, peer, gen_event)

    def _ack_received(self, ep: ZeekEndpoint, seq: int) -> None:
        if ep.fin_cnt and seq >= ep.fin_seq:
            seq = ep.fin_seq - 1
        reassembler = ep.reassembler
        if seq <= reassembler.trim_seq:
            return  # nothing new acknowledged: no trim, no gap
        if seq <= 2 and self.is_partial:
            # Zeek ignores the first "gap" of a partial connection
            reassembler.trim_seq = seq
            return
        gaps = reassembler.ack_received(seq)
        if gaps and all(e.state == ESTABLISHED
                        or (e.state == CLOSED and e.prev_state == ESTABLISHED)
                        for e in (ep, self._peer(ep))):
            code = "G" if ep.is_orig else "g"
            for _ in gaps:
                ep.gap += 1
                if ep.gap in _LOG_MARKS:
                    self._history += code

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

    def _peer(self, ep: ZeekEndpoint) -> ZeekEndpoint:
        return self.resp if ep is self.orig else self.orig

    def _set_state(self, ep: ZeekEndpoint, new: int) -> None:
        state = ep.state
        if new != state:
            if new > SYN_ACK_SENT and state <= SYN_ACK_SENT \
                    and self._peer(ep).state <= SYN_ACK_SENT:  # leaving the handshake
                self.inactivity_timeout = TCP_INACTIVITY_TIMEOUT
            ep.prev_state = state  # (ZeekEndpoint.set_state)
            ep.state = new

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
        self._history += "^"

    def _connection_closed(self, ep: ZeekEndpoint, peer: ZeekEndpoint,
                           gen_event: bool) -> None:
        if ep.did_close:
            return
        ep.did_close = True
        last = self.last_time if self.last_time is not None else 0.0
        if ep.state == RESET or peer.did_close or peer.state == INACTIVE:
            if (ep.prev_state != INACTIVE or peer.state != INACTIVE) and gen_event:
                self.is_active = False  # ConnectionFinished()
            self._timers = ()  # CancelTimers()
            self._add_timer(last + TCP_CLOSE_DELAY, "delete")
        elif ep.prev_state == INACTIVE:
            self._add_timer(last + TCP_PARTIAL_CLOSE_DELAY, "partial_close")
        else:
            self._add_timer(last + TCP_SESSION_TIMER, "expire")
