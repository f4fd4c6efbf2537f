"""The columnar batch path (columns.py + batch.py) changes nothing but speed.

Every capture is analysed frame by frame and in batches, and the whole reports must be
equal; on the captures with bulk transfers, the state of every connection still open at
the end (both tracker endpoints and the Zeek view, reassembler included) must be equal
too. The bulk update is also forced onto short runs (tiny windows), so that every
capture, not only the bulk ones, exercises it. Sequence-number wraparound, truncated and
corrupt files are checked the same way.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Any

import pytest

import tcpanalyze.batch as batch
from tcpanalyze.analysis import Analysis, build_report, read_into

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
if not CORPUS.is_dir():
    CORPUS = Path("/work/shared/corpus")
MINI = ROOT / "tests" / "data" / "bench-mini.pcap.gz"  # real bulk downloads with 0.2 % loss
BULK = ROOT / "sample_pcaps" / "bulk-loss.pcap"  # 4 MB download, 1 % loss before capture
CAPTURES = [MINI, *sorted((ROOT / "sample_pcaps").glob("*.pcap*")),
            *sorted(CORPUS.glob("*/*/capture.pcap*"))]


def _snapshot(obj: Any, seen: set[int] | None = None) -> Any:
    """Plain data of an object graph (attributes, lists, dicts), cycles cut."""
    if seen is None:
        seen = set()
    if obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        return obj
    if id(obj) in seen:
        return "<seen>"
    seen.add(id(obj))
    if isinstance(obj, (list, tuple)):
        return [_snapshot(x, seen) for x in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted(repr(x) for x in obj)
    if isinstance(obj, dict):
        return {repr(k): _snapshot(v, seen) for k, v in obj.items()}
    names: list[str] = []
    for cls in type(obj).__mro__:
        names.extend(getattr(cls, "__slots__", ()))
    names.extend(getattr(obj, "__dict__", {}))
    return {n: _snapshot(getattr(obj, n, None), seen) for n in sorted(set(names))
            if n != "settings" and not n.startswith("__")}


def _run(path: Path, use_batch: bool, analysis: Analysis | None = None,
         feeder: Any = None) -> tuple[Analysis, Any]:
    analysis = Analysis() if analysis is None else analysis
    summary = read_into(analysis, str(path), batch=use_batch, feeder=feeder)
    return analysis, summary


def watched(feeders: list[batch.BatchFeed]) -> type[batch.BatchFeed]:
    """A BatchFeed that lists its instances in `feeders`: read_into's `feeder`. (Tests
    subclass the core's classes: compiled, they cannot be patched.)"""

    class Watched(batch.BatchFeed):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            feeders.append(self)

    return Watched


class ClosingAnalysis(Analysis):
    """An Analysis that keeps a snapshot of each connection as it is closed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.closed: dict[int, Any] = {}

    def _close(self, conn: Any, now: float) -> list[Any]:
        self.closed[conn.id] = _snapshot(conn)
        return super()._close(conn, now)


def _report(path: Path, use_batch: bool) -> dict[str, Any]:
    analysis, summary = _run(path, use_batch)
    analysis.finish()
    return build_report([summary], analysis).to_dict()


def _open_state(analysis: Analysis) -> Any:
    table = analysis.table
    return {"active": [(key, _snapshot(conn)) for key, conn in table.active.items()],
            "segments": analysis.segments, "last_ts": analysis.last_ts, "now": table.now,
            "next_sweep": analysis._next_sweep}


@pytest.fixture
def tiny_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bulk-apply runs of 2 segments, tested 2 at a time and never whole first
    (whole_runs.py): every branch of the prefix logic (windows, partial prefixes,
    back-off) is exercised on small captures."""
    monkeypatch.setattr(batch, "MIN_RUN", 2)
    monkeypatch.setattr(batch, "SHORT_RUN", 1 << 40)
    monkeypatch.setattr(batch, "_WINDOW", 2)
    monkeypatch.setattr(batch, "_BACK_OFF", 1)


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_batch_report_is_identical(path: Path) -> None:
    assert _report(path, use_batch=True) == _report(path, use_batch=False)


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_batch_report_is_identical_with_tiny_runs(path: Path, tiny_runs: None) -> None:
    assert _report(path, use_batch=True) == _report(path, use_batch=False)


