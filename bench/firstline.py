"""A torchrun job's first line, and a failed rank's clean-up: sshrun beside plain torchrun.

Starts 2 real OpenSSH sshd nodes on 127.0.0.2 and 127.0.0.3 (tests/sshd_cluster.py)
and measures, as medians of --repeat runs, the two cases interleaved run by run
so that a slow moment of the (shared, loaded) machine falls on both alike:

first line  a 2-node torchrun job (one rank per node) whose script prints one
            line at import and exits; the time from starting the launcher to
            that line on the head's stdout:
              sshrun run -H hosts --nproc-per-node 1 SCRIPT
              plain torchrun over ssh, both nodes at once (what a user does by
                hand): ssh nodeK 'torchrun --nnodes 2 --node-rank K
                --master-addr 127.0.0.2 --master-port P ... SCRIPT'
            with sshrun's phases from its --events file, each measured from
            the launcher's start: job_started (the interpreter and imports),
            the last node_connected, the last agent_up, the last ranks_started
            (the spec out and torchrun started), and the first line.
failure     a 2-node job, 2 ranks per node; once every rank is running (each
            touches a file; the failing one waits for all four), global rank 3
            writes time.time() to a file and exits 1; the others sleep. From
            that timestamp to: sshrun's job_finished event, the moment no
            process is left below either node's sshd listener (polled every
            5 ms: the sessions, the agents, torchrun and every rank; on loopback
            nothing else runs there), and sshrun's own exit. The ranks die of
            the first SIGTERM, so the grace period the job needs is ~0 s.

Each tree's sshrun is byte-compiled first (``compileall``), as an installed
package is: where PYTHONDONTWRITEBYTECODE is set (it is on this machine kind)
a fresh checkout would otherwise compile its ~55 modules on every start
(~0.2 s), which is not what a user's installed sshrun pays.

The result is Markdown on stdout. Only loopback addresses are contacted. Needs
root (sshd), as tests/sshd_cluster.py does.

    python bench/firstline.py --repeat 7
    git -C /path/to/main archive HEAD sshrun | tar -x -C /tmp/before
    python bench/firstline.py --repeat 7 --tree /tmp/before   # another checkout beside
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import selectors
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from sshd_cluster import SshdCluster, descendants  # noqa: E402

MARK = "sshrun-bench-first-line"
FIRST_LINE = f"print({MARK!r}, flush=True)\n"
# Rank 3 fails once all four ranks run; the others sleep until they are stopped.
FAILING = """\
import os, sys, time
from pathlib import Path
here = Path(sys.argv[1])
(here / f"running-{os.environ['RANK']}").touch()
if os.environ["RANK"] != "3":
    time.sleep(600)
    sys.exit(0)
deadline = time.monotonic() + 120
while len(list(here.glob("running-*"))) < 4:
    if time.monotonic() > deadline:
        sys.exit(2)
    time.sleep(0.005)
(here / "failed_at.tmp").write_text(repr(time.time()))
os.replace(here / "failed_at.tmp", here / "failed_at")
sys.exit(1)
"""
JOB_TIMEOUT_S = 300.0


@dataclass
class Series:
    name: str
    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, what: str, value: float) -> None:
        self.values.setdefault(what, []).append(value)

    def median(self, what: str) -> float:
        got = self.values.get(what, [])
        return statistics.median(got) if got else float("nan")


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        port: int = s.getsockname()[1]
        return port


def read_until(procs: list[subprocess.Popen[bytes]], mark: bytes, deadline: float) -> float:
    """Reads every process's stdout until a line with ``mark``; returns when it came."""
    sel = selectors.DefaultSelector()
    rests: dict[int, bytes] = {}
    for p in procs:
        assert p.stdout is not None
        sel.register(p.stdout, selectors.EVENT_READ)
        rests[p.stdout.fileno()] = b""
    try:
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                raise SystemExit(f"no first line within {JOB_TIMEOUT_S} s")
            for key, _ in sel.select(left):
                fd = key.fileobj.fileno()  # type: ignore[union-attr]
                chunk = os.read(fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                rests[fd] += chunk
                if mark in rests[fd]:
                    return time.perf_counter()
                rests[fd] = rests[fd][-len(mark):]
    finally:
        sel.close()
    raise SystemExit("the job ended without its first line")


def finish(procs: list[subprocess.Popen[bytes]], deadline: float) -> list[int]:
    codes = []
    for p in procs:
        assert p.stdout is not None
        while p.stdout.read(65536):  # drain, so that nothing blocks on a full pipe
            pass
        codes.append(p.wait(max(1.0, deadline - time.monotonic())))
    return codes


def sshrun_argv(tree: Path, cluster: SshdCluster, events: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "sshrun", "run", "-H", str(cluster.hostfile),
            "--ssh-config", str(cluster.ssh_config), "--python", sys.executable,
            "--events", str(events), *args]


def env_for(tree: Path) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(tree))


