"""Fan-out and output-streaming benchmark: sshrun beside what users would use instead.

Starts the largest N of --nodes real OpenSSH sshd nodes on 127.0.0.2... (going on
into 127.0.1.x past .254; tests/sshd_cluster.py), and for each N times, as the
median of --repeat runs, each tool in turn within one run of this script:

fan-out   one trivial command on every node:
            sshrun exec -- sh -c 'true && echo ok'
            a minimal asyncssh script (one process, asyncio.gather: connect all,
              run, close) running `python3 -c pass`: the floor for any launcher
              that starts Python on the nodes, which anything running torchrun does
            the same script running `true`: the floor for any asyncssh launcher
            pdsh -R ssh, OpenSSH's default key exchange, and with curve25519
              (what asyncssh negotiates), when pdsh is installed
          with, for each, the head's CPU per node (user+sys of the tool and its
          children, RUSAGE_CHILDREN) and the nodes' CPU per node (the sshd
          listeners' reaped children: every session, its shell and the agent)
phases    sshrun's own breakdown, from its --events file: start-up (the
          interpreter and imports, before job_started), connect, agents up,
          spec and start, run, teardown, close
stream    every node prints --lines lines of 100 bytes; the head prints them
          all, prefixed: sshrun exec, a chunked asyncssh reader that prefixes
          lines (the floor), pdsh

Output goes to /dev/null; the result is Markdown on stdout. Only loopback
addresses are contacted. Needs root (sshd) and, for pdsh, `apt-get install pdsh`.

    python bench/fanout.py --nodes 8,32,128,256 --repeat 3 --stream-nodes 8 --lines 200000
    python bench/fanout.py --nodes 256,512 --per-sshd 16 --repeat 3 --stream-nodes 0
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
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

from sshd_cluster import SshdCluster  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Sample:
    wall: float
    head_cpu: float
    node_cpu: float


@dataclass
class Row:
    test: str
    tool: str
    nodes: int
    samples: list[Sample] = field(default_factory=list)
    phases: list[dict[str, float]] = field(default_factory=list)
    megabytes: float = 0.0

    def median(self, what: str) -> float:
        return statistics.median(getattr(s, what) for s in self.samples)


def reaped_cpu(pids: list[int]) -> float:
    """CPU seconds of the children these processes have reaped (cutime + cstime)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[13]) + int(fields[14])  # cutime, cstime (fields 16, 17)
    return total / TICK


def measure(run: Callable[[], None], sshd_pids: list[int]) -> Sample:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    nodes_before = reaped_cpu(sshd_pids)
    start = time.perf_counter()
    run()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    head = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Sample(wall, head, reaped_cpu(sshd_pids) - nodes_before)


def run_quiet(argv: list[str], env: dict[str, str] | None = None) -> None:
    result = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env, timeout=900)
    if result.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed ({result.returncode}): {result.stderr[-500:]!r}")


MINIMAL_ASYNCSSH = """
import asyncio, sys, asyncssh
port, known, key, user, command, prefix, cipher, *addrs = sys.argv[1:]
ciphers = {} if cipher == "-" else {"encryption_algs": [cipher]}

async def one(addr):
    async with asyncssh.connect(addr, int(port), known_hosts=known, client_keys=[key],
                                username=user, agent_path=None, **ciphers) as conn:
        if prefix == "0":
            await conn.run(command, check=True)
            return
        # The floor for streaming: read chunks, prefix whole lines, write.
        async with conn.create_process(command, encoding=None) as proc:
            tag, rest, out = (addr + " | ").encode(), b"", sys.stdout.buffer
            while chunk := await proc.stdout.read(65536):
                *lines, rest = (rest + chunk).split(b"\\n")
                if lines:
                    out.write(b"".join(tag + line + b"\\n" for line in lines))
            await proc.wait(check=True)

async def main():
    await asyncio.gather(*(one(a) for a in addrs))

asyncio.run(main())
"""


def minimal_asyncssh(cluster: SshdCluster, n: int, command: str, prefix: bool = False,
                     cipher: str = "-") -> None:
    """A separate process, like sshrun: interpreter start-up and imports included.
    ``cipher``: asyncssh's default order ("-"), or only this one."""
    run_quiet([sys.executable, "-c", MINIMAL_ASYNCSSH, str(cluster.port),
               str(cluster.known_hosts), str(cluster.client_key), cluster.user, command,
               "1" if prefix else "0", cipher, *cluster.addresses[:n]])


def pdsh_argv(cluster: SshdCluster, n: int, command: str,
              kex: str | None = None) -> tuple[list[str], dict[str, str]]:
    hosts = ",".join(cluster.addresses[:n])
    args = (f"-p {cluster.port} -i {cluster.client_key} "
            f"-o UserKnownHostsFile={cluster.known_hosts} "
            "-o StrictHostKeyChecking=yes -o BatchMode=yes")
    if kex:
        args += f" -o KexAlgorithms={kex}"
    env = dict(os.environ, PDSH_RCMD_TYPE="ssh", PDSH_SSH_ARGS_APPEND=args)
    return ["pdsh", "-f", "1024", "-w", hosts, command], env


