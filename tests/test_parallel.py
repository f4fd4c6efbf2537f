"""--jobs N gives the report one process gives.

Whole reports (connections with their ids, states, timelines, Zeek fields, findings
including the merged SYN-flood and scan aggregates, stats such as the peak of tracked
connections) are compared between `analyze()` and `analyze_parallel()` on every capture
of sample_pcaps/ and the shared corpus, and on the bench-mini capture of real kernel
traffic; the CLI's JSON output is compared byte for byte.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tcpanalyze.analysis import analyze
from tcpanalyze.assignment import bucket_of
from tcpanalyze.ledger import LOOK
from tcpanalyze.parallel import Assignment, analyze_parallel

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"
if not CORPUS.is_dir():
    CORPUS = Path("/work/shared/corpus")
MINI = ROOT / "tests" / "data" / "bench-mini.pcap.gz"
SAMPLES = ROOT / "sample_pcaps"
CAPTURES = [MINI, *sorted(SAMPLES.glob("*.pcap*")), *sorted(CORPUS.glob("*/*/capture.pcap*"))]
# captures with several findings at one frame (a sweep, the end), which one process and
# two workers used to stream in different orders
STREAMED = [SAMPLES / "invalid-flags.pcap",
            *(CORPUS / "zeek" / name / "capture.pcap" for name in (
                "cisco-fabric-path-syns", "nmap-host-scan", "pop3-rejects", "teredo"))]


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_two_workers_report_what_one_process_reports(path: Path) -> None:
    assert analyze(str(path)).to_dict() == analyze_parallel(str(path), jobs=2).to_dict()


@pytest.mark.parametrize("name", ["syn-flood.pcap", "port-scan.pcap", "time-wait-reuse.pcap",
                                  "linktype-pcapng-unordered.pcapng"])
def test_three_workers_merge_aggregates_ids_and_order(name: str) -> None:
    # a flood's and a scan's counters are spread over the workers and must be summed
    # (not duplicated); port reuse names the earlier connection by its id; a
    # multi-interface pcapng is analysed in time order, not frame order
    path = str(SAMPLES / name)
    one, three = analyze(path).to_dict(), analyze_parallel(path, jobs=3).to_dict()
    assert one == three
    if name.startswith("syn-flood"):
        flood = next(f for f in three["findings"] if f["kind"] == "syn_flood")
        # 1000 spoofed SYNs and the legitimate client's (tshark counts 1001 pure SYNs)
        assert flood["details"]["syns"] == 1001


def test_assignment_keeps_a_connection_together_and_spreads_bulk_transfers() -> None:
    a, b = bytes([10, 81, 1, 2]), bytes([10, 81, 2, 2])
    first, second = Assignment(2, 3600.0), Assignment(2, 3600.0)
    owners = []
    # two bulk transfers running at the same time, each direction in turn
    for i in range(20000):
        port = 50001 if i % 2 else 50000
        w = first.worker(a, port, b, 9100, float(i)) if i % 4 < 2 else \
            first.worker(b, 9100, a, port, float(i))
        assert w == second.worker(a, port, b, 9100, float(i))  # every worker agrees
        owners.append((port, w))
    by_port = {port: {w for p, w in owners if p == port} for port in (50000, 50001)}
    assert by_port[50000] == {0}
    assert by_port[50001] == {1}  # not on the busy worker


@pytest.mark.parametrize("size", [5000, 10**6])
def test_assignment_forgets_silent_five_tuples_the_same_in_batches(size: int) -> None:
    """Past 65536 five-tuples, a decay forgets those silent for 2 x idle + 120 s; one
    that comes again is new (least load). The batch method must forget and reassign
    exactly as the one-at-a-time method, with decays inside its batches, and (one batch
    of all) five-tuples forgotten and seen again within one batch."""
    import numpy as np

    server = (bytes([10, 82, 0, 1]), 80)
    clients = [(bytes([10, 81, i >> 8 & 0xFF, i & 0xFF]), 1024 + i % 50000)
               for i in range(70000)]
    keys = [(*c, *server) for c in clients]  # canonical: 10.81... < 10.82...
    # every five-tuple once, 10 ms apart; a busy one in between (uneven loads); then the
    # first 3000 again, 700 s later: long forgotten (forget_after = 2 x 30 + 120 s)
    kid = [k for i in range(70000) for k in ((i, 0) if i % 3 else (i,))] + list(range(3000))
    ts = [n * 0.01 for n in range(len(kid))]
    ts[-3000:] = [ts[-3001] + 1.0 + n * 0.01 for n in range(3000)]
    one, many = Assignment(3, 30.0), Assignment(3, 30.0)
    expected = [one.worker(*keys[k], t) for k, t in zip(kid, ts, strict=True)]
    got: list[int] = []
    bucket = np.array([bucket_of(*key) for key in keys], dtype=np.int64)
    for start in range(0, len(kid), size):
        span = bucket[np.array(kid[start:start + size], dtype=np.int64)]
        distinct, local = np.unique(span, return_inverse=True)
        got += many.workers(distinct.tolist(), local.reshape(-1),
                            np.array(ts[start:start + size])).tolist()
    assert len(set(bucket.tolist())) > 65536  # more than are kept before any is forgotten
    assert len(one.owner) < 60000  # silent ones were forgotten: the test means something
    assert got == expected
    assert (many.load, many.count) == (one.load, one.count)
    assert many.owner == one.owner


def test_cli_json_is_byte_identical() -> None:
    def run(jobs: str) -> bytes:
        return subprocess.run([sys.executable, "-m", "tcpanalyze", "report", "--format",
                               "json", "--jobs", jobs, str(MINI)], capture_output=True,
                              check=True, cwd=ROOT).stdout

    one = run("1")
    assert one == run("2")
    assert b'"connections"' in one


@pytest.mark.parametrize("path", [MINI, *STREAMED], ids=lambda p: f"{p.parent.name}/{p.name}")
def test_cli_ndjson_streams_the_same_lines_in_the_same_order(path: Path) -> None:
    """Findings streamed with an explicit --jobs 2 come after the workers, but in one
    process's order: by frame, and at one frame (a sweep, several closes, the end) by
    connection, which is how one process sends them too (analysis._stream_order)."""
    def run(jobs: str) -> bytes:
        return subprocess.run([sys.executable, "-m", "tcpanalyze", "report", "--format",
                               "ndjson", "--jobs", jobs, str(path)], capture_output=True,
                              check=True, cwd=ROOT).stdout

    one = run("1")
    assert one.count(b'"type":"finding"') >= 2
    assert one == run("2")


def _attempts_and_completions(path: Path, server: tuple[str, int]
                              ) -> tuple[list[tuple[float, bool]], float, set[Any]]:
    """Read with dpkt, not tcpanalyze: every TCP segment as (time, opens a connection
    toward `server`: the first segment seen of its four-tuple is a SYN without ACK); the
    first segment's time; the four-tuples whose client spoke after its SYN (an ACK without
    SYN or RST toward the server)."""
    import socket

    import dpkt

    segments: list[tuple[float, bool]] = []
    seen: set[Any] = set()
    completed: set[Any] = set()
    with path.open("rb") as stored:
        for ts, buf in dpkt.pcap.Reader(stored):
            ip = dpkt.ethernet.Ethernet(buf).data
            if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.tcp.TCP):
                continue
            tcp = ip.data
            src, dst = socket.inet_ntoa(ip.src), socket.inet_ntoa(ip.dst)
            key = frozenset({(src, tcp.sport), (dst, tcp.dport)})
            syn, ack = tcp.flags & dpkt.tcp.TH_SYN, tcp.flags & dpkt.tcp.TH_ACK
            opens = key not in seen and (dst, tcp.dport) == server and bool(syn) and not ack
            seen.add(key)
            if (dst, tcp.dport) == server and ack and not syn and \
                    not tcp.flags & dpkt.tcp.TH_RST:
                completed.add(key)
            segments.append((float(ts), opens))
    return segments, segments[0][0], completed


@pytest.mark.parametrize("name", ["syn-flood.pcap", "syn-flood-cookies.pcap",
                                  "syn-flood-recovered.pcap", "port-scan.pcap"])
def test_cli_ndjson_streams_an_aggregate_as_one_process_found_it(name: str) -> None:
    """A flood (a scan) is streamed when one process first sees it, with its numbers of
    then; the workers' evidence is replayed in that order (parallel._replay_aggregates),
    not merged at the end."""
    def run(jobs: str) -> bytes:
        return subprocess.run([sys.executable, "-m", "tcpanalyze", "report", "--format",
                               "ndjson", "--jobs", jobs, str(SAMPLES / name)],
                              capture_output=True, check=True, cwd=ROOT).stdout

    one, two = run("1"), run("2")
    assert one == two
    first = json.loads(one.splitlines()[0])
    assert first["kind"] in ("syn_flood", "port_scan")
    if first["kind"] == "syn_flood":
        # streamed at the first look, one second into the capture: the attempts up to
        # the segment that triggers it, not the capture's total
        segments, start, _ = _attempts_and_completions(SAMPLES / name, ("10.77.2.2", 8080))
        look = next(i for i, (ts, _) in enumerate(segments) if ts >= start + 1.0)
        by_then = sum(opens for _, opens in segments[:look + 1])
        assert first["details"]["syns"] == by_then
        assert by_then < sum(opens for _, opens in segments)


def test_a_flood_that_no_longer_qualifies_at_the_end_is_reported_by_every_worker_count(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """syn-flood-recovered: 1000 spoofed SYNs, then 400 completed connections to the same
    port. One process reports the flood at its first look; by the end more than 20% of
    the attempts completed, so a decision on the merged final counters alone misses it."""
    import tcpanalyze.parallel as parallel

    path = SAMPLES / "syn-flood-recovered.pcap"
    segments, _, completed = _attempts_and_completions(path, ("10.77.2.2", 8080))
    attempts = sum(opens for _, opens in segments)
    assert attempts >= 1400 and len(completed) / attempts > 0.2  # the capture says so
    monkeypatch.setattr(parallel, "_EVENTS_AT_ONCE", 500)  # the workers' logs spill
    one = analyze(str(path)).to_dict()
    assert [f["kind"] for f in one["findings"]] == ["syn_flood"]
    assert one["findings"][0]["details"]["completion_ratio"] > 0.2  # the final numbers
    for jobs in (2, 3):
        assert analyze_parallel(str(path), jobs=jobs).to_dict() == one


def test_findings_after_a_report_are_absorbed_as_one_process_absorbs_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the member ids an aggregate remembers, one process absorbs a member's
    findings because its scan (flood) was reported when they came; the parent decides
    that in the same order. (Lower limits stand in for a scan of more than 1,024 ports.)"""
    from tcpanalyze.detectors import AggregateDetector

    monkeypatch.setattr(AggregateDetector, "member_limit", 10)
    monkeypatch.setattr(AggregateDetector, "source_member_limit", 10)
    path = str(SAMPLES / "port-scan.pcap")
    one = analyze(path).to_dict()
    # the 99 refused probes' findings are the scan's, though only 10 are its members
    assert [f["kind"] for f in one["findings"]] == ["port_scan"]
    assert not any(c["findings"] for c in one["connections"])
    assert analyze_parallel(path, jobs=2).to_dict() == one


