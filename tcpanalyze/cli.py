"""The command line: parsing and presentation only; the work is in analysis.py.

Exit codes (all commands): 0 done (for `check`: nothing crossed the threshold),
1 `check` found findings that fail the build, 2 usage, configuration or input errors
(what could be read before an input fault is still reported).
"""

from __future__ import annotations

import functools
import gc
import glob
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from tcpanalyze import __version__, core, output
from tcpanalyze.analysis import Analysis, build_report, read_into
from tcpanalyze.config import Config, ConfigError, load_config, merge_overrides
from tcpanalyze.gate import (
    ExitCode,
    GateError,
    check,
    parse_ignore_spec,
    read_baseline,
    write_baseline,
)
from tcpanalyze.report import PACKET_CLASSES, CaptureSummary, Finding, Report
from tcpanalyze.settings import Settings
from tcpanalyze.summaries import SummaryList

FORMAT_NAMES = list(output.FORMATS)
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class InputFailed(Exception):
    """A capture could not be opened at all; str(e) is the one-line message."""


def _err(message: str) -> None:
    for line in message.splitlines():
        click.echo(f"tcpanalyze: {line}", err=True)


# -- shared options ------------------------------------------------------------------------


def _settings_option(f: Callable[..., Any]) -> Callable[..., Any]:
    keys = ", ".join(k.replace("_", "-") for k in Settings.names())
    return click.option(
        "-s", "--set", "overrides", multiple=True, metavar="KEY=VALUE",
        help=f"Override a timer or threshold (seconds/counts), e.g. -s close-wait-threshold=30. "
             f"Keys: {keys}.")(f)


def _common(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--config", "config_path", type=click.Path(dir_okay=False),
                     help="Configuration file (default: the nearest .tcpanalyze.toml, or "
                          "pyproject.toml with [tool.tcpanalyze], from the working directory "
                          "up).")(f)
    f = click.option("--decoder", type=click.Choice(["auto", "dpkt", "tshark"]), default="auto",
                     show_default=True,
                     help="dpkt is the fast built-in decoder; tshark (Wireshark's dissectors, "
                          "slower) also opens tunnels such as GRE, VXLAN, GTP, MPLS.")(f)
    f = click.option("--verify-checksums", is_flag=True,
                     help="Validate IP/TCP checksums and set aside segments that fail "
                          "(off by default: captures taken on an endpoint carry offloaded, "
                          "wrong checksums).")(f)
    f = click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
                     expose_value=False, callback=_remember_jobs,
                     help="Worker processes for each capture file (default: the number of "
                          "cores). Connections are split by five-tuple; the report is the "
                          "same as with --jobs 1. Pipes ('-') are read by one process.")(f)
    f = click.option("--no-progress", is_flag=True,
                     help="No progress bar (it is shown only when stderr is a terminal).")(f)
    f = click.option("--vlan", is_flag=True, expose_value=False, callback=_remember_vlan,
                     help="VLAN-aware connection key: one five-tuple on different VLANs is "
                          "different connections (as -s vlan-tracking=1). A connection "
                          "whose two directions carry different tags is then two "
                          "one-sided ones.")(f)
    return _settings_option(f)


def _remember_vlan(ctx: click.Context, _param: Any, value: bool) -> bool:
    ctx.meta["tcpanalyze.vlan"] = value
    return value


def _remember_jobs(ctx: click.Context, _param: Any, value: int | None) -> int | None:
    ctx.meta["tcpanalyze.jobs"] = value
    return value


def _jobs(streaming: bool) -> int:
    """--jobs, else the number of cores; but 1 when findings are streamed as they are
    detected (ndjson): workers hand theirs over only at the end, and an aggregate
    finding then carries its final numbers instead of those at its detection."""
    from tcpanalyze.parallel import default_jobs

    ctx = click.get_current_context(silent=True)
    value = ctx.meta.get("tcpanalyze.jobs") if ctx is not None else None
    if value is not None:
        return int(value)
    return 1 if streaming else default_jobs()


