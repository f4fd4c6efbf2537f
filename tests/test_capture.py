"""capture.py: every corpus capture reads whole; formats checked against capinfos/tshark;
bad input ends cleanly with a one-line error; stdin is streamed, not slurped."""

from __future__ import annotations

import gzip
import itertools
import json
import re
import shutil
import struct
import subprocess
import sys
import textwrap
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tcpanalyze.capture import MAX_CAPLEN, CaptureError, Frame, open_capture

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
CORPUS = ROOT.parent / "shared" / "corpus"
if not CORPUS.is_dir():
    CORPUS = Path("/work/shared/corpus")

needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not present")
needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None,
                                  reason="tshark is not installed (apt-get install tshark)")

# capinfos "File encapsulation" names -> LINKTYPE values
CAPINFOS_LINKTYPES = {
    "Ethernet": 1, "Raw IP": 101, "Raw IPv4": 228, "NULL/Loopback": 0, "PPP": 9,
    "Cisco HDLC": 104, "NFLOG": 239, "Linux cooked-mode capture v1": 113,
    "Linux cooked-mode capture v2": 276,
}
CAPINFOS_FORMATS = {
    "Wireshark/tcpdump/... - pcap": "pcap",
    "Wireshark/tcpdump/... - nanosecond pcap": "pcap-ns",
    "Wireshark/... - pcapng": "pcapng",
}
ERROR_LINE = re.compile(r"^\S.*: frame \d+ \(byte offset \d+\): [^\n]+$")


def corpus_captures() -> list[Path]:
    return sorted(CORPUS.glob("*/*/capture.pcap*"))


def capinfos(item: Path) -> dict[str, str]:
    info: dict[str, str] = {}
    for line in (item / "capinfos.txt").read_text().splitlines():
        key, sep, value = line.partition(":")
        if sep and not line.startswith(" "):
            info[key.strip()] = value.strip()
    return info


def capinfos_time(text: str) -> float:
    whole, _, fraction = text.partition(".")
    stamp = datetime.strptime(whole, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()
    return stamp + float("0." + (fraction or "0"))


def read_all(path: Path | str) -> tuple[list[Frame], CaptureError | None]:
    reader = open_capture(str(path))
    frames = list(reader)
    return frames, reader.error


def tshark_fields(path: Path, *fields: str) -> list[list[str]]:
    args = ["tshark", "-r", str(path), "-T", "fields"]
    for name in fields:
        args += ["-e", name]
    out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=60).stdout
    return [line.split("\t") for line in out.splitlines()]


def pcap_record_offsets(raw: bytes) -> list[int]:
    """Byte offset of every record of a little-endian microsecond pcap (walked by hand)."""
    assert raw[:4] == b"\xd4\xc3\xb2\xa1"
    offsets, pos = [], 24
    while pos < len(raw):
        offsets.append(pos)
        pos += 16 + struct.unpack_from("<I", raw, pos + 8)[0]
    return offsets


# -- the corpus --------------------------------------------------------------------------

@needs_corpus
def test_corpus_has_all_items() -> None:
    assert len(corpus_captures()) == 64


@needs_corpus
@pytest.mark.parametrize("capture", corpus_captures(), ids=lambda p: p.parent.name)
def test_every_corpus_capture_reads_whole(capture: Path) -> None:
    info = capinfos(capture.parent)
    frames, error = read_all(capture)
    assert error is None
    assert len(frames) == int(info["Number of packets"].replace(" ", ""))
    reader = open_capture(str(capture))
    assert reader.format == CAPINFOS_FORMATS[info["File type"]]
    list(reader)
    encapsulation = info["File encapsulation"]
    if encapsulation in CAPINFOS_LINKTYPES:
        assert reader.linktypes == {CAPINFOS_LINKTYPES[encapsulation]}
    assert [f.number for f in frames] == list(range(1, len(frames) + 1))
    # capinfos printed the earliest and latest times in UTC, to the file's precision
    times = [f.ts for f in frames]
    assert min(times) == pytest.approx(capinfos_time(info["First packet time"]), abs=1e-6)
    assert max(times) == pytest.approx(capinfos_time(info["Last packet time"]), abs=1e-6)


