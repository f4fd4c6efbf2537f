"""Compact per-connection and per-aggregate state (issue #3's memory target): the compact
forms must say exactly what the plain ones said."""

from __future__ import annotations

import random

from tcpanalyze.detectors import (
    _MAX_TARGETS,
    _SMALL_GROUP,
    AggregateDetector,
    Ids,
    _add_member,
)
from tcpanalyze.segment import ACK, FIN, SYN, Segment
from tcpanalyze.settings import Settings
from tcpanalyze.tracker import Connection

C, S = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])


def _seg(frame: int, ts: float, from_client: bool, seq: int, ack: int, flags: int,
         plen: int = 0, client: bytes = C, server: bytes = S, cport: int = 40000,
         sport: int = 80) -> Segment:
    if from_client:
        return Segment(frame, ts, client, server, cport, sport, seq, ack, flags, 65535, plen)
    return Segment(frame, ts, server, client, sport, cport, seq, ack, flags, 65535, plen)


def test_connection_has_no_instance_dict() -> None:
    conn = Connection(1, _seg(1, 1.0, True, 100, 0, SYN), True, Settings())
    assert not hasattr(conn, "__dict__")
    assert conn.emitted is None and conn.zeek is None and conn.zeek_records is None
    assert not conn.absorbed and not conn.evicted


def test_timeline_is_packed_and_unpacked_exactly() -> None:
    t0 = 1_700_000_000.123456  # a capture time with microseconds: must survive packing
    segs = [
        _seg(1, t0, True, 1000, 0, SYN),
        _seg(2, t0 + 0.001, False, 5000, 1001, SYN | ACK),
        _seg(3, t0 + 0.002, True, 1001, 5001, ACK),
        _seg(4, t0 + 0.003, True, 1001, 5001, FIN | ACK),
        _seg(5, t0 + 0.004, False, 5001, 1002, FIN | ACK),
        _seg(6, t0 + 0.005, True, 1002, 5002, ACK),
    ]
    conn = Connection(7, segs[0], True, Settings())
    returned = []
    for seg in segs:
        changes, _ = conn.feed(seg)
        returned.extend(changes)
    timeline = conn.timeline
    assert [(c.role, c.old, c.new, c.frame, c.ts, c.reason) for c in returned] == \
        [(c.role, c.old, c.new, c.frame, c.ts, c.reason) for c in timeline]
    # RFC 793 as the tracker sees an active close by the client
    assert [(c.role, c.new) for c in timeline if c.role == "client"] == [
        ("client", "SYN_SENT"), ("client", "ESTABLISHED"), ("client", "FIN_WAIT_1"),
        ("client", "TIME_WAIT")]
    assert [(c.role, c.new) for c in timeline if c.role == "server"][-1] == \
        ("server", "CLOSED")
    first = timeline[0]
    assert first.frame == 1 and type(first.frame) is int and first.ts == t0
    assert [c.ts for c in timeline if c.frame == 6] == [t0 + 0.005]
    # a timer's change (frame 0) comes back too
    expired = conn.expire(t0 + 61)
    assert [(c.role, c.new, c.frame) for c in expired] == [("client", "CLOSED", 0)]
    time_wait = [c for c in timeline if c.new == "TIME_WAIT"]
    assert [c.frame for c in time_wait] == [5]  # the server's FIN+ACK acked the client's FIN
    assert conn.timeline[-1].ts == expired[0].ts == time_wait[0].ts + 60.0


def test_small_groups_behave_as_capped_sets() -> None:
    rng = random.Random(7)
    for _ in range(200):
        groups: dict[int, object] = {}
        reference: dict[int, set[int]] = {}
        for _ in range(rng.randrange(1, 40)):
            key, member = rng.randrange(3), rng.randrange(12)
            _add_member(groups, key, member)
            ref = reference.setdefault(key, set())
            if len(ref) < _MAX_TARGETS:
                ref.add(member)
        assert {k: set(v) for k, v in groups.items()} == reference  # type: ignore[call-overload]
        for v in groups.values():
            assert type(v) is (tuple if len(v) <= _SMALL_GROUP else set)  # type: ignore[arg-type]
    big: dict[int, object] = {}
    for port in range(_MAX_TARGETS + 50):
        _add_member(big, 0, port)
    assert len(big[0]) == _MAX_TARGETS  # type: ignore[arg-type]


def test_ids_store_what_a_set_would() -> None:
    ids = Ids()
    ids.add(5)
    ids.update(iter([7, 9]))
    assert list(ids) == [5, 7, 9] and len(ids) == 3
    members: set[int] = {1}
    members.update(ids)
    assert members == {1, 5, 7, 9}