def _parse_overrides(pairs: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--set")
        try:
            out[key.strip()] = float(value) if "." in value or "e" in value else int(value)
        except ValueError:
            raise click.BadParameter(f"{pair!r}: value is not a number",
                                     param_hint="--set") from None
    return out


def _load(config_path: str | None, overrides: tuple[str, ...], **extra: Any) -> Config:
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.meta.get("tcpanalyze.vlan"):  # --vlan
        overrides = (*overrides, "vlan-tracking=1")
    try:
        return merge_overrides(load_config(config_path), settings=_parse_overrides(overrides),
                               **extra)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def _expand(captures: tuple[str, ...]) -> list[str]:
    """Paths, globs and '-'; a glob that matches nothing is an error, like a missing file."""
    paths: list[str] = []
    for item in captures:
        if item != "-" and any(ch in item for ch in "*?[") and not os.path.exists(item):
            matched = sorted(glob.glob(item, recursive=True))
            if not matched:
                raise InputFailed(f"{item}: no capture matches this pattern")
            paths.extend(matched)
        else:
            paths.append(item)
    return paths


# -- running an analysis -------------------------------------------------------------------


@contextmanager
def _progress(path: str, enabled: bool) -> Iterator[Callable[[int, Any], None] | None]:
    """A rich progress bar on stderr for files, when stderr is a terminal."""
    if not enabled or path == "-" or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    try:
        total = os.path.getsize(path)
    except OSError:
        yield None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), TransferSpeedColumn(),
               TextColumn("{task.fields[pps]} pkt/s"), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(os.path.basename(path), total=total, pps="-")

        def update(frames: int, position: Any) -> None:
            # bytes of the file consumed (a reader object is asked for its position)
            done = position if isinstance(position, int) else getattr(position, "position", 0)
            elapsed = bar.tasks[0].elapsed or 0
            pps = f"{frames / elapsed:,.0f}" if elapsed > 0.5 else "-"
            bar.update(task, completed=done, pps=pps)

        yield update


