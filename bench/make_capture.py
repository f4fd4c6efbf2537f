"""Make the bench capture: real kernel traffic between network namespaces, captured on
the router's client-side interface.

    python3 bench/make_capture.py [--out bench/data/bench.pcap] [--connections 40000]
                                  [--bulk 6 --bulk-mbytes 300]

Traffic (lab/netns.Lab, namespaces tca-bench-*, addresses 10.81.0.0/16):
  * `--connections` short request/response connections over 8 server ports, 200 at a
    time, mixed reply sizes (0 B .. 60 kB); every 500th is reset by the server, every
    2000th leaves the server in CLOSE_WAIT, every 300th dribbles its reply in 100-byte
    segments, every 1000th goes to a closed port (RST) and every 3000th to a port whose
    SYNs the router drops (SYN retransmissions, no answer);
  * `--bulk` bulk downloads of `--bulk-mbytes` MiB on two parallel streams, with 0.2 %
    random loss in the router (FORWARD, after the capture point on the server side, so the
    capture shows holes and retransmissions), one of them a slow reader (zero windows).
The capture is tcpdump -s 128 (headers only, as most long captures are) in pcap format.
Everything is bounded: the traffic programs stop after --lifetime seconds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lab.netns import Capture, Lab  # noqa: E402

TRAFFIC = str(ROOT / "bench" / "traffic.py")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "bench" / "data" / "bench.pcap"))
    p.add_argument("--connections", type=int, default=40000)
    p.add_argument("--bulk", type=int, default=6)
    p.add_argument("--bulk-mbytes", type=int, default=300)
    p.add_argument("--lifetime", type=float, default=240.0)
    args = p.parse_args()
    # without ethtool the veths keep GRO/TSO and tcpdump sees 64 KB super-segments: a
    # quarter of the packets and nothing like a real NIC's capture
    if shutil.which("ethtool") is None:
        sys.exit("make_capture.py: ethtool is needed to turn veth offloads off "
                 "(apt-get install ethtool)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with Lab(prefix="tca-bench-", net4="10.81", net6="fd81", replace_stale=True) as lab:
        server = lab.addr("server")
        # loss on the bulk port's data, in the router after the capture point
        lab.iptables("router", ["-A", "FORWARD", "-p", "tcp", "--sport", "9100", "-m",
                                "statistic", "--mode", "random", "--probability", "0.002",
                                "-j", "DROP"])
        lab.iptables("router", ["-A", "FORWARD", "-p", "tcp", "--dport", "9050", "-j", "DROP"])
        for role in ("client", "server"):
            lab.sysctl(role, {"net.ipv4.ip_local_port_range": "10000 65000",
                              "net.ipv4.tcp_tw_reuse": "1",
                              "net.core.somaxconn": "4096"})
        # tcpdump's default 2 MiB kernel buffer drops packets at bulk rates: 256 MiB
        argv = ["tcpdump", "-Z", "root", "-n", "-i", "c0", "-s", "128", "-B", "262144",
                "-w", str(out.with_suffix(".tmp"))]
        cap = Capture(lab.exec_argv("router", argv), str(out.with_suffix(".tmp")),
                      lab.ns("router"), "c0")
        lab._captures.append(cap)  # stopped by the lab on any exit
        srv = lab.spawn("server", [sys.executable, "-u", TRAFFIC, "serve", "--addr", server,
                                   "--lifetime", str(args.lifetime)], "serve")
        srv.expect("READY", timeout=10)
        per = max(args.bulk // 2, 1)
        bulks = [lab.spawn("client", [sys.executable, "-u", TRAFFIC, "bulk", "--addr", server,
                                      "--count", str(per), "--mbytes", str(args.bulk_mbytes),
                                      "--lifetime", str(args.lifetime - 20),
                                      *(["--slow-reader"] if k == 1 else [])], f"bulk{k}")
                 for k in range(2)]
        cli = lab.spawn("client", [sys.executable, "-u", TRAFFIC, "clients", "--addr", server,
                                   "--count", str(args.connections), "--closed-port", "9999",
                                   "--blackhole-port", "9050",
                                   "--lifetime", str(args.lifetime - 20)], "clients")
        print(cli.expect("DONE", timeout=args.lifetime), flush=True)
        for b in bulks:
            b.expect("DONE", timeout=args.lifetime)
        time.sleep(1.0)
        cap.stop(timeout=30)
        print(cap.stderr.strip(), flush=True)
    os.replace(out.with_suffix(".tmp"), out)
    info = subprocess.run(["capinfos", "-c", "-s", str(out)], capture_output=True, text=True)
    print(info.stdout.strip())
    print(f"made {out} in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
