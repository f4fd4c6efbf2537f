"""The quiet-segment fast path: most segments of a capture change no state.

A data or ACK segment in the middle of an established connection (both ends ESTABLISHED
for the tracker and for Zeek, no FIN yet, exactly the next sequence number, an ACK that
acknowledges nothing unseen, a window that neither is nor was zero) only moves counters:
packets, bytes, snd_nxt, max_ack, window, last times, the Zeek endpoint's last/ack
sequence numbers and its reassembler, and for a side's first data or ACK Zeek's history
letter (D/d, A/a). `make_feed` returns a drop-in for `Analysis.feed` that recognises such
segments and applies exactly those updates, and hands every other segment to
`Analysis.feed` unchanged; the checks are all done before anything is changed, so a
segment either takes the fast path completely or not at all. tests/test_fastpath.py
compares whole reports both ways on every capture.

What it saves is the general machinery (handler dispatch, note lists, option parsing,
Zeek's state machine), not Python's per-packet cost: see bench/RESULTS.md.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, Final

from tcpanalyze.flows import FlowTable, flow_key
from tcpanalyze.report import Finding
from tcpanalyze.segment import ACK, FIN, RST, SYN, Segment, parse_options
from tcpanalyze.tracker import ESTABLISHED
from tcpanalyze.zeek import ESTABLISHED as Z_ESTABLISHED
from tcpanalyze.zeek import TOO_LARGE_SEQ_DELTA, ZeekView

__all__ = ["make_feed"]

_CONTROL: Final = SYN | FIN | RST | ACK
_HIST_DATA: Final = 0x10  # zeek._HIST_DATA / _HIST_ACK (the responder's shifted by 16)
_HIST_ACK: Final = 0x20
_TS_OPTION: Final = b"\x01\x01\x08\x0a"  # NOP NOP TS: what Linux puts on every segment
_tsval: Final = struct.Struct("!I").unpack_from
_HALF: Final = 0x80000000
_MASK: Final = 0xFFFFFFFF


def make_feed(analysis: Any) -> Callable[[Segment], list[Finding]]:
    """`analysis.feed`, with quiet segments applied directly. Falls back to plain
    `analysis.feed` for set-ups the fast path does not model (Zeek records)."""
    full = analysis.feed
    if analysis.zeek_records:
        return full
    # (typed: compiled, these are read as C struct fields, not looked up by name)
    table: FlowTable = analysis.table
    active = table.active
    move_to_end = getattr(active, "move_to_end", None)
    idle = analysis.settings.idle_timeout
    zeek_on = getattr(analysis, "zeek_view", True)
    counts_segments = hasattr(analysis, "segments")
    vlan_tracking = table.vlan_tracking
    none: list[Finding] = []

    def feed(seg: Segment) -> list[Finding]:
        if seg.flags & _CONTROL != ACK or not seg.window:
            return full(seg)
        src, sport, dst, dport = seg.src, seg.sport, seg.dst, seg.dport
        key = (src, sport, dst, dport) if (src, sport) <= (dst, dport) else (
            dst, dport, src, sport)
        if vlan_tracking and seg.vlan:
            key = flow_key(seg, True)
        conn = active.get(key)
        if conn is None:
            return full(seg)
        ts = seg.ts
        if ts - conn.last > idle:
            return full(seg)
        c = conn.client
        if sport == c.port and src == c.addr:
            sender, peer, from_client = c, conn.server, True
        else:
            sender, peer, from_client = conn.server, c, False
        # -- the tracker: nothing but counters? -----------------------------------------
        if sender.state != ESTABLISHED or peer.state != ESTABLISHED or \
                sender.fin_seq is not None or peer.fin_seq is not None or \
                sender.window == 0 or sender.fin_pending or peer.fin_pending:
            return full(seg)
        seq = seg.seq
        if seq != sender.snd_nxt:  # a retransmission, keepalive or hole (or unknown)
            return full(seg)
        ack = seg.ack
        psnd = peer.snd_nxt
        if psnd is None or (psnd - ack) & _MASK >= _HALF:  # acks what was never seen
            return full(seg)
        plen = seg.payload_len
        options = seg.options
        tsval = None
        if options:
            if len(options) == 12 and options[:4] == _TS_OPTION:
                tsval = _tsval(options, 4)[0]
            else:
                tsval = parse_options(options).tsval
        # -- Zeek's view: nothing but counters? -----------------------------------------
        view: ZeekView | None = conn.zeek if zeek_on else None
        if zeek_on:
            if view is None or view.first_packet_seen != 3:
                return full(seg)
            is_orig = from_client != view.roles_swapped
            zep, zpeer = (view.orig, view.resp) if is_orig else (view.resp, view.orig)
            if zep.state != Z_ESTABLISHED or zpeer.state != Z_ESTABLISHED or \
                    zep.did_close or zpeer.did_close or zep.fin_cnt or zpeer.fin_cnt:
                return full(seg)
            bit = (_HIST_DATA if plen else _HIST_ACK) << (0 if zep.is_orig else 16)
            # the first data (ACK) of a side only adds its history letter: D/d (A/a)
            letter = None if view._hist_seen & bit else (
                ("D" if plen else "A") if zep.is_orig else ("d" if plen else "a"))
            # relative sequence of the data (Zeek's _relative_seq with its wraps)
            last_seq = zep.last_seq
            d = (seq - last_seq) & _MASK
            if d >= _HALF:
                d -= 1 << 32
            wraps = zep.seq_wraps
            if d < 0:
                if wraps and seq > last_seq:
                    wraps -= 1
            elif d > 0 and seq < last_seq:
                wraps += 1
            if wraps == 0:
                rel_seq = (seq - zep.start_seq) & _MASK
                if rel_seq >= _HALF:
                    return full(seg)  # underflow: Zeek keeps the data out
            else:
                rel_seq = (wraps << 32) + seq - zep.start_seq
            seq_past = (seq + plen) & _MASK
            delta_last = (seq_past - last_seq) & _MASK
            if delta_last >= _HALF:
                delta_last -= 1 << 32
            if plen and delta_last <= 0:
                return full(seg)  # Zeek counts a retransmission ('T')
            # relative ack against the peer's numbers
            pack_seq = zpeer.ack_seq
            da = (ack - pack_seq) & _MASK
            if da >= _HALF:
                da -= 1 << 32
            awraps = zpeer.ack_wraps
            if da < 0:
                if awraps and ack > pack_seq:
                    awraps -= 1
            elif da > 0 and ack < pack_seq:
                awraps += 1
            if awraps == 0:
                rel_ack = (ack - zpeer.start_seq) & _MASK
                if rel_ack >= _HALF:
                    return full(seg)
            else:
                rel_ack = (awraps << 32) + ack - zpeer.start_seq
            if da > 0 and ack == 0 and da > TOO_LARGE_SEQ_DELTA:
                return full(seg)
            reasm = zpeer.reassembler
            if rel_ack > reasm.trim_seq and (reasm.last_reassem < rel_ack or
                                             (rel_ack <= 2 and view.is_partial)):
                return full(seg)  # a content gap, or a partial connection's first ack
        # -- quiet: apply the counters ------------------------------------------------------
        if counts_segments:
            analysis.segments += 1
        if ts > analysis.last_ts:
            analysis.last_ts = ts
        if ts > table.now:
            table.now = ts
        if move_to_end is not None:
            move_to_end(key)
        conn.last = ts
        conn.last_frame = seg.frame
        conn.flags_seen |= seg.flags
        sender.packets += 1
        sender.last_ts = ts
        peer.keepalive_unanswered = 0
        if plen:
            sender.bytes += plen
            sender.data_segments += 1
            sender.last_data_ts = ts
            sender.snd_nxt = (seq + plen) & _MASK
        if tsval is not None:
            sender.tsval = tsval
        sender.tentative = False
        max_ack = sender.max_ack
        if max_ack is None or (ack != max_ack and (ack - max_ack) & _MASK < _HALF):
            sender.max_ack = ack
        sender.window = seg.window
        if view is not None:  # (zeek_on: the checks above returned without it)
            if letter is not None:
                view._hist_seen |= bit
                view._history += letter
            view.packets += 1
            view.last_time = ts
            if delta_last > 0:
                zep.update_last_seq(seq_past)
            if da > 0:
                zpeer.update_ack_seq(ack)
            zep.last_time = ts
            if rel_ack > reasm.trim_seq:
                reasm.ack_received(rel_ack)
            if plen:
                own = zep.reassembler
                acked = (zep.ack_wraps << 32) + zep.ack_seq - zep.start_seq
                upper = rel_seq + plen
                blocks = own.blocks
                if rel_seq >= acked and rel_seq >= own.trim_seq and (
                        not blocks or blocks[-1][1] == rel_seq):
                    # in-order data: _Reassembler.data_sent's append, sort and merge
                    # come down to growing the last block (blocks stay sorted, disjoint,
                    # and none holds last_reassem inside it)
                    if blocks:
                        last = blocks[-1]
                        last[1] = upper
                    else:
                        last = [rel_seq, upper]
                        blocks.append(last)
                    if last[0] <= own.last_reassem < upper:
                        own.last_reassem = upper
                else:
                    own.data_sent(rel_seq, plen, acked)
        if ts >= analysis._next_sweep:
            new = analysis._sweep(ts)
            finished = table.pop_finished()
            for done in finished:
                new.extend(analysis._close(done, ts))
            return new
        return none

    return feed
