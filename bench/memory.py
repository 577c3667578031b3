"""The head's memory when 64 ranks flood a reader that stalls, and proof that nothing is lost.

Starts --nodes real OpenSSH sshd nodes on 127.0.0.2... (tests/sshd_cluster.py) and runs
``sshrun --nproc-per-node K tests/workers/flood.py`` on them (run mode: torchrun starts K
ranks per node), each rank writing --lines lines of about 100 bytes as fast as it can,
with sshrun's stdout piped into tests/workers/stalling_reader.py, which waits for the first
output, reads nothing for --stall seconds, then drains and checks every line
(tests/flood.py). Each run reports the head's resident memory: the peak (VmHWM),
the largest and last VmRSS sample during the stall (sampled every 20 ms), and the same
job with a reader that never stalls beside it; whether every line came intact and in
order (count and checksum per rank), and how many ranks were still held back, blocked on
their writes, when the stall ended.

The bound it checks, and states: the head's peak RSS stays under --bound MiB, by default
tests/test_flood_memory.py's 64 MiB plus 6 MiB a node (the console's backlog stops at
4 MiB, sshrun.console; beyond it the head holds per node about two channel windows and a
chunk, sshrun.bounded_process).

    python bench/memory.py --nodes 8 --nproc-per-node 8 --lines 20000 --stall 10 --repeat 2

Only loopback addresses are contacted. Needs root (sshd), as tests/sshd_cluster.py does.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from flood import FloodResult, flood  # noqa: E402
from sshd_cluster import SshdCluster  # noqa: E402

MIB = 1 << 20


def check(result: FloodResult, ranks: int, lines: int) -> str:
    """'' when every line came; else what went wrong."""
    if result.code != 0:
        return f"sshrun exited {result.code}: {result.stderr[-500:]}"
    if result.lines != [lines] * ranks or result.checksum != result.expected or result.bad:
        short = sum(lines - n for n in result.lines)
        return f"{short} lines missing, bad lines {result.bad[:2]}"
    return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--nproc-per-node", type=int, default=8)
    parser.add_argument("--lines", type=int, default=20_000, help="per rank")
    parser.add_argument("--stall", type=float, default=10.0, help="seconds")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--bound", type=float, default=None,
                        help="MiB: the head's peak RSS (tests/test_flood_memory.py asserts it)")
    args = parser.parse_args()
    ranks = args.nodes * args.nproc_per_node
    if args.bound is None:
        args.bound = 64.0 + 6.0 * args.nodes
    rows: dict[str, list[FloodResult]] = {"stalled": [], "not stalled": []}
    with tempfile.TemporaryDirectory() as tmp, SshdCluster(args.nodes, Path(tmp)) as cluster:
        base = ["-H", str(cluster.hostfile), "--ssh-config", str(cluster.ssh_config),
                "--python", sys.executable, "--nproc-per-node", str(args.nproc_per_node)]
        for k in range(args.repeat):
            # Interleaved, so that a slow moment of the machine hits both alike.
            for name, stall in (("stalled", args.stall), ("not stalled", 0.0)):
                run_dir = Path(tmp, f"{name.replace(' ', '-')}{k}")
                run_dir.mkdir()
                result = flood(base, ranks, args.lines, run_dir, stall)
                problem = check(result, ranks, args.lines)
                if problem:
                    raise SystemExit(f"{name} run {k}: {problem}")
                rows[name].append(result)
    megabytes = ranks * args.lines * (len(f"{ranks} {args.lines} ") + 81) / 1e6
    load = os.getloadavg()
    print(f"### Head memory, {ranks} ranks ({args.nodes} nodes x {args.nproc_per_node}) "
          f"flooding {megabytes:.0f} MB, median of {args.repeat}\n")
    print(f"load average at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}\n")
    print("| reader | peak RSS (MiB) | largest RSS in the stall (MiB) | last RSS in the stall "
          "(MiB) | ranks held back at the stall's end | lines lost | wall (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, results in rows.items():
        peak = statistics.median(r.peak_rss for r in results) / MIB
        top = statistics.median(max(r.stall_rss, default=0) for r in results) / MIB
        last = statistics.median(r.stall_rss[-1] if r.stall_rss else 0 for r in results) / MIB
        held = statistics.median(r.held for r in results)
        wall = statistics.median(r.wall for r in results)
        stall = f"{name}, {args.stall:.0f} s" if name == "stalled" else name
        cells = (f"{top:.0f}", f"{last:.0f}", f"{held:.0f} of {ranks}") \
            if name == "stalled" else ("-", "-", "-")
        print(f"| {stall} | {peak:.0f} | " + " | ".join(cells) + f" | 0 | {wall:.1f} |")
    worst = max(r.peak_rss for results in rows.values() for r in results) / MIB
    verdict = "within" if worst < args.bound else "OVER"
    print(f"\nWorst peak {worst:.0f} MiB: {verdict} the bound of {args.bound:.0f} MiB; every "
          f"line of every run arrived intact and in order (count and checksum per rank).")


if __name__ == "__main__":
    main()
