"""Coverage-guided fuzzing of the reader, decoder and analysis with atheris (libFuzzer).

Run by hand (see fuzz/README.md); not part of CI. Each input is written to a temporary
capture and checked with the same invariant as the hypothesis suite
(`fuzz.captures.check_capture`); anything else that escapes (an exception, a hang caught
by -timeout, memory past -rss_limit_mb) is a crash that libFuzzer saves as crash-<sha1>.

Inputs are taken as whole captures: seed the corpus with real ones (tests/data, the shared
corpus) so the fuzzer starts from valid structure. `--mode frame` instead feeds the bytes
to the decoder as one frame on a link type chosen by the first byte (much faster).
"""

from __future__ import annotations

import os
import sys
import tempfile

# the checkout's package, whatever directory the fuzzer is started from
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import atheris  # before the instrumented imports below

with atheris.instrument_imports():
    from fuzz.captures import check_capture
    from tcpanalyze.capture import Frame
    from tcpanalyze.decode import Decoder

LINKTYPES = (0, 1, 9, 12, 14, 50, 101, 104, 108, 113, 228, 229, 239, 276)
WORK = tempfile.mkdtemp(prefix="tcpanalyze-atheris-")
CASE = os.path.join(WORK, "case.pcap")


def one_capture(data: bytes) -> None:
    with open(CASE, "wb") as out:
        out.write(data)
    check_capture(CASE, render=True)


def one_frame(data: bytes) -> None:
    if not data:
        return
    decoder = Decoder(verify_checksums=bool(data[0] & 0x80))
    frame = Frame(1, 1_700_000_000.0, LINKTYPES[data[0] % len(LINKTYPES)], len(data) - 1,
                  data[1:])
    decoder.decode(frame)
    assert sum(decoder.counts.values()) == 1


def main() -> None:
    mode = "capture"
    if "--mode" in sys.argv:
        at = sys.argv.index("--mode")
        mode = sys.argv[at + 1]
        del sys.argv[at:at + 2]
    atheris.Setup(sys.argv, one_frame if mode == "frame" else one_capture)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