def phases(events_path: Path, wall: float) -> dict[str, float]:
    """sshrun's phases from its event file: each ends when the last node is through it.

    exec has no ranks, so no ``rank_exited``: its run ends with each node's
    sweep, so "run" is "-" and "teardown" holds the run too."""
    events = [json.loads(line) for line in events_path.read_text().splitlines()]

    def last(name: str) -> float | None:
        times = [e["time"] for e in events if e["event"] == name]
        return max(times) if times else None

    marks = [("connect", last("node_connected")), ("agents up", last("agent_up")),
             ("spec and start", last("ranks_started")), ("run", last("rank_exited")),
             ("teardown", last("node_swept")), ("close", last("job_finished"))]
    started, finished = last("job_started"), last("job_finished")
    assert started is not None and finished is not None
    result = {"start-up": wall - (finished - started)}
    previous = started
    for name, at in marks:
        if at is None:
            result[name] = float("nan")
            continue
        result[name] = at - previous
        previous = at
    return result


def fan_out(cluster: SshdCluster, n: int, repeat: int, tmp: Path, have_pdsh: bool) -> list[Row]:
    hostfile = tmp / f"hosts{n}"
    hostfile.write_text("\n".join(cluster.aliases[:n]) + "\n")
    events = tmp / f"events{n}.jsonl"
    sshrun = [sys.executable, "-m", "sshrun", "exec", "-H", str(hostfile),
              "--ssh-config", str(cluster.ssh_config), "--python", sys.executable,
              "--max-handshakes", "1024", "--events", str(events),
              # asyncssh's own login timeout, as the minimal script has: every
              # handshake at once on a busy machine takes longer than 15 s.
              "--connect-timeout", "120",
              "--", "sh", "-c", "true && echo ok"]
    py_pass = f"{sys.executable} -c pass"
    tools: list[tuple[str, Callable[[], None]]] = [
        ("sshrun exec", lambda: run_quiet(sshrun)),
        ("minimal asyncssh + python -c pass", lambda: minimal_asyncssh(cluster, n, py_pass)),
        ("minimal asyncssh + true", lambda: minimal_asyncssh(cluster, n, "true")),
    ]
    if have_pdsh:
        plain, env = pdsh_argv(cluster, n, "true")
        curve, curve_env = pdsh_argv(cluster, n, "true", kex="curve25519-sha256")
        tools.append(("pdsh -R ssh", lambda: run_quiet(plain, env)))
        tools.append(("pdsh -R ssh, curve25519", lambda: run_quiet(curve, curve_env)))
    rows = [Row("fan-out", name, n) for name, _ in tools]
    pids = sorted(set(cluster.pids))  # one sshd may serve several nodes
    # Interleaved, so that a slow moment of the machine hits every tool alike.
    for _ in range(repeat):
        for row, (_, run) in zip(rows, tools, strict=True):
            sample = measure(run, pids)
            row.samples.append(sample)
            if row.tool == "sshrun exec":
                row.phases.append(phases(events, sample.wall))
    return rows


def stream(cluster: SshdCluster, k: int, lines: int, repeat: int, tmp: Path,
           have_pdsh: bool) -> list[Row]:
    hostfile = tmp / "stream_hosts"
    hostfile.write_text("\n".join(cluster.aliases[:k]) + "\n")
    script = f"import sys; sys.stdout.write(('x' * 99 + chr(10)) * {lines})"
    remote = f'{sys.executable} -c "{script}"'
    sshrun = [sys.executable, "-m", "sshrun", "exec", "-H", str(hostfile),
              "--ssh-config", str(cluster.ssh_config), "--python", sys.executable,
              "--", sys.executable, "-c", script]
    tools: list[tuple[str, Callable[[], None]]] = [
        ("sshrun exec", lambda: run_quiet(sshrun)),
        ("chunked asyncssh reader", lambda: minimal_asyncssh(cluster, k, remote, prefix=True)),
        # sshrun offers AES-GCM first (sshrun/ssh_options.py): the reader with the same.
        ("chunked asyncssh reader, aes128-gcm",
         lambda: minimal_asyncssh(cluster, k, remote, prefix=True,
                                  cipher="aes128-gcm@openssh.com")),
    ]
    if have_pdsh:
        argv, env = pdsh_argv(cluster, k, remote)
        tools.append(("pdsh -R ssh", lambda: run_quiet(argv, env)))
    rows = [Row("stream", name, k, megabytes=k * lines * 100 / 1e6) for name, _ in tools]
    for _ in range(repeat):
        for row, (_, run) in zip(rows, tools, strict=True):
            row.samples.append(measure(run, sorted(set(cluster.pids))))
    return rows


