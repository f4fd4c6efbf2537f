"""One CSV row per connection, for spreadsheets and pandas."""

from __future__ import annotations

import csv
import io

from tcpanalyze.report import Report

COLUMNS = (
    "capture",
    "id",
    "client",
    "server",
    "start",
    "end",
    "packets_client",
    "packets_server",
    "bytes_client",
    "bytes_server",
    "client_state",
    "server_state",
    "conn_state",
    "history",
    "findings",
)


def render(report: Report) -> str:
    """Header plus rows; times are epoch seconds with microseconds; findings ';'-joined."""
    out = io.StringIO()
    # '\n' rather than csv's default '\r\n': this usually goes to a terminal or a pipe.
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    default_capture = report.captures[0].path if report.captures else ""
    for conn in report.connections:
        writer.writerow(
            (
                conn.capture or default_capture,
                conn.id,
                conn.client,
                conn.server,
                f"{conn.start:.6f}",
                f"{conn.end:.6f}",
                conn.packets_client,
                conn.packets_server,
                conn.bytes_client,
                conn.bytes_server,
                conn.client_state,
                conn.server_state,
                conn.conn_state,
                conn.history,
                ";".join(conn.findings),
            )
        )
    return out.getvalue()
