"""Where the head's CPU goes: `sshrun exec -- true` on N loopback sshd nodes, profiled.

Starts N real OpenSSH sshd nodes on 127.0.0.2... (tests/sshd_cluster.py), then

1. runs ``sshrun exec -- true`` --repeat times unprofiled, and the minimal
   asyncssh fan-out script of bench/fanout.py beside it (the runs of the
   tools interleaved, so that a change in the machine's load falls on all of
   them), and prints each one's wall time and the head's CPU (user + system
   of that one process, from ``wait4``), total and per node, the medians;
2. runs sshrun once more in process under cProfile, every thread included
   (asyncssh builds connection options in the event loop's executor threads,
   which a plain ``python -m cProfile`` would not see), timed by each
   thread's own CPU clock (a wall clock would charge a thread for the time it
   waits for the GIL or in epoll), and prints the top entries by own and by
   cumulative time. cProfile slows Python-heavy code more than C-heavy code
   (asyncssh's crypto), so read the profile for where, and step 1 for how much.

The head's CPU includes the interpreter's start-up and imports (and, where
PYTHONDONTWRITEBYTECODE is set, compiling sshrun's modules); with two sizes
(``--nodes 8,64``) it also prints the slope, the CPU each further node costs,
which is what grows with N. The profile's run is the last size given.
``--tree DIR`` (repeatable) measures another checkout's sshrun beside this
one's in the same run, e.g. the main branch before a change.

    python bench/profile_head.py --nodes 8,64 --repeat 3 --top 30
    python bench/profile_head.py --nodes 8,64 --tree /path/to/main --no-profile
    python bench/profile_head.py --nodes 64 --save /tmp/head.prof   # then: python -m pstats
    python bench/profile_head.py --nodes 8 --repeat 1 --lines 200000   # the streaming path

Only loopback addresses are contacted. Needs root (sshd), as tests/sshd_cluster.py does.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

from fanout import MINIMAL_ASYNCSSH  # noqa: E402
from sshd_cluster import SshdCluster  # noqa: E402

MINIMAL = "minimal asyncssh"


def timed(argv: list[str], tree: Path, cwd: str) -> tuple[float, float]:
    """Wall time and CPU seconds (user + system) of one child process."""
    start = time.perf_counter()
    # cwd elsewhere: ``python -m`` puts the working directory first on sys.path.
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cwd,
                            env=dict(os.environ, PYTHONPATH=str(tree)))
    stderr = proc.stderr
    assert stderr is not None
    # Read stderr in a thread: a chatty failure must not fill the pipe and hang us.
    err: list[bytes] = []
    reader = threading.Thread(target=lambda: err.append(stderr.read()))
    reader.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    reader.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:4]} failed ({proc.returncode}): {err[0][-800:]!r}")
    return wall, usage.ru_utime + usage.ru_stime


def sshrun_args(cluster: SshdCluster, hostfile: Path, lines: int = 0) -> list[str]:
    """``lines``: each node prints that many lines of 100 bytes (bench/fanout.py's stream)."""
    command = ["true"] if not lines else [
        sys.executable, "-c", f"import sys; sys.stdout.write(('x' * 99 + chr(10)) * {lines})"]
    return ["exec", "-H", str(hostfile), "--ssh-config", str(cluster.ssh_config),
            "--python", sys.executable, "--", *command]


def minimal_argv(cluster: SshdCluster, n: int) -> list[str]:
    # "0": no prefixed streaming, the plain fan-out (bench/fanout.py's arguments).
    return [sys.executable, "-c", MINIMAL_ASYNCSSH, str(cluster.port), str(cluster.known_hosts),
            str(cluster.client_key), cluster.user, "true", "0", "-", *cluster.addresses[:n]]


# -- the profiled child ------------------------------------------------------------------

def profiled_child(out: str, argv: list[str]) -> None:
    """Run sshrun's CLI in this process with every thread profiled; stats to ``out``."""
    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()
    original_run = threading.Thread.run

    def run(self: threading.Thread) -> None:
        profile = cProfile.Profile(time.thread_time)
        with lock:
            profiles.append(profile)
        profile.enable()
        try:
            original_run(self)
        finally:
            profile.disable()

    threading.Thread.run = run  # type: ignore[method-assign]
    from sshrun import cli

    main = cProfile.Profile(time.thread_time)
    main.enable()
    try:
        code = cli.run(argv)
    finally:
        main.disable()
    stats = pstats.Stats(main)
    with lock:
        for profile in profiles:
            try:
                stats.add(profile)
            except TypeError:
                continue  # a thread still running (the console's writer): left out
    stats.dump_stats(out)
    sys.stdout.flush()
    os._exit(code)


def profile_once(args: list[str], save: Path, cwd: str) -> None:
    done = subprocess.run([sys.executable, __file__, "--child", str(save), "--", *args],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600,
                          cwd=cwd, env=dict(os.environ, PYTHONPATH=str(REPO)))
    if done.returncode != 0:
        raise SystemExit(f"profiled run failed ({done.returncode}): {done.stderr[-800:]!r}")


def show(save: Path, top: int, n: int) -> None:
    for key in ("tottime", "cumulative"):
        text = io.StringIO()
        stats = pstats.Stats(str(save), stream=text)
        stats.strip_dirs().sort_stats(key).print_stats(top)
        body = text.getvalue()
        start = body.find("   ncalls")
        print(f"\n## top {top} by {key} ({n} nodes, every thread, CPU time)\n")
        print(body[start:].rstrip() if start >= 0 else body.rstrip())


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        profiled_child(sys.argv[2], sys.argv[4:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="64", help="one count, or several: 8,64")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--tree", type=Path, action="append", default=[],
                        help="another checkout whose sshrun to measure too")
    parser.add_argument("--save", type=Path, help="keep the profile here (pstats format)")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--lines", type=int, default=0,
                        help="profile streaming: each node prints this many lines")
    args = parser.parse_args()
    sizes = [int(s) for s in args.nodes.split(",")]
    trees = [REPO, *(t.resolve() for t in args.tree)]
    tools = [(f"sshrun ({t})" if len(trees) > 1 else "sshrun exec -- true", t) for t in trees]
    cpu: dict[tuple[str, int], float] = {}
    rows: list[tuple[str, int, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp, SshdCluster(max(sizes), Path(tmp)) as cluster:
        hostfile = Path(tmp, "bench_hosts")
        for n in sizes:
            hostfile.write_text("\n".join(cluster.aliases[:n]) + "\n")
            runs: dict[str, list[tuple[float, float]]] = {}
            for _ in range(args.repeat):
                for name, tree in tools:
                    argv = [sys.executable, "-m", "sshrun", *sshrun_args(cluster, hostfile)]
                    runs.setdefault(name, []).append(timed(argv, tree, tmp))
                runs.setdefault(MINIMAL, []).append(timed(minimal_argv(cluster, n), REPO, tmp))
            for name, got in runs.items():
                wall = statistics.median(w for w, _ in got)
                cpu[name, n] = statistics.median(c for _, c in got)
                rows.append((name, n, wall, cpu[name, n]))
        print(f"| tool | nodes | wall (s) | head CPU (s) | head CPU per node (ms) |"
              f"  medians of {args.repeat}")
        print("|---|---:|---:|---:|---:|")
        for name, n, wall, seconds in rows:
            print(f"| {name} | {n} | {wall:.2f} | {seconds:.2f} | {seconds / n * 1000:.1f} |")
        if len(sizes) > 1:
            lo, hi = min(sizes), max(sizes)
            print()
            for name in [*(t for t, _ in tools), MINIMAL]:
                slope = (cpu[name, hi] - cpu[name, lo]) / (hi - lo)
                print(f"{name}: {slope * 1000:.1f} ms of head CPU per further node "
                      f"({lo} -> {hi})")
        if not args.no_profile:
            n = sizes[-1]
            hostfile.write_text("\n".join(cluster.aliases[:n]) + "\n")
            save = args.save or Path(tmp, "head.prof")
            profile_once(sshrun_args(cluster, hostfile, args.lines), save, tmp)
            show(save, args.top, n)


if __name__ == "__main__":
    main()