def report(fan: list[Row], streams: list[Row], repeat: int) -> None:
    if fan:
        report_fan_out(fan, repeat)
    if streams:
        report_stream(streams, repeat)


def report_fan_out(fan: list[Row], repeat: int) -> None:
    print(f"### Fan-out (median of {repeat})\n")
    print("| nodes | tool | wall (s) | ÷ asyncssh + python | head CPU / node (ms) "
          "| node CPU / node (ms) |")
    print("|---:|---|---:|---:|---:|---:|")
    for n in sorted({r.nodes for r in fan}):
        rows = [r for r in fan if r.nodes == n]
        floor = next(r for r in rows if r.tool == "minimal asyncssh + python -c pass")
        for r in rows:
            print(f"| {n} | {r.tool} | {r.median('wall'):.2f} | "
                  f"{r.median('wall') / floor.median('wall'):.2f}x | "
                  f"{1000 * r.median('head_cpu') / n:.1f} | "
                  f"{1000 * r.median('node_cpu') / n:.1f} |")
    report_head_model(fan)
    print(f"\n### sshrun's phases (median of {repeat}, seconds)\n")
    names = list(next(r for r in fan if r.phases).phases[0])
    print("| nodes | " + " | ".join(names) + " |")
    print("|---:|" + "---:|" * len(names))
    for r in fan:
        if r.phases:
            cells = [statistics.median(p[name] for p in r.phases) for name in names]
            print(f"| {r.nodes} | " + " | ".join("-" if c != c else f"{c:.2f}" for c in cells)
                  + " |")


def report_head_model(fan: list[Row]) -> None:
    """The head's CPU as ``a + b * nodes`` (least squares over the medians): ``a`` is
    what a run costs whatever its size (interpreter, imports, settings), ``b`` each node."""
    counts = sorted({r.nodes for r in fan})
    if len(counts) < 2:
        return
    print("\n### The head's CPU: fixed and per node (least squares over the medians)\n")
    print("| tool | fixed (ms) | per node (ms) | per node ÷ asyncssh + python |")
    print("|---|---:|---:|---:|")
    fits: dict[str, tuple[float, float]] = {}
    for tool in dict.fromkeys(r.tool for r in fan):
        points = [(r.nodes, 1000 * r.median("head_cpu")) for r in fan if r.tool == tool]
        fits[tool] = statistics.linear_regression(*zip(*points, strict=True))[::-1]
    floor = fits["minimal asyncssh + python -c pass"][1]
    for tool, (fixed, per_node) in fits.items():
        print(f"| {tool} | {fixed:.0f} | {per_node:.2f} | {per_node / floor:.2f}x |")


def report_stream(streams: list[Row], repeat: int) -> None:
    floor = next(r for r in streams if r.tool == "chunked asyncssh reader")
    print(f"\n### Streaming, {streams[0].nodes} nodes (median of {repeat})\n")
    print("| tool | wall (s) | MB/s | ÷ chunked asyncssh (throughput) | head CPU (s) "
          "| nodes' CPU (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in streams:
        print(f"| {r.tool} | {r.median('wall'):.2f} | "
              f"{r.megabytes / r.median('wall'):.0f} | "
              f"{floor.median('wall') / r.median('wall'):.2f}x | "
              f"{r.median('head_cpu'):.2f} | {r.median('node_cpu'):.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="8,32",
                        help="node counts, comma separated; empty: no fan-out test")
    parser.add_argument("--stream-nodes", type=int, default=8, help="0: no stream test")
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--per-sshd", type=int, default=1,
                        help="nodes served by one sshd (1-16): 512 sshd processes crowd 2 cores")
    args = parser.parse_args()
    counts = sorted(int(n) for n in args.nodes.split(",") if n.strip())
    have_pdsh = shutil.which("pdsh") is not None
    # Each node's sshd and its sessions hold descriptors; so does the head per node.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    size = max([*counts, args.stream_nodes, 1])
    # Hundreds of sshd addresses on a busy machine take longer than a test's 20 s.
    with tempfile.TemporaryDirectory() as tmp, SshdCluster(
            size, Path(tmp), per_sshd=args.per_sshd, ready_timeout=300) as cluster:
        fan = [row for n in counts
               for row in fan_out(cluster, n, args.repeat, Path(tmp), have_pdsh)]
        streams = (stream(cluster, args.stream_nodes, args.lines, args.repeat, Path(tmp),
                          have_pdsh) if args.stream_nodes else [])
    if not have_pdsh:
        print("(pdsh is not installed: apt-get install pdsh)\n")
    report(fan, streams, args.repeat)


if __name__ == "__main__":
    main()