def run_analysis(paths: list[str], config: Config, *, decoder: str, verify_checksums: bool,
                 progress: bool, on_finding: Callable[[Finding], None] | None = None,
                 keep_connections: bool = True, zeek_records: bool = False,
                 on_start: Callable[[Analysis, str], Any] | None = None,
                 bounded_stdin: bool = True) -> Report:
    """Analyse one or more captures into one merged report. Ctrl-C (or SIGTERM) stops
    reading and still reports what was read: for stdin that is the normal end of a live
    run, for a file an incomplete read.

    stdin ('-') is analysed as a live stream: with `bounded_stdin` only connections with
    findings are kept for the report and no Zeek view unless a Zeek log is asked for, so
    memory stays bounded however long it runs (`flows` lists every connection instead).
    `on_start(analysis, path)` sees each analysis before reading starts (the watch view)."""
    from tcpanalyze.live import Interrupt
    from tcpanalyze.parallel import read_into_parallel

    captures: list[CaptureSummary] = []
    connections: SummaryList | None = None
    findings: list[Finding] = []
    stats: dict[str, Any] = {"connections": 0, "evicted": 0, "idle_closed": 0,
                             "peak_tracked": 0}
    many = len(paths) > 1
    unread: list[CaptureSummary] = []
    next_id = 0
    interrupt = Interrupt()
    jobs = _jobs(streaming=on_finding is not None)
    for path in paths:
        name = path if many else None
        live = path == "-"
        bounded = live and bounded_stdin
        analysis = Analysis(config.settings, capture=name,
                            keep_connections=keep_connections and not bounded,
                            zeek_records=zeek_records, zeek_view=not bounded or zeek_records)
        if on_start is not None:
            on_start(analysis, path)
        with _progress(path, progress) as update, interrupt:
            try:
                if jobs > 1 and not live and decoder != "tshark" and on_start is None:
                    summary = read_into_parallel(analysis, path, jobs,
                                                 verify_checksums=verify_checksums,
                                                 on_finding=on_finding, on_progress=update,
                                                 interrupt=interrupt)
                else:
                    summary = read_into(analysis, path,
                                        decoder="dpkt" if decoder == "auto" else decoder,
                                        verify_checksums=verify_checksums,
                                        on_finding=on_finding, on_progress=update,
                                        stdin=sys.stdin.buffer, interrupt=interrupt)
                if decoder == "auto" and _undecoded(summary) and not interrupt.requested:
                    analysis, summary = _retry_with_tshark(analysis, summary, path, name,
                                                           config, keep_connections)
            except KeyboardInterrupt:  # the tshark decoder has no clean stop between frames
                summary = CaptureSummary(
                    path=path, format="", linktypes=[], packets=analysis.segments,
                    tcp_segments=analysis.segments, skipped={},
                    first_ts=analysis.first_ts, last_ts=analysis.last_ts,
                    error=None if live else f"{path}: interrupted")
            except BrokenPipeError:
                raise
            except _open_errors() as exc:
                if not many:
                    raise InputFailed(str(exc)) from None
                # one capture of several that cannot be read at all: the others are still
                # analysed and reported, this one is listed with its error (exit 2)
                unread.append(CaptureSummary(
                    path=path, format="", linktypes=[], packets=0, tcp_segments=0,
                    skipped={name: 0 for name in PACKET_CLASSES if name != "tcp"},
                    first_ts=None, last_ts=None, error=str(exc)))
                captures.append(unread[-1])  # (in the order given)
                continue
        for finding in analysis.finish():
            if on_finding is not None:
                on_finding(finding)
        part = build_report([summary], analysis)
        # Connection ids stay unique across captures of one run.
        ids = analysis.connections.ids()
        if next_id:
            present = set(ids)
            analysis.connections.renumber(next_id)
            for finding in part.findings:
                if finding.connection in present:
                    finding.connection += next_id
        if len(ids):
            next_id += max(ids)
        captures.append(summary)
        if connections is None:
            connections = analysis.connections  # (on disk past a limit: not copied)
        else:
            connections.extend(analysis.connections)
        findings.extend(part.findings)
        for key in stats:
            if key == "peak_tracked":
                stats[key] = max(stats[key], part.stats.get(key, 0))
            else:
                stats[key] += part.stats.get(key, 0)
        if interrupt.requested:
            break  # Ctrl-C ends the whole run, not just this capture
    if unread and len(unread) == len(captures):
        raise InputFailed("\n".join(c.error or c.path for c in unread))
    return Report(captures=captures,
                  connections=connections if connections is not None else SummaryList(),
                  findings=findings, tool_version=__version__, stats=stats)


def _undecoded(summary: CaptureSummary) -> int:
    return summary.skipped.get("tunnel", 0) + summary.skipped.get("unsupported_link", 0)


def _retry_with_tshark(analysis: Analysis, summary: CaptureSummary, path: str,
                       name: str | None, config: Config,
                       keep_connections: bool) -> tuple[Analysis, CaptureSummary]:
    """--decoder auto: dpkt could not open some packets (tunnels, link types); read the
    file again with tshark when it is installed, else say how to get it."""
    from tcpanalyze.tshark import tshark_available

    count = _undecoded(summary)
    if path == "-":  # (named as read errors name it)
        _err(f"<stdin>: {count} packet(s) not decoded (tunnels or unsupported link types); "
             "a pipe can be read only once: give --decoder tshark to read the stream with "
             "tshark" + ("" if tshark_available() else " (apt-get install tshark)")
             + ", or save it to a file")
        return analysis, summary
    if not tshark_available():
        _err(f"{path}: {count} packet(s) not decoded (tunnels or unsupported link types); "
             "install tshark (apt-get install tshark) and use --decoder tshark to read them")
        return analysis, summary
    _err(f"{path}: {count} packet(s) are tunnelled or of a link type the built-in decoder "
         "does not open; reading the capture with tshark instead")
    # (the same analysis as the first read: Zeek's records and view too, when asked for)
    again = Analysis(config.settings, capture=name, keep_connections=keep_connections,
                     zeek_records=analysis.zeek_records,
                     zeek_view=getattr(analysis, "zeek_view", True))
    return again, read_into(again, path, decoder="tshark")


