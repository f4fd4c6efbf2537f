"""Compare two decoders' segments for one capture (dpkt decoder vs tshark).

Pure comparison: `compare_segments` takes two iterables of `Segment` (each in frame
order, as both decoders yield them), walks them side by side by frame number and reports
every field the tracker reads that differs, the frames only one side decoded, and the
connections (unordered 4-tuples) whose segment counts differ. `crosscheck_capture` runs
both decoders over a file and is the only function here that does I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .segment import Segment, flags_text, format_addr, format_endpoint

# The Segment fields the tracker and detectors read, compared exactly; `ts` is compared
# with a tolerance because a decimal string and sec + frac / 10**k may round differently.
COMPARED_FIELDS = (
    "src", "dst", "sport", "dport", "seq", "ack", "flags", "window", "payload_len", "options",
)
TS_TOLERANCE = 1e-6  # one microsecond: the coarsest pcap resolution

# An unordered 4-tuple: both directions of one connection share a key.
ConnectionKey = tuple[tuple[bytes, int], tuple[bytes, int]]


def connection_key(segment: Segment) -> ConnectionKey:
    a, b = (segment.src, segment.sport), (segment.dst, segment.dport)
    return (a, b) if a <= b else (b, a)


def format_key(key: ConnectionKey) -> str:
    (a, ap), (b, bp) = key
    return f"{format_endpoint(a, ap)} <-> {format_endpoint(b, bp)}"


def format_value(name: str, value: Any) -> str:
    """A field value as a person reads it (addresses dotted, flags as letters)."""
    if name in ("src", "dst"):
        return format_addr(value)
    if name == "flags":
        return f"{flags_text(value)} (0x{value:03x})"
    if name == "options":
        return value.hex() or "-"
    return str(value)


@dataclass(frozen=True)
class Disagreement:
    frame: int
    field: str
    left: Any  # the first decoder's value (dpkt)
    right: Any  # the second decoder's value (tshark)

    def to_dict(self) -> dict[str, Any]:
        return {"frame": self.frame, "field": self.field,
                "left": format_value(self.field, self.left),
                "right": format_value(self.field, self.right)}


@dataclass(frozen=True)
class ConnectionDifference:
    key: ConnectionKey
    left: int  # segments the first decoder gave this 4-tuple
    right: int

    def to_dict(self) -> dict[str, Any]:
        return {"connection": format_key(self.key), "left": self.left, "right": self.right}

    def describe(self, left_name: str, right_name: str) -> str:
        return (f"{format_key(self.key)}: {self.left} segment(s) from {left_name}, "
                f"{self.right} from {right_name}")


@dataclass
class CrosscheckResult:
    left_name: str = "dpkt"
    right_name: str = "tshark"
    frames_both: int = 0  # frames both decoders turned into a segment
    disagreements: list[Disagreement] = field(default_factory=list)
    only_left: list[int] = field(default_factory=list)  # frame numbers (first `limit`)
    only_right: list[int] = field(default_factory=list)
    only_left_count: int = 0
    only_right_count: int = 0
    connections_left: int = 0  # distinct unordered 4-tuples
    connections_right: int = 0
    connection_differences: list[ConnectionDifference] = field(default_factory=list)
    error: str | None = None  # the capture's fault, where reading stopped early

    @property
    def agree(self) -> bool:
        return not (self.disagreements or self.only_left_count or self.only_right_count
                    or self.connection_differences)

    def to_dict(self) -> dict[str, Any]:
        return {
            "decoders": [self.left_name, self.right_name],
            "agree": self.agree,
            "frames_both": self.frames_both,
            "disagreements": [d.to_dict() for d in self.disagreements],
            f"only_{self.left_name}": {"count": self.only_left_count,
                                       "frames": list(self.only_left)},
            f"only_{self.right_name}": {"count": self.only_right_count,
                                        "frames": list(self.only_right)},
            "connections": {self.left_name: self.connections_left,
                            self.right_name: self.connections_right,
                            "differences": [c.to_dict() for c in self.connection_differences]},
            **({"error": self.error} if self.error is not None else {}),
        }

    def summary(self) -> str:
        """One line: what agreed and what did not."""
        return (f"{self.frames_both} frames decoded by both, {len(self.disagreements)} field "
                f"disagreements, {self.only_left_count} only {self.left_name}, "
                f"{self.only_right_count} only {self.right_name}; connections "
                f"{self.connections_left} vs {self.connections_right}, "
                f"{len(self.connection_differences)} with different segment counts")


def _by_frame(segments: Iterable[Segment]) -> Iterator[Segment]:
    last = 0
    for seg in segments:
        if seg.frame <= last:
            raise ValueError(f"segments out of frame order: {seg.frame} after {last}")
        last = seg.frame
        yield seg


def compare_segment(left: Segment, right: Segment,
                    ts_tolerance: float = TS_TOLERANCE) -> list[Disagreement]:
    """The fields in which two decodings of the same frame differ."""
    out = [Disagreement(left.frame, name, getattr(left, name), getattr(right, name))
           for name in COMPARED_FIELDS if getattr(left, name) != getattr(right, name)]
    if abs(left.ts - right.ts) > ts_tolerance:
        out.append(Disagreement(left.frame, "ts", left.ts, right.ts))
    return out


def compare_segments(left: Iterable[Segment], right: Iterable[Segment], *,
                     left_name: str = "dpkt", right_name: str = "tshark",
                     ts_tolerance: float = TS_TOLERANCE, limit: int = 1000) -> CrosscheckResult:
    """Walk both decodings by frame number (a merge: constant memory but the 4-tuples).

    `limit` bounds the stored disagreements and one-sided frame lists; counts stay exact.
    """
    result = CrosscheckResult(left_name=left_name, right_name=right_name)
    per_left: Counter[ConnectionKey] = Counter()
    per_right: Counter[ConnectionKey] = Counter()
    lit, rit = _by_frame(left), _by_frame(right)
    a, b = next(lit, None), next(rit, None)
    while a is not None or b is not None:
        if b is None or (a is not None and a.frame < b.frame):
            assert a is not None
            per_left[connection_key(a)] += 1
            result.only_left_count += 1
            if len(result.only_left) < limit:
                result.only_left.append(a.frame)
            a = next(lit, None)
        elif a is None or b.frame < a.frame:
            per_right[connection_key(b)] += 1
            result.only_right_count += 1
            if len(result.only_right) < limit:
                result.only_right.append(b.frame)
            b = next(rit, None)
        else:
            per_left[connection_key(a)] += 1
            per_right[connection_key(b)] += 1
            result.frames_both += 1
            for d in compare_segment(a, b, ts_tolerance):
                if len(result.disagreements) < limit:
                    result.disagreements.append(d)
            a, b = next(lit, None), next(rit, None)
    result.connections_left = len(per_left)
    result.connections_right = len(per_right)
    for key in sorted(per_left.keys() | per_right.keys()):
        if per_left[key] != per_right[key]:
            result.connection_differences.append(
                ConnectionDifference(key, per_left[key], per_right[key]))
    return result


def dpkt_segments(path: str, errors: list[str] | None = None) -> Iterator[Segment]:
    """The dpkt decoder's segments of one capture file (capture.py + decode.py); a fault
    that ends the reading early goes into `errors`."""
    from .capture import open_capture
    from .decode import Decoder

    decoder = Decoder()
    reader = open_capture(path)
    for frame in reader:
        segment = decoder.decode(frame)
        if segment is not None:
            yield segment
    if reader.error is not None and errors is not None:
        errors.append(str(reader.error))


def crosscheck_capture(path: str, limit: int = 1000) -> CrosscheckResult:
    """Decode one capture file with both decoders and compare (needs tshark)."""
    from .tshark import tshark_segments

    errors: list[str] = []
    result = compare_segments(dpkt_segments(path, errors), tshark_segments(path), limit=limit)
    result.error = errors[0] if errors else None
    return result