@needs_corpus
def test_multi_idb_pcapng_keeps_each_interfaces_link_type() -> None:
    # 126 IDBs of three link types; the 18 packets are all on Ethernet interfaces
    reader = open_capture(str(CORPUS / "zeek/ldap-gap-multi-if-pcapng/capture.pcapng"))
    frames = list(reader)
    assert reader.error is None
    assert reader.linktypes == {1, 113, 274}
    assert {f.linktype for f in frames} == {1}
    assert reader.skipped_blocks  # its name resolution blocks are skipped and counted


@needs_tshark
@needs_corpus
@pytest.mark.parametrize("item", [
    "tcpdump/handshake-nano-sll",  # nanosecond pcap
    "tcpdump/pptp-big-endian",  # big-endian pcap
    "zeek/ldap-gap-multi-if-pcapng",  # pcapng, many IDBs
    "zeek/redis-django-pcapng",
    "zeek/nflog-http",
])
def test_corpus_times_and_lengths_match_tshark(item: str) -> None:
    capture = next((CORPUS / item).glob("capture.pcap*"))
    frames, error = read_all(capture)
    assert error is None
    rows = tshark_fields(capture, "frame.number", "frame.time_epoch", "frame.len",
                         "frame.cap_len")
    assert len(rows) == len(frames)
    for frame, (number, epoch, wirelen, caplen) in zip(frames, rows, strict=True):
        assert frame.number == int(number)
        assert frame.ts == pytest.approx(float(epoch), abs=1e-6)
        assert frame.wirelen == int(wirelen)
        assert len(frame.data) == int(caplen)


# -- captures made for these tests (tests/data/make_format_captures.py) -------------------

# tshark's WTAP encapsulation numbers for the link types in tests/data
WTAP_TO_LINKTYPE = {"1": 1, "25": 113, "210": 276}


@needs_tshark
@pytest.mark.parametrize("name", [
    "eth-nano.pcap", "eth-nano.pcap.gz", "eth-snap110.pcap", "eth-snap60.pcap", "sll.pcap",
    "sll2.pcap", "multi.pcapng", "multi.pcapng.gz", "crafted-2sections.pcapng",
])
def test_made_captures_match_tshark(name: str) -> None:
    frames, error = read_all(DATA / name)
    assert error is None
    rows = tshark_fields(DATA / name, "frame.number", "frame.time_epoch", "frame.len",
                         "frame.cap_len", "frame.encap_type")
    assert len(rows) == len(frames) > 30
    for frame, (number, epoch, wirelen, caplen, encap) in zip(frames, rows, strict=True):
        assert frame.number == int(number)
        if epoch:  # tshark has no time for a simple packet block
            assert frame.ts == pytest.approx(float(epoch), abs=2e-6)
        assert frame.wirelen == int(wirelen)
        assert len(frame.data) == int(caplen)
        assert frame.linktype == WTAP_TO_LINKTYPE[encap]


def test_made_capture_formats() -> None:
    expect = {
        "eth-nano.pcap": ("pcap-ns", {1}), "eth-nano.pcap.gz": ("pcap-ns+gzip", {1}),
        "sll.pcap": ("pcap", {113}), "sll2.pcap": ("pcap", {276}),
        "multi.pcapng": ("pcapng", {1, 113}), "multi.pcapng.gz": ("pcapng+gzip", {1, 113}),
        "crafted-2sections.pcapng": ("pcapng", {1, 113}),
    }
    for name, (fmt, linktypes) in expect.items():
        reader = open_capture(str(DATA / name))
        list(reader)
        assert (reader.format, reader.linktypes, reader.error) == (fmt, linktypes, None), name


def test_nanosecond_pcap_keeps_nanoseconds() -> None:
    frames, _ = read_all(DATA / "eth-nano.pcap")
    raw = (DATA / "eth-nano.pcap").read_bytes()
    sec, nsec = struct.unpack_from("<II", raw, 24)
    assert nsec < 1_000_000_000
    assert frames[0].ts == pytest.approx(sec + nsec / 1e9, abs=1e-7)