def _bulk_count(path: Path) -> tuple[int, int]:
    feeders: list[batch.BatchFeed] = []
    analysis, _ = _run(path, use_batch=True, feeder=watched(feeders))
    return feeders[0].bulk_segments, analysis.segments


@pytest.mark.parametrize("path", [MINI, BULK], ids=lambda p: p.name)
def test_bulk_is_taken_and_leaves_identical_state(path: Path) -> None:
    bulk, segments = _bulk_count(path)
    # most segments of a bulk download are quiet; the comparison below must not pass
    # because everything went one segment at a time
    assert bulk > segments * 0.4, (bulk, segments)
    a, _ = _run(path, use_batch=True)
    b, _ = _run(path, use_batch=False)
    assert _open_state(a) == _open_state(b)


@pytest.mark.parametrize("path", [MINI, BULK], ids=lambda p: p.name)
def test_tiny_runs_leave_identical_state(path: Path, tiny_runs: None) -> None:
    feeders: list[batch.BatchFeed] = []
    a, _ = _run(path, use_batch=True, feeder=watched(feeders))
    # the module's settings took (compiled too): no run tested whole, many in bulk
    assert feeders[0].whole_segments == 0 and feeders[0].bulk_segments > 1000
    b, _ = _run(path, use_batch=False)
    assert _open_state(a) == _open_state(b)


# -- short runs (whole_runs.py): tested across connections, applied one run at a time ---

SHORT = [MINI, ROOT / "sample_pcaps" / "several-normal.pcap",
         CORPUS / "zeek" / "pop3-rejects" / "capture.pcap",
         CORPUS / "zeek" / "modbus-502-resets" / "capture.pcap"]


def _closed_states(path: Path, use_batch: bool
                   ) -> tuple[dict[int, Any], Any, list[batch.BatchFeed]]:
    """The whole state of every connection as it is closed (tracker endpoints, Zeek view
    and reassemblers), the state of those still open at the end, and the feeders."""
    feeders: list[batch.BatchFeed] = []
    analysis = ClosingAnalysis()
    _run(path, use_batch, analysis, watched(feeders))
    return analysis.closed, _open_state(analysis), feeders


