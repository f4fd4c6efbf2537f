"""The second decoder: TCP segments read from tshark's fields output.

tshark opens encapsulations the dpkt decoder leaves closed (GRE, VXLAN, GTP, IP-in-IP,
MPLS, PPPoE, ERSPAN, Teredo, exotic link types) and yields the same `Segment` records.
pyshark only locates tshark and reads its version: its per-packet objects are far too
slow, so we ask tshark for a fixed list of fields (one tab-separated line per frame) and
parse the lines as they stream out of the subprocess.

Every frame is printed (no `-Y tcp` display filter) so the frames that are not TCP can be
counted in the same `report.PACKET_CLASSES` as the dpkt decoder counts them: printing a
short line costs far less than a second pass.

For tunnelled packets tshark repeats a field once per layer ("outer,inner"); the
innermost IP and TCP layers are the last occurrences.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from .capture import _printable
from .decode import MAX_TIMESTAMP
from .report import PACKET_CLASSES
from .segment import Segment

INSTALL_HINT = (
    "install it with `apt-get install tshark` (Debian/Ubuntu), `dnf install wireshark-cli` "
    "(Fedora) or `brew install wireshark` (macOS), or set TCPANALYZE_TSHARK to its path"
)

# The fields asked of tshark, in output order. Index constants below follow this list.
FIELDS = (
    "frame.number",
    "frame.time_epoch",
    "frame.protocols",
    "ip.src",
    "ip.dst",
    "ip.flags.mf",
    "ip.frag_offset",
    "ipv6.src",
    "ipv6.dst",
    "ipv6.fraghdr.more",
    "ipv6.fraghdr.offset",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.seq_raw",
    "tcp.ack_raw",
    "tcp.flags",
    "tcp.window_size_value",
    "tcp.len",
    "tcp.options",
    "vlan.id",  # every tag's id, outer first (Segment.vlan keeps the first two)
)
(F_NUMBER, F_TIME, F_PROTOCOLS, F_IP_SRC, F_IP_DST, F_IP_MF, F_IP_OFFSET, F_IP6_SRC,
 F_IP6_DST, F_IP6_MORE, F_IP6_OFFSET, F_SPORT, F_DPORT, F_SEQ, F_ACK, F_FLAGS, F_WINDOW,
 F_LEN, F_OPTIONS, F_VLAN) = range(len(FIELDS))

# Preferences that switch off work whose results we never read. Sequence analysis,
# stream reassembly and IP defragmentation are the expensive ones; defragmentation is
# also off so that a fragment is never taken for a whole TCP segment (as in decode.py).
PREFERENCES = (
    "tcp.analyze_sequence_numbers:FALSE",
    "tcp.relative_sequence_numbers:FALSE",
    "tcp.desegment_tcp_streams:FALSE",
    "tcp.calculate_timestamps:FALSE",
    "tcp.check_checksum:FALSE",
    "ip.defragment:FALSE",
    "ipv6.defragment:FALSE",
)

TUNNEL_PROTOCOLS = frozenset({
    "gre", "vxlan", "gtp", "erspan", "pppoes", "mpls", "teredo", "geneve", "l2tp",
    "ipip", "nsh", "udpencap", "ayiya", "6in4", "gtpv2",
})


class TsharkMissing(RuntimeError):
    """tshark is not installed (or not where it was said to be)."""

    def __init__(self, detail: str = "") -> None:
        message = "tshark was not found"
        if detail:
            message += f" ({detail})"
        super().__init__(f"{message}: {INSTALL_HINT}")


class TsharkError(RuntimeError):
    """tshark refused the input at once (not a capture, unreadable file)."""


def find_tshark() -> str:
    """Path of the tshark binary: $TCPANALYZE_TSHARK, else wherever pyshark finds it."""
    override = os.environ.get("TCPANALYZE_TSHARK")
    if override:
        if os.path.isfile(override) and os.access(override, os.X_OK):
            return override
        raise TsharkMissing(f"TCPANALYZE_TSHARK={override} is not an executable file")
    try:
        from pyshark.tshark.tshark import TSharkNotFoundException, get_process_path
    except ImportError:  # pyshark is a dependency, but tshark alone is enough
        found = shutil.which("tshark")
        if found is None:
            raise TsharkMissing("not on PATH") from None
        return found
    try:
        return str(get_process_path())
    except TSharkNotFoundException:
        raise TsharkMissing("not on PATH nor in pyshark's search places") from None


def tshark_version(tshark_path: str | None = None) -> str:
    """The tshark version string, e.g. '4.0.17' (pyshark parses `tshark -v`)."""
    path = tshark_path or find_tshark()
    try:
        from pyshark.tshark.tshark import get_tshark_version

        return str(get_tshark_version(path))
    except ImportError:
        out = subprocess.run([path, "-v"], capture_output=True, text=True, check=False)
        first = out.stdout.split("\n", 1)[0]
        return first.split("(", 1)[0].split()[-1] if first else "unknown"


def tshark_available() -> bool:
    try:
        find_tshark()
    except TsharkMissing:
        return False
    return True


def build_argv(tshark_path: str, source: str) -> list[str]:
    """tshark's argv; `source` is one element after -r ('-' for standard input)."""
    argv = [tshark_path, "-n", *(["-l"] if source == "-" else []), "-r", source, "-T", "fields",
            "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=,",
            "-E", "header=n", "-E", "quote=n"]
    for pref in PREFERENCES:
        argv += ["-o", pref]
    for name in FIELDS:
        argv += ["-e", name]
    return argv