def events_of(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def last(events: list[dict[str, object]], name: str) -> float:
    times = [float(e["time"]) for e in events if e["event"] == name]  # type: ignore[arg-type]
    return max(times) if times else float("nan")


def first_line_sshrun(tree: Path, cluster: SshdCluster, tmp: Path, script: Path,
                      series: Series) -> None:
    events = tmp / "events.jsonl"
    events.unlink(missing_ok=True)
    argv = sshrun_argv(tree, cluster, events, "--nproc-per-node", "1", str(script))
    wall0, start = time.time(), time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env=env_for(tree), cwd=tmp)
    deadline = time.monotonic() + JOB_TIMEOUT_S
    at = read_until([proc], MARK.encode(), deadline)
    codes = finish([proc], deadline)
    if codes != [0]:
        raise SystemExit(f"sshrun exited {codes[0]}")
    series.add("first line", at - start)
    ev = events_of(events)
    for label, name in [("job_started", "job_started"), ("connected", "node_connected"),
                        ("agents up", "agent_up"), ("ranks started", "ranks_started")]:
        series.add(label, last(ev, name) - wall0)


def first_line_plain(cluster: SshdCluster, tmp: Path, script: Path, series: Series) -> None:
    port = free_port(cluster.address(0))
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    procs = []
    start = time.perf_counter()
    for k in range(2):
        remote = (f"cd {shlex.quote(str(tmp))} && PYTHONUNBUFFERED=1 {shlex.quote(torchrun)} "
                  f"--nnodes 2 --nproc-per-node 1 --node-rank {k} "
                  f"--master-addr {cluster.address(0)} --master-port {port} "
                  f"{shlex.quote(str(script))}")
        procs.append(subprocess.Popen(cluster.ssh_command(k, remote), stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL))
    deadline = time.monotonic() + JOB_TIMEOUT_S
    at = read_until(procs, MARK.encode(), deadline)
    codes = finish(procs, deadline)
    if codes != [0, 0]:
        raise SystemExit(f"plain torchrun over ssh exited {codes}")
    series.add("first line", at - start)


def left_on_nodes(cluster: SshdCluster) -> int:
    return sum(len(descendants(pid)) for pid in cluster.pids)


def failure(tree: Path, cluster: SshdCluster, tmp: Path, script: Path, series: Series) -> None:
    run_dir = Path(tempfile.mkdtemp(dir=tmp))
    events = run_dir / "events.jsonl"
    argv = sshrun_argv(tree, cluster, events, "--nproc-per-node", "2", str(script),
                       str(run_dir))
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env_for(tree), cwd=tmp)
    deadline = time.monotonic() + JOB_TIMEOUT_S
    marker = run_dir / "failed_at"
    clean_at = exit_at = None
    # Polled: neither the end of the processes on the nodes nor sshrun's exit has an
    # event this process could wait on, and 5 ms is well below what is measured.
    while clean_at is None or exit_at is None:
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("the failing job did not end")
        now = time.time()
        if exit_at is None and proc.poll() is not None:
            exit_at = now
        if marker.exists() and clean_at is None and left_on_nodes(cluster) == 0:
            clean_at = now
        time.sleep(0.005)
    if proc.returncode != 1:
        raise SystemExit(f"sshrun exited {proc.returncode}, not the failing rank's 1")
    failed_at = float(marker.read_text())
    finished = last(events_of(events), "job_finished")
    series.add("job_finished", finished - failed_at)
    series.add("nodes clean", clean_at - failed_at)
    series.add("sshrun exited", exit_at - failed_at)