@pytest.mark.parametrize("path", SHORT, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_short_runs_are_taken_and_leave_identical_state(path: Path) -> None:
    closed, still_open, feeders = _closed_states(path, True)
    # real short request/response connections: their quiet middles went as short runs
    assert feeders[0].whole_segments >= 8, feeders[0].whole_segments
    expected_closed, expected_open, _ = _closed_states(path, False)
    assert closed.keys() == expected_closed.keys()
    for conn_id, state in expected_closed.items():
        assert closed[conn_id] == state, conn_id
    assert still_open == expected_open


def test_the_ack_after_a_syn_stays_out_of_short_runs() -> None:
    # the handshake's third ACK looks quiet (an ACK without data) but changes the
    # server's state; a run that began with it could never be applied in bulk
    path = ROOT / "sample_pcaps" / "several-normal.pcap"
    feeders: list[batch.BatchFeed] = []
    _run(path, use_batch=True, feeder=watched(feeders))
    assert feeders[0].whole_segments > 0
    assert feeders[0].whole_refused == 0


# -- sequence numbers that wrap ----------------------------------------------------------

def _read_pcap(path: Path) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    assert data[:4] == b"\xd4\xc3\xb2\xa1"  # little-endian microsecond pcap
    records, at = [], 24
    while at < len(data):
        caplen = struct.unpack_from("<I", data, at + 8)[0]
        records.append((data[at:at + 16], data[at + 16:at + 16 + caplen]))
        at += 16 + caplen
    return data[:24], records


def _shift_sequence(path: Path, out: Path, server_port: int) -> None:
    """Rewrite a capture so the server's sequence numbers (and the client's acks of them)
    cross 2^32 early in the transfer: the same conversation, other initial numbers."""
    header, records = _read_pcap(path)
    isn = None
    parts = [header]
    for head, frame in records:
        frame = bytearray(frame)
        if len(frame) >= 54 and frame[12:14] == b"\x08\x00" and frame[23] == 6:
            ihl = (frame[14] & 15) * 4
            t = 14 + ihl
            sport, dport, seq, ack = struct.unpack_from("!HHII", frame, t)
            if sport == server_port:
                if isn is None:
                    isn = seq
                delta = (0xFFFFFFFF - 200_000 - isn) & 0xFFFFFFFF
                struct.pack_into("!I", frame, t + 4, (seq + delta) & 0xFFFFFFFF)
            elif dport == server_port and isn is not None and frame[t + 13] & 0x10:
                delta = (0xFFFFFFFF - 200_000 - isn) & 0xFFFFFFFF
                struct.pack_into("!I", frame, t + 8, (ack + delta) & 0xFFFFFFFF)
        parts += [head, bytes(frame)]
    out.write_bytes(b"".join(parts))


def test_wrapping_sequence_numbers(tmp_path: Path) -> None:
    wrapped = tmp_path / "wrapped.pcap"
    _shift_sequence(BULK, wrapped, 8080)
    bulk, segments = _bulk_count(wrapped)
    assert bulk > segments * 0.4
    a, _ = _run(wrapped, use_batch=True)
    b, _ = _run(wrapped, use_batch=False)
    state = _open_state(a)
    assert state == _open_state(b)
    assert _report(wrapped, use_batch=True) == _report(wrapped, use_batch=False)
    # the wrap happened inside the analysed data: Zeek's view counted it
    views = [getattr(conn, "zeek", None) for conn in a.table.active.values()]
    assert any(v is not None and (v.orig.seq_wraps or v.resp.seq_wraps) for v in views)
    # and the conversation reads the same as the original (states, findings, history)
    original = _report(BULK, use_batch=True)
    shifted = _report(wrapped, use_batch=True)
    for key in ("client_state", "server_state", "conn_state", "history", "findings",
                "bytes", "packets"):
        assert [c[key] for c in shifted["connections"]] == \
            [c[key] for c in original["connections"]], key


def test_wrapping_with_tiny_runs(tmp_path: Path, tiny_runs: None) -> None:
    wrapped = tmp_path / "wrapped.pcap"
    _shift_sequence(BULK, wrapped, 8080)
    a, _ = _run(wrapped, use_batch=True)
    b, _ = _run(wrapped, use_batch=False)
    assert _open_state(a) == _open_state(b)


# -- damaged files: same error, same partial report ----------------------------------------

def test_truncated_file_same_error_and_report(tmp_path: Path) -> None:
    data = BULK.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:len(data) * 2 // 3 + 7])  # inside a record
    a, sa = _run(cut, use_batch=True)
    b, sb = _run(cut, use_batch=False)
    assert sa.error is not None and sa.error == sb.error
    assert sa.packets == sb.packets > 0
    a.finish()
    b.finish()
    assert build_report([sa], a).to_dict() == build_report([sb], b).to_dict()


def test_absurd_record_length_same_error(tmp_path: Path) -> None:
    header, records = _read_pcap(BULK)
    parts = [header]
    for n, (head, frame) in enumerate(records):
        if n == 3000:
            head = head[:8] + struct.pack("<I", 10_000_000) + head[12:]
        parts += [head, frame]
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"".join(parts))
    _, sa = _run(bad, use_batch=True)
    _, sb = _run(bad, use_batch=False)
    assert sa.error == sb.error and "frame 3001" in sa.error
    assert sa.packets == sb.packets == 3000


