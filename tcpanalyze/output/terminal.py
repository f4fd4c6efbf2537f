"""Terminal tables (rich) for `tcpanalyze report` and `tcpanalyze flows`.

Everything fits 80 columns: rich folds long cells (IPv6 endpoints) instead of widening
the table. Colour follows rich's detection (off when NO_COLOR is set or the output is
not a terminal); `ascii_only` swaps box-drawing characters for '+-|' for CI logs.
"""

from __future__ import annotations

import io
import os
import sys
from typing import IO

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from tcpanalyze.gate import FailPolicy
from tcpanalyze.output.summary import (
    ascii_text,
    counts_by_kind,
    format_detail,
    format_duration,
    format_ts,
    sorted_findings,
    verdict,
)
from tcpanalyze.report import PACKET_CLASSES, SEVERITIES, Report

AGGREGATE_KINDS = ("syn_flood", "port_scan")
DEFAULT_MAX_ROWS = 40

SEVERITY_STYLES = {"high": "bold red", "medium": "yellow", "low": "cyan", "info": "dim"}


def make_console(
    file: IO[str] | None = None, width: int | None = None, color: bool | None = None
) -> Console:
    """A console for our output. color=None: rich decides (NO_COLOR, isatty);
    False forces plain text."""
    if color is None and os.environ.get("NO_COLOR"):
        color = False
    kwargs: dict[str, object] = {}
    if color is False:
        kwargs["color_system"] = None
        kwargs["no_color"] = True
    elif color is True:
        kwargs["force_terminal"] = True
    # markup off: our cells hold data, and an IPv6 endpoint's "[fd77:1::2]" is not a style
    return Console(file=file or sys.stdout, width=width, highlight=False, markup=False,
                   **kwargs)


def _box(ascii_only: bool) -> box.Box:
    return box.ASCII if ascii_only else box.SIMPLE_HEAD


def _table(title: str, ascii_only: bool) -> Table:
    return Table(
        title=title,
        title_justify="left",
        title_style="bold",
        box=_box(ascii_only),
        show_edge=ascii_only,
        pad_edge=False,
        expand=False,
    )


def _arrow(ascii_only: bool) -> str:
    return "->" if ascii_only else "→"


def capture_table(report: Report, ascii_only: bool = False) -> RenderableType:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    plain = ascii_text if ascii_only else str
    for capture in report.captures:
        grid.add_row("capture", Text(plain(capture.path)))  # a name is not markup
        grid.add_row("format", f"{capture.format} (decoder {capture.decoder})")
        grid.add_row("link types", ", ".join(capture.linktypes) or "-")
        classes = {"tcp": capture.tcp_segments, **capture.skipped}
        counted = ", ".join(
            f"{name} {classes[name]}" for name in PACKET_CLASSES if classes.get(name)
        )
        extra = ", ".join(
            f"{name} {n}" for name, n in capture.skipped.items() if name not in PACKET_CLASSES and n
        )
        grid.add_row("packets", f"{capture.packets} ({', '.join(x for x in (counted, extra) if x)})"
                     if capture.packets else "0")
        if capture.first_ts is not None and capture.last_ts is not None:
            grid.add_row(
                "time span",
                f"{format_ts(capture.first_ts)} + "
                f"{format_duration(capture.last_ts - capture.first_ts)}",
            )
        if capture.error:
            grid.add_row(
                Text("read error", style="bold red"), Text(plain(capture.error), style="red")
            )
    grid.add_row("connections", str(len(report.connections)))
    return grid


def findings_by_kind_table(report: Report, ascii_only: bool = False) -> RenderableType:
    table = _table("Findings by kind", ascii_only)
    table.add_column("kind", overflow="fold")
    severities = list(reversed(SEVERITIES))
    for severity in severities:
        table.add_column(severity, justify="right", style=SEVERITY_STYLES[severity])
    table.add_column("total", justify="right", style="bold")
    for kind, counts in counts_by_kind(report.findings).items():
        table.add_row(
            kind,
            *(str(counts.get(s, 0) or "") for s in severities),
            str(sum(counts.values())),
        )
    return table


