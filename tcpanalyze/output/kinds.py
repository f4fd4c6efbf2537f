"""What each finding kind means, for rule metadata (SARIF) and help texts.

Keyed by `report.FINDING_KINDS`; a test checks that every kind has an entry.
"""

from __future__ import annotations

from typing import NamedTuple


class KindInfo(NamedTuple):
    title: str  # short description, one line
    help: str  # what it looks like on the wire and what it usually means


KIND_INFO: dict[str, KindInfo] = {
    "syn_flood": KindInfo(
        "SYN flood against one server port",
        "Many SYNs to one destination port in a short window, from many sources, with few "
        "handshakes completing. The server holds many half-open (SYN_RCVD) connections and "
        "retransmits SYN-ACKs; SYN cookies change that behaviour.",
    ),
    "port_scan": KindInfo(
        "Port or host scan",
        "One source sends SYNs to many ports of one host, or to one port on many hosts, and "
        "few handshakes complete; the probes are answered by RST or not at all.",
    ),
    "close_wait_leak": KindInfo(
        "Endpoint stuck in CLOSE_WAIT (FIN acked, own FIN never sent)",
        "The peer's FIN was received and acknowledged but this endpoint did not send its own "
        "FIN for longer than the threshold: the application never called close(). Many of "
        "them toward one server port point to a leaking service.",
    ),
    "half_open": KindInfo(
        "Half-open connection (one side believes it exists, the other does not)",
        "SYNs never answered, SYN-ACKs never acknowledged, an established peer that vanished "
        "(data retransmitted without an ACK), or a peer answering data with RST because it no "
        "longer has the connection.",
    ),
    "missing_third_ack": KindInfo(
        "Handshake without the client's final ACK",
        "SYN and SYN-ACK were seen but the client's ACK never appeared; the server stays in "
        "SYN_RCVD and retransmits the SYN-ACK with the same ISN.",
    ),
    "time_wait_violation": KindInfo(
        "New connection on a 4-tuple still in TIME_WAIT",
        "A new SYN reused the 4-tuple before 2 x MSL had passed since the active closer entered "
        "TIME_WAIT, or old segments arrived after the close. Frequent reuse points to port "
        "exhaustion.",
    ),
    "time_wait_assassination": KindInfo(
        "RST ended a TIME_WAIT endpoint (RFC 1337)",
        "An endpoint in TIME_WAIT received a RST that killed the state early (TIME-WAIT "
        "assassination); old duplicates can then corrupt a new connection on the same 4-tuple.",
    ),
    "rst_teardown": KindInfo(
        "Connection torn down by RST instead of FIN",
        "The connection ended with a RST: SO_LINGER 0, close() with unread data, a killed "
        "process, a write after the peer closed, or a middlebox. The finding says who sent it "
        "and each side's state.",
    ),
    "connection_refused": KindInfo(
        "Connection refused (SYN answered by RST)",
        "The server answered the SYN with RST: nothing listens on that port, or a firewall "
        "rejects the connection.",
    ),
    "fin_wait_2_stuck": KindInfo(
        "Endpoint stuck in FIN_WAIT_2",
        "This endpoint's FIN was acknowledged but the peer never sent its FIN within the "
        "threshold; the peer is usually in CLOSE_WAIT, or vanished.",
    ),
    "last_ack_stuck": KindInfo(
        "Endpoint stuck in LAST_ACK",
        "The passive closer sent its FIN but the FIN was not acknowledged within the "
        "threshold; the last ACK was lost or the peer is gone.",
    ),
    "data_after_close": KindInfo(
        "Data sent after FIN",
        "An endpoint sent payload after its own FIN, or after the connection was closed; the "
        "receiver answers with RST.",
    ),
    "invalid_flags": KindInfo(
        "Invalid TCP flag combination",
        "A segment carried a combination no TCP stack sends in normal operation (SYN+FIN, "
        "SYN+RST, no flags at all, all flags): crafted traffic or a scan.",
    ),
    "syn_retransmission": KindInfo(
        "SYN or SYN-ACK retransmitted",
        "The SYN (or SYN-ACK) was sent again: the first was lost or not answered in time. "
        "Linux retries after 1, 2, 4, 8, 16 s.",
    ),
    "retransmission": KindInfo(
        "Data retransmitted",
        "Payload bytes were sent again: loss on the path, or delayed acknowledgements.",
    ),
    "zero_window": KindInfo(
        "Receiver advertised a zero window",
        "An endpoint advertised a receive window of 0: its application is not reading, so the "
        "sender must stall.",
    ),
    "keepalive": KindInfo(
        "TCP keepalive probes",
        "Segments carrying seq = next expected - 1 and no new data, sent on an idle "
        "connection to check that the peer is alive.",
    ),
    "simultaneous_open": KindInfo(
        "Simultaneous open",
        "Both endpoints sent a SYN without ACK; both went SYN_SENT -> SYN_RCVD -> ESTABLISHED. "
        "Rare, and also the shape of a split-handshake evasion.",
    ),
    "simultaneous_close": KindInfo(
        "Simultaneous close",
        "Both endpoints sent FIN before seeing the other's; both went FIN_WAIT_1 -> CLOSING -> "
        "TIME_WAIT.",
    ),
}


def kind_info(kind: str) -> KindInfo:
    """Metadata for a kind, with a plain fallback for kinds added after this table."""
    return KIND_INFO.get(kind) or KindInfo(kind.replace("_", " "), kind.replace("_", " "))