def _wants_zeek(fmt: str | None, outputs: tuple[str, ...]) -> bool:
    """Zeek's records are computed only when a Zeek log is asked for."""
    return fmt == "zeek" or any(p.lower().endswith(".log") for p in outputs)


def _open_errors() -> tuple[type[Exception], ...]:
    from tcpanalyze.capture import CaptureError

    errors: list[type[Exception]] = [CaptureError, OSError]
    try:
        from tcpanalyze.tshark import TsharkError, TsharkMissing

        errors += [TsharkMissing, TsharkError]
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def _read_errors(report: Report) -> list[str]:
    return [c.error for c in report.captures if c.error]


def _write_outputs(report: Report, fmt: str, outputs: tuple[str, ...],
                   options: output.RenderOptions, skip_stdout: bool = False,
                   chosen: str | None = None, gate: bool = False) -> list[str]:
    """The report on stdout and into each -o FILE (`chosen`: the --format given, for a
    file whose name implies none). A file that cannot be written stops neither the others
    nor stdout: its one-line error is returned, and the run exits 2. The terminal's last
    line says PASS or FAIL only where the policy decides the exit status (`gate`: check);
    elsewhere it just counts."""
    failed: list[str] = []
    for path in outputs:
        try:
            with open(path, "w", encoding="utf-8") as stream:
                _render_to(stream, _file_format(path, chosen), report, options)
        except OSError as exc:
            failed.append(f"{path}: cannot write the report: {exc.strerror or exc}")
    if not skip_stdout:
        if fmt == "terminal":
            from tcpanalyze.output.terminal import make_console, print_report

            print_report(report, make_console(), options.policy if gate else None,
                         max_rows=options.max_rows)
        else:
            _render_to(sys.stdout, fmt, report, options)
    return failed


def _file_format(path: str, chosen: str | None) -> str:
    """An -o FILE's format: from its extension, else the --format given; else a usage
    error (checked for every FILE before any reading: `_check_outputs`)."""
    try:
        return output.format_for_path(path)
    except output.UnknownFormat as exc:
        if chosen is not None:
            return chosen
        raise click.UsageError(str(exc)) from None


def _check_outputs(outputs: tuple[str, ...], chosen: str | None) -> None:
    for path in outputs:
        _file_format(path, chosen)


def _render_to(stream: Any, fmt: str, report: Report, options: output.RenderOptions) -> None:
    if fmt == "json":  # streamed: large reports never exist as one string
        from tcpanalyze.output import json as json_output

        json_output.write(report, stream, options.indent, options.timeline, options.jobs)
        return
    text = output.render(fmt, report, options)
    stream.write(text if text.endswith("\n") or fmt == "ndjson" else text + "\n")


