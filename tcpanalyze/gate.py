"""The CI gate behind `tcpanalyze check`: which findings fail a build.

Pure functions over `report.Finding`s, no I/O except reading/writing a baseline file:

- `parse_fail_on` turns `--fail-on` specs (severities and/or kinds) into a `FailPolicy`;
- `IgnoreRule` / `apply_ignores` drop findings the user has accepted;
- a baseline (versioned JSON) records the findings of a known-good run so that only
  *new* ones fail; findings are matched by kind + the server endpoint (not the client's
  ephemeral port, which changes every run) + the capture's file name;
- `decide_exit` maps what is left to an `ExitCode`.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import IO, Any

from tcpanalyze.report import FINDING_KINDS, SEVERITIES, SEVERITY_RANK, Finding, Report

BASELINE_VERSION = 1
# Severities below this are noise in most networks (retransmissions, keepalives).
DEFAULT_FAIL_ON = ("high",)
# Severity specs meaning "everything" / "never fail", besides the severity names.
_ANY = "any"
_NONE = "none"


class ExitCode(IntEnum):
    OK = 0  # nothing crosses the fail threshold
    FINDINGS = 1  # at least one finding does
    ERROR = 2  # the analysis itself failed (unreadable capture, bad options)


class GateError(ValueError):
    """A bad --fail-on / --ignore spec or baseline file; str(e) says which and why."""


# -- fail policy -----------------------------------------------------------------------


@dataclass(frozen=True)
class FailPolicy:
    """Which findings fail the gate: severity at or above `min_severity`, or kind in `kinds`."""

    min_severity: str | None = DEFAULT_FAIL_ON[0]
    kinds: frozenset[str] = frozenset()

    def fails(self, finding: Finding) -> bool:
        if finding.kind in self.kinds:
            return True
        if self.min_severity is None:
            return False
        return SEVERITY_RANK.get(finding.severity, 0) >= SEVERITY_RANK[self.min_severity]

    def describe(self) -> str:
        """'severity >= medium or kind in rst_teardown', for verdict lines."""
        parts = []
        if self.min_severity is not None:
            parts.append(f"severity >= {self.min_severity}")
        if self.kinds:
            parts.append("kind in " + ", ".join(k for k in FINDING_KINDS if k in self.kinds))
        return " or ".join(parts) if parts else "never"


def parse_fail_on(specs: Iterable[str] | str | None) -> FailPolicy:
    """Parse `--fail-on` values: severities ('high' means high or above), kinds, 'any', 'none'.

    Each value may itself be comma-separated ('high,rst_teardown'). None or an empty list
    gives the default policy. Several severities: the lowest one wins ('high,low' = low+).
    """
    if specs is None:
        specs = DEFAULT_FAIL_ON
    elif isinstance(specs, str):
        specs = [specs]
    items = [part.strip() for spec in specs for part in spec.split(",") if part.strip()]
    if not items:
        items = list(DEFAULT_FAIL_ON)
    min_rank: int | None = None
    kinds: set[str] = set()
    never = False
    for item in items:
        name = item.lower().replace("-", "_")
        if name == _NONE:
            never = True
        elif name == _ANY:
            min_rank = 0
        elif name in SEVERITY_RANK:
            rank = SEVERITY_RANK[name]
            min_rank = rank if min_rank is None else min(min_rank, rank)
        elif name in FINDING_KINDS:
            kinds.add(name)
        else:
            raise GateError(
                f"unknown --fail-on value {item!r}: expected a severity "
                f"({', '.join(SEVERITIES)}), 'any', 'none' or a finding kind "
                f"({', '.join(FINDING_KINDS)})"
            )
    if never:
        if min_rank is not None or kinds:
            raise GateError("--fail-on 'none' cannot be combined with other values")
        return FailPolicy(min_severity=None, kinds=frozenset())
    severity = SEVERITIES[min_rank] if min_rank is not None else None
    return FailPolicy(min_severity=severity, kinds=frozenset(kinds))


def failing(findings: Iterable[Finding], policy: FailPolicy) -> list[Finding]:
    return [f for f in findings if policy.fails(f)]


def decide_exit(findings: Iterable[Finding], policy: FailPolicy) -> ExitCode:
    """FINDINGS when any finding crosses the threshold, else OK (errors are the caller's)."""
    return ExitCode.FINDINGS if any(policy.fails(f) for f in findings) else ExitCode.OK


# -- endpoints of a finding ------------------------------------------------------------


def split_endpoint(text: str) -> tuple[str, int | None] | None:
    """'10.0.0.1:80' -> ('10.0.0.1', 80), '[fd00::1]:80' -> ('fd00::1', 80),
    '10.0.0.1' or 'fd00::1' -> (addr, None); None for anything that is no address."""
    text = text.strip()
    host: str = text
    port: int | None = None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        host, rest = text[1:end], text[end + 1 :]
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
        elif rest:
            return None
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        if not port_text.isdigit():
            return None
        port = int(port_text)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return host, port


def finding_endpoints(finding: Finding) -> list[tuple[str, int | None]]:
    """Every (address, port) a finding names: both sides of 'client -> server', the
    aggregate's subject, and the `server` field."""
    texts = [part for part in finding.subject.split("->") if part.strip()]
    if finding.server:
        texts.append(finding.server)
    out: list[tuple[str, int | None]] = []
    for text in texts:
        endpoint = split_endpoint(text)
        if endpoint is not None and endpoint not in out:
            out.append(endpoint)
    return out


def stable_identity(finding: Finding) -> str:
    """The endpoint that survives a re-run: the server 'addr:port' (the client's port is
    ephemeral), or the aggregate's subject."""
    if finding.server:
        return finding.server
    if finding.connection is not None and "->" in finding.subject:
        return finding.subject.split("->")[-1].strip()
    return finding.subject.strip()


# -- ignore rules ----------------------------------------------------------------------

_IGNORE_KEYS = ("kind", "address", "port", "connection", "capture")


@dataclass(frozen=True)
class IgnoreRule:
    """Drop findings matching every given field (fields left None match anything).

    address: an IP or a network (CIDR), matched against either endpoint or the subject;
    port: either endpoint's port; capture: the path or its base name, shell wildcards allowed.
    """

    kind: str | None = None
    address: str | None = None
    port: int | None = None
    connection: int | None = None
    capture: str | None = None
    _network: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in FINDING_KINDS:
            raise GateError(f"ignore rule: unknown kind {self.kind!r}")
        port_ok = isinstance(self.port, int) and not isinstance(self.port, bool)
        if self.port is not None and not (port_ok and 0 <= self.port <= 65535):
            raise GateError(f"ignore rule: port must be an integer 0-65535, not {self.port!r}")
        if self.connection is not None and (
            not isinstance(self.connection, int) or isinstance(self.connection, bool)
        ):
            raise GateError(f"ignore rule: connection must be an integer, not {self.connection!r}")
        if self.address is not None:
            try:
                network = ipaddress.ip_network(str(self.address).strip("[]"), strict=False)
            except ValueError:
                raise GateError(
                    f"ignore rule: address {self.address!r} is not an IP address or network"
                ) from None
            object.__setattr__(self, "_network", network)
        if all(getattr(self, key) is None for key in _IGNORE_KEYS):
            raise GateError("ignore rule: give at least one of " + ", ".join(_IGNORE_KEYS))

    def matches(self, finding: Finding, capture: str | None = None) -> bool:
        """`capture` is the path of the finding's capture when `finding.capture` is unset."""
        if self.kind is not None and finding.kind != self.kind:
            return False
        if self.connection is not None and finding.connection != self.connection:
            return False
        if self.capture is not None:
            path = finding.capture or capture or ""
            if not (
                fnmatch.fnmatchcase(path, self.capture)
                or fnmatch.fnmatchcase(os.path.basename(path), self.capture)
            ):
                return False
        if self.address is not None or self.port is not None:
            endpoints = finding_endpoints(finding)
            if self.address is not None:
                endpoints = [e for e in endpoints if _in_network(e[0], self._network)]
            if self.port is not None:
                endpoints = [e for e in endpoints if e[1] == self.port]
            if not endpoints:
                return False
        return True

    def to_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in _IGNORE_KEYS if getattr(self, key) is not None}


