"""The head's scale model: CPU, memory and file descriptors per node, measured, extrapolated.

For each N of --nodes, runs ``sshrun exec -- true`` on N real OpenSSH sshd nodes on
loopback (--per-sshd addresses served by one sshd, so that hundreds of nodes fit two
cores), --repeat times, and records for the head process alone:

cpu    user+sys seconds (``wait4``'s rusage of the head; sshrun starts no children)
rss    peak resident memory (``ru_maxrss``)
fds    the most descriptors open at once (``/proc/PID/fd`` sampled every 10 ms)

then fits each as ``a + b * N`` by least squares over the medians and prints the per-node
cost ``b``, the fixed cost ``a`` and the model's value at 1,024 and 4,096 nodes, in
Markdown. Only loopback addresses are contacted. Needs root (sshd).

    python bench/scale.py --nodes 16,64,128,256 --per-sshd 16 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from sshd_cluster import SshdCluster  # noqa: E402


@dataclass(frozen=True)
class Sample:
    cpu: float
    rss_mib: float
    fds: int


def count_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def run_once(argv: list[str]) -> Sample:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    most = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal most
        while not done.wait(0.01):
            most = max(most, count_fds(proc.pid))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert proc.stderr is not None
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    watcher.join()
    if proc.returncode != 0:
        raise SystemExit(f"sshrun exited {proc.returncode}: {stderr.decode()[-2000:]}")
    return Sample(usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, most)


def fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least squares ``a + b * n``."""
    ns = [n for n, _ in points]
    ys = [y for _, y in points]
    mean_n, mean_y = statistics.fmean(ns), statistics.fmean(ys)
    b = (sum((n - mean_n) * (y - mean_y) for n, y in points)
         / sum((n - mean_n) ** 2 for n in ns))
    return mean_y - b * mean_n, b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", default="16,64,128,256")
    parser.add_argument("--per-sshd", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    counts = sorted(int(n) for n in args.nodes.split(","))
    with tempfile.TemporaryDirectory() as tmp, SshdCluster(
            counts[-1], Path(tmp), per_sshd=args.per_sshd, ready_timeout=300) as cluster:
        medians: dict[int, Sample] = {}
        for n in counts:
            hostfile = Path(tmp) / f"hosts{n}"
            hostfile.write_text("\n".join(cluster.aliases[:n]) + "\n")
            argv = [sys.executable, "-m", "sshrun", "exec", "-H", str(hostfile),
                    "--ssh-config", str(cluster.ssh_config), "--python", sys.executable,
                    "--connect-timeout", "120", "--", "true"]
            samples = [run_once(argv) for _ in range(args.repeat)]
            medians[n] = Sample(statistics.median(s.cpu for s in samples),
                                statistics.median(s.rss_mib for s in samples),
                                int(statistics.median(s.fds for s in samples)))
    print(f"### The head, `sshrun exec -- true` (median of {args.repeat})\n")
    print("| nodes | head CPU (s) | peak RSS (MiB) | most open fds |")
    print("|---:|---:|---:|---:|")
    for n, s in medians.items():
        print(f"| {n} | {s.cpu:.2f} | {s.rss_mib:.1f} | {s.fds} |")
    print("\n### Model `a + b * nodes` (least squares over the medians)\n")
    print("| measure | per node (b) | fixed (a) | 1,024 nodes | 4,096 nodes |")
    print("|---|---:|---:|---:|---:|")
    for name, unit, get in (("head CPU", "s", lambda s: s.cpu),
                            ("peak RSS", "MiB", lambda s: s.rss_mib),
                            ("open fds", "", lambda s: float(s.fds))):
        a, b = fit([(n, get(s)) for n, s in medians.items()])
        print(f"| {name} ({unit or 'count'}) | {b:.4g} | {a:.3g} | {a + b * 1024:.4g} "
              f"| {a + b * 4096:.4g} |")


if __name__ == "__main__":
    main()