def test_an_event_log_spills_to_a_file_and_reads_back_in_order(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import tempfile

    import tcpanalyze.parallel as parallel

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(parallel, "_EVENTS_AT_ONCE", 64)
    log = parallel._EventLog()
    events = [(i, i % 3, LOOK) for i in range(1000)]
    for start in range(0, 1000, 50):  # a batch's events at a time
        log.extend(events[start:start + 50])
    written = log.written()
    # spilled at 100, 200, ..., 1000: all in the file (the parent may never read them)
    assert written[0] is not None and written[1] == 10 and written[2] == []
    assert list(parallel._read_events(written)) == events
    assert list(tmp_path.iterdir()) == []  # read once, removed


def test_a_failed_merge_leaves_no_files_behind(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    """The workers' evidence logs (spilled: 64 events at once on a flood) are files; a
    merge that fails (here on purpose) removes them before the error goes on."""
    import tempfile

    import tcpanalyze.parallel as parallel

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(parallel, "_EVENTS_AT_ONCE", 64)
    spilled: list[str] = []
    summed = parallel._summed_aggregates

    def failing(*args: Any) -> Any:
        spilled.extend(os.listdir(tmp_path))
        summed(*args)
        raise RuntimeError("merge failed on purpose")

    monkeypatch.setattr(parallel, "_summed_aggregates", failing)
    with pytest.raises(RuntimeError, match="on purpose"):
        analyze_parallel(str(SAMPLES / "syn-flood.pcap"), jobs=2)
    assert len(spilled) == 2  # one log per worker was on disk when the merge began
    assert list(tmp_path.iterdir()) == []


def test_received_timelines_behave_like_the_lists_one_process_makes() -> None:
    from tcpanalyze.report import Timeline

    path = str(SAMPLES / "time-wait-reuse.pcap")
    one, two = analyze(path), analyze_parallel(path, jobs=2)
    assert [c.id for c in one.connections] == [c.id for c in two.connections]
    for a, b in zip(one.connections, two.connections, strict=True):
        assert isinstance(b.timeline, Timeline)
        assert b.timeline.rows is not None  # nobody has looked yet
        assert len(b.timeline) == len(a.timeline) > 0
        assert b == a and b.timeline == a.timeline and a.timeline == list(b.timeline)
        assert b.timeline[0] == a.timeline[0] and b.timeline[-1:] == a.timeline[-1:]
        assert b.timeline.rows is None  # objects made: they are the truth from now on


def test_json_of_a_parallel_report_follows_changes_to_its_timelines() -> None:
    import io
    import json

    from tcpanalyze.output import json as json_out

    report = analyze_parallel(str(SAMPLES / "several-normal.pcap"), jobs=2)
    json_out.write(report, io.StringIO())  # the templates for these shapes exist now
    report.connections[0].timeline[0].reason = "changed \u2192 after the merge"
    out = io.StringIO()
    json_out.write(report, out)
    assert out.getvalue() == json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n"
    assert "changed \\u2192 after the merge" in out.getvalue()


def test_workers_hand_over_their_summaries_in_files_that_are_removed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each worker writes its summaries to a temporary file (a file may have more than fit
    in memory); the parent reads and removes them."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    path = str(SAMPLES / "syn-flood.pcap")
    report = analyze_parallel(path, jobs=2)
    assert len(report.connections) > 100
    assert report.to_dict() == analyze(path).to_dict()
    assert list(tmp_path.iterdir()) == []


def test_local_ids_map_to_global_ones_like_a_dict() -> None:
    import numpy as np

    from tcpanalyze.parallel import _Remap

    remap = _Remap(np.array([1, 2, 3]), np.array([4, 7, 9]))
    assert [remap[i] for i in (1, 2, 3)] == [4, 7, 9]
    for unknown in (0, 4, -1, 100):
        with pytest.raises(KeyError):
            remap[unknown]


def test_workers_without_a_temporary_directory_send_their_summaries_directly(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", "/nonexistent/tcpanalyze-test")
    path = str(SAMPLES / "time-wait-reuse.pcap")
    assert analyze_parallel(path, jobs=2).to_dict() == analyze(path).to_dict()


# -- a dealt read: the parent reads a plain file once, each worker decodes its own --------

def _plain_mini(tmp_path: Path) -> Path:
    """bench-mini (real kernel traffic, 1.4 MB) as a plain pcap, which is dealt."""
    import gzip

    plain = tmp_path / "bench-mini.pcap"
    plain.write_bytes(gzip.decompress(MINI.read_bytes()))
    return plain


def _counting_deals(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    import tcpanalyze.parallel as parallel

    dealt: list[str] = []
    deal = parallel._deal

    def counting(path: str, *args: object, **kwargs: object) -> object:
        dealt.append(path)
        return deal(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(parallel, "_deal", counting)
    return dealt


def _dealt_in_small_batches(path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """One process's report of `path`, after checking that 2 and 3 workers give the same
    when the file is read in 16 KB pieces and a worker may fall only one batch behind."""
    import tcpanalyze.capture as capture
    import tcpanalyze.parallel as parallel

    one = analyze(str(path)).to_dict()
    monkeypatch.setattr(capture, "READ_SIZE", 16 << 10)
    monkeypatch.setattr(capture, "BATCH_READ", 16 << 10)
    monkeypatch.setattr(parallel, "_IN_FLIGHT", 1)
    for jobs in (2, 3):
        assert analyze_parallel(str(path), jobs=jobs).to_dict() == one
    return one


def test_plain_and_compressed_captures_are_dealt(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dealt = _counting_deals(monkeypatch)
    plain = _plain_mini(tmp_path)
    one = analyze(str(plain)).to_dict()
    assert analyze_parallel(str(plain), jobs=2).to_dict() == one
    packed = analyze_parallel(str(MINI), jobs=2).to_dict()  # gzip: dealt as bytes
    assert dealt == [str(plain), str(MINI)]
    assert packed["connections"] == one["connections"]
    assert packed["findings"] == one["findings"]
    assert packed == analyze(str(MINI)).to_dict()


@pytest.mark.parametrize("kind", ["pcap", "pcapng", "pcapng-interfaces"])
def test_a_compressed_capture_is_dealt_in_small_batches(
        kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # no file offsets to read again: each worker gets its records' bytes, one piece per
    # run of consecutive records (pcapng blocks too), or the Frames (time order)
    import gzip

    dealt = _counting_deals(monkeypatch)
    if kind == "pcap":
        path = MINI
    else:
        raw = _mini_pcapng(tmp_path, 9, 97, 64 if kind == "pcapng-interfaces" else 0)
        path = tmp_path / (raw.name + ".gz")
        path.write_bytes(gzip.compress(raw.read_bytes(), 1))
    one = _dealt_in_small_batches(path, monkeypatch)
    assert one["capture"]["format"].endswith("+gzip")
    assert one["capture"]["packets"] == 11529
    assert dealt == [str(path)] * 2


@pytest.mark.parametrize("kind", ["pcap", "pcap.gz", "pcapng", "pcapng.gz"])
def test_a_parcel_holds_exactly_the_frames_it_names(
        kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a worker decodes from a parcel (file offsets, or the packed bytes of a
    compressed file) is, frame for frame, what the parent decoded: the same captured
    bytes, times, numbers and lengths, for picks of single rows and of runs."""
    import gzip
    import os

    import numpy as np

    import tcpanalyze.capture as capture
    from tcpanalyze.capture import open_capture
    from tcpanalyze.columns import capture_sources
    from tcpanalyze.parallel import _Dealer, _opened

    monkeypatch.setattr(capture, "BATCH_READ", 64 << 10)
    path = _plain_mini(tmp_path) if kind.startswith("pcap.") or kind == "pcap" else \
        _mini_pcapng(tmp_path)
    if kind.endswith(".gz"):
        packed = tmp_path / (path.name + ".gz")
        packed.write_bytes(gzip.compress(path.read_bytes(), 1))
        path = packed
    reader = open_capture(str(path))
    layout = reader.record_layout
    head = {"records": 16 + layout["extra"], "blocks": 28}
    rng = np.random.default_rng(5)
    fd = os.open(path, os.O_RDONLY)
    done = checked = 0
    try:
        for cols, source in capture_sources(reader, False):
            # single rows and runs of rows, never the whole batch
            rows = np.flatnonzero(rng.random(len(cols)) < 0.4)
            rows = np.union1d(rows, np.arange(len(cols) // 3, len(cols) // 2))
            mine = rng.random(len(rows)) < 0.5
            parcel = _Dealer.parcel(cols, source, head[source[0]], rows, mine, done)
            assert isinstance(parcel[1], bytes) == kind.endswith(".gz")
            got, got_mine, positions = _opened(parcel, fd, str(path), layout, False)
            assert positions is None and (got_mine == mine).all()
            for k, r in enumerate(rows.tolist()):
                a, n = int(cols.data_at[r]), int(cols.caplen[r])
                b, m = int(got.data_at[k]), int(got.caplen[k])
                assert (got.buf[b:b + m], got.numbers[k], float(got.ts[k]),
                        int(got.wirelen[k])) == (cols.buf[a:a + n], cols.numbers[r],
                                                 float(cols.ts[r]), int(cols.wirelen[r]))
            checked += len(rows)
            done += len(cols)
    finally:
        os.close(fd)
        reader.close()
    assert done == 11529 and checked > 5000


def test_a_truncated_compressed_file_dealt_keeps_what_was_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tcpanalyze.capture as capture

    dealt = _counting_deals(monkeypatch)
    cut = tmp_path / "cut.pcap.gz"
    data = MINI.read_bytes()
    cut.write_bytes(data[:len(data) // 2])
    monkeypatch.setattr(capture, "BATCH_READ", 64 << 10)
    one = analyze(str(cut)).to_dict()
    assert one["capture"]["error"] and 1000 < one["capture"]["packets"] < 11529
    assert analyze_parallel(str(cut), jobs=2).to_dict() == one
    assert len(dealt) == 1


@pytest.mark.parametrize("jobs", [2, 3])
def test_a_dealt_read_over_many_small_batches_reports_what_one_process_reports(
        jobs: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # batches of ~16 KB (about a hundred of them) and a worker may fall only one batch
    # behind: sweeps fall inside and between batches, queues fill and the parent waits
    import tcpanalyze.capture as capture
    import tcpanalyze.parallel as parallel

    dealt = _counting_deals(monkeypatch)
    plain = _plain_mini(tmp_path)
    one = analyze(str(plain)).to_dict()
    monkeypatch.setattr(capture, "READ_SIZE", 16 << 10)
    monkeypatch.setattr(capture, "BATCH_READ", 16 << 10)
    monkeypatch.setattr(parallel, "_IN_FLIGHT", 1)
    assert analyze_parallel(str(plain), jobs=jobs).to_dict() == one
    assert len(dealt) == 1


def test_a_truncated_file_dealt_keeps_what_was_read_and_says_where_it_ends(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tcpanalyze.capture as capture

    dealt = _counting_deals(monkeypatch)
    plain = _plain_mini(tmp_path)
    cut = tmp_path / "cut.pcap"
    data = plain.read_bytes()
    cut.write_bytes(data[:len(data) * 2 // 3])  # inside a record, most likely
    monkeypatch.setattr(capture, "BATCH_READ", 64 << 10)
    one = analyze(str(cut)).to_dict()
    assert one["capture"]["error"] and "ends inside" in one["capture"]["error"]
    assert one["capture"]["packets"] > 0
    assert analyze_parallel(str(cut), jobs=2).to_dict() == one
    assert len(dealt) == 1


def _mini_pcapng(tmp_path: Path, tsresol: int = 6, simple_every: int = 0,
                 interleave: int = 0) -> Path:
    import gzip

    from pcapng_copy import as_pcapng

    path = tmp_path / f"mini-{tsresol}-{simple_every}-{interleave}.pcapng"
    path.write_bytes(as_pcapng(gzip.decompress(MINI.read_bytes()), tsresol,
                               simple_every=simple_every, interleave=interleave))
    return path


@pytest.mark.parametrize(("tsresol", "simple_every"), [(6, 0), (9, 0), (6, 97)])
def test_a_pcapng_is_dealt_in_small_batches_and_reports_what_one_process_reports(
        tsresol: int, simple_every: int, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # runs of EPBs are dealt as file offsets: in 16 KB reads a run ends at every refill,
    # so each batch's buffer starts at another file offset (a wrong one reads other
    # bytes); Simple Packet Blocks between them (no time, not in a run) go as Frames
    dealt = _counting_deals(monkeypatch)
    path = _mini_pcapng(tmp_path, tsresol, simple_every)
    one = _dealt_in_small_batches(path, monkeypatch)
    assert one["capture"]["format"] == "pcapng" and one["capture"]["packets"] == 11529
    assert dealt == [str(path)] * 2


def test_a_multi_interface_pcapng_is_dealt_in_time_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # frames of several interfaces are analysed in time order, so a frame's position
    # (which orders connection ids, findings, the peak) is not its number; they are
    # dealt as Frames with their positions
    dealt = _counting_deals(monkeypatch)
    for path in (_mini_pcapng(tmp_path, interleave=64),
                 SAMPLES / "linktype-pcapng-unordered.pcapng"):
        one = analyze(str(path)).to_dict()
        for jobs in (2, 3):
            assert analyze_parallel(str(path), jobs=jobs).to_dict() == one
    assert len(dealt) == 4
    firsts = [c["timeline"][0]["frame"] for c in
              analyze(str(tmp_path / "mini-6-0-64.pcapng")).to_dict()["connections"]]
    assert len(firsts) > 100
    assert firsts != sorted(firsts)  # ids follow time, not frame numbers


def test_a_truncated_pcapng_dealt_keeps_what_was_read_and_says_where_it_ends(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tcpanalyze.capture as capture

    dealt = _counting_deals(monkeypatch)
    whole = _mini_pcapng(tmp_path).read_bytes()
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(whole[:len(whole) * 2 // 3 + 5])
    monkeypatch.setattr(capture, "BATCH_READ", 64 << 10)
    one = analyze(str(cut)).to_dict()
    assert one["capture"]["error"] and "ends inside a block" in one["capture"]["error"]
    assert 1000 < one["capture"]["packets"] < 11529
    assert analyze_parallel(str(cut), jobs=2).to_dict() == one
    assert len(dealt) == 1


def test_a_worker_failing_while_the_parent_deals_is_reported_not_waited_for(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tcpanalyze.capture as capture
    import tcpanalyze.parallel as parallel

    work = parallel._work

    def failing(*args: object) -> object:
        if args[2] == 1:  # worker 1, before it reads anything
            raise RuntimeError("worker 1 broke")
        return work(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(parallel, "_work", failing)
    # many small batches, few in flight: the parent must notice while it deals
    monkeypatch.setattr(capture, "BATCH_READ", 16 << 10)
    monkeypatch.setattr(parallel, "_IN_FLIGHT", 1)
    with pytest.raises(RuntimeError, match="worker 1 broke"):
        analyze_parallel(str(_plain_mini(tmp_path)), jobs=2)


def test_a_fifo_given_to_several_workers_is_read_once_by_one_process(
        tmp_path: Path) -> None:
    """`report <(tcpdump -w -)` with the default --jobs: the pipe can be read only once
    (workers opening it again once hung or failed with a traceback)."""
    import os
    import signal
    import threading

    fifo = tmp_path / "live.pcap"
    os.mkfifo(fifo)
    capture = ROOT / "sample_pcaps" / "bulk-loss.pcap"

    def write() -> None:
        with open(fifo, "wb") as out:
            out.write(capture.read_bytes())

    def hung(*_: object) -> None:
        raise TimeoutError("still reading the FIFO after 30 s")

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    try:
        got = analyze_parallel(str(fifo), jobs=2).to_dict()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        writer.join(1)
    want = analyze(str(capture)).to_dict()
    for report in (got, want):
        report["capture"].pop("path")
    assert got == want and want["capture"]["packets"] == 4850  # capinfos -c


def test_a_capture_error_crosses_from_a_worker_to_its_parent() -> None:
    import pickle

    from tcpanalyze.capture import CaptureError

    error = CaptureError("x.pcap", "record length 99999 is absurd", 4096, 17)
    again = pickle.loads(pickle.dumps(error))
    assert (type(again), str(again), again.path, again.what, again.offset, again.frame) == (
        CaptureError, str(error), "x.pcap", error.what, 4096, 17)


def test_the_dealer_waits_for_the_worker_furthest_ahead_not_the_one_behind() -> None:
    import multiprocessing as mp

    import tcpanalyze.parallel as parallel

    class Waited(Exception):
        pass

    def check() -> None:  # called only while the dealer waits
        raise Waited

    rooms = parallel._Rooms(mp.get_context("fork"), 2)
    ahead = parallel._IN_FLIGHT
    # worker 1 takes every batch as it comes, worker 0 none: dealing goes on past
    # worker 0's rooms without waiting
    for _ in range(3 * ahead):
        rooms.free[1].release()
        rooms.wait(check)
    assert rooms.owed == [2 * ahead, 0]
    # worker 1 stops too: the dealer may still run `ahead` batches past it, then waits
    for _ in range(ahead):
        rooms.wait(check)
    with pytest.raises(Waited):
        rooms.wait(check)
    # worker 1 takes two batches (the one waited for and the next): no wait, and
    # worker 0 still owes its rooms
    rooms.free[1].release()
    rooms.free[1].release()
    rooms.wait(check)
    assert rooms.owed == [3 * ahead + 2, 0]


def test_sweep_rows_follow_the_rule_of_a_segment_at_a_time() -> None:
    """batch.sweep_rows against the rule written out per segment (Analysis.feed: the
    first segment sets the next sweep to its time + 1 s; a segment at or after it
    sweeps and sets it to its own time + 1 s), on times that jump, stall and go back."""
    import numpy as np

    from tcpanalyze.batch import sweep_rows

    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(0, 60))
        ts = np.cumsum(rng.choice([0.0, 0.01, 0.4, 0.99, 1.0, 2.5, -0.7], size=n)) + 100.0
        expected, next_sweep = [], None
        for i, t in enumerate(ts.tolist()):
            if next_sweep is None or t >= next_sweep:
                expected.append(i)
                next_sweep = t + 1.0
        # in one batch, and split into two batches at every point
        assert sweep_rows(ts, None) == (expected, next_sweep)
        cut = int(rng.integers(0, n + 1))
        rows_a, carry = sweep_rows(ts[:cut], None)
        rows_b, after = sweep_rows(ts[cut:], carry)
        assert rows_a + [cut + r for r in rows_b] == expected
        assert after == next_sweep



def test_a_five_tuple_decoded_both_ways_stays_in_one_worker(tmp_path: Path) -> None:
    """A five-tuple whose frames are decoded partly by the columns and partly by the
    per-frame decoder (here every third TCP frame carries an 802.1Q tag) gets one bucket
    either way, so one worker: the reports of --jobs 2 and 3 are one process's. Were the
    two buckets unrelated, about half the connections would be split between workers."""
    import gzip
    import struct

    data = gzip.decompress(MINI.read_bytes())
    parts, at, count = [data[:24]], 24, 0
    seen: dict[tuple[int, int], set[bool]] = {}  # ports -> tagged or not, of its frames
    while at < len(data):
        head = data[at:at + 16]
        caplen, wirelen = struct.unpack_from("<II", head, 8)
        frame = data[at + 16:at + 16 + caplen]
        at += 16 + caplen
        if frame[12:14] == b"\x08\x00" and frame[23] == 6 and len(frame) >= 38:
            tag = count % 3 == 2
            count += 1
            seen.setdefault(tuple(sorted(struct.unpack_from("!HH", frame, 34))), set()).add(tag)
            if tag:
                frame = frame[:12] + b"\x81\x00\x00\x07" + frame[12:]
                head = head[:8] + struct.pack("<II", caplen + 4, wirelen + 4)
        parts += [head, frame]
    tagged = tmp_path / "tagged.pcap"
    tagged.write_bytes(b"".join(parts))
    assert sum(len(ways) == 2 for ways in seen.values()) > 100  # both ways, many flows
    one = analyze(str(tagged)).to_dict()
    assert one["capture"]["tcp_segments"] == count  # every tagged frame decoded as TCP
    assert analyze_parallel(str(tagged), jobs=2).to_dict() == one
    assert analyze_parallel(str(tagged), jobs=3).to_dict() == one