def _quiet_pipe(command: Callable[..., Any]) -> Callable[..., Any]:
    """`tcpanalyze ... | head`: a reader that went away ends the run quietly (exit 0),
    without a traceback and without the interpreter's complaint when it flushes stdout."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except BrokenPipeError:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(0)

    return wrapper


# -- commands ------------------------------------------------------------------------------


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="tcpanalyze",
                      message=f"%(prog)s %(version)s ({core()} core)")
def main() -> None:
    """What happened to these TCP connections, on both ends, and what is wrong?

    tcpanalyze reads pcap/pcapng captures (plain or gzip) or a live `tcpdump -w -`
    stream on stdin ('-'), replays every connection through a passive tracker of both
    endpoints' TCP states (SYN_SENT ... TIME_WAIT) and reports anomalies: missing
    third ACKs, half-open flows, CLOSE_WAIT leaks, TIME_WAIT violations, resets,
    SYN floods, scans.

    \b
    Examples:
      tcpanalyze report capture.pcap
      tcpanalyze report --format json capture.pcapng > report.json
      tcpdump -i eth0 -w - tcp | tcpanalyze report -
      tcpanalyze check --fail-on high,rst_teardown traces/*.pcap
      tcpanalyze flows capture.pcap
    """


@main.command(context_settings=CONTEXT)
@click.argument("captures", nargs=-1, required=True, metavar="CAPTURE...")
@click.option("-f", "--format", "fmt", type=click.Choice(FORMAT_NAMES), default=None,
              help="Output format on stdout [default: terminal tables].")
@click.option("-o", "--output", "outputs", multiple=True, metavar="FILE",
              help="Also write a report file; the format comes from the extension "
                   "(.json .ndjson .csv .xml=JUnit .sarif .log=Zeek conn.log .md .txt). "
                   "Repeatable.")
@click.option("--no-timeline", is_flag=True, help="JSON: leave out each connection's "
              "state changes.")
@click.option("--max-rows", type=click.IntRange(min=0), default=40, show_default=True,
              help="Terminal/markdown: connections and findings listed at most.")
@click.option("--live", is_flag=True,
              help="While reading, show the watch view (rates, connections by state, "
                   "newest findings), then the final report; see `tcpanalyze watch`.")
@_common
@_quiet_pipe
def report(captures: tuple[str, ...], fmt: str | None, outputs: tuple[str, ...],
           no_timeline: bool, max_rows: int, live: bool, config_path: str | None,
           decoder: str, verify_checksums: bool, no_progress: bool,
           overrides: tuple[str, ...]) -> None:
    """Analyse captures and report connections and findings.

    CAPTURE is a pcap/pcapng file (optionally gzip-compressed), a glob, or '-' for
    stdin. With --format ndjson each finding is printed the moment it is detected,
    so `tcpdump -w - | tcpanalyze report -f ndjson - | jq` works live.

    A live stream ('-') is analysed as packets arrive; EOF, Ctrl-C or SIGTERM end it
    with the full report (timers fired as of the last packet's time). Only connections
    with findings are listed for a live stream; the counts cover all of them.

    Exit status: 0 when the captures were read (findings or not), 2 when a capture
    could not be read completely (what was read is still reported) or on usage errors.
    """
    config = _load(config_path, overrides)
    chosen = fmt or config.format
    fmt = chosen or "terminal"
    _check_outputs(outputs, chosen)
    if live and fmt != "terminal":
        raise click.UsageError("--live shows terminal tables; it cannot be combined with "
                               f"--format {fmt} (write that with -o FILE instead)")
    live_ndjson = fmt == "ndjson"
    on_finding = None
    if live_ndjson:
        from tcpanalyze.output.ndjson import write_finding

        def on_finding(finding: Finding) -> None:
            write_finding(finding, sys.stdout)

    try:
        if live:
            result = _watch(_expand(captures), config, decoder=decoder,
                            zeek_records=_wants_zeek(fmt, outputs),
                            verify_checksums=verify_checksums)
        else:
            result = run_analysis(_expand(captures), config, decoder=decoder,
                                  zeek_records=_wants_zeek(fmt, outputs),
                                  verify_checksums=verify_checksums, progress=not no_progress,
                                  on_finding=on_finding)
    except InputFailed as exc:
        _err(str(exc))
        sys.exit(ExitCode.ERROR)
    options = output.RenderOptions(policy=config.policy, timeline=not no_timeline,
                                   max_rows=max_rows, jobs=_jobs(streaming=False))
    if live_ndjson:
        from tcpanalyze.output.ndjson import summary_line

        unwritten = _write_outputs(result, fmt, outputs, options, skip_stdout=True,
                                   chosen=chosen)
        sys.stdout.write(summary_line(result))
        sys.stdout.flush()
    else:
        unwritten = _write_outputs(result, fmt, outputs, options, chosen=chosen)
    errors = _read_errors(result) + unwritten
    for error in errors:
        _err(error)
    sys.exit(ExitCode.ERROR if errors else ExitCode.OK)


def _watch(paths: list[str], config: Config, *, decoder: str, zeek_records: bool,
           verify_checksums: bool) -> Report:
    """run_analysis under the live view (on stderr's terminal when stdout is not one)."""
    from tcpanalyze.live import WatchView, live_display
    from tcpanalyze.output.terminal import make_console

    console = make_console()
    if not console.is_terminal:
        from rich.console import Console

        console = Console(stderr=True, highlight=False, markup=False)
    views: list[WatchView] = []

    def on_finding(finding: Finding) -> None:
        if views:
            views[-1].on_finding(finding)

    with live_display(WatchView(Analysis(config.settings), "-"), console) as display:

        def on_start(analysis: Analysis, path: str) -> None:
            views.append(WatchView(analysis, path))
            display.update(views[-1])

        return run_analysis(paths, config, decoder=decoder, zeek_records=zeek_records,
                            verify_checksums=verify_checksums, progress=False,
                            on_finding=on_finding, on_start=on_start)


@main.command(context_settings=CONTEXT)
@click.argument("capture", metavar="CAPTURE", default="-")
@click.option("-o", "--output", "outputs", multiple=True, metavar="FILE",
              help="Also write the final report to a file (format from the extension, as "
                   "for `report`). Repeatable.")
@click.option("--max-rows", type=click.IntRange(min=0), default=40, show_default=True,
              help="Final report: connections and findings listed at most.")
@_common
@_quiet_pipe
def watch(capture: str, outputs: tuple[str, ...], max_rows: int, config_path: str | None,
          decoder: str, verify_checksums: bool, no_progress: bool,
          overrides: tuple[str, ...]) -> None:
    """Watch a live capture: packets and new connections per second, the connections
    tracked now by state on each side (a live `ss -tan` for the wire) and the newest
    findings, redrawn once a second; Ctrl-C, SIGTERM or the end of the input print the
    final report. Same as `report --live`.

    \b
    Examples:
      tcpdump -i eth0 -U -w - tcp | tcpanalyze watch -
      dumpcap -i eth0 -w - | tcpanalyze watch -
    """
    config = _load(config_path, overrides)
    _check_outputs(outputs, None)
    try:
        result = _watch([capture], config, decoder=decoder,
                        zeek_records=_wants_zeek(None, outputs),
                        verify_checksums=verify_checksums)
    except InputFailed as exc:
        _err(str(exc))
        sys.exit(ExitCode.ERROR)
    options = output.RenderOptions(policy=config.policy, max_rows=max_rows)
    errors = _read_errors(result) + _write_outputs(result, "terminal", outputs, options)
    for error in errors:
        _err(error)
    sys.exit(ExitCode.ERROR if errors else ExitCode.OK)


@main.command(context_settings=CONTEXT)
@click.argument("captures", nargs=-1, required=True, metavar="CAPTURE...")
@click.option("-f", "--format", "fmt", type=click.Choice(["terminal", "json", "csv", "zeek"]),
              default="terminal", show_default=True,
              help="Output format on stdout: a table, the report's JSON connections, one CSV "
                   "row per connection, or Zeek's conn.log.")
@_common
@_quiet_pipe
def flows(captures: tuple[str, ...], fmt: str, config_path: str | None, decoder: str,
          verify_checksums: bool, no_progress: bool, overrides: tuple[str, ...]) -> None:
    """List the TCP connections in captures: client, server, start, duration, packets
    and bytes each way, flags seen (S SYN, A ACK, F FIN, R RST)."""
    config = _load(config_path, overrides)
    try:
        result = run_analysis(_expand(captures), config, decoder=decoder,
                              zeek_records=_wants_zeek(fmt, ()),
                              verify_checksums=verify_checksums, progress=not no_progress,
                              bounded_stdin=False)
    except InputFailed as exc:
        _err(str(exc))
        sys.exit(ExitCode.ERROR)
    if fmt == "terminal":
        from tcpanalyze.output.terminal import make_console, print_flows

        print_flows(result, make_console())
    elif fmt == "json":
        import json

        data = result.to_dict(timeline=False)
        sys.stdout.write(json.dumps({"capture": data["capture"],
                                     "connections": data["connections"]}, indent=2) + "\n")
    else:
        sys.stdout.write(output.render(fmt, result))
    errors = _read_errors(result)
    for error in errors:
        _err(error)
    sys.exit(ExitCode.ERROR if errors else ExitCode.OK)


@main.command(name="check", context_settings=CONTEXT)
@click.argument("captures", nargs=-1, required=True, metavar="CAPTURE...")
@click.option("--fail-on", "fail_on", multiple=True, metavar="SPEC",
              help="What fails the build: a minimum severity (info, low, medium, high), "
                   "finding kinds, 'any' or 'none'; comma-separated or repeated "
                   "[default: high].")
@click.option("--ignore", "ignores", multiple=True, metavar="RULE",
              help="Ignore findings, e.g. kind=rst_teardown, port=6379, "
                   "address=10.0.0.0/8, kind=zero_window,port=8080. Repeatable.")
@click.option("--baseline", type=click.Path(dir_okay=False),
              help="Findings recorded in this file (see --write-baseline) do not fail.")
@click.option("--write-baseline", type=click.Path(dir_okay=False),
              help="Record the current findings as the accepted baseline and exit 0.")
@click.option("-f", "--format", "fmt", type=click.Choice(FORMAT_NAMES), default=None,
              help="Output on stdout [default: terminal tables].")
@click.option("-o", "--output", "outputs", multiple=True, metavar="FILE",
              help="Write a report file, format from the extension (.json .ndjson .csv "
                   ".xml=JUnit .sarif .log=Zeek .md); repeatable.")
@_common
@_quiet_pipe
def check_command(captures: tuple[str, ...], fail_on: tuple[str, ...], ignores: tuple[str, ...],
                  baseline: str | None, write_baseline: str | None, fmt: str | None,
                  outputs: tuple[str, ...], config_path: str | None, decoder: str,
                  verify_checksums: bool, no_progress: bool,
                  overrides: tuple[str, ...]) -> None:
    """Gate a CI build on captured traces.

    Exit status: 0 nothing crosses the threshold, 1 findings do, 2 usage,
    configuration or input errors. Settings come from [tool.tcpanalyze] in
    pyproject.toml or .tcpanalyze.toml; command-line options win.

    \b
    Examples:
      tcpanalyze check traces/*.pcap
      tcpanalyze check --fail-on medium -o report.sarif -o junit.xml trace.pcap
      tcpanalyze check --write-baseline known.json trace.pcap   # accept today's
      tcpanalyze check --baseline known.json trace.pcap          # fail on new only
    """
    try:
        rules = [parse_ignore_spec(spec) for spec in ignores]
    except GateError as exc:
        raise click.UsageError(str(exc)) from None
    config = _load(config_path, overrides, fail_on=list(fail_on) or None, ignore=rules,
                   baseline=baseline)
    _check_outputs(outputs, fmt or config.format)
    try:
        policy = config.policy
        known = read_baseline(config.baseline) if config.baseline and not write_baseline \
            else None
    except GateError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        result = run_analysis(_expand(captures), config, decoder=decoder,
                              zeek_records=_wants_zeek(fmt or config.format, outputs),
                              verify_checksums=verify_checksums, progress=not no_progress)
    except InputFailed as exc:
        _err(str(exc))
        sys.exit(ExitCode.ERROR)
    if write_baseline:
        errors = _read_errors(result)
        try:
            with open(write_baseline, "w", encoding="utf-8") as stream:
                write_baseline_fn(result, stream)
            _err(f"wrote {len(result.findings)} finding(s) to {write_baseline}")
        except OSError as exc:
            errors.append(f"{write_baseline}: cannot write the baseline: "
                          f"{exc.strerror or exc}")
        for error in errors:
            _err(error)
        sys.exit(ExitCode.ERROR if errors else ExitCode.OK)
    gate = check(result, policy, config.ignore, known)
    gated = Report(captures=result.captures, connections=result.connections,
                   findings=gate.considered, tool_version=result.tool_version,
                   stats=dict(result.stats, ignored=len(gate.ignored),
                              baseline_known=len(gate.known)))
    options = output.RenderOptions(policy=policy)
    chosen = fmt or config.format
    errors = _read_errors(result) + _write_outputs(gated, chosen or "terminal", outputs,
                                                   options, chosen=chosen, gate=True)
    for error in errors:
        _err(error)
    if errors:
        sys.exit(ExitCode.ERROR)
    sys.exit(gate.exit_code)


write_baseline_fn = write_baseline


@main.command(context_settings=CONTEXT)
@click.argument("capture", metavar="CAPTURE")
@click.option("-f", "--format", "fmt", type=click.Choice(["terminal", "json"]),
              default="terminal", show_default=True, help="Output format on stdout.")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True,
              help="Disagreements listed at most.")
def crosscheck(capture: str, fmt: str, limit: int) -> None:
    """Decode a capture with dpkt and with tshark and compare, frame by frame, the
    fields the tracker uses (addresses, ports, seq, ack, flags, window, payload
    length, options) and the connections found.

    Exit status: 0 the decoders agree, 1 they disagree, 2 the capture could not be
    read completely (what was read is still compared) or tshark is missing.
    """
    from tcpanalyze.crosscheck import crosscheck_capture

    if capture == "-":
        raise click.UsageError("crosscheck reads the capture twice, once with each decoder, "
                               "so it needs a file, not '-' (save the stream first: "
                               "tcpdump -w trace.pcap)")
    try:
        result = crosscheck_capture(capture, limit=limit)
    except _open_errors() as exc:
        _err(str(exc))
        sys.exit(ExitCode.ERROR)
    if fmt == "json":
        import json

        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
    else:
        from rich.table import Table

        from tcpanalyze.output.terminal import make_console

        console = make_console()
        console.print(result.summary())
        if result.disagreements:
            table = Table(title="Disagreements")
            for col in ("frame", "field", result.left_name, result.right_name):
                table.add_column(col)
            for d in result.disagreements[:limit]:
                table.add_row(str(d.frame), d.field, str(d.left), str(d.right))
            console.print(table)
        for diff in result.connection_differences[:limit]:
            console.print(f"connection {diff.describe(result.left_name, result.right_name)}",
                          markup=False, highlight=False)
    if result.error is not None:  # (what was read before the fault is compared above)
        _err(result.error)
        sys.exit(ExitCode.ERROR)
    sys.exit(ExitCode.OK if result.agree else ExitCode.FINDINGS)


def entry() -> None:
    """Console entry point: quiet on closed pipes and Ctrl-C outside the reading loop."""
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    # The cyclic collector's thresholds that reading uses (analysis.read_into), for the
    # whole command: restored to the defaults after reading, they made the collector
    # walk the tracked connections and summaries again and again while the report was
    # finished and written (bench capture: 49 collections, 0.5 s -> 7, 0.2 s). Cyclic
    # garbage is still collected, in bigger batches.
    gc.set_threshold(100_000, 50, 100)
    try:
        main(standalone_mode=True)
    except BrokenPipeError:
        # `tcpanalyze ... | head`: stop quietly; silence the flush at interpreter exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
