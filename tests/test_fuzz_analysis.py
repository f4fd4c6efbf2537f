"""Fuzzing the analysis with real connections replayed wrongly: sequence numbers moved so
that they wrap past 2**32 mid-connection, segments duplicated, reordered, timestamps going
backwards, a tiny connection table.

Sequence space is modular (RFC 9293 3.4; RFC 1982 serial arithmetic): moving every
sequence and acknowledgment number of an endpoint by the same amount must not change
anything the analysis says. For the replays that damage the order, the invariant is
bookkeeping: every segment lands in exactly one connection, every five-tuple of the
capture is still reported, and the report renders.
"""

from __future__ import annotations

import json
import os
from functools import cache

from hypothesis import given, settings
from hypothesis import strategies as st

from fuzz.captures import corpus_dir, seed_paths
from tcpanalyze import output
from tcpanalyze.analysis import Analysis, build_report
from tcpanalyze.capture import open_capture
from tcpanalyze.decode import Decoder
from tcpanalyze.report import CaptureSummary, Report
from tcpanalyze.segment import Segment
from tcpanalyze.settings import Settings

SCALE = int(os.environ.get("TCPANALYZE_FUZZ_SCALE", "1"))

# Real captures with data transfer, closes, resets, retransmissions and SACK.
REPLAY_ITEMS = ("zeek/http-get", "zeek/wikipedia", "zeek/retransmit-fast", "zeek/rst-inject",
                "zeek/fin-retransmission", "suricata-verify/tls-last-ack",
                "suricata-verify/http-rst-closed", "suricata-verify/3whs-ack-with-data",
                "zeek/ssh-password-guessing", "suricata-verify/syn-flood-3whs")


def replay_paths() -> list[str]:
    corpus = corpus_dir()
    paths = []
    if corpus is not None:
        for item in REPLAY_ITEMS:
            found = sorted((corpus / item).glob("capture.pcap*"))
            paths += [str(p) for p in found[:1]]
    # without shared/ the suite still fuzzes the capture made here
    return paths or [str(p) for p in seed_paths()[:2]]


PATHS = replay_paths()


def fuzz_settings(examples: int) -> settings:
    return settings(max_examples=examples * SCALE, derandomize=True, database=None,
                    deadline=None)


@cache
def segments_of(index: int) -> tuple[Segment, ...]:
    decoder = Decoder()
    out = []
    for frame in open_capture(PATHS[index]):
        seg = decoder.decode(frame)
        if seg is not None:
            out.append(seg)
    return tuple(out)


def replay(segments: list[Segment] | tuple[Segment, ...], config: Settings | None = None
           ) -> Report:
    analysis = Analysis(config or Settings())
    for seg in segments:
        analysis.feed(seg)
    analysis.finish()
    summary = CaptureSummary(path="replay", format="pcap", linktypes=[],
                             packets=len(segments), tcp_segments=len(segments), skipped={},
                             first_ts=analysis.first_ts, last_ts=analysis.last_ts)
    report = build_report([summary], analysis)
    json.loads(output.render("json", report, output.RenderOptions()))
    return report


def verdict(report: Report) -> tuple[list[tuple], list[tuple]]:
    """What the analysis says, without the raw sequence numbers themselves."""
    conns = [(c.client, c.server, c.client_state, c.server_state, c.conn_state, c.history,
              c.packets_client, c.packets_server, c.bytes_client, c.bytes_server,
              tuple(c.findings), tuple((s.frame, s.endpoint, s.old, s.new) for s in c.timeline))
             for c in report.connections]
    finds = [(f.kind, f.severity, f.connection, tuple(f.frames), f.time)
             for f in report.findings]
    return conns, finds