def _in_network(host: str, network: Any) -> bool:
    try:
        return ipaddress.ip_address(host) in network
    except (ValueError, TypeError):
        return False


def ignore_rule_from_mapping(data: Mapping[str, Any]) -> IgnoreRule:
    """An ignore table from the config file ({kind=..., port=...})."""
    unknown = sorted(set(data) - set(_IGNORE_KEYS))
    if unknown:
        raise GateError(
            f"ignore rule: unknown key {unknown[0]!r} (expected {', '.join(_IGNORE_KEYS)})"
        )
    for key in ("kind", "address", "capture"):
        if key in data and not isinstance(data[key], str):
            raise GateError(f"ignore rule: {key} must be a string, not {data[key]!r}")
    return IgnoreRule(**{key: data[key] for key in _IGNORE_KEYS if key in data})


def parse_ignore_spec(spec: str) -> IgnoreRule:
    """A command-line ignore rule: 'kind=rst_teardown,port=443' or a bare kind."""
    spec = spec.strip()
    if "=" not in spec:
        return IgnoreRule(kind=spec.replace("-", "_"))
    data: dict[str, Any] = {}
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise GateError(f"ignore rule {spec!r}: expected key=value pairs separated by ','")
        if key in ("port", "connection"):
            if not value.isdigit():
                raise GateError(f"ignore rule {spec!r}: {key} must be an integer")
            data[key] = int(value)
        else:
            data[key] = value.replace("-", "_") if key == "kind" else value
    return ignore_rule_from_mapping(data)