def vlan_text(vlan: list[int] | None) -> str:
    """A connection's VLAN ids as shown: '42', outer/inner '10/20', '-' untagged."""
    return "/".join(map(str, vlan)) if vlan else "-"


def problem_connections_table(
    report: Report, ascii_only: bool = False, max_rows: int = DEFAULT_MAX_ROWS
) -> RenderableType | None:
    problems = [c for c in report.connections if c.findings]
    if not problems:
        return None
    table = _table("Connections with findings", ascii_only)
    arrow = _arrow(ascii_only)
    # `check`: findings its --ignore rules or --baseline set aside are still the
    # connection's, shown dimmed and marked, as the verdict does not count them
    judged = ({(f.connection, f.kind) for f in report.findings}
              if report.stats.get("ignored") or report.stats.get("baseline_known") else None)
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column(f"client {arrow} server\nfindings", overflow="fold", ratio=1)
    table.add_column("client\nstate", no_wrap=True)
    table.add_column("server\nstate", no_wrap=True)
    table.add_column("conn_state\nhistory", overflow="fold")
    for conn in problems[:max_rows]:
        # (the VLAN ids only with the VLAN-aware key, where they tell copies apart)
        vlan = f" vlan {vlan_text(conn.vlan)}" if conn.vlan else ""
        connection = Text(f"{conn.client}\n{arrow} {conn.server}{vlan}\n")
        for i, kind in enumerate(conn.findings):
            if i:
                connection.append(", ")
            if judged is None or (conn.id, kind) in judged:
                connection.append(kind, style="yellow")
            else:
                connection.append(f"{kind} (set aside)", style="dim")
        table.add_row(
            str(conn.id),
            connection,
            conn.client_state,
            conn.server_state,
            f"{conn.conn_state or '-'}\n{conn.history or '-'}",
        )
    if len(problems) > max_rows:
        table.caption = f"... and {len(problems) - max_rows} more (use --format json)"
        table.caption_justify = "left"
    return table


def aggregate_table(report: Report, ascii_only: bool = False) -> RenderableType | None:
    aggregates = [f for f in sorted_findings(report.findings) if f.kind in AGGREGATE_KINDS]
    if not aggregates:
        return None
    table = _table("Attacks and scans", ascii_only)
    table.add_column("kind", no_wrap=True)
    table.add_column("severity", no_wrap=True)
    table.add_column("subject", overflow="fold", ratio=1)
    table.add_column("numbers", overflow="fold", ratio=2)
    for finding in aggregates:
        numbers = "; ".join(f"{k} {format_detail(v)}" for k, v in finding.details.items())
        table.add_row(
            finding.kind,
            Text(finding.severity, style=SEVERITY_STYLES.get(finding.severity, "")),
            finding.subject,
            numbers or (ascii_text(finding.summary) if ascii_only else finding.summary),
        )
    return table


def findings_table(
    report: Report, ascii_only: bool = False, max_rows: int = DEFAULT_MAX_ROWS
) -> RenderableType | None:
    ordered = [f for f in sorted_findings(report.findings) if f.kind not in AGGREGATE_KINDS]
    if not ordered:
        return None
    table = _table("Findings", ascii_only)
    table.add_column("severity", no_wrap=True)
    table.add_column("kind", overflow="fold", ratio=1)
    table.add_column("conn", justify="right", no_wrap=True)
    table.add_column("summary", overflow="fold", ratio=4)
    for finding in ordered[:max_rows]:
        table.add_row(
            Text(finding.severity, style=SEVERITY_STYLES.get(finding.severity, "")),
            finding.kind,
            "-" if finding.connection is None else str(finding.connection),
            ascii_text(finding.summary) if ascii_only else finding.summary,
        )
    if len(ordered) > max_rows:
        table.caption = f"... and {len(ordered) - max_rows} more (use --format json)"
        table.caption_justify = "left"
    return table