def shift_sack(options: bytes, delta: int) -> bytes:
    """Move SACK block edges (they are sequence numbers of the peer's data) by `delta`."""
    out = bytearray(options)
    i = 0
    while i < len(out):
        kind = out[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(out) or out[i + 1] < 2 or i + out[i + 1] > len(out):
            break
        length = out[i + 1]
        if kind == 5 and (length - 2) % 8 == 0:
            for j in range(i + 2, i + length, 4):
                edge = int.from_bytes(out[j:j + 4], "big")
                out[j:j + 4] = ((edge + delta) & 0xFFFFFFFF).to_bytes(4, "big")
        i += length
    return bytes(out)


def wrapped(segments: tuple[Segment, ...], lands: dict[tuple[bytes, int], int]
            ) -> list[Segment]:
    """Every endpoint's first sequence number moved to 2**32 - lands[endpoint]."""
    deltas: dict[tuple[bytes, int], int] = {}
    for seg in segments:
        key = (seg.src, seg.sport)
        if key not in deltas:
            deltas[key] = (2**32 - lands.get(key, 1) - seg.seq) & 0xFFFFFFFF
    out = []
    for seg in segments:
        mine = deltas[(seg.src, seg.sport)]
        theirs = deltas.get((seg.dst, seg.dport), 0)
        out.append(seg._replace(seq=(seg.seq + mine) & 0xFFFFFFFF,
                                ack=(seg.ack + theirs) & 0xFFFFFFFF,
                                options=shift_sack(seg.options, theirs)))
    return out


def wraps_in(segments: list[Segment]) -> int:
    """How many times an endpoint's sequence numbers pass 2**32 - 1 -> 0."""
    last: dict[tuple[bytes, int], int] = {}
    wraps = 0
    for seg in segments:
        key = (seg.src, seg.sport)
        wraps += key in last and last[key] > 0xF0000000 and seg.seq < 0x10000000
        last[key] = seg.seq
    return wraps


def test_the_wrapping_replay_really_wraps() -> None:
    # ISNs moved to 2**32 - 1: every endpoint that sends a second segment wraps at once
    counts = [wraps_in(wrapped(segments_of(i), {})) for i in range(len(PATHS))]
    assert sum(1 for c in counts if c) >= len(PATHS) // 2, counts


@fuzz_settings(60)
@given(index=st.integers(0, len(PATHS) - 1), land=st.integers(1, 5000),
       spread=st.integers(0, 2**31))
def test_sequence_numbers_wrapping_change_nothing(index: int, land: int, spread: int) -> None:
    segments = segments_of(index)
    endpoints = sorted({(s.src, s.sport) for s in segments})
    # each endpoint lands `land` (+ a per-endpoint spread) bytes before the wrap
    lands = {ep: 1 + (land + i * spread) % 60000 for i, ep in enumerate(endpoints)}
    moved = wrapped(segments, lands)
    assert verdict(replay(moved)) == verdict(replay(segments))


@fuzz_settings(150)
@given(index=st.integers(0, len(PATHS) - 1),
       edits=st.lists(st.tuples(st.sampled_from(["dup", "swap", "back", "far_back",
                                                  "repeat_all"]),
                                st.integers(min_value=0), st.integers(1, 8)),
                      min_size=1, max_size=12),
       max_connections=st.sampled_from([500_000, 500_000, 3, 1]))
def test_duplicated_reordered_and_backwards_replays(index: int,
                                                    edits: list[tuple[str, int, int]],
                                                    max_connections: int) -> None:
    segments = list(segments_of(index))
    for op, where, span in edits:
        i = where % len(segments)
        if op == "dup":
            segments.insert(i, segments[i])
        elif op == "swap":
            j = min(len(segments) - 1, i + span)
            segments[i], segments[j] = segments[j], segments[i]
        elif op == "back":  # the clock steps back by up to 8 s
            segments[i] = segments[i]._replace(ts=max(0.0, segments[i].ts - span))
        elif op == "far_back":  # ... or by years
            segments[i] = segments[i]._replace(ts=max(0.0, segments[i].ts - span * 3e7))
        elif op == "repeat_all" and len(segments) < 3000:
            segments += segments  # the whole capture twice (a tool that appended)
    config = Settings(max_connections=max_connections)
    report = replay(segments, config)
    fed = sum(c.packets_client + c.packets_server for c in report.connections)
    assert fed == len(segments)
    tuples = {frozenset(((s.src, s.sport), (s.dst, s.dport))) for s in segments}
    from tcpanalyze.segment import parse_endpoint

    seen = {frozenset((parse_endpoint(c.client), parse_endpoint(c.server)))
            for c in report.connections}
    assert seen == tuples
    if max_connections < 500_000:
        assert report.stats["evicted"] >= len(tuples) - max_connections or len(tuples) <= 1