def test_crafted_sections_reset_interfaces_and_honour_tsresol_and_tsoffset() -> None:
    """Section 1 is big-endian with if_tsresol 2^-20 + if_tsoffset on interface 0, OPBs
    among the EPBs; section 2 lists the interfaces the other way round and adds SPBs."""
    manifest = json.loads((DATA / "crafted.json").read_text())
    source, _ = read_all(DATA / "multi.pcapng")
    frames, error = read_all(DATA / "crafted-2sections.pcapng")
    assert error is None
    assert len(frames) == len(manifest["frames"])
    for frame, entry in zip(frames, manifest["frames"], strict=True):
        original = source[entry["source"] - 1]
        assert frame.linktype == entry["linktype"] == original.linktype
        assert frame.data == original.data and frame.wirelen == original.wirelen
        if entry["ts_ns"] is not None:
            assert frame.ts == pytest.approx(entry["ts_ns"] / 1e9, abs=1e-6)
        else:  # simple packet blocks carry no time: the last one seen is kept
            assert frame.ts == frames[frame.number - 2].ts


def test_gzip_gives_the_same_frames() -> None:
    for name in ("eth-nano.pcap", "multi.pcapng"):
        plain, _ = read_all(DATA / name)
        packed, error = read_all(DATA / (name + ".gz"))
        assert error is None and packed == plain


def test_concatenated_gzip_members(tmp_path: Path) -> None:
    raw = (DATA / "eth-nano.pcap").read_bytes()
    cut = pcap_record_offsets(raw.replace(raw[:4], b"\xd4\xc3\xb2\xa1", 1))[10]
    path = tmp_path / "two-members.pcap.gz"
    path.write_bytes(gzip.compress(raw[:cut]) + gzip.compress(raw[cut:]))
    frames, error = read_all(path)
    assert error is None and frames == read_all(DATA / "eth-nano.pcap")[0]


def test_kuznetzov_pcap_records(tmp_path: Path) -> None:
    # patched-libpcap format: magic a1b2cd34 and 8 more bytes (ifindex, protocol, type) per
    # record; rewritten from a real capture, tshark reads it as "modified pcap"
    raw = b"\xd4\xc3\xb2\xa1" + (DATA / "sll.pcap").read_bytes()[4:]
    out = [b"\x34\xcd\xb2\xa1" + raw[4:24]]
    offsets = [*pcap_record_offsets(raw), len(raw)]
    for start, end in itertools.pairwise(offsets):
        out.append(raw[start:start + 16] + b"\x07\x00\x00\x00\x08\x00\x04\x00" +
                   raw[start + 16:end])
    path = tmp_path / "kuznetzov.pcap"
    path.write_bytes(b"".join(out))
    frames, error = read_all(path)
    assert error is None and frames == read_all(DATA / "sll.pcap")[0]
    if shutil.which("tshark"):
        assert len(tshark_fields(path, "frame.number")) == len(frames)


# -- bad input ---------------------------------------------------------------------------

@pytest.fixture
def http_pcap() -> bytes:
    path = DATA / "eth-nano.pcap"
    raw = path.read_bytes()
    # a microsecond copy: same records, the ordinary magic
    return b"\xd4\xc3\xb2\xa1" + raw[4:]


def assert_one_line(error: CaptureError, path: Path) -> None:
    text = str(error)
    assert "\n" not in text and "Traceback" not in text
    assert text.startswith(str(path) + ": ")
    assert error.path == str(path)


@pytest.mark.parametrize("content, what", [
    (b"", "empty"),
    (b"\xd4", "too short"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "not a pcap or pcapng"),
    (b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00", "inside the 24-byte pcap header"),
    (b"\x1f\x8b\x08\x00garbage-not-deflate", "gzip"),
    (gzip.compress(b"plain text, not a capture"), "not a pcap or pcapng"),
    (gzip.compress(b""), "empty gzip"),
])
def test_not_a_capture_raises_at_open(tmp_path: Path, content: bytes, what: str) -> None:
    path = tmp_path / "bad.pcap"
    path.write_bytes(content)
    with pytest.raises(CaptureError) as info:
        open_capture(str(path))
    assert what in str(info.value)
    assert_one_line(info.value, path)


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="cannot open"):
        open_capture(str(tmp_path / "nope.pcap"))