def apply_ignores(
    findings: Iterable[Finding], rules: Iterable[IgnoreRule], capture: str | None = None
) -> tuple[list[Finding], list[Finding]]:
    """Split findings into (kept, ignored)."""
    rules = list(rules)
    kept: list[Finding] = []
    ignored: list[Finding] = []
    for finding in findings:
        (ignored if any(r.matches(finding, capture) for r in rules) else kept).append(finding)
    return kept, ignored


# -- baseline --------------------------------------------------------------------------

BaselineKey = tuple[str, str, str]  # (kind, stable endpoint, capture base name)


def baseline_key(finding: Finding, capture: str | None = None) -> BaselineKey:
    path = finding.capture or capture or ""
    return (finding.kind, stable_identity(finding), os.path.basename(path))


def baseline_dict(report: Report) -> dict[str, Any]:
    """The baseline document for a report: one entry per key, with a count and an example."""
    default_capture = report.captures[0].path if report.captures else None
    entries: dict[BaselineKey, dict[str, Any]] = {}
    for finding in report.findings:
        key = baseline_key(finding, default_capture)
        entry = entries.get(key)
        if entry is None:
            entries[key] = {
                "kind": key[0],
                "endpoint": key[1],
                "capture": key[2],
                "severity": finding.severity,
                "count": 1,
                "example": finding.summary,
            }
        else:
            entry["count"] += 1
            if SEVERITY_RANK.get(finding.severity, 0) > SEVERITY_RANK.get(entry["severity"], 0):
                entry["severity"] = finding.severity
    order = {kind: i for i, kind in enumerate(FINDING_KINDS)}
    ordered = sorted(entries.values(), key=lambda e: (e["capture"], order.get(e["kind"], 99),
                                                        e["kind"], e["endpoint"]))
    return {"version": BASELINE_VERSION, "tool": "tcpanalyze", "findings": ordered}


def write_baseline(report: Report, stream: IO[str]) -> None:
    json.dump(baseline_dict(report), stream, indent=2)
    stream.write("\n")


@dataclass(frozen=True)
class Baseline:
    keys: frozenset[BaselineKey]

    def __contains__(self, key: object) -> bool:
        return key in self.keys


def baseline_from_dict(data: Any, source: str = "baseline") -> Baseline:
    if not isinstance(data, dict) or "findings" not in data:
        raise GateError(f"{source}: not a tcpanalyze baseline (no 'findings')")
    version = data.get("version")
    if version != BASELINE_VERSION:
        raise GateError(
            f"{source}: baseline version {version!r} is not supported (expected {BASELINE_VERSION})"
        )
    keys: set[BaselineKey] = set()
    for i, entry in enumerate(data["findings"]):
        if not isinstance(entry, dict) or not all(
            isinstance(entry.get(k), str) for k in ("kind", "endpoint", "capture")
        ):
            raise GateError(f"{source}: findings[{i}] needs string kind, endpoint and capture")
        keys.add((entry["kind"], entry["endpoint"], entry["capture"]))
    return Baseline(frozenset(keys))


def read_baseline(path: str) -> Baseline:
    try:
        with open(path, encoding="utf-8") as stream:
            data = json.load(stream)
    except FileNotFoundError as e:
        raise GateError(f"{path}: cannot read baseline: {e.strerror} (record one with "
                        "--write-baseline)") from e
    except OSError as e:
        raise GateError(f"{path}: cannot read baseline: {e.strerror}") from e
    except json.JSONDecodeError as e:
        raise GateError(f"{path}: baseline is not valid JSON: {e}") from e
    except UnicodeDecodeError as e:
        raise GateError(f"{path}: baseline is not valid JSON: not UTF-8 text "
                        f"(byte {e.start})") from e
    return baseline_from_dict(data, path)


def split_by_baseline(
    findings: Iterable[Finding], baseline: Baseline, capture: str | None = None
) -> tuple[list[Finding], list[Finding]]:
    """Split findings into (new, known). Matching ignores counts: a known problem that
    shows up on more connections than before is still known."""
    new: list[Finding] = []
    known: list[Finding] = []
    for finding in findings:
        (known if baseline_key(finding, capture) in baseline else new).append(finding)
    return new, known


# -- the whole check -------------------------------------------------------------------


@dataclass
class GateResult:
    considered: list[Finding]  # after ignores and baseline: what the policy judged
    failing: list[Finding]
    ignored: list[Finding]
    known: list[Finding]  # matched the baseline
    exit_code: ExitCode


def check(
    report: Report,
    policy: FailPolicy,
    ignores: Iterable[IgnoreRule] = (),
    baseline: Baseline | None = None,
) -> GateResult:
    """Ignores first, then the baseline, then the policy."""
    capture = report.captures[0].path if report.captures else None
    kept, ignored = apply_ignores(report.findings, ignores, capture)
    known: list[Finding] = []
    if baseline is not None:
        kept, known = split_by_baseline(kept, baseline, capture)
    bad = failing(kept, policy)
    return GateResult(
        considered=kept,
        failing=bad,
        ignored=ignored,
        known=known,
        exit_code=ExitCode.FINDINGS if bad else ExitCode.OK,
    )