def report_renderables(
    report: Report,
    policy: FailPolicy | None = None,
    ascii_only: bool = False,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> list[RenderableType]:
    parts: list[RenderableType] = [capture_table(report, ascii_only), Text("")]
    if report.findings:
        parts += [findings_by_kind_table(report, ascii_only), Text("")]
    for table in (
        aggregate_table(report, ascii_only),
        problem_connections_table(report, ascii_only, max_rows),
        findings_table(report, ascii_only, max_rows),
    ):
        if table is not None:
            parts += [table, Text("")]
    failed, line = verdict(report, policy)
    style = "bold red" if failed else ("bold green" if not report.findings else "bold")
    parts.append(Text(line, style=style))
    return parts


def print_report(
    report: Report,
    console: Console,
    policy: FailPolicy | None = None,
    ascii_only: bool | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> None:
    """ascii_only=None: plain ASCII unless the console is a terminal."""
    if ascii_only is None:
        ascii_only = not console.is_terminal or console.options.ascii_only
    console.print(Group(*report_renderables(report, policy, ascii_only, max_rows)))


def flows_table(
    report: Report, ascii_only: bool = False, max_rows: int | None = None
) -> RenderableType:
    """id, client, server, start (s after the capture's first packet), duration,
    packets and bytes each way, flags seen."""
    first = report.captures[0].first_ts if report.captures else None
    arrow = _arrow(ascii_only)
    table = _table("Connections", ascii_only)
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("client", overflow="fold", ratio=2)
    table.add_column("server", overflow="fold", ratio=2)
    table.add_column("start", justify="right", no_wrap=True)
    table.add_column("dur", justify="right", overflow="fold")
    table.add_column(f"pkts {arrow}|<-", justify="right", overflow="fold")
    table.add_column(f"bytes {arrow}|<-", justify="right", overflow="fold")
    table.add_column("flags", overflow="fold")
    rows = report.connections if max_rows is None else report.connections[:max_rows]
    # a vlan column with the VLAN-aware key (settings.vlan_tracking) only
    vlans = any(conn.vlan is not None for conn in rows)
    if vlans:
        table.add_column("vlan", no_wrap=True)
    for conn in rows:
        # clamp float noise: the first connection starts at the first packet
        start = max(conn.start - first, 0.0) if first is not None else conn.start
        cells = [
            str(conn.id),
            conn.client,
            conn.server,
            f"{start:.3f}",
            format_duration(max(conn.end - conn.start, 0.0)),
            f"{conn.packets_client}|{conn.packets_server}",
            f"{conn.bytes_client}|{conn.bytes_server}",
            conn.flags_seen or "-",
        ]
        if vlans:
            cells.append(vlan_text(conn.vlan))
        table.add_row(*cells)
    if max_rows is not None and len(report.connections) > max_rows:
        table.caption = f"... and {len(report.connections) - max_rows} more"
        table.caption_justify = "left"
    return table


def print_flows(
    report: Report, console: Console, ascii_only: bool | None = None, max_rows: int | None = None
) -> None:
    if ascii_only is None:
        ascii_only = not console.is_terminal or console.options.ascii_only
    console.print(flows_table(report, ascii_only, max_rows))


def render(
    report: Report,
    policy: FailPolicy | None = None,
    width: int = 80,
    ascii_only: bool = True,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> str:
    """The report tables as plain text (no colour), e.g. for --output FILE.txt and tests."""
    out = io.StringIO()
    print_report(report, make_console(out, width, color=False), policy, ascii_only, max_rows)
    return out.getvalue()


def render_flows(
    report: Report, width: int = 80, ascii_only: bool = True, max_rows: int | None = None
) -> str:
    out = io.StringIO()
    print_flows(report, make_console(out, width, color=False), ascii_only, max_rows)
    return out.getvalue()
