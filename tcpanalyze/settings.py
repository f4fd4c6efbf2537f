"""Timers and thresholds. Defaults are Linux's, so states match what `ss` would say.

Every field can be set from `[tool.tcpanalyze]` / `.tcpanalyze.toml` (config.py) and
most from the command line; the names here are the configuration keys, with '_' written
as '-' in TOML files.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass
class Settings:
    # -- TCP timers (seconds), Linux defaults ------------------------------------------
    time_wait: float = 60.0  # TCP_TIMEWAIT_LEN; 2 x MSL
    fin_timeout: float = 60.0  # tcp_fin_timeout: orphaned FIN_WAIT_2 is dropped after this
    syn_timeout: float = 63.0  # tcp_syn_retries=5: 1+2+4+8+16+32 s
    synack_timeout: float = 63.0  # tcp_synack_retries=5
    synack_rto: float = 1.0  # first SYN-ACK retransmission; none by 1.5x this = no state kept
    keepalive_time: float = 7200.0
    keepalive_intvl: float = 75.0
    keepalive_probes: int = 9
    idle_timeout: float = 3600.0  # a connection silent this long leaves the live table

    # -- finding thresholds -----------------------------------------------------------
    close_wait_threshold: float = 5.0  # CLOSE_WAIT longer than this is a leak
    fin_wait_2_threshold: float = 5.0  # FIN_WAIT_2 longer than this (peer unseen) is stuck
    last_ack_threshold: float = 1.0  # LAST_ACK with its FIN unacked this long is stuck
    zero_window_threshold: float = 0.0  # report zero windows lasting at least this long
    retransmission_min: int = 1  # retransmitted data segments before a finding
    half_open_rexmit_min: int = 3  # unanswered data retransmissions before "peer vanished"
    syn_flood_rate: float = 100.0  # SYNs per second to one server port
    syn_flood_min_syns: int = 200  # and at least this many SYNs in the window
    syn_flood_sources: int = 20  # from at least this many distinct sources
    syn_flood_completion: float = 0.2  # and at most this share completing the handshake
    syn_flood_window: float = 10.0  # sliding window (seconds) for the rate
    scan_ports: int = 20  # one source probing this many ports on one host ...
    scan_hosts: int = 20  # ... or this many hosts on one port
    scan_completion: float = 0.2  # with at most this share of handshakes completing

    # -- memory bounds ----------------------------------------------------------------
    max_connections: int = 500_000  # tracked at once; the oldest idle is evicted beyond this
    # a report's connection summaries held in memory; beyond, they go to a temporary file
    summaries_in_memory: int = 50_000

    # -- the connection key -----------------------------------------------------------
    # VLAN-aware key (Zeek's VLAN conn key, Suricata's vlan.use-for-tracking): a
    # five-tuple on different VLANs is different connections. Off: the five-tuple alone.
    vlan_tracking: bool = False

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]