def _last(value: str) -> str:
    """The innermost occurrence of a repeated field ('outer,inner' -> 'inner')."""
    return value.rpartition(",")[2]


def _any_set(values: str, unset: str) -> bool:
    return any(v and v != unset for v in values.split(","))


class TsharkDecoder:
    """Runs tshark over one capture; iterate for Segments, then read the counts.

    counts: report.PACKET_CLASSES -> frames (every frame tshark printed in exactly one
    class; 'tunnel' stays 0 because tshark opens tunnels, and `tunnelled` counts the
    TCP segments that came out of one). 'bad_checksum' is never counted (not verified).
    error: tshark's own message when it stopped early (e.g. a capture cut short), else None.
    """

    def __init__(self, path: str, stdin: BinaryIO | None = None,
                 tshark_path: str | None = None) -> None:
        self.path = path
        self.stdin = stdin
        self.tshark_path = tshark_path or find_tshark()
        self.counts: dict[str, int] = dict.fromkeys(PACKET_CLASSES, 0)
        self.examples: dict[str, list[tuple[int, str]]] = {}
        self.frames_read = 0
        self.tunnelled = 0
        self.error: str | None = None

    def _example(self, cls: str, frame: int, reason: str) -> None:
        seen = self.examples.setdefault(cls, [])
        if len(seen) < 5:
            seen.append((frame, reason))

    def __iter__(self) -> Iterator[Segment]:
        argv = build_argv(self.tshark_path, self.path)
        feed_from: BinaryIO | None = None
        stdin_arg: int | BinaryIO | None = subprocess.DEVNULL
        if self.path == "-":
            source = self.stdin
            if source is None:
                import sys

                source = sys.stdin.buffer
            try:
                source.fileno()
                stdin_arg = source  # the pipe goes straight to tshark
            except (AttributeError, OSError, ValueError):
                stdin_arg = subprocess.PIPE  # an in-memory stream: copy it in
                feed_from = source
        try:
            proc = subprocess.Popen(
                argv, stdin=stdin_arg, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                bufsize=1 << 16,
            )
        except FileNotFoundError:
            raise TsharkMissing(f"{self.tshark_path} vanished") from None
        stderr_lines: list[str] = []
        threads = [threading.Thread(target=_drain, args=(proc.stderr, stderr_lines),
                                    daemon=True)]
        if feed_from is not None:
            threads.append(threading.Thread(target=_feed, args=(feed_from, proc.stdin),
                                            daemon=True))
        for t in threads:
            t.start()
        finished = False
        try:
            assert proc.stdout is not None
            for line in io.TextIOWrapper(proc.stdout, encoding="utf-8", errors="replace"):
                segment = self._parse(line)
                if segment is not None:
                    yield segment
            finished = True
        finally:
            if not finished and proc.poll() is None:
                proc.terminate()  # the consumer stopped early: stop our own tshark
            proc.stdout.close() if proc.stdout else None
            rc = proc.wait()
            for t in threads:
                t.join(timeout=5)
        if finished:
            message = _tshark_message(stderr_lines) or f"tshark exited with {rc}"
            if rc != 0 and self.frames_read == 0:
                raise TsharkError(f"{_printable(self.path)}: {message}")
            if rc != 0 or _tshark_message(stderr_lines):
                self.error = f"{_printable(self.path)}: {message}"

    def _parse(self, line: str) -> Segment | None:
        f = line.rstrip("\n").split("\t")
        if len(f) < len(FIELDS):
            return None  # not a field line (should not happen)
        self.frames_read += 1
        number = int(f[F_NUMBER])
        protocols = f[F_PROTOCOLS].split(":")
        counts = self.counts
        # the innermost network layer before the last TCP layer decides everything
        try:
            tcp_at = len(protocols) - 1 - protocols[::-1].index("tcp")
        except ValueError:
            tcp_at = -1
        upto = protocols[:tcp_at] if tcp_at >= 0 else protocols
        family = ""
        for name in reversed(upto):
            if name in ("ip", "ipv6"):
                family = name
                break
        if not family:
            counts["non_ip"] += 1
            return None
        if _any_set(f[F_IP_MF], "0") or _any_set(f[F_IP_OFFSET], "0") or \
                _any_set(f[F_IP6_MORE], "0") or _any_set(f[F_IP6_OFFSET], "0"):
            counts["fragment"] += 1
            return None
        if tcp_at < 0:
            counts["other_ip"] += 1
            return None
        if "icmp" in upto or "icmpv6" in upto:  # a TCP header quoted by an ICMP error
            counts["other_ip"] += 1
            self._example("other_ip", number, "TCP header inside an ICMP error")
            return None
        sport, dport, seq, ack = f[F_SPORT], f[F_DPORT], f[F_SEQ], f[F_ACK]
        flags, window, tcp_len = f[F_FLAGS], f[F_WINDOW], f[F_LEN]
        if not (sport and dport and seq and ack and flags and window and tcp_len):
            cls = "truncated" if "_ws.short" in protocols else "malformed"
            counts[cls] += 1
            self._example(cls, number, "TCP header incomplete")
            return None
        try:
            ts = float(f[F_TIME])
            if family == "ip":
                src = socket.inet_aton(_last(f[F_IP_SRC]))
                dst = socket.inet_aton(_last(f[F_IP_DST]))
            else:
                src = socket.inet_pton(socket.AF_INET6, _last(f[F_IP6_SRC]))
                dst = socket.inet_pton(socket.AF_INET6, _last(f[F_IP6_DST]))
        except (ValueError, OSError):  # a field tshark could not fill from a broken header
            counts["malformed"] += 1
            self._example("malformed", number, "IP addresses or time unreadable")
            return None
        if not 0.0 <= ts < MAX_TIMESTAMP:  # as decode.py: corrupt time would stall timers
            counts["malformed"] += 1
            self._example("malformed", number, f"timestamp {ts:.6g} s is out of range")
            return None
        options = _last(f[F_OPTIONS])
        vlan = 0
        if f[F_VLAN]:  # as decode.py: the first two ids, outer << 12 | inner
            try:
                for vid in f[F_VLAN].split(",")[:2]:
                    vlan = (vlan << 12) | (int(vid) & 0xFFF)
            except ValueError:
                vlan = 0
        counts["tcp"] += 1
        if not TUNNEL_PROTOCOLS.isdisjoint(upto) or upto.count("ip") + upto.count("ipv6") > 1:
            self.tunnelled += 1
        return Segment(
            number,
            ts,
            src,
            dst,
            int(_last(sport)),
            int(_last(dport)),
            int(_last(seq)),
            int(_last(ack)),
            int(_last(flags), 16) & 0x1FF,  # reserved bits dropped, NS/AE kept as 0x100
            int(_last(window)),
            int(_last(tcp_len)),
            bytes.fromhex(options.replace(":", "")) if options else b"",
            vlan,
        )