def test_file_cut_mid_record(tmp_path: Path, http_pcap: bytes) -> None:
    offsets = pcap_record_offsets(http_pcap)
    path = tmp_path / "cut.pcap"
    path.write_bytes(http_pcap[:offsets[5] + 16 + 3])  # 3 bytes into record 6's data
    frames, error = read_all(path)
    assert len(frames) == 5
    assert error is not None and (error.frame, error.offset) == (6, offsets[5])
    assert ERROR_LINE.match(str(error)) and "record data" in str(error)
    assert_one_line(error, path)


def test_file_cut_mid_record_header(tmp_path: Path, http_pcap: bytes) -> None:
    offsets = pcap_record_offsets(http_pcap)
    path = tmp_path / "cut.pcap"
    path.write_bytes(http_pcap[:offsets[7] + 9])
    frames, error = read_all(path)
    assert len(frames) == 7
    assert error is not None and (error.frame, error.offset) == (8, offsets[7])
    assert "record header" in str(error)


def test_file_ending_on_a_record_boundary_is_clean(tmp_path: Path, http_pcap: bytes) -> None:
    offsets = pcap_record_offsets(http_pcap)
    path = tmp_path / "short.pcap"
    path.write_bytes(http_pcap[:offsets[4]])
    frames, error = read_all(path)
    assert len(frames) == 4 and error is None


