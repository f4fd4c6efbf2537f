"""A Zeek conn.log (ASCII writer, TSV layout) so zeek-cut and Zeek tooling can read ours.

The header lines, field names and types follow Zeek's conn.log (base/protocols/conn);
fields tcpanalyze does not know (service, local_orig, IP-level byte counts, ...) carry
the unset marker '-', as Zeek writes unset optional fields. With Zeek's records
(`zeek_records`), duration and orig/resp_bytes are Zeek's (analysis.ZeekRecord).

With the VLAN-aware key (settings.vlan_tracking: the connections carry their VLAN ids)
the log has the two columns Zeek's VLAN-aware connection key adds after the endpoints,
`id.ctx.vlan` and `id.ctx.inner_vlan` (outer and inner id, '-' where there is none).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from typing import Any

from tcpanalyze.report import ConnectionSummary, Report

SEPARATOR = "\t"
SET_SEPARATOR = ","
EMPTY_FIELD = "(empty)"
UNSET_FIELD = "-"

# (name, Zeek type), in conn.log order.
FIELDS: tuple[tuple[str, str], ...] = (
    ("ts", "time"),
    ("uid", "string"),
    ("id.orig_h", "addr"),
    ("id.orig_p", "port"),
    ("id.resp_h", "addr"),
    ("id.resp_p", "port"),
    ("proto", "enum"),
    ("service", "string"),
    ("duration", "interval"),
    ("orig_bytes", "count"),
    ("resp_bytes", "count"),
    ("conn_state", "string"),
    ("local_orig", "bool"),
    ("local_resp", "bool"),
    ("missed_bytes", "count"),
    ("history", "string"),
    ("orig_pkts", "count"),
    ("orig_ip_bytes", "count"),
    ("resp_pkts", "count"),
    ("resp_ip_bytes", "count"),
    ("tunnel_parents", "set[string]"),
)

# what Zeek's VLAN-aware key (conn_key/vlan_fivetuple) puts after id.resp_p
VLAN_FIELDS: tuple[tuple[str, str], ...] = (("id.ctx.vlan", "int"), ("id.ctx.inner_vlan", "int"))
_VLAN_AT = 6

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def connection_uid(conn: ConnectionSummary, capture: str = "") -> str:
    """A Zeek-style uid ('C' + base62), derived from the connection so runs agree."""
    key = f"{capture}|{conn.id}|{conn.client}|{conn.server}|{conn.start:.6f}".encode()
    n = int.from_bytes(hashlib.sha256(key).digest()[:12], "big")
    out = []
    while n:
        n, rem = divmod(n, 62)
        out.append(_BASE62[rem])
    return "C" + "".join(reversed(out))[:17]


def split_host_port(endpoint: str) -> tuple[str | None, str | None]:
    """'10.0.0.1:80' -> ('10.0.0.1', '80'); '[fd00::1]:80' -> ('fd00::1', '80');
    None for a part that is missing."""
    if endpoint.startswith("["):
        host, _, rest = endpoint[1:].partition("]")
        return host or None, rest[1:] or None
    if endpoint.count(":") != 1:  # no port (a bare IPv4 or IPv6 address)
        return endpoint or None, None
    host, _, port = endpoint.partition(":")
    return host or None, port or None


def _value(text: str | None) -> str:
    return UNSET_FIELD if text is None else escape(text)


def escape(value: str) -> str:
    """Zeek's ASCII writer escapes the separator, backslash and non-printables as \\xNN;
    an empty string is written as the empty marker."""
    if value == "":
        return EMPTY_FIELD
    if value.isascii() and value.isprintable() and "\\" not in value:
        text = value  # ' ' to '~' without a backslash: nothing to escape (most fields)
    else:
        out = []
        for ch in value:
            if ch == "\\" or ch == SEPARATOR or not (" " <= ch <= "~"):
                out.append("".join(f"\\x{b:02x}" for b in ch.encode("utf-8")))
            else:
                out.append(ch)
        text = "".join(out)
    # a field that happens to equal a marker must not be read back as one
    if text in (UNSET_FIELD, EMPTY_FIELD):
        text = "".join(f"\\x{b:02x}" for b in text.encode())
    return text


def _time_stamp(ts: float) -> str:
    return time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime(ts))


def _count(value: int | None) -> str:
    return UNSET_FIELD if value is None else str(value)


def _row(conn: ConnectionSummary, capture: str, vlans: bool = False,
         record: dict[str, Any] | None = None) -> list[str]:
    """One log line: of Zeek's `record` of the connection (its duration and byte counts
    by Zeek's rules, unset as Zeek leaves them) when there is one."""
    orig_h, orig_p = split_host_port(conn.client)
    resp_h, resp_p = split_host_port(conn.server)
    if record is None:
        seconds: float | None = max(conn.end - conn.start, 0.0)
        orig_bytes: int | None = conn.bytes_client
        resp_bytes: int | None = conn.bytes_server
    else:
        seconds = record["duration"]
        orig_bytes, resp_bytes = record["orig_bytes"], record["resp_bytes"]
    duration = UNSET_FIELD if seconds is None else f"{seconds:.6f}"
    row = [
        f"{conn.start:.6f}",
        connection_uid(conn, capture),
        _value(orig_h),
        _value(orig_p),
        _value(resp_h),
        _value(resp_p),
        "tcp",
        UNSET_FIELD,  # service: no protocol detection
        duration,
        _count(orig_bytes),
        _count(resp_bytes),
        _value(conn.conn_state or None),
        UNSET_FIELD,  # local_orig: no Site::local_nets
        UNSET_FIELD,
        UNSET_FIELD,  # missed_bytes: not measured
        _value(conn.history or None),
        str(conn.packets_client),
        UNSET_FIELD,  # orig_ip_bytes: IP-level sizes are not kept
        str(conn.packets_server),
        UNSET_FIELD,
        UNSET_FIELD,  # tunnel_parents
    ]
    if vlans:
        ids = [str(v) for v in conn.vlan or ()]
        ids += [UNSET_FIELD] * (2 - len(ids))
        row[_VLAN_AT:_VLAN_AT] = ids[:2]
    return row


