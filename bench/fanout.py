"""Fan-out and output-streaming benchmark: sshrun beside what users would use instead.

Starts N real OpenSSH sshd nodes on 127.0.0.2... (tests/sshd_cluster.py) and times,
best of --repeat runs each:

fan-out   one trivial command on every node:
            sshrun exec -- true
            a minimal asyncssh script (connect all, run, close): the floor for any
              asyncssh-based launcher; also with `python -c pass` as the command, the
              floor for any launcher that starts Python on the nodes
            pdsh -R ssh (when installed), OpenSSH's default key exchange
stream    every node prints --lines lines of 100 bytes; the head must print them
          all, prefixed:
            sshrun exec -- python3 -c ...
            pdsh -R ssh (when installed)

Output goes to /dev/null; the result is a Markdown table on stdout. Only loopback
addresses are contacted. Needs root (sshd) and, for pdsh, `apt-get install pdsh`.

    python bench/fanout.py --nodes 32 --lines 200000 --stream-nodes 8
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from sshd_cluster import SshdCluster  # noqa: E402


def best_of(repeat: int, run: Callable[[], None]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def run_quiet(argv: list[str], env: dict[str, str] | None = None) -> None:
    result = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=env, timeout=600)
    if result.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed ({result.returncode}): {result.stderr[-500:]!r}")


MINIMAL_ASYNCSSH = """
import asyncio, sys, asyncssh
port, known, key, user, command, *addrs = sys.argv[1:]

async def one(addr):
    async with asyncssh.connect(addr, int(port), known_hosts=known, client_keys=[key],
                                username=user, agent_path=None) as conn:
        await conn.run(command, check=True)

async def main():
    await asyncio.gather(*(one(a) for a in addrs))

asyncio.run(main())
"""


def minimal_asyncssh(cluster: SshdCluster, n: int, command: str = "true") -> None:
    """A separate process, like sshrun: interpreter start-up and imports included."""
    run_quiet([sys.executable, "-c", MINIMAL_ASYNCSSH, str(cluster.port),
               str(cluster.known_hosts), str(cluster.client_key), cluster.user, command,
               *cluster.addresses[:n]])


def pdsh_argv(cluster: SshdCluster, n: int, command: str) -> tuple[list[str], dict[str, str]]:
    hosts = ",".join(cluster.addresses[:n])
    env = dict(os.environ, PDSH_RCMD_TYPE="ssh", PDSH_SSH_ARGS_APPEND=(
        f"-p {cluster.port} -i {cluster.client_key} -o UserKnownHostsFile={cluster.known_hosts} "
        "-o StrictHostKeyChecking=yes -o BatchMode=yes"
    ))
    return ["pdsh", "-f", "256", "-w", hosts, command], env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=32)
    parser.add_argument("--stream-nodes", type=int, default=8)
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    have_pdsh = shutil.which("pdsh") is not None
    rows: list[tuple[str, str, float, str]] = []
    with tempfile.TemporaryDirectory() as tmp, SshdCluster(args.nodes, Path(tmp)) as cluster:
        hostfile = Path(tmp, "bench_hosts")
        hostfile.write_text("\n".join(cluster.aliases) + "\n")
        base = [sys.executable, "-m", "sshrun", "exec", "-H", str(hostfile),
                "--ssh-config", str(cluster.ssh_config), "--python", sys.executable]
        n = args.nodes
        rows.append(("fan-out", f"sshrun exec, {n} nodes",
                     best_of(args.repeat, lambda: run_quiet([*base, "--", "true"])), ""))
        rows.append(("fan-out", f"minimal asyncssh, {n} nodes",
                     best_of(args.repeat, lambda: minimal_asyncssh(cluster, n)), ""))
        # sshrun starts a Python agent on every node; so does anything that runs
        # torchrun there. On loopback all those interpreters share this machine's
        # cores, which a real cluster would not.
        py_pass = f"{sys.executable} -c pass"
        rows.append(("fan-out", f"minimal asyncssh + `python -c pass`, {n} nodes",
                     best_of(args.repeat, lambda: minimal_asyncssh(cluster, n, py_pass)), ""))
        if have_pdsh:
            argv, env = pdsh_argv(cluster, n, "true")
            rows.append(("fan-out", f"pdsh -R ssh, {n} nodes",
                         best_of(args.repeat, lambda: run_quiet(argv, env)), ""))
        k = args.stream_nodes
        hostfile.write_text("\n".join(cluster.aliases[:k]) + "\n")
        size_mb = k * args.lines * 100 / 1e6
        script = f"import sys; sys.stdout.write(('x' * 99 + chr(10)) * {args.lines})"
        t = best_of(args.repeat, lambda: run_quiet([*base, "--", sys.executable, "-c", script]))
        rows.append(("stream", f"sshrun exec, {k} nodes x {args.lines} lines", t,
                     f"{size_mb / t:.0f} MB/s"))
        if have_pdsh:
            remote = f'{sys.executable} -c "{script}"'
            argv, env = pdsh_argv(cluster, k, remote)
            t = best_of(args.repeat, lambda: run_quiet(argv, env))
            rows.append(("stream", f"pdsh -R ssh, {k} nodes x {args.lines} lines", t,
                         f"{size_mb / t:.0f} MB/s"))
    print(f"| test | tool | best of {args.repeat} (s) | throughput |")
    print("|---|---|---|---|")
    for test, tool, seconds, extra in rows:
        print(f"| {test} | {tool} | {seconds:.2f} | {extra} |")


if __name__ == "__main__":
    main()