def test_progress_is_reported(tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    analysis = Analysis()
    read_into(analysis, str(BULK), on_progress=lambda frames, pos: seen.append((frames, pos)))
    assert seen and seen[-1][0] == 4850
    assert [f for f, _ in seen] == sorted(f for f, _ in seen)


# -- --jobs: workers take their own segments from the batches -------------------------------

@pytest.mark.parametrize("path", [MINI, BULK], ids=lambda p: p.name)
def test_parallel_batches_equal_one_process_frame_by_frame(path: Path, tiny_runs: None
                                                          ) -> None:
    from tcpanalyze.parallel import analyze_parallel

    assert analyze_parallel(str(path), jobs=2).to_dict() == _report(path, use_batch=False)


def test_assignment_in_batches_equals_one_at_a_time() -> None:
    import numpy as np

    from tcpanalyze.assignment import bucket_of
    from tcpanalyze.capture import open_capture
    from tcpanalyze.columns import decode_records
    from tcpanalyze.decode import Decoder
    from tcpanalyze.parallel import Assignment

    flows: set[tuple[bytes, int, bytes, int]] = set()
    one = Assignment(3, 30.0)
    many = Assignment(3, 30.0)
    analysis = Analysis()
    reader = open_capture(str(MINI))
    expected: list[int] = []
    got: list[int] = []
    for buf, offsets, first in reader.record_batches(most=5000):  # decay spans cross batches
        cols = decode_records(buf, offsets, first, **reader.record_layout,
                              verify_checksums=False)
        feeder = batch.BatchFeed(analysis, Decoder())
        feeder.cols, feeder.odd = cols, {}
        tcp = np.flatnonzero(cols.fast)
        keys, kid = feeder.tcp_buckets(tcp)
        got.extend(many.workers(keys, kid, cols.ts[tcp]).tolist())
        for j, i in enumerate(tcp.tolist()):
            src, dst = cols.src[i].item(), cols.dst[i].item()
            ends = (src.to_bytes(4, "big"), int(cols.sport[i]), dst.to_bytes(4, "big"),
                    int(cols.dport[i]))
            expected.append(one.worker(*ends, float(cols.ts[i])))
            # the columns' bucket is the one of the addresses and ports, either way round
            assert keys[kid[j]] == bucket_of(*ends) == bucket_of(*ends[2:], *ends[:2])
            flows.add(ends if ends[:2] <= ends[2:] else (*ends[2:], *ends[:2]))
    assert len(set(expected)) == 3  # all workers used: the comparison means something
    assert len(flows) > 100 and len({bucket_of(*f) for f in flows}) > 0.99 * len(flows)
    assert got == expected
    assert (many.load, many.count) == (one.load, one.count)
    assert many.owner == one.owner


# -- the path the CLI takes --------------------------------------------------------------


class _Interrupt:
    """What cli.run_analysis passes (live.Interrupt), without the signal handlers."""

    def __init__(self) -> None:
        self.requested = False
        self.waiting = False


def _whole(analysis: Analysis, summary: Any) -> dict[str, Any]:
    analysis.finish()
    return build_report([summary], analysis).to_dict()


def _counting_batches() -> tuple[list[int], type[batch.BatchFeed]]:
    """The sizes of the batches fed, and read_into's `feeder` that lists them."""
    sizes: list[int] = []

    class Counting(batch.BatchFeed):
        def process(self, cols: Any) -> None:
            sizes.append(len(cols))
            super().process(cols)

    return sizes, Counting


def test_a_file_read_with_an_interrupt_handler_still_goes_in_batches() -> None:
    """`report --jobs 1` passes an interrupt handler; files must still take the columnar
    path (they once went frame by frame whenever one was passed), with the same report."""
    sizes, counting = _counting_batches()
    with_handler = Analysis()
    summary = read_into(with_handler, str(BULK), interrupt=_Interrupt(), feeder=counting)
    assert summary.error is None
    assert sum(sizes) == summary.packets > 0
    plain = Analysis()
    read_into(plain, str(BULK), batch=False)
    assert _whole(with_handler, summary) == _whole(plain, summary)


def test_an_interrupt_ends_a_file_between_two_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    import tcpanalyze.capture as capture

    # several batches in the file
    monkeypatch.setattr(capture, "READ_SIZE", 64 << 10)
    monkeypatch.setattr(capture, "BATCH_READ", 64 << 10)
    sizes, counting = _counting_batches()
    interrupt = _Interrupt()

    def progress(frames: int, offset: int) -> None:
        interrupt.requested = True  # as the signal handler does

    analysis = Analysis()
    summary = read_into(analysis, str(BULK), interrupt=interrupt, on_progress=progress,
                        feeder=counting)
    assert len(sizes) == 1 and summary.packets == sizes[0]
    total = read_into(Analysis(), str(BULK)).packets
    assert 0 < summary.packets < total
    assert summary.error is not None and f"interrupted after {summary.packets}" in summary.error
    # every frame read is accounted for, and every TCP segment read was analysed
    assert summary.tcp_segments + sum(summary.skipped.values()) == summary.packets
    assert analysis.segments == summary.tcp_segments > 0


def test_an_interrupt_while_a_pipe_is_waited_for_keeps_every_frame_read(
        tmp_path: Path) -> None:
    """Ctrl-C on a live stream that has gone quiet ends the reading at once, where it
    waits: the frames analysed so far are the report, all of them accounted for."""
    import os
    import signal
    import struct
    import threading
    import time

    from tcpanalyze.live import Interrupt

    data = BULK.read_bytes()
    at = 24
    for _ in range(300):  # the file header and 300 records: more than a few, in columns
        at += 16 + struct.unpack_from("<I", data, at + 8)[0]
    fifo = tmp_path / "live.pcap"
    os.mkfifo(fifo)
    stop = threading.Event()
    analysed = threading.Event()
    signalled: list[float] = []

    def write() -> None:
        with open(fifo, "wb") as out:
            out.write(data[:at])
            out.flush()
            stop.wait(10)  # the stream stays open, quiet

    def press_ctrl_c() -> None:
        if analysed.wait(10):
            time.sleep(0.3)  # the reader is waiting for more by now
            signalled.append(time.monotonic())
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    threads = [threading.Thread(target=write), threading.Thread(target=press_ctrl_c)]
    for t in threads:
        t.start()
    analysis = Analysis()
    try:
        with Interrupt() as interrupt:
            summary = read_into(analysis, str(fifo), interrupt=interrupt, on_progress=(
                lambda frames, _: analysed.set() if frames >= 300 else None))
        ended = time.monotonic()
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert interrupt.requested and signalled and ended - signalled[0] < 3
    assert summary.packets == 300 and summary.error is not None
    assert "interrupted after 300 frame(s)" in summary.error
    assert summary.tcp_segments + sum(summary.skipped.values()) == 300
    assert analysis.segments == summary.tcp_segments


def test_a_fifo_is_read_in_batches_of_what_it_holds(tmp_path: Path) -> None:
    """A named pipe (`<(tcpdump -w -)`) may be a live stream: what the pipe holds when
    read is analysed at once, never waiting for more (a few frames one at a time), and a
    capture sent through it whole goes in batches of columns, with the file's report."""
    import os
    import struct
    import threading
    import time

    sizes, counting = _counting_batches()
    fifo = tmp_path / "live.pcap"
    os.mkfifo(fifo)
    data = BULK.read_bytes()
    assert data[:4] == b"\xd4\xc3\xb2\xa1"  # little-endian microsecond pcap
    cuts = [24]  # after the file header and the first 100 records, then 100 more
    for _ in range(2):
        at = cuts[-1]
        for _ in range(100):
            at += 16 + struct.unpack_from("<I", data, at + 8)[0]
        cuts.append(at)
    analysed: list[int] = []  # frames analysed, after each piece read
    waited: list[int] = []  # frames analysed when each of the first two pieces was waited for

    def write() -> None:
        with open(fifo, "wb") as out:
            for k, (begin, end) in enumerate([(0, cuts[1]), (cuts[1], cuts[2])], 1):
                out.write(data[begin:end])
                out.flush()
                deadline = time.monotonic() + 10
                while (not analysed or analysed[-1] < 100 * k) and time.monotonic() < deadline:
                    time.sleep(0.01)
                waited.append(analysed[-1] if analysed else 0)
            out.write(data[cuts[2]:])

    writer = threading.Thread(target=write)
    writer.start()
    analysis = Analysis()
    summary = read_into(analysis, str(fifo), interrupt=_Interrupt(),
                        on_progress=lambda frames, _: analysed.append(frames),
                        feeder=counting)
    writer.join(10)
    # each piece was analysed as it came, while the rest had not been sent
    assert waited == [100, 200] and analysed[:2] == [100, 200]
    # the rest (4,650 frames, sent at once) mostly in batches of columns (how much the
    # pipe holds at each read is up to the kernel)
    assert sizes and min(sizes) >= 128
    assert (summary.packets - 200) // 2 < sum(sizes) <= summary.packets - 200
    assert summary.error is None
    whole = Analysis()
    assert summary.packets == read_into(whole, str(BULK)).packets
    assert _whole(analysis, summary) == _whole(whole, summary)


def test_bulk_runs_leave_nothing_for_the_cyclic_collector() -> None:
    """read_into makes cyclic collections rare; a bulk run's per-direction arrays must be
    freed when the run is applied, not kept (and the heap fragmented) until one happens."""
    import gc

    runs = [0]

    class Counting(batch.BatchFeed):
        def _quiet_prefix(self, conn: Any, idx: Any) -> int:
            runs[0] += 1
            return super()._quiet_prefix(conn, idx)

    gc.collect()
    gc.disable()
    try:
        read_into(Analysis(), str(MINI), feeder=Counting)
        left = [o for o in gc.get_objects() if isinstance(o, batch._Side)]
    finally:
        gc.enable()
    assert runs[0] > 0
    assert left == []


@pytest.mark.parametrize("n", [1, 2, 7, 1000, 20000])
def test_flow_pairs_are_numpys_unique_rows(n: int) -> None:
    """batch._pairs replaces np.unique(axis=0): same keys, same order, same inverse,
    also with many repeats of one side (a server's address and port) and 48-bit values."""
    import numpy as np

    rng = np.random.default_rng(n)
    lo = (rng.integers(0, 50, size=n) << 40) | rng.integers(0, 1 << 16, size=n) % 7
    hi = (rng.integers(0, 3, size=n) << 47) | rng.integers(0, 1 << 16, size=n)
    keys, inverse = batch._pairs(lo, hi)
    want_keys, want_inverse = np.unique(np.stack([lo, hi], axis=1), axis=0,
                                        return_inverse=True)
    assert keys.tolist() == want_keys.tolist()
    assert inverse.tolist() == want_inverse.reshape(-1).tolist()
    assert keys[inverse].tolist() == np.stack([lo, hi], axis=1).tolist()



@pytest.mark.parametrize("wide", [False, True])
def test_flow_pairs_take_both_ways(wide: bool) -> None:
    """batch._pairs sorts once when the rank of lo times the span of hi fits in 62 bits,
    and ranks both sides when not (20,000 addresses and ports against a 48-bit span):
    both give np.unique(axis=0)'s rows and inverse."""
    import numpy as np

    rng = np.random.default_rng(int(wide))
    n = 20000
    lo = rng.integers(0, 1 << 48, n, dtype=np.int64)
    hi = rng.integers(0, 1 << (48 if wide else 16), n, dtype=np.int64)
    lo[-2000:], hi[-2000:] = lo[:2000], hi[:2000]  # pairs seen twice
    fits = len(np.unique(lo)) * (int(hi.max()) - int(hi.min()) + 1) < 1 << 62
    assert fits is not wide  # each case takes the way it is named for
    keys, inverse = batch._pairs(lo, hi)
    want_keys, want_inverse = np.unique(np.stack([lo, hi], axis=1), axis=0,
                                        return_inverse=True)
    assert keys.tolist() == want_keys.tolist()
    assert inverse.tolist() == want_inverse.reshape(-1).tolist()
    assert len(keys) == n - 2000