def _traffic(seed: int) -> list[tuple[str, float, Connection]]:
    """Attempts from scanners, a spoofed flood and ordinary clients, over 40 s."""
    rng = random.Random(seed)
    settings = Settings()
    events: list[tuple[str, float, Connection]] = []
    conn_id = 0
    t = 1000.0
    while t < 1040.0:
        t += rng.expovariate(400)
        conn_id += 1
        kind = rng.random()
        if kind < 0.5:  # flood against 10.9.0.1:80 from many sources
            client = bytes([10, 200, rng.randrange(40), rng.randrange(256)])
            server, port = bytes([10, 9, 0, 1]), 80
        elif kind < 0.6:  # two scanners: many ports on one host, one port on many hosts
            if rng.random() < 0.5:
                client, server, port = bytes([10, 7, 0, 1]), bytes([10, 9, 0, 2]), \
                    rng.randrange(1, 2000)
            else:
                client, server, port = bytes([10, 7, 0, 2]), \
                    bytes([10, 9, 1, rng.randrange(256)]), 22
        else:  # ordinary clients to a few servers, most completing
            client = bytes([10, 1, 0, rng.randrange(64)])
            server, port = bytes([10, 9, 0, 3 + rng.randrange(3)]), 443
        seg = _seg(conn_id, t, True, rng.getrandbits(32), 0, SYN, client=client,
                   server=server, cport=1024 + conn_id % 60000, sport=port)
        conn = Connection(conn_id, seg, True, settings)
        conn.feed(seg)
        events.append(("attempt", t, conn))
        if kind >= 0.6 and rng.random() < 0.9:
            events.append(("completed", t, conn))
    return events


def _run(events: list[tuple[str, float, Connection]], full_scans: bool,
         rate_history: int | None = None) -> tuple[list[tuple], set[int]]:
    agg = AggregateDetector(Settings())
    agg.rate_history = rate_history
    seen: list[tuple] = []
    next_look = events[0][1] + 1.0
    for what, ts, conn in events:
        if ts >= next_look:
            if full_scans:
                agg._looked = False  # every look sees every target and source
            seen += [(ts, f.kind, f.subject, f.summary) for f in agg.findings()]
            next_look = ts + 1.0
        if what == "attempt":
            agg.on_attempt(conn, conn.first_frame, ts)
        else:
            agg.on_completed(conn)
    seen += [(None, f.kind, f.subject, f.summary, sorted(f.details.items()))
             for f in agg.findings(final=True)]
    return seen, agg.members


def test_looking_only_at_changed_aggregates_finds_the_same() -> None:
    for seed in (1, 2, 3):
        events = _traffic(seed)
        changed = _run(events, full_scans=False)
        full = _run(events, full_scans=True)
        assert changed == full
        kinds = [entry[1] for entry in changed[0] if entry[0] is not None]
        # the test means something: a flood and both scans were reported while running
        assert kinds.count("syn_flood") == 1 and kinds.count("port_scan") == 2
        assert changed[1]


def test_rate_history_keeps_the_peak() -> None:
    settings = Settings()
    agg = AggregateDetector(settings)
    agg.rate_history = 10
    plain = AggregateDetector(settings)
    # a burst of 300 spoofed SYNs in one second, then a trickle for 200 s
    times = [100.0 + i / 400 for i in range(300)] + [102.0 + i for i in range(200)]
    for conn_id, ts in enumerate(times, start=1):
        client = bytes([10, 200, conn_id >> 8 & 255, conn_id & 255])
        seg = _seg(conn_id, ts, True, 1, 0, SYN, client=client)
        conn = Connection(conn_id, seg, True, settings)
        conn.feed(seg)
        agg.on_attempt(conn, conn_id, ts)
        plain.on_attempt(conn, conn_id, ts)
    target = agg.targets[(S, 80)]
    assert len(target.per_second) <= 2 * 10 + 1
    assert target.peak_dropped == 300
    pruned = agg.findings(final=True)
    full = plain.findings(final=True)
    assert [f.details for f in pruned] == [f.details for f in full]
    assert pruned[0].details["peak_syns_per_second"] == 300


def test_the_end_of_capture_hands_connections_out_one_at_a_time() -> None:
    """FlowTable.drain: each connection leaves the table as it is handed out, so the
    caller (which summarises it) never holds every connection and every summary at once
    (bench capture, --jobs 1: peak 250 -> 223 MB); the order and the timers are as
    before (every report test covers them)."""
    from tcpanalyze.flows import FlowTable

    table = FlowTable(Settings())
    for k in range(5):
        table.add(_seg(2 * k + 1, 1.0 + k, True, 1000, 0, SYN, cport=40000 + k))
        table.add(_seg(2 * k + 2, 1.1 + k, False, 5000, 1001, SYN | ACK, cport=40000 + k))
    ports = []
    left = []
    for conn in table.drain(100.0):
        ports.append(conn.client.port)
        left.append(len(table.active))
        assert conn.finished
    assert ports == [40000 + k for k in range(5)]  # the table's order
    assert left == [4, 3, 2, 1, 0]
