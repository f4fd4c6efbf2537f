"""The template JSON writer writes exactly what `json.dumps(to_dict(), indent=2)` writes.

The expected text here is always CPython's own `json.dumps(..., indent=2,
allow_nan=False)` of the report contract, never our writer's output.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcpanalyze.analysis import analyze
from tcpanalyze.output import json as json_out
from tcpanalyze.report import (
    CaptureSummary,
    ConnectionSummary,
    Finding,
    Report,
    StateChange,
)

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus"  # ../shared beside the clone, as CI has it
if not CORPUS.is_dir():
    CORPUS = Path("/work/shared/corpus")
CAPTURES = [ROOT / "tests" / "data" / "bench-mini.pcap.gz",
            *sorted((ROOT / "sample_pcaps").glob("*.pcap*")),
            *sorted(CORPUS.glob("*/*/capture.pcap*"))]


def expected(report: Report, timeline: bool = True) -> str:
    return json.dumps(report.to_dict(timeline=timeline), indent=2, allow_nan=False) + "\n"


def written(report: Report, timeline: bool = True) -> str:
    out = io.StringIO()
    json_out.write(report, out, 2, timeline)
    return out.getvalue()


def capture() -> CaptureSummary:
    return CaptureSummary("t.pcap", "pcap", ["EN10MB"], 10, 9, {"non_ip": 1}, 1.0, 2.0)


def conn(i: int = 1, **kw: Any) -> ConnectionSummary:
    fields: dict[str, Any] = dict(
        id=i, client=f"10.0.0.1:{1000 + i}", server="10.0.0.2:80", start=1.5 + i,
        end=2.25 + i, packets_client=3, packets_server=2, bytes_client=0, bytes_server=10,
        client_state="TIME_WAIT", server_state="CLOSED", conn_state="SF", history="ShADadFf",
        findings=[], flags_seen="SAF",
        quality={"handshake_seen": True, "midstream": False, "gaps": 0},
        timeline=[StateChange(1.5 + i, 1, "client", "UNKNOWN", "SYN_SENT", "sent SYN"),
                  StateChange(1.6 + i, 2, "server", "LISTEN", "SYN_RCVD", "got SYN")])
    fields.update(kw)
    return ConnectionSummary(**fields)


def report_of(*conns: ConnectionSummary, findings: list[Finding] | None = None) -> Report:
    return Report([capture()], list(conns), findings or [], tool_version="0.test",
                  stats={"connections": len(conns)})


@pytest.mark.parametrize("path", [p for p in CAPTURES if p.exists()],
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_same_text_as_json_dumps_on_real_captures(path: Path) -> None:
    report = analyze(str(path))
    for timeline in (True, False):
        text = written(report, timeline)
        assert text == expected(report, timeline)
        assert text == json_out.render(report, 2, timeline)


def test_zeek_records_and_capture_names_on_a_real_capture() -> None:
    report = analyze(str(ROOT / "sample_pcaps" / "time-wait-reuse.pcap"), zeek_records=True,
                     capture_name="east \u2192 west \"1\"")
    assert report.connections and all(c.zeek_records for c in report.connections)
    assert all(c.capture for c in report.connections)
    assert written(report) == expected(report)


def test_the_templates_are_used_for_ordinary_connections() -> None:
    # the fast path must really run (a silent fallback to json.dumps would still pass
    # the equality tests, at the old speed)
    report = analyze(str(ROOT / "sample_pcaps" / "several-normal.pcap"))
    report.findings.append(Finding("rst_teardown", "low", "reset", 1.0, [1, 2], 1, "a -> b",
                                   details={"rexmits": 3, "ratio": 0.5}))
    json_out._templates.clear()
    written(report)
    assert {shape[0] for shape in json_out._templates} == {"connection", "finding"}
    assert all(t is not None for t in json_out._templates.values())


AWKWARD = ["", "\"", "\\", "a\"b\\c", "\u00e9t\u00e9", "\u2192", "\U0001f600", "\x00\x01\x1f",
           "\n\r\t", "%s", "%", "%%d", "}\n{", "\",\n\"", "\u2028\u2029", "\ud800",
           json_out._LEAF, "[", "{", "]", "null"]


@pytest.mark.parametrize("text", AWKWARD)
def test_awkward_strings_everywhere(text: str) -> None:
    c = conn(client=text, server=text + "x", history=text, findings=[text, "rst_teardown"],
             flags_seen=text, quality={text: text, "gaps": 1, "x" + text: None},
             timeline=[StateChange(1.0, 2, text, text, text, text)], capture=text,
             zeek_records=[{"orig": text, text + "k": 1.5, "resp": None}])
    f = Finding("rst_teardown", "low", text, 1.0, [1, 2], 1, text, text,
                details={text: [text, 1]})
    report = report_of(c, conn(2), findings=[f])
    assert written(report) == expected(report)
    assert written(report, False) == expected(report, False)


@pytest.mark.parametrize("text", AWKWARD)
def test_awkward_findings(text: str) -> None:
    findings = [Finding(text, text, text, 1.5, [], None, text),
                Finding("a", "low", "s", 2.5, [1, 2, 3], 7, text, capture=text, server=text,
                        details={text: text, "n": 1, "x": None, "f": 0.1}),
                Finding("a", "low", "s", 2.5, [1], 7, "x", details={"n": 2, text: False}),
                Finding("b", "high", "s", 3.0, [4], None, "t", details={"top": [["a", 1]]}),
                Finding("c", "high", "s", 3.0, [4], None, "t", details={1: "a", "b": 2})]
    for report in (report_of(conn(1), findings=findings), report_of(findings=findings)):
        assert written(report) == expected(report)


@pytest.mark.parametrize("name", [json_out._MARK + "connections", json_out._MARK + "findings",
                                  json_out._LEAF, "__tcpanalyze_connections__"])
def test_names_that_look_like_the_writers_markers(name: str) -> None:
    report = report_of(conn(1, capture=name), findings=[Finding("a", "low", name, 1.0)])
    report.captures[0].path = name
    assert written(report) == expected(report)


def test_empty_and_missing_parts() -> None:
    report = report_of(conn(1, quality={}, timeline=[], findings=[]), conn(2),
                       conn(3, timeline=[], capture="c"))
    assert written(report) == expected(report)
    empty = Report([], [], [])
    assert written(empty) == expected(empty)
    assert written(Report([capture()], [], [])) == expected(Report([capture()], [], []))


def test_values_of_other_types() -> None:
    numpy = pytest.importorskip("numpy")

    class Name(str):
        pass

    report = report_of(
        conn(1, start=numpy.float64(1.1), end=2, packets_client=True, bytes_server=2**70,
             client=Name("n"), quality={"gaps": [1, 2], "both": {"a": 1}}),
        conn(2, quality={3: "int key", False: "bool key", None: "none", 2.5: "float"}),
        conn(3, findings=("a", "b"), timeline=[StateChange(1e300, -1, "client", "a", "b",
                                                           "c")]),
        conn(4, zeek_records=[{"orig": "a", "nested": [1, {"x": 2}]}]),
        conn(5, start=-0.0, end=1e-7, id=None),
        # equal keys of other types (1 == 1.0 == True) are written differently
        conn(6, quality={1: "a"}), conn(7, quality={True: "a"}), conn(8, quality={1.0: "a"}))
    assert written(report) == expected(report)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_out_of_range_floats_are_refused_as_json_dumps_refuses_them(bad: float) -> None:
    for c in (conn(1, start=bad), conn(1, timeline=[StateChange(bad, 1, "a", "b", "c", "d")]),
              conn(1, quality={"x": bad})):
        with pytest.raises(ValueError):
            written(report_of(conn(2), c))


def test_objects_json_cannot_write_are_refused() -> None:
    with pytest.raises(TypeError):
        written(report_of(conn(1, quality={"x": {1, 2}})))
    with pytest.raises(TypeError):
        written(report_of(conn(1, quality={(1, 2): "tuple key"})))


def test_a_shape_seen_before_with_other_leaf_types() -> None:
    # same shape as an earlier connection, but a leaf is now a list: not the template
    report = report_of(conn(1), conn(2, quality={"handshake_seen": [1], "midstream": False,
                                                 "gaps": 0}), conn(3))
    assert written(report) == expected(report)


def test_written_a_few_connections_at_a_time() -> None:
    report = report_of(*(conn(i) for i in range(1, 2001)))
    writes: list[int] = []

    class Sizes(io.StringIO):
        def write(self, s: str) -> int:
            writes.append(len(s))
            return super().write(s)

    out = Sizes()
    json_out.write(report, out)
    assert out.getvalue() == expected(report)
    assert len(writes) > 5 and max(writes) < sum(writes) / 5


text_st = st.text(st.characters(), max_size=12)
leaf_st = st.one_of(st.none(), st.booleans(), st.integers(), text_st,
                    st.floats(allow_nan=False, allow_infinity=False))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(text_st, st.dictionaries(text_st, leaf_st, max_size=4),
                          st.lists(st.tuples(st.floats(allow_nan=False, allow_infinity=False),
                                             text_st), max_size=4),
                          st.lists(text_st, max_size=3), st.one_of(st.none(), text_st)),
                min_size=1, max_size=6))
def test_generated_connections(specs: list[Any]) -> None:
    conns = [conn(i, client=client, quality=quality, findings=findings, capture=cap,
                  timeline=[StateChange(t, i, "client", "A", "B", reason) for t, reason in tl])
             for i, (client, quality, tl, findings, cap) in enumerate(specs, 1)]
    report = report_of(*conns)
    assert written(report) == expected(report)
    assert written(report, False) == expected(report, False)


# -- timelines held packed (report.Timeline.packed): written as one block ---------------


def packed(*changes: tuple[float, int, str, str, str, str]) -> Any:
    from array import array

    from tcpanalyze.report import Timeline

    kinds: list[tuple[str, str, str, str]] = []
    flat = array("d")
    for ts, frame, endpoint, old, new, reason in changes:
        kind = (endpoint, old, new, reason)
        if kind not in kinds:
            kinds.append(kind)
        flat.extend((kinds.index(kind), frame, ts))
    return Timeline.packed(flat, kinds)


@pytest.mark.parametrize("text", AWKWARD)
def test_packed_timelines_with_awkward_strings(text: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = []
    block = json_out._packed_timeline
    monkeypatch.setattr(json_out, "_packed_timeline",
                        lambda *a: blocks.append(1) or block(*a))  # type: ignore[func-returns-value]
    c = conn(1, timeline=packed((1.0, 2, text, text, text, text),
                                (1e300, 2**40, "client", text, "x", "y"),
                                (-0.0, 0, "client", text, "x", "y"),
                                (1e-7, 3, text, "a", "b", "c")), capture=text)
    report = report_of(c, conn(2, timeline=packed((5.5, 9, "server", "a", "b", text))))
    assert written(report) == expected(report)
    assert written(report, False) == expected(report, False)
    assert len(blocks) == 2  # both connections took the block path (once: with a timeline)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_packed_timelines_with_out_of_range_times_are_refused(bad: float) -> None:
    c = conn(1, timeline=packed((1.0, 2, "a", "b", "c", "d"), (bad, 3, "a", "b", "c", "d")))
    with pytest.raises(ValueError):
        written(report_of(conn(2), c))


def test_a_packed_timeline_once_looked_at_is_written_as_it_now_is() -> None:
    timeline = packed((1.0, 2, "client", "CLOSED", "SYN_SENT", "sent SYN"))
    c = conn(1, timeline=timeline)
    timeline[0].reason = "changed after the analysis"
    report = report_of(c)
    assert "changed after the analysis" in written(report)
    assert written(report) == expected(report)


# -- the fast paths: a chunk of items written at once, timelines in pieces ----------------


# awkward times: every one must come out as float.__repr__ writes it (what json.dumps does)
TIMES = [0.0, -0.0, 1e-7, 5e-324, 1e-4, 9.999999999999999e-05, 0.1 + 0.2, 1.0, 12.5, 1e15,
         1e16, 1e22, 1.7976931348623157e308, -1.5, -1796405964.669317, 1796405964.669317,
         1796405964.7, 4294967295.999999, 4294967296.000001, 2.0**53, 123456789.123456789]
FRAMES = [0, 1, 7.0, 2**31, 2**40, 2**53, 1e15, 1e22, -1, -0.0, 2.9, -2.9, 999999999999.0]


def kind_table(n: int) -> list[tuple[str, str, str, str]]:
    """n kinds of change, most with a '%', quotes or non-ASCII somewhere in their text."""
    awkward = [text for text in AWKWARD if text != json_out._LEAF]
    return [("client" if i % 2 else "server", f"S{i}%", awkward[i % len(awkward)],
             f"reason {i} {awkward[(i * 7) % len(awkward)]} 100% \u00e9")
            for i in range(n)]


def packed_with(kinds: list[Any], changes: list[tuple[float, float, float]]) -> Any:
    """A timeline packed as the tracker packs it: (code, frame, time) per change."""
    from array import array

    from tcpanalyze.report import Timeline

    return Timeline.packed(array("d", [v for change in changes for v in change]), kinds)


def test_packed_timelines_with_many_kinds_awkward_times_and_large_frames() -> None:
    kinds = kind_table(300)
    conns = [conn(i, timeline=packed_with(kinds, [
        ((i * 13 + k) % 300, FRAMES[(i + k) % len(FRAMES)], TIMES[(i * 5 + k) % len(TIMES)])
        for k in range(1 + i % 17)]))
        for i in range(1, 700)]
    report = report_of(*conns)
    assert written(report) == expected(report)
    assert written(report, False) == expected(report, False)


def test_a_table_of_kinds_that_grew_between_two_reports() -> None:
    kinds = kind_table(2)
    first = report_of(conn(1, timeline=packed_with(kinds, [(0, 1, 1.5), (1, 2, 2.5)])))
    assert written(first) == expected(first)
    kinds.append(("client", "A", "B", "new kind 50%"))  # the tracker only ever appends
    second = report_of(conn(1, timeline=packed_with(kinds, [(0, 1, 1.5), (2, 2, 2.5)])),
                       conn(2, timeline=packed_with(kinds, [(2, 3, 3.5), (1, 4, 4.5)])))
    assert written(second) == expected(second)


@pytest.mark.parametrize("code", [-1, -3, 1.5, 0.999])
def test_packed_codes_that_are_no_plain_index_are_read_as_timeline_rows_reads_them(
        code: float) -> None:
    kinds = kind_table(3)
    report = report_of(conn(1, timeline=packed_with(kinds, [(0, 1, 1.5), (code, 2, 2.5)])),
                       conn(2))
    assert written(report) == expected(report)


def test_packed_codes_beyond_the_table_are_refused_as_to_dict_refuses_them() -> None:
    report = report_of(conn(1, timeline=packed_with(kind_table(3), [(3, 1, 1.5)])))
    with pytest.raises(IndexError):
        expected(report)
    with pytest.raises(IndexError):
        written(report)


def test_packed_kinds_that_are_not_four_strings() -> None:
    kinds: list[Any] = [("client", "A", "B", None), ("server", 1, 2.5, True),
                        ("client", "A", "B", "fine")]
    report = report_of(conn(1, timeline=packed_with(kinds, [(0, 1, 1.5), (1, 2, 2.5),
                                                            (2, 3, 3.5)])))
    assert written(report) == expected(report)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_packed_frames_out_of_range_are_refused_as_to_dict_refuses_them(bad: float) -> None:
    report = report_of(conn(1, timeline=packed_with(kind_table(2), [(0, bad, 1.5)])))
    with pytest.raises((ValueError, OverflowError)) as want:
        expected(report)
    with pytest.raises(want.type):
        written(report)


def test_timelines_packed_in_something_else_than_an_array_of_doubles() -> None:
    from array import array

    from tcpanalyze.report import Timeline

    kinds = kind_table(2)

    def report() -> Report:  # a new one each time: to_dict() unpacks the timelines
        return report_of(
            conn(1, timeline=Timeline.packed([0, 5, 1, 1, 6, 2.5], kinds)),
            conn(2, timeline=Timeline.packed(array("f", [0, 5, 1.25]), kinds)),
            conn(3, timeline=Timeline.packed(array("q", [1, 5, 2]), kinds)),
            conn(4, timeline=Timeline.packed(array("d", [0, 5, 1.5, 1]), kinds)))

    cut = report()
    cut.connections[:3] = []
    cut.connections.append(conn(5, timeline=packed_with(kinds, [(1, 6, 2.5)])))
    with pytest.raises(IndexError):  # cut short: to_dict() cannot write it either
        written(cut)
    with pytest.raises(IndexError):
        expected(cut)
    whole = report()
    whole.connections.pop()
    assert written(whole) == expected(whole)


@pytest.mark.parametrize("first", [1796405964.669317, 1e22, 5e-324, -1.5, 0.0, -0.0])
def test_a_start_and_end_that_equal_the_first_and_last_times(first: float) -> None:
    # written with the timeline's texts when they are the same float, else their own
    numpy = pytest.importorskip("numpy")
    kinds = kind_table(2)
    changes = [(0, 1, first), (1, 2, 1796405965.5)]
    conns = [conn(1, start=first, end=1796405965.5),
             conn(2, start=-first, end=1796405965.5),  # -0.0 and 0.0 are equal floats
             conn(3, start=int(first), end=1796405965),  # equal ints: written as ints
             conn(4, start=numpy.float64(first), end=numpy.float64(1796405965.5)),
             conn(5, start=first, end=first),
             conn(6, start=1.0, end=1796405965.5000002)]
    for c in conns:
        c.timeline = packed_with(kinds, changes)
    report = report_of(*conns * 20)  # numbers by numpy, and alone (the template's check)
    assert written(report) == expected(report)


def test_chunks_mixing_every_way_of_writing_a_connection() -> None:
    # more connections than one chunk: templates, packed and row timelines, a shape the
    # templates cannot express (plain json.dumps) and, in one chunk only, a nested leaf
    kinds = kind_table(5)
    conns = []
    for i in range(1, 3 * json_out._CHUNK):
        if i % 50 == 0:
            c = conn(i, quality={3: "an int key"})
        elif i % 3 == 0:
            c = conn(i, timeline=packed_with(kinds, [(i % 5, i, 1.5 + i), (0, i + 1, 2.0)]))
        elif i % 7 == 0:
            c = conn(i, timeline=[])
        else:
            c = conn(i, capture="c%" if i % 2 else None)
        conns.append(c)
    conns[json_out._CHUNK + 10].quality = {"nested": [1, {"a": 2}]}
    report = report_of(*conns, findings=[
        Finding("a", "low", "s%", 2.5, [i], i, "x", details={"n": i})
        for i in range(2 * json_out._CHUNK)])
    assert written(report) == expected(report)
    assert written(report, False) == expected(report, False)


def test_the_same_shape_with_another_number_of_leaves_is_not_filled_by_its_template(
) -> None:
    # timelines whose rows are longer and shorter than StateChange: to_dict() refuses
    # them, and the writer must not fill a template with leaves shifted by one
    from tcpanalyze.report import Timeline

    change = StateChange(1.0, 2, "client", "A", "B", "C")
    longer = Timeline(((1.0, 2, "client", "A", "B", "C", "extra"),))
    shorter = Timeline(((1.0, 2, "client", "A", "B"),))
    report = report_of(conn(1, timeline=[change]), conn(2, timeline=longer),
                       conn(3, timeline=shorter), conn(4, timeline=[change]))
    with pytest.raises(TypeError):
        expected(report)
    with pytest.raises(TypeError):
        written(report)


finite_st = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(st.tuples(st.integers(0, 5),
                                   st.one_of(st.integers(-2**60, 2**60).map(float),
                                             finite_st),
                                   st.one_of(finite_st, st.sampled_from(TIMES),
                                             st.integers(0, 2**32 * 10**6)
                                             .map(lambda us: us / 1e6))),
                         min_size=1, max_size=30),
                min_size=1, max_size=20),
       st.lists(st.tuples(text_st, text_st, text_st, text_st), min_size=6, max_size=6))
def test_generated_packed_timelines(timelines: list[Any], kinds: list[Any]) -> None:
    report = report_of(*(conn(i, timeline=packed_with(kinds, changes))
                         for i, changes in enumerate(timelines, 1)))
    assert written(report) == expected(report)


# -- times and frames formatted by numpy: exactly float.__repr__ and int() -----------------


def number_texts(times: list[float], frames: list[float]) -> list[str]:
    from array import array

    return json_out._number_texts(array("d", times), array("d", frames))


def python_texts(times: list[float], frames: list[float]) -> list[str]:
    return [text for time, frame in zip(times, frames, strict=True)
            for text in (float.__repr__(time), int.__repr__(int(frame)))]


def grid_edges() -> list[float]:
    """Times at the edges of the numpy path: its range, powers of ten, the microsecond
    grid and its neighbours, carries from the decimals into the integer part."""
    edges = [1e-4, 0.0001, 1e-3, 0.5, 1.0, 9.999999, 10.0, 99.99999, 1e6, 2.0**31,
             2.0**32 - 1e-6, 4294967295.999999, 4294967295.9999995, 2.0**32, 1e9 - 1e-6,
             999999999.999999, 1796405964.0, 1796405964.000001, 1796405964.1,
             1796405964.999999, 1796405964.9999995, 1796405964.669317, 0.000101, 0.000999,
             0.00005, 0.000099, 0.000001]
    edges += [10.0**k for k in range(-4, 10)] + [10.0**k - 1e-6 for k in range(0, 10)]
    edges += [10.0**k + 1e-6 for k in range(-4, 10)]
    edges += [math.nextafter(x, d) for x in list(edges) for d in (0.0, math.inf)]
    return edges


def test_numbers_on_the_microsecond_grid_and_around_it() -> None:
    import random

    rng = random.Random(7)
    times = grid_edges()
    # pcap times: whole microseconds, every number of digits
    times += [float(f"{rng.randrange(10**k)}.{rng.randrange(10**6):06d}")
              for k in range(0, 11) for _ in range(2000)]
    times += [rng.randrange(2**32 * 10**6) / 1e6 for _ in range(20000)]
    times += [rng.randrange(10**6) / 10.0**rng.randrange(1, 7) for _ in range(5000)]
    # off the grid or the range, a minority: written by Python within the numpy path
    times += [rng.random() * 2.0**34, rng.random(), -rng.random() * 1e9, 5e-324, 1e22,
              -0.0, 0.0, 9.99e-5, 1e16, 2.0**53] * 500
    frames = [float(rng.choice([0, -0.0, 1, 9999, 10**4, 10**8 - 1, 10**8, 10**12 - 1,
                                10**12, 2**53, 2.5, -1, -7.5, rng.randrange(10**12)]))
              for _ in times]
    assert number_texts(times, frames) == python_texts(times, frames)
    assert number_texts(times[:50], frames[:50]) == python_texts(times[:50], frames[:50])
    from array import array

    assert json_out._grid_number_texts(array("d", times), array("d", frames)) is not None


def test_numbers_mostly_off_the_grid() -> None:
    # nanosecond times: all by Python (the numpy path gives up), the same texts
    times = [1796405964.123456789 + k * 1.000000001e-3 for k in range(1000)]
    frames = [float(k) for k in range(1000)]
    assert number_texts(times, frames) == python_texts(times, frames)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_numbers_with_a_frame_int_cannot_take(bad: float) -> None:
    frames = [1.0] * 100
    frames[70] = bad
    with pytest.raises((ValueError, OverflowError)) as want:
        int(bad)
    with pytest.raises(want.type):
        number_texts([1.5] * 100, frames)


micro_st = st.integers(0, 2**32 * 10**6).map(lambda us: us / 1e6)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.one_of(micro_st, micro_st, micro_st, finite_st,
                                    st.sampled_from(grid_edges())),
                          st.one_of(st.integers(0, 10**13).map(float), finite_st)),
                min_size=json_out._NUMPY_FROM, max_size=200))
def test_generated_numbers(numbers: list[tuple[float, float]]) -> None:
    times = [t for t, _ in numbers]
    frames = [f if math.isfinite(f) else 0.0 for _, f in numbers]
    assert number_texts(times, frames) == python_texts(times, frames)


# -- connections written by several processes (--jobs) ------------------------------------

def _written_by(report: Report, jobs: int) -> str:
    out = io.StringIO()
    json_out.write(report, out, jobs=jobs)
    return out.getvalue()


@pytest.mark.parametrize("jobs", [2, 3])
def test_connections_written_by_forked_processes_give_the_same_text(
        jobs: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(json_out, "_FORK_FROM", 1)  # fork for a few chunks already
    forks = _counting_forks(monkeypatch)
    report = analyze(str(ROOT / "sample_pcaps" / "syn-flood.pcap"))
    assert len(report.connections) > 3 * 256  # 4 chunks: at least one for every process
    assert _written_by(report, jobs) == expected(report)
    assert len(forks) == jobs - 1


def test_forked_processes_read_summaries_kept_on_disk(monkeypatch: pytest.MonkeyPatch
                                                      ) -> None:
    """Summaries beyond the in-memory limit wait in a temporary file that the writing
    processes share: each reads its own records (pread), none moves the others' offset."""
    from tcpanalyze.settings import Settings
    from tcpanalyze.summaries import SummaryList

    monkeypatch.setattr(json_out, "_FORK_FROM", 1)
    report = analyze(str(ROOT / "sample_pcaps" / "syn-flood.pcap"),
                     Settings(summaries_in_memory=7))
    assert isinstance(report.connections, SummaryList)
    assert len(report.connections._ids) > len(report.connections) - 7  # on disk
    assert _written_by(report, 3) == expected(report)


