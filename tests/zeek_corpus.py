"""Test-only: corpus capture -> the product decoder's Segments -> Zeek-style records.

Segments come from the product's reader and decoder (as `report -f zeek` reads them);
records are grouped here by unordered 4-tuple, split where `ZeekView.starts_new_record`
says Zeek would (tests/test_zeek_acceptance.py checks the product's own grouping too).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from tcpanalyze.segment import Segment, format_addr
from tcpanalyze.zeek import ZeekView, first_packet_flips

CORPUS = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus" / "zeek"
if not CORPUS.is_dir():  # ../shared beside the clone, else where this machine keeps it
    CORPUS = Path("/work/shared/corpus/zeek")


def load_segments_captured(path: Path) -> list[tuple[Segment, bool]]:
    """The product decoder's segments, as Zeek takes them: with the length its IP header
    claims (Segment.ip_short) and a flag: is the whole payload in the capture (not
    snaplen-cut)? (analysis.Analysis._zeek_record feeds its records the same way.)"""
    from tcpanalyze.capture import open_capture, time_ordered
    from tcpanalyze.decode import Decoder

    decoder = Decoder()
    reader = open_capture(str(path))
    try:
        segments = [decoder.decode(frame) for frame in time_ordered(reader)]
    finally:
        reader.close()
    return [(seg._replace(payload_len=seg.payload_len + seg.ip_short), not seg.payload_cut)
            for seg in segments if seg is not None]


@dataclass
class Record:
    """One Zeek connection record as we build it."""

    orig: tuple[bytes, int]
    resp: tuple[bytes, int]
    view: ZeekView
    frames: list[int] = field(default_factory=list)

    @property
    def orig_h(self) -> str:
        return format_addr(self.orig[0])

    @property
    def resp_h(self) -> str:
        return format_addr(self.resp[0])


def build_records(segments: list[Segment] | list[tuple[Segment, bool]]) -> list[Record]:
    """Group segments (optionally with their payload-captured flag) into Zeek-style
    records, in order of creation."""
    records: list[Record] = []
    current: dict[tuple, Record] = {}
    for item in segments:
        seg, captured = item if isinstance(item, tuple) else (item, True)
        a, b = (seg.src, seg.sport), (seg.dst, seg.dport)
        key = (a, b) if a < b else (b, a)
        rec = current.get(key)
        if rec is not None:
            from_orig = a == (rec.orig if not rec.view.roles_swapped else rec.resp)
            if rec.view.starts_new_record(seg, from_orig, seg.ts):
                rec = None
        if rec is None:
            flipped = first_packet_flips(seg)
            rec = Record(b if flipped else a, a if flipped else b, ZeekView(flipped))
            current[key] = rec
            records.append(rec)
        from_orig = a == (rec.orig if not rec.view.roles_swapped else rec.resp)
        rec.view.feed(seg, from_orig, captured)
        rec.frames.append(seg.frame)
    for rec in records:  # a mid-way flip swaps who the originator is
        if rec.view.roles_swapped:
            rec.orig, rec.resp = rec.resp, rec.orig
    return records


@dataclass
class Baseline:
    """One TCP row of a Zeek baseline; absent columns are None."""

    orig_h: str | None
    orig_p: int | None
    resp_h: str | None
    resp_p: int | None
    conn_state: str | None
    history: str | None


_NO_HEADER_COLUMNS = ["id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto",
                      "service", "community_id"]


def parse_conn_log(path: Path) -> list[Baseline]:
    """Full logs (#fields), zeek-cut extracts (header line) and the headerless one."""
    out = []
    for rec in parse_conn_rows(path):

        def get(name: str, rec: dict[str, str] = rec) -> str | None:
            value = rec.get(name)
            return None if value in (None, "", "-") else value

        orig_p, resp_p = get("id.orig_p"), get("id.resp_p")
        out.append(Baseline(get("id.orig_h"), int(orig_p) if orig_p else None,
                            get("id.resp_h"), int(resp_p) if resp_p else None,
                            get("conn_state"), get("history")))
    return out


def parse_conn_rows(path: Path) -> list[dict[str, str]]:
    """The TCP rows of a baseline conn.log as {column: text} (only the columns it has)."""
    lines = [ln for ln in path.read_text().splitlines()
             if ln and not ln.startswith("###")]
    columns: list[str] | None = None
    rows: list[list[str]] = []
    for ln in lines:
        if ln.startswith("#fields"):
            columns = ln.split("\t")[1:]
        elif ln.startswith("#"):
            continue
        elif columns is None and re.match(r"^(ts|uid)\t", ln):
            columns = ln.split("\t")
        else:
            rows.append(ln.split("\t"))
    if columns is None:
        columns = _NO_HEADER_COLUMNS
    records = (dict(zip(columns, row, strict=False)) for row in rows)
    return [rec for rec in records if rec.get("proto", "tcp") == "tcp"]


def parse_rst_behavior(path: Path, line: int) -> list[Baseline]:
    """The conn_state-RST-behavior btest prints 'history, conn_state' per trace."""
    lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("###")]
    history, state = (part.strip() for part in lines[line - 1].split(","))
    return [Baseline(None, None, None, None, state, history)]


def match_records(records: list[Record], baselines: list[Baseline]
                  ) -> list[tuple[int, Baseline, Record | None]]:
    """Pair each baseline row with our record: same endpoints (either way round),
    the n-th row of a 4-tuple with the n-th record of it."""
    used: set[int] = set()
    pairs: list[tuple[int, Baseline, Record | None]] = []
    for index, base in enumerate(baselines):
        found = None
        for i, rec in enumerate(records):
            if i in used:
                continue
            ends = {(rec.orig_h, rec.orig[1]), (rec.resp_h, rec.resp[1])}
            if base.orig_h is not None and base.orig_h not in {h for h, _ in ends}:
                continue
            if base.resp_h is not None and base.resp_h not in {h for h, _ in ends}:
                continue
            if base.orig_p is not None and base.orig_p not in {p for _, p in ends}:
                continue
            if base.resp_p is not None and base.resp_p not in {p for _, p in ends}:
                continue
            found = i
            break
        if found is not None:
            used.add(found)
        pairs.append((index, base, records[found] if found is not None else None))
    return pairs