def _drain(stream: object, into: list[str]) -> None:
    """Keep tshark's stderr flowing (a full pipe would stall it); keep the first lines."""
    for raw in stream:  # type: ignore[attr-defined]
        if len(into) < 50:
            into.append(raw.decode("utf-8", "replace").rstrip("\n"))


def _feed(source: BinaryIO, sink: object) -> None:
    try:
        while chunk := source.read(1 << 16):
            sink.write(chunk)  # type: ignore[attr-defined]
    except (BrokenPipeError, OSError):
        pass  # tshark stopped reading (error or early stop): nothing more to say
    finally:
        with contextlib.suppress(OSError):
            sink.close()  # type: ignore[attr-defined]


def _tshark_message(lines: list[str]) -> str:
    """tshark's complaint, without the noise it prints on every run as root."""
    kept = [ln.strip() for ln in lines
            if ln.strip() and not ln.startswith("Running as user")
            and "This could be dangerous" not in ln]
    return " ".join(kept)


def tshark_segments(path: str, stdin: BinaryIO | None = None) -> Iterator[Segment]:
    """Segments of one capture, decoded by tshark. Raises TsharkMissing / TsharkError.

    For the per-class counts, iterate a `TsharkDecoder` instead and read `.counts`.
    """
    yield from TsharkDecoder(path, stdin=stdin)


