"""Numbers and sentences several renderers share: counts, ordering, the verdict."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterable

from tcpanalyze.gate import FailPolicy
from tcpanalyze.report import FINDING_KINDS, SEVERITIES, SEVERITY_RANK, Finding, Report

_KIND_ORDER = {kind: i for i, kind in enumerate(FINDING_KINDS)}


def kind_order(kind: str) -> int:
    return _KIND_ORDER.get(kind, len(FINDING_KINDS))


def sorted_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Most severe first, then in the report's kind order, then by time."""
    return sorted(
        findings,
        key=lambda f: (-SEVERITY_RANK.get(f.severity, 0), kind_order(f.kind), f.time),
    )


def counts_by_kind(findings: Iterable[Finding]) -> dict[str, Counter[str]]:
    """kind -> Counter(severity -> n), kinds in report order, only kinds that occur."""
    table: dict[str, Counter[str]] = {}
    for finding in findings:
        table.setdefault(finding.kind, Counter())[finding.severity] += 1
    return {kind: table[kind] for kind in sorted(table, key=lambda k: (kind_order(k), k))}


def counts_by_severity(findings: Iterable[Finding]) -> dict[str, int]:
    """Every severity, most severe first, zero included."""
    counts = Counter(f.severity for f in findings)
    return {severity: counts.get(severity, 0) for severity in reversed(SEVERITIES)}


def finding_capture(finding: Finding, report: Report) -> str:
    """The path of the capture a finding came from. `finding.capture` may hold the path
    or only its base name; a base name that names exactly one capture resolves to it."""
    if not report.captures:
        return finding.capture or "-"
    if not finding.capture:
        return report.captures[0].path
    paths = [c.path for c in report.captures]
    if finding.capture in paths:
        return finding.capture
    name = os.path.basename(finding.capture)
    matches = [path for path in paths if os.path.basename(path) == name]
    return matches[0] if len(matches) == 1 else finding.capture


def verdict(report: Report, policy: FailPolicy | None) -> tuple[bool, str]:
    """(failed, one plain line). Without a policy nothing fails; the line just counts."""
    total = len(report.findings)
    conns = len(report.connections)
    where = f"{conns} connection{'s' if conns != 1 else ''}"
    # `check`'s findings set aside by --ignore rules or its --baseline: not judged
    aside = report.stats.get("ignored", 0) + report.stats.get("baseline_known", 0)
    if aside:
        where += (f" ({aside} more set aside: {report.stats.get('ignored', 0)} ignored, "
                  f"{report.stats.get('baseline_known', 0)} in the baseline)")
    if total == 0:
        return False, f"OK: no findings in {where}"
    by_severity = ", ".join(
        f"{n} {severity}" for severity, n in counts_by_severity(report.findings).items() if n
    )
    noun = "finding" if total == 1 else "findings"
    if policy is None:
        return False, f"{total} {noun} ({by_severity}) in {where}"
    bad = sum(1 for f in report.findings if policy.fails(f))
    if bad:
        return True, (
            f"FAIL: {bad} of {total} {noun} {'fails' if bad == 1 else 'fail'} the policy "
            f"({policy.describe()}): {by_severity}"
        )
    return False, (
        f"PASS: {total} {noun} ({by_severity}), none fails the policy ({policy.describe()})"
    )


_ASCII_PUNCTUATION = str.maketrans({
    "\u2014": "-", "\u2013": "-", "\u2192": "->", "\u2190": "<-", "\u2026": "...",
    "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u00d7": "x",
    "\u2265": ">=", "\u2264": "<=", "\u00a0": " ",
})


def ascii_text(text: str) -> str:
    """Text for ASCII-only output (CI logs): common punctuation spelled out, anything
    else non-ASCII as '?'."""
    text = text.translate(_ASCII_PUNCTUATION)
    return text if text.isascii() else text.encode("ascii", "replace").decode("ascii")


def format_ts(ts: float | None) -> str:
    """UTC wall-clock time with microseconds, ISO style; '-' when unknown."""
    if ts is None:
        return "-"
    whole = int(ts // 1)
    micros = round((ts - whole) * 1_000_000)
    if micros == 1_000_000:
        whole, micros = whole + 1, 0
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(whole)) + f".{micros:06d}Z"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 120:
        return f"{seconds:.3f} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 120:
        return f"{int(minutes)} min {secs:.0f} s"
    hours, minutes = divmod(minutes, 60)
    return f"{int(hours)} h {int(minutes)} min"


def format_detail(value: object) -> str:
    """A details value as short plain text: floats rounded, lists/dicts flattened."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return ", ".join(f"{k} ({format_detail(v)})" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(format_detail(v) for v in value)
    return str(value)