def _counting_forks(monkeypatch: pytest.MonkeyPatch, fail: bool = False) -> list[int]:
    import os

    forks: list[int] = []
    fork = os.fork

    def counting() -> int:
        pid = fork()
        if pid == 0 and fail:
            os._exit(1)  # a writing process that dies before it writes anything
        forks.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", counting)
    return forks


def test_a_part_whose_process_failed_is_written_by_the_parent(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(json_out, "_FORK_FROM", 1)
    forks = _counting_forks(monkeypatch, fail=True)
    report = analyze(str(ROOT / "sample_pcaps" / "syn-flood.pcap"))
    assert _written_by(report, 3) == expected(report)
    assert len(forks) == 2


def test_without_a_temporary_directory_one_process_writes_everything(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    monkeypatch.setattr(json_out, "_FORK_FROM", 1)
    monkeypatch.setattr(tempfile, "tempdir", "/nonexistent/tcpanalyze-test")
    forks = _counting_forks(monkeypatch)
    report = analyze(str(ROOT / "sample_pcaps" / "syn-flood.pcap"))
    assert _written_by(report, 2) == expected(report)
    assert forks == []


def test_small_reports_are_written_by_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    forks = _counting_forks(monkeypatch)
    report = analyze(str(ROOT / "sample_pcaps" / "syn-flood.pcap"))  # ~1000 connections
    assert _written_by(report, 2) == expected(report)
    assert forks == []  # fewer than _FORK_FROM chunks a process: forking costs more