def zeek_rows(conn: ConnectionSummary
              ) -> list[tuple[ConnectionSummary, dict[str, Any] | None]]:
    """The records Zeek would log for a connection: its own `zeek_records` when they
    were computed (Zeek's timers may split one connection), each with the connection's
    fields set from it; else the connection alone."""
    if not conn.zeek_records:
        return [(conn, None)]
    return [(dataclasses.replace(
        conn, client=r["orig"], server=r["resp"], start=r["start"], end=r["end"],
        conn_state=r["conn_state"], history=r["history"], packets_client=r["orig_pkts"],
        packets_server=r["resp_pkts"]), r) for r in conn.zeek_records]


def render(report: Report, opened: float | None = None, closed: float | None = None) -> str:
    """The log text. `opened` / `closed` default to the capture's first and last packet
    times (deterministic output; Zeek writes the wall clock there)."""
    first = report.captures[0] if report.captures else None
    if opened is None:
        opened = (first.first_ts if first else None) or 0.0
    if closed is None:
        last_times = [c.last_ts for c in report.captures if c.last_ts is not None]
        closed = max(last_times) if last_times else opened
    default_capture = first.path if first else ""
    vlans = any(conn.vlan is not None for conn in report.connections)
    fields = [*FIELDS[:_VLAN_AT], *VLAN_FIELDS, *FIELDS[_VLAN_AT:]] if vlans else FIELDS
    lines = [
        "#separator \\x09",
        f"#set_separator{SEPARATOR}{SET_SEPARATOR}",
        f"#empty_field{SEPARATOR}{EMPTY_FIELD}",
        f"#unset_field{SEPARATOR}{UNSET_FIELD}",
        f"#path{SEPARATOR}conn",
        f"#open{SEPARATOR}{_time_stamp(opened)}",
        "#fields" + "".join(SEPARATOR + name for name, _ in fields),
        "#types" + "".join(SEPARATOR + kind for _, kind in fields),
    ]
    rows = [row for conn in report.connections for row in zeek_rows(conn)]
    for conn, record in sorted(rows, key=lambda row: (row[0].start, row[0].id)):
        lines.append(SEPARATOR.join(_row(conn, conn.capture or default_capture, vlans,
                                         record)))
    lines.append(f"#close{SEPARATOR}{_time_stamp(closed)}")
    return "\n".join(lines) + "\n"
