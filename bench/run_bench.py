"""Time tcpanalyze against tshark, tcptrace and a plain dpkt loop on one capture.

    python3 bench/run_bench.py [CAPTURE] [--runs 3] [--jobs 2] [--only NAME ...]

Every tool runs `--runs` times on the same file, in rounds (each round runs every tool
once, in the order below), so that a machine whose speed drifts over minutes (a VM's
often does, by 10-20 %) skews every tool alike rather than whichever ran in its slow
minutes; `--sequential` runs each tool's runs back to back instead. The table shows
the median wall time, packets per second (capinfos' packet count / median time) and peak
memory, then the ratios the issue sets targets for: from the medians, and in rounds
also their range round by round (the two tools' runs of one round compared: a ratio
whose range straddles its target is not met or missed by the code, but by the minute).
Peak memory is the kernel's
ru_maxrss of the process (wait4) for one-process tools; for `tcpanalyze --jobs N` the
workers are forked children, so it is the sampled peak (every 250 ms) of the summed PSS
of the whole process tree (PSS splits pages shared after fork instead of counting them
once per process). Sampling costs CPU on the same cores: every 50 ms it cost the
measured run ~0.3 s of wall time on the bench capture; every 250 ms it costs <0.1 s, and
the peak (reached as the workers finish, after seconds of growth) is the same. The load
average before and after is printed: other work on the machine skews wall times, so CPU
seconds (of the whole process tree) are shown too.

`tcpanalyze` rows run the package as `pip install .` builds it, its per-segment core
compiled with mypyc (setup.py), installed into bench/data/core first (~30 s; the run
stops if it did not compile); `tcpanalyze pure` rows run the source tree as it is (pure
Python). The targets are checked for both. (Earlier versions also printed a
"critical path", the parent's CPU plus the busiest worker's; since the `--jobs` parent
reads the file while its workers run, that sum no longer estimates anything.)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
DEFAULT = ROOT / "data" / "bench.pcap"
SAMPLE_EVERY = 0.25  # seconds between samples of a process tree's memory


def build_core(target: Path) -> dict[str, str]:
    """Install the package as `pip install .` builds it on a new machine (the per-segment
    core compiled with mypyc, setup.py; pip run from a new, empty venv, as
    scripts/test.sh does) into `target`; returns the environment that runs it: first on
    the path, the cwd (the source tree) not before it."""
    shutil.rmtree(target, ignore_errors=True)  # (nothing of an earlier build left)
    with tempfile.TemporaryDirectory(prefix="tcpanalyze-bench-") as tmp:
        venv.create(tmp, with_pip=True)
        subprocess.run([str(Path(tmp) / "bin" / "python"), "-m", "pip", "install", "-q",
                        "--no-deps", "--target", str(target), str(ROOT.parent)], check=True)
    env = {**os.environ, "PYTHONSAFEPATH": "1", "PYTHONPATH": str(target)}
    core = subprocess.run([sys.executable, "-m", "tcpanalyze", "--version"], env=env,
                          capture_output=True, text=True, check=True).stdout.strip()
    if "(compiled core)" not in core:
        raise SystemExit(f"{target}: {core}: the core did not compile (setup.py says why)")
    return env


def commands(capture: str, jobs: int, compiled: dict[str, str] | None
             ) -> dict[str, tuple[list[str], dict[str, str] | None]]:
    """name -> (argv, environment or None for this one's). `tcpanalyze` is the compiled
    build (`compiled`, from build_core), `tcpanalyze pure` the source tree as it is."""
    py = sys.executable

    def report(jobs: int) -> list[str]:
        return [py, "-m", "tcpanalyze", "report", "--format", "json", "--no-progress",
                "--jobs", str(jobs), capture]

    out: dict[str, tuple[list[str], dict[str, str] | None]] = {}
    if compiled is not None:
        out["tcpanalyze --jobs 1"] = (report(1), compiled)
        out[f"tcpanalyze --jobs {jobs}"] = (report(jobs), compiled)
    out["tcpanalyze pure --jobs 1"] = (report(1), None)
    out[f"tcpanalyze pure --jobs {jobs}"] = (report(jobs), None)
    out.update({
        "tshark conv,tcp": (["tshark", "-n", "-r", capture, "-q", "-z", "conv,tcp"], None),
        "tshark fields": (["tshark", "-n", "-r", capture, "-T", "fields", "-e", "tcp.stream",
                           "-e", "tcp.analysis.flags"], None),
        "tcptrace -n": (["tcptrace", "-n", capture], None),
        "dpkt loop": ([py, str(ROOT / "dpkt_loop.py"), capture], None),
    })
    return out


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_once(argv: list[str], env: dict[str, str] | None, tree: bool
             ) -> tuple[float, int, float]:
    """(wall seconds, peak KiB, CPU seconds) of one run; output goes to /dev/null."""
    peak = 0
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=ROOT.parent, env=env)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(SAMPLE_EVERY):
            pids = _tree(proc.pid)
            peak = max(peak, sum(_pss_kb(p) for p in pids))

    sampler = threading.Thread(target=sample, daemon=True) if tree else None
    if sampler is not None:
        sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    done.set()
    if sampler is not None:
        sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {proc.returncode}")
    cpu = usage.ru_utime + usage.ru_stime  # includes the workers it waited for
    return wall, peak if tree else usage.ru_maxrss, cpu


def packet_count(capture: str) -> int:
    out = subprocess.run(["capinfos", "-M", "-c", "-T", "-r", capture], capture_output=True,
                         text=True, check=True).stdout
    return int(out.split("\t")[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("capture", nargs="?", default=str(DEFAULT))
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--only", nargs="*", help="tool names (substrings) to run")
    p.add_argument("--json", help="also write the numbers here")
    p.add_argument("--sequential", action="store_true",
                   help="each tool's runs back to back (earlier versions' order), not rounds")
    p.add_argument("--core", default=str(ROOT / "data" / "core"),
                   help="where the compiled build is installed (default bench/data/core)")
    p.add_argument("--pure-only", action="store_true",
                   help="no compiled build: only the source tree as it is")
    args = p.parse_args()
    compiled = None if args.pure_only else build_core(Path(args.core))
    packets = packet_count(args.capture)
    size = os.path.getsize(args.capture)
    print(f"{args.capture}: {packets:,} packets, {size / 1e6:.0f} MB; "
          f"load before {os.getloadavg()[0]:.2f}; {os.cpu_count()} CPUs", flush=True)
    results: dict[str, dict[str, float]] = {}
    chosen = {name: cmd for name, cmd in commands(args.capture, args.jobs, compiled).items()
              if not args.only or any(o in name for o in args.only)}
    if args.sequential:
        order = [name for name in chosen for _ in range(args.runs)]
    else:
        order = [name for _ in range(args.runs) for name in chosen]
    measured: dict[str, list[tuple[float, int, float]]] = {name: [] for name in chosen}
    for name in order:
        tree = name.startswith("tcpanalyze") and not name.endswith(" 1")
        measured[name].append(run_once(*chosen[name], tree))
    for name, runs in measured.items():
        wall = statistics.median(r[0] for r in runs)
        rss = statistics.median(r[1] for r in runs)
        cpu = statistics.median(r[2] for r in runs)
        results[name] = {"seconds": wall, "pps": packets / wall, "peak_mib": rss / 1024,
                         "cpu": cpu, "runs": [r[0] for r in runs]}
        print(f"{name:28} {wall:8.2f} s {packets / wall:12,.0f} pkt/s {rss / 1024:8.0f} MiB"
              f"  cpu {cpu:6.2f} s   runs {', '.join(f'{r[0]:.2f}' for r in runs)}",
              flush=True)
    print(f"load after {os.getloadavg()[0]:.2f}")

    def ratio(a: str, b: str, key: str = "pps") -> str:
        """a's figure over b's, from the medians; for speed in rounds, also the range of
        the ratio round by round (the VM drifts over minutes, and a round runs every
        tool within them: this range says how far the medians' ratio can be trusted)."""
        if a not in results or b not in results:
            return "n/a"
        text = f"{results[a][key] / results[b][key]:.2f}"
        if key == "pps" and not args.sequential and args.runs > 1:
            rounds = [tb / ta for ta, tb in zip(results[a]["runs"], results[b]["runs"],
                                                  strict=True)]
            text += f"  (round by round {min(rounds):.2f}-{max(rounds):.2f})"
        return text

    for kind in ([" pure"] if compiled is None else ["", " pure"]):
        single, multi = f"tcpanalyze{kind} --jobs 1", f"tcpanalyze{kind} --jobs {args.jobs}"
        if single not in results:
            continue
        print(f"-- {single.split(' --')[0]}")
        print(f"single / tshark conv,tcp (target >= 4):   {ratio(single, 'tshark conv,tcp')}")
        print(f"single / dpkt loop       (target >= 2):   {ratio(single, 'dpkt loop')}")
        print(f"--jobs {args.jobs} / single     (target >= 1.7): {ratio(multi, single)}")
        print(f"--jobs {args.jobs} / tshark conv,tcp:             "
              f"{ratio(multi, 'tshark conv,tcp')}")
        print(f"memory single / tshark conv (target <= 0.25): "
              f"{ratio(single, 'tshark conv,tcp', 'peak_mib')}")
        print(f"memory --jobs {args.jobs} / tshark conv:            "
              f"{ratio(multi, 'tshark conv,tcp', 'peak_mib')}")
    if args.json:
        Path(args.json).write_text(json.dumps({"capture": args.capture, "packets": packets,
                                               "results": results}, indent=2))


if __name__ == "__main__":
    main()