@pytest.mark.parametrize("caplen", [MAX_CAPLEN + 1, 0x7FFFFFFF, 0xFFFFFFFF])
def test_absurd_record_length_is_rejected_without_allocating(
        tmp_path: Path, http_pcap: bytes, caplen: int) -> None:
    offsets = pcap_record_offsets(http_pcap)
    raw = bytearray(http_pcap)
    struct.pack_into("<I", raw, offsets[2] + 8, caplen)
    path = tmp_path / "absurd.pcap"
    path.write_bytes(bytes(raw))
    tracemalloc.start()
    try:
        frames, error = read_all(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024
    assert len(frames) == 2
    assert error is not None and (error.frame, error.offset) == (3, offsets[2])
    assert str(caplen) in str(error) and ERROR_LINE.match(str(error))


def test_truncated_gzip_yields_what_it_had(tmp_path: Path) -> None:
    packed = (DATA / "eth-nano.pcap.gz").read_bytes()
    path = tmp_path / "cut.pcap.gz"
    path.write_bytes(packed[: len(packed) * 2 // 3])
    frames, error = read_all(path)
    whole, _ = read_all(DATA / "eth-nano.pcap")
    assert 0 < len(frames) < len(whole)
    assert frames == whole[: len(frames)]
    assert error is not None and ERROR_LINE.match(str(error))


def pcapng_blocks(raw: bytes) -> list[tuple[int, int, int]]:
    """(offset, type, length) of each block of a little-endian pcapng (walked by hand)."""
    out, pos = [], 0
    while pos < len(raw):
        btype, blen = struct.unpack_from("<II", raw, pos)
        out.append((pos, btype, blen))
        pos += blen
    return out


def packet_blocks(raw: bytes) -> list[tuple[int, int, int]]:
    return [b for b in pcapng_blocks(raw) if b[1] == 6]


def test_pcapng_unknown_block_is_skipped_and_counted(tmp_path: Path) -> None:
    raw = (DATA / "multi.pcapng").read_bytes()
    at = packet_blocks(raw)[3][0]
    unknown = struct.pack("<II", 0x0000_0BEE, 20) + b"\x01\x02\x03\x04\x05\x06\x07\x08" + \
        struct.pack("<I", 20)
    path = tmp_path / "unknown.pcapng"
    path.write_bytes(raw[:at] + unknown + raw[at:])
    reader = open_capture(str(path))
    frames = list(reader)
    assert reader.error is None
    assert frames == read_all(DATA / "multi.pcapng")[0]
    assert reader.skipped_blocks.get(0x0BEE) == 1


def test_pcapng_trailing_length_disagrees(tmp_path: Path) -> None:
    raw = bytearray((DATA / "multi.pcapng").read_bytes())
    pos, _, blen = packet_blocks(bytes(raw))[4]
    struct.pack_into("<I", raw, pos + blen - 4, blen + 4)
    path = tmp_path / "trailer.pcapng"
    path.write_bytes(bytes(raw))
    frames, error = read_all(path)
    assert len(frames) == 4
    assert error is not None and (error.frame, error.offset) == (5, pos)
    assert "trailing length" in str(error) and ERROR_LINE.match(str(error))


@pytest.mark.parametrize("blen", [0xFFFFFFF0, 0x7FFFFFFC, 8, 30])
def test_pcapng_absurd_block_length(tmp_path: Path, blen: int) -> None:
    raw = bytearray((DATA / "multi.pcapng").read_bytes())
    pos = packet_blocks(bytes(raw))[2][0]
    struct.pack_into("<I", raw, pos + 4, blen)
    path = tmp_path / "absurd.pcapng"
    path.write_bytes(bytes(raw))
    tracemalloc.start()
    try:
        frames, error = read_all(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 * 1024 * 1024
    assert len(frames) == 2
    assert error is not None and (error.frame, error.offset) == (3, pos)
    assert ERROR_LINE.match(str(error))


def test_pcapng_cut_mid_block(tmp_path: Path) -> None:
    raw = (DATA / "multi.pcapng").read_bytes()
    pos, _, blen = packet_blocks(raw)[6]
    path = tmp_path / "cut.pcapng"
    path.write_bytes(raw[:pos + blen // 2])
    frames, error = read_all(path)
    assert len(frames) == 6
    assert error is not None and (error.frame, error.offset) == (7, pos)
    assert "ends inside a block" in str(error)


def test_pcapng_packet_on_an_undescribed_interface(tmp_path: Path) -> None:
    raw = bytearray((DATA / "multi.pcapng").read_bytes())
    pos = packet_blocks(bytes(raw))[1][0]
    struct.pack_into("<I", raw, pos + 8, 7)
    path = tmp_path / "ifid.pcapng"
    path.write_bytes(bytes(raw))
    frames, error = read_all(path)
    assert len(frames) == 1
    assert error is not None and "interface 7" in str(error)


def test_pcapng_bad_byte_order_magic(tmp_path: Path) -> None:
    raw = bytearray((DATA / "multi.pcapng").read_bytes())
    raw[8:12] = b"\x00\x11\x22\x33"
    path = tmp_path / "bom.pcapng"
    path.write_bytes(bytes(raw))
    with pytest.raises(CaptureError, match="byte-order"):
        open_capture(str(path))


# -- stdin: a real pipe, written in small pieces with pauses ---------------------------------

WRITER = textwrap.dedent("""
    import select, sys, time, zlib
    data = open(sys.argv[1], 'rb').read()
    split, piece, mode = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    out = sys.stdout.buffer
    pack = zlib.compressobj(wbits=31) if mode == 'gzip' else None
    def send(chunk, piece, flush=False):
        if pack is not None:
            chunk = pack.compress(chunk) + (pack.flush(zlib.Z_SYNC_FLUSH) if flush else b'')
        for i in range(0, len(chunk), piece):
            out.write(chunk[i:i + piece]); out.flush(); time.sleep(0.002)
    send(data[:split], piece, flush=True)
    # hold the rest back until the reader says it has the first frames (or 20 s pass)
    if select.select([sys.stdin], [], [], 20)[0]:
        sys.stdin.readline()
    send(data[split:], piece * 50)
    if pack is not None:
        out.write(pack.flush()); out.flush()
""")


@pytest.mark.parametrize("name, mode", [("eth-nano.pcap", "plain"), ("multi.pcapng", "plain"),
                                         ("eth-nano.pcap", "gzip")])
def test_stdin_pipe_yields_frames_before_eof(name: str, mode: str) -> None:
    whole, _ = read_all(DATA / name)
    raw = (DATA / name).read_bytes()
    # stop the first part in the middle of frame 4: frames 1-3 are complete, 4 is split
    if name.endswith(".pcap"):
        split = pcap_record_offsets(b"\xd4\xc3\xb2\xa1" + raw[4:])[3] + 30
    else:
        split = packet_blocks(raw)[3][0] + 30
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(DATA / name), str(split), "7",
                             mode], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        started = time.monotonic()
        reader = open_capture("-", stdin=proc.stdout)
        frames = iter(reader)
        first = [next(frames) for _ in range(3)]
        # the writer holds the rest back for 20 s unless told: these frames came before EOF
        assert time.monotonic() - started < 15
        assert proc.poll() is None
        assert first == whole[:3]
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        rest = list(frames)
        assert reader.error is None
        assert first + rest == whole
        assert reader.format == ("pcap-ns" if name.endswith(".pcap") else "pcapng") + (
            "+gzip" if mode == "gzip" else "")
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_stdin_that_is_not_a_capture() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "print('hello')"], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        with pytest.raises(CaptureError) as info:
            open_capture("-", stdin=proc.stdout)
        assert str(info.value).startswith("<stdin>: ")
    finally:
        proc.wait(timeout=10)


def test_a_pipe_read_as_a_capture_holds_up_to_a_mebibyte() -> None:
    """A file sent through a pipe comes in batches of what the pipe holds: 64 KiB by
    default (~500 frames a batch), raised to 1 MiB so batches are thousands of frames."""
    import fcntl
    import os

    from tcpanalyze.capture import open_capture

    if int(Path("/proc/sys/fs/pipe-max-size").read_text()) < 1 << 20:
        pytest.skip("this kernel allows pipes of less than 1 MiB")
    r, w = os.pipe()
    try:
        assert fcntl.fcntl(w, fcntl.F_GETPIPE_SZ) == 64 << 10
        os.write(w, struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        with os.fdopen(r, "rb") as stream:
            reader = open_capture("-", stdin=stream)
            assert reader.format == "pcap" and reader.is_pipe
            assert fcntl.fcntl(w, fcntl.F_GETPIPE_SZ) == 1 << 20
    finally:
        os.close(w)


_BATCHED = sorted([*(ROOT / "sample_pcaps").glob("*.pcap*"), *DATA.glob("*.pcap*"),
                   *CORPUS.glob("*/*/capture.pcap*")])


@pytest.mark.parametrize("path", _BATCHED, ids=lambda p: p.name)
def test_capture_batches_hold_the_frames_the_frame_reader_gives(path: Path) -> None:
    """Batches cut from a capture (records, EPB runs, frames), and the same with every
    record and block batch turned into Frames (a pipe's small reads), give exactly the
    reader's frames, in the order they are analysed, and the same error."""
    from tcpanalyze.capture import capture_batches, open_capture, time_ordered

    with open_capture(str(path)) as reader:
        want = list(time_ordered(reader))
        error = str(reader.error)
    for small in (0, 1 << 30):
        with open_capture(str(path)) as reader:
            got: list[Frame] = []
            kinds = set()
            for batch in capture_batches(reader, at_once=7, small=small):
                kinds.add(batch[0])
                if batch[0] == "frames":
                    got.extend(batch[1])
                else:  # the frames of those buffers, read as the frame reader reads them
                    got.extend(_frames_of(batch, reader))
            assert str(reader.error) == error
        assert got == want
        if small:
            assert kinds <= {"frames"}


def _frames_of(batch: tuple, reader: object) -> list[Frame]:
    from tcpanalyze import capture

    if batch[0] == "records":
        return capture._record_frames(*batch[1:], **reader.record_layout)  # type: ignore[attr-defined]
    return capture._block_frames(*batch[1:4], **batch[4])