def fmt(x: float) -> str:
    return "-" if x != x else f"{x:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--tree", action="append", type=Path, default=[],
                        help="another checkout whose sshrun runs beside this one's")
    parser.add_argument("--no-failure", action="store_true", help="only the first line")
    parser.add_argument("--raw", action="store_true", help="every sample too, on stderr")
    args = parser.parse_args()
    trees = [REPO, *args.tree]
    for tree in trees:
        if not compileall.compile_dir(tree / "sshrun", quiet=1):
            raise SystemExit(f"{tree / 'sshrun'} does not compile")
    with tempfile.TemporaryDirectory() as tmp_name, \
            SshdCluster(2, Path(tmp_name) / "cluster") as cluster:
        tmp = Path(tmp_name)
        first_script, failing_script = tmp / "first_line.py", tmp / "failing.py"
        first_script.write_text(FIRST_LINE)
        failing_script.write_text(FAILING)
        plain = Series("plain torchrun over ssh")
        firsts = {t: Series(f"sshrun ({t})") for t in trees}
        fails = {t: Series(f"sshrun ({t})") for t in trees}
        cases: list[Callable[[], None]] = [lambda: first_line_plain(cluster, tmp, first_script,
                                                                    plain)]
        for t in trees:
            cases.append(lambda t=t: first_line_sshrun(t, cluster, tmp, first_script,  # type: ignore[misc]
                                                       firsts[t]))
            if not args.no_failure:
                cases.append(lambda t=t: failure(t, cluster, tmp, failing_script,  # type: ignore[misc]
                                                 fails[t]))
        load_before = os.getloadavg()
        for _ in range(args.repeat):
            for case in cases:
                case()
        load_after = os.getloadavg()
    if args.raw:
        for s in [plain, *firsts.values(), *fails.values()]:
            for what, got in s.values.items():
                print(f"{s.name} {what}: " + " ".join(f"{v:.3f}" for v in got), file=sys.stderr)
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)\n")
    print(f"### First line, 2 nodes x 1 rank (median of {args.repeat}, seconds)\n")
    cols = ["job_started", "connected", "agents up", "ranks started", "first line"]
    print("| launcher | " + " | ".join(cols) + " | fastest | minus plain, paired |")
    print("|---|" + "---:|" * (len(cols) + 2))
    for s in [plain, *firsts.values()]:
        # Each round ran plain and sshrun back to back: the median of the rounds'
        # differences cancels most of a loaded machine's slow moments.
        paired = [a - b for a, b in zip(s.values["first line"], plain.values["first line"],
                                        strict=True)]
        print(f"| {s.name} | " + " | ".join(fmt(s.median(c)) for c in cols)
              + f" | {min(s.values['first line']):.3f} | {statistics.median(paired):+.3f} |")
    if not args.no_failure:
        print(f"\n### Failure to clean, 2 nodes x 2 ranks (median of {args.repeat}, "
              "seconds after the failing rank's exit)\n")
        cols = ["job_finished", "nodes clean", "sshrun exited"]
        print("| launcher | " + " | ".join(cols) + " | worst nodes clean |")
        print("|---|" + "---:|" * (len(cols) + 1))
        for s in fails.values():
            print(f"| {s.name} | " + " | ".join(fmt(s.median(c)) for c in cols)
                  + f" | {fmt(max(s.values['nodes clean']))} |")


if __name__ == "__main__":
    main()
