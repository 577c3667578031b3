"""Code sync benchmark: ``sshrun --sync`` beside ``rsync -a`` over ssh to each node in parallel.

Starts --nodes real OpenSSH sshd nodes on 127.0.0.2... (tests/sshd_cluster.py),
writes a tree of --files files (--size bytes in all, random content, in
directories of 100), and in one run of this script times, for each tool, the
first sync to every node and the sync after editing one file:

sshrun   ``sshrun exec -c CLUSTER.yaml --sync=TREE -- true`` (each node its own
         workdir); bytes: its ``sync_finished`` events, content and all bytes on
         the sync channels (code, manifests, files); its time includes
         connecting, the agents' start and ``true``, so ``sshrun exec -- true``
         alone is timed too
rsync    ``rsync -a --delete -e 'ssh -F CONFIG' TREE/ NODE:DEST/``, one per node,
         all at once; bytes: ``--stats``' "Total bytes sent" and "received"

Medians of --repeat runs (each first sync into fresh destinations). Result in
Markdown on stdout. Only loopback addresses are contacted. Needs root (sshd).

    python bench/sync.py --nodes 8 --files 5000 --size 50M --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from sshd_cluster import SshdCluster  # noqa: E402

from sshrun.sync_manifest import parse_size  # noqa: E402


def make_tree(root: Path, files: int, size: int) -> None:
    each = max(1, size // files)
    for i in range(files):
        d = root / f"d{i // 100:03d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:05d}.py").write_bytes(os.urandom(each))


def sshrun_sync(cluster: SshdCluster, tree: Path, dests: list[Path], work: Path,
                sync: bool = True) -> tuple[float, int, int]:
    config = work / "cluster.yaml"
    config.write_text(
        f"defaults:\n  python: {sys.executable}\nhosts:\n"
        + "".join(f"  - host: {cluster.alias(k)}\n    workdir: {d}\n"
                  for k, d in enumerate(dests))
        + f"ssh:\n  config: {cluster.ssh_config}\n")
    events = work / "events.jsonl"
    argv = [sys.executable, "-m", "sshrun", "exec", "-c", str(config), "--events", str(events),
            *([f"--sync={tree}"] if sync else []), "--", "true"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("SSH_AUTH_SOCK", None)
    start = time.perf_counter()
    done_run = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, env=env, timeout=600, cwd=work, check=False)
    if done_run.returncode != 0:
        raise SystemExit(f"sshrun failed: {done_run.stderr}")
    wall = time.perf_counter() - start
    done = [e for e in map(json.loads, events.read_text().splitlines())
            if e["event"] == "sync_finished"]
    return (wall, sum(e["bytes"] for e in done),
            sum(e["wire_sent"] + e["wire_received"] for e in done))


def rsync_sync(cluster: SshdCluster, tree: Path, dests: list[Path]) -> tuple[float, int, int]:
    start = time.perf_counter()
    procs = [subprocess.Popen(
        ["rsync", "-a", "--delete", "--stats", "-e", f"ssh -F {cluster.ssh_config}",
         f"{tree}/", f"{cluster.alias(k)}:{d}/"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for k, d in enumerate(dests)]
    sent = received = 0
    for p in procs:
        out, err = p.communicate(timeout=600)
        if p.returncode != 0:
            raise SystemExit(f"rsync failed: {err}")
        sent += _stat(out, "Total bytes sent")
        received += _stat(out, "Total bytes received")
    return time.perf_counter() - start, sent, sent + received


def _stat(text: str, name: str) -> int:
    m = re.search(rf"{name}: ([\d,]+)", text)
    return int(m.group(1).replace(",", "")) if m else 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--size", default="50M")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("rsync") is None:
        raise SystemExit("rsync is needed: apt-get install rsync")
    rows: dict[str, list[tuple[float, int, int]]] = {}
    with tempfile.TemporaryDirectory(prefix="sshrun-bench-sync-") as tmp:
        base = Path(tmp)
        tree = base / "tree"
        make_tree(tree, args.files, parse_size(args.size))
        with SshdCluster(args.nodes, base / "cluster") as cluster:
            for r in range(args.repeat):
                work = base / f"run{r}"
                work.mkdir()
                ours = [work / f"n{k}-sshrun" / "proj" for k in range(args.nodes)]
                theirs = [work / f"n{k}-rsync" / "proj" for k in range(args.nodes)]
                for d in theirs:
                    d.parent.mkdir(parents=True)
                edited = tree / "d000" / "f00000.py"
                rows.setdefault("sshrun exec -- true (no sync)", []).append(
                    sshrun_sync(cluster, tree, [work] * args.nodes, work, sync=False))
                rows.setdefault("sshrun --sync, first", []).append(
                    sshrun_sync(cluster, tree, ours, work))
                rows.setdefault("rsync -a, first", []).append(
                    rsync_sync(cluster, tree, theirs))
                edited.write_bytes(os.urandom(edited.stat().st_size))
                rows.setdefault("sshrun --sync, one edit", []).append(
                    sshrun_sync(cluster, tree, ours, work))
                rows.setdefault("rsync -a, one edit", []).append(
                    rsync_sync(cluster, tree, theirs))
    load = os.getloadavg()
    print(f"{args.nodes} nodes, {args.files} files, {args.size} (random content), "
          f"median of {args.repeat}; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}\n")
    print("| run | wall (s) | content bytes sent | all bytes both ways |")
    print("|---|---|---|---|")
    for name, samples in rows.items():
        wall = statistics.median(s[0] for s in samples)
        content = statistics.median(s[1] for s in samples)
        wire = statistics.median(s[2] for s in samples)
        print(f"| {name} | {wall:.2f} | {content:,.0f} | {wire:,.0f} |")


if __name__ == "__main__":
    main()