def _capture_format(path: str) -> tuple[str, list[int]]:
    """Format and link types from the file header, as capture.py names them ('-': unknown)."""
    if path == "-":
        return "tshark", []
    try:
        from .capture import CaptureError, open_capture

        reader = open_capture(path)
    except (ImportError, CaptureError, OSError):
        return "tshark", []  # a format tshark reads but capture.py does not (snoop, erf, ...)
    reader.close()  # only the header was wanted
    return reader.format, sorted(reader.linktypes)


def read_tshark_into(analysis: Any, path: str, *,
                     on_finding: Callable[[Any], Any] | None = None,
                     stdin: BinaryIO | None = None) -> Any:
    """Feed every tshark segment of one capture into `analysis` (analysis.Analysis);
    returns its report.CaptureSummary, like analysis.read_into does for the dpkt decoder."""
    from .analysis import LINKTYPE_NAMES
    from .report import CaptureSummary

    if path != "-" and os.path.isfile(path) and os.path.getsize(path) == 0:
        # tshark reads an empty file as a capture without packets; it is not a capture
        raise TsharkError(f"{_printable(path)}: empty file, not a capture")
    fmt, linktypes = _capture_format(path)
    decoder = TsharkDecoder(path, stdin=stdin)
    feed = analysis.feed
    for segment in decoder:
        new = feed(segment)
        if new and on_finding is not None:
            for finding in new:
                on_finding(finding)
    skipped = {name: decoder.counts[name] for name in PACKET_CLASSES if name != "tcp"}
    return CaptureSummary(
        path=path, format=fmt,
        linktypes=sorted(LINKTYPE_NAMES.get(lt, f"LINKTYPE_{lt}") for lt in linktypes),
        packets=decoder.frames_read, tcp_segments=decoder.counts["tcp"], skipped=skipped,
        first_ts=analysis.first_ts, last_ts=analysis.last_ts, error=decoder.error,
        decoder="tshark")
