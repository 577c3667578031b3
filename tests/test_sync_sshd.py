"""--sync against real sshd nodes, each with its own working directory in its own tree."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import MakeSshdCluster
from head import Head, run_sshrun
from sshd_cluster import SshdCluster

pytestmark = pytest.mark.sshd

REPO = Path(__file__).resolve().parent.parent

MAIN = "import os, pathlib\nprint('from', pathlib.Path.cwd().name.split('.sshrun-')[0], " \
       "open('pkg/data.txt').read().strip(), os.access('run.sh', os.X_OK))\n"


def _config(cluster: SshdCluster, tmp_path: Path, nodes: int = 2) -> tuple[Path, list[Path]]:
    dests = [tmp_path / f"node{k}-fs" / "home" / "proj" for k in range(nodes)]
    config = tmp_path / "cluster.yaml"
    config.write_text(
        "defaults:\n"
        f"  python: {sys.executable}\n"
        "hosts:\n"
        + "".join(f"  - host: {cluster.alias(k)}\n    workdir: {dests[k]}\n"
                  for k in range(nodes))
        + f"ssh:\n  config: {cluster.ssh_config}\n"
    )
    return config, dests


def _source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "main.py").write_text(MAIN)
    (src / "pkg" / "data.txt").write_text("v1\n")
    (src / "run.sh").write_text("#!/bin/sh\necho run\n")
    (src / "run.sh").chmod(0o755)
    (src / "gone.txt").write_text("to be deleted\n")
    os.symlink("pkg/data.txt", src / "data-link")
    return src


def _events(path: Path, name: str) -> list[dict[str, object]]:
    return [e for e in (json.loads(line) for line in path.read_text().splitlines())
            if e["event"] == name]


def _sync(config: Path, src: Path, events: Path, *extra: str,
          command: tuple[str, ...] = ("python3", "main.py")) -> tuple[int, str]:
    # The head's manifest copies (sshrun.sync_cache) in this test's own tree.
    env = dict(os.environ, XDG_CACHE_HOME=str(config.parent / "head-cache"))
    code, head = run_sshrun(["exec", "-c", str(config), f"--sync={src}",
                             "--events", str(events), *extra, "--", *command], cwd=src,
                            env=env)
    return code, head.transcript()


@pytest.mark.slow
def test_sync_runs_from_the_copy_then_sends_only_the_edit(sshd_cluster: SshdCluster,
                                                          tmp_path: Path) -> None:
    config, dests = _config(sshd_cluster, tmp_path)
    src = _source(tmp_path)
    events = tmp_path / "events1.jsonl"
    code, out = _sync(config, src, events, command=(sys.executable, "main.py"))
    assert code == 0, out
    assert "node0 | from proj v1 True" in out and "node1 | from proj v1 True" in out, out
    for dest in dests:
        assert dest.is_symlink()
        assert (dest / "pkg" / "data.txt").read_text() == "v1\n"
        assert os.readlink(dest / "data-link") == "pkg/data.txt"
        assert os.access(dest / "run.sh", os.X_OK)
    started = _events(events, "sync_started")
    finished = _events(events, "sync_finished")
    assert sorted(e["host"] for e in finished) == ["node0", "node1"]
    total = sum(p.stat().st_size for p in src.rglob("*") if p.is_file() and not p.is_symlink())
    assert all(e["bytes"] == total and e["files"] == 4 for e in started), started
    assert all(e["bytes"] == total and e["files"] == 4 for e in finished), finished

    # One edit, one deletion: only that file's bytes travel, the deleted file goes.
    (src / "pkg" / "data.txt").write_text("v2 edited\n")
    (src / "gone.txt").unlink()
    old_trees = [d.resolve() for d in dests]
    events2 = tmp_path / "events2.jsonl"
    code, out = _sync(config, src, events2, command=(sys.executable, "main.py"))
    assert code == 0, out
    assert "node0 | from proj v2 edited True" in out, out
    finished = _events(events2, "sync_finished")
    assert [(e["files"], e["bytes"], e["deleted"]) for e in finished] == [(1, 10, 1)] * 2
    # The head kept the manifest it synced: each node named its digest, no manifest.
    assert all(e["wire_received"] < 1024 for e in finished), finished
    assert all(e["wire_sent"] < len((REPO / "sshrun" / "node" / "sync_node.py").read_bytes())
               + 4096 for e in finished), finished
    for dest, old in zip(dests, old_trees, strict=True):
        assert not (dest / "gone.txt").exists()
        assert dest.resolve() != old
        assert (old / "gone.txt").exists()  # the previous tree is kept for a job still in it

    # Nothing changed: nothing is sent and the tree stays as it is.
    events3 = tmp_path / "events3.jsonl"
    now = [d.resolve() for d in dests]
    code, out = _sync(config, src, events3, command=("true",))
    assert code == 0, out
    assert [(e["files"], e["bytes"]) for e in _events(events3, "sync_finished")] == [(0, 0)] * 2
    assert [d.resolve() for d in dests] == now


@pytest.mark.slow
def test_excludes_and_secrets_are_not_synced_and_said(sshd_cluster: SshdCluster,
                                                      tmp_path: Path) -> None:
    config, dests = _config(sshd_cluster, tmp_path, nodes=1)
    src = _source(tmp_path)
    (src / "data").mkdir()
    (src / "data" / "huge.bin").write_bytes(b"d" * 1000)
    (src / ".env").write_text("API_KEY=hunter2\n")
    (src / "__pycache__").mkdir()
    (src / "__pycache__" / "main.cpython.pyc").write_bytes(b"\0")
    code, out = _sync(config, src, tmp_path / "ev.jsonl", "--sync-exclude", "data",
                      command=("ls", "-a"))
    assert code == 0, out
    assert "not sent, secret-like" in out and ".env" in out, out
    assert "excluded (--sync-exclude): data" in out, out
    assert not (dests[0] / ".env").exists()
    assert not (dests[0] / "data").exists()
    assert not (dests[0] / "__pycache__").exists()
    assert (dests[0] / "main.py").exists()


def test_symlink_out_of_the_tree_is_refused(sshd_cluster: SshdCluster, tmp_path: Path) -> None:
    config, dests = _config(sshd_cluster, tmp_path, nodes=1)
    src = _source(tmp_path)
    os.symlink(str(tmp_path / "cluster.yaml"), src / "escape")
    code, out = _sync(config, src, tmp_path / "ev.jsonl", command=("true",))
    assert code == 2, out
    assert f"{src / 'escape'} is a symlink to" in out and "outside" in out, out
    assert "Traceback" not in out
    assert not dests[0].exists() and not dests[0].is_symlink()


def test_size_limit_refused_before_anything_is_sent(sshd_cluster: SshdCluster,
                                                    tmp_path: Path) -> None:
    config, dests = _config(sshd_cluster, tmp_path, nodes=1)
    src = _source(tmp_path)
    (src / "weights.bin").write_bytes(b"w" * 5000)
    events = tmp_path / "ev.jsonl"
    code, out = _sync(config, src, events, "--sync-max-size", "4K", command=("true",))
    assert code == 2, out
    assert "more than 4.0 KiB to send" in out and "--sync-max-size" in out, out
    assert not dests[0].exists()
    assert not events.exists() or not _events(events, "node_connected")


def test_sync_needs_a_destination(sshd_cluster: SshdCluster, tmp_path: Path) -> None:
    src = _source(tmp_path)
    code, head = run_sshrun(["exec", "--ssh-config", str(sshd_cluster.ssh_config),
                             "--hosts", sshd_cluster.alias(0), "--sync", str(src), "--",
                             "true"], cwd=src)
    assert code == 2, head.transcript()
    assert "--sync: no destination for node0: give --workdir DIR" in head.transcript()


def test_a_node_that_cannot_sync_fails_the_launch_naming_it(sshd_cluster: SshdCluster,
                                                            tmp_path: Path) -> None:
    config, dests = _config(sshd_cluster, tmp_path)
    src = _source(tmp_path)
    # node1's destination is a directory of the user's own: never replaced.
    dests[1].mkdir(parents=True)
    (dests[1] / "precious.txt").write_text("mine\n")
    code, out = _sync(config, src, tmp_path / "ev.jsonl", command=("true",))
    assert code == 2, out
    assert "node1" in out and "is a directory sshrun did not sync" in out, out
    assert (dests[1] / "precious.txt").read_text() == "mine\n"
    assert "Traceback" not in out


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "status"), [(signal.SIGKILL, -signal.SIGKILL),
                                             (signal.SIGINT, 130)])
def test_interrupted_sync_leaves_the_old_tree_runnable(sshd_cluster: SshdCluster,
                                                       tmp_path: Path, sig: int,
                                                       status: int) -> None:
    config, dests = _config(sshd_cluster, tmp_path, nodes=1)
    src = _source(tmp_path)
    code, out = _sync(config, src, tmp_path / "ev1.jsonl", command=("true",))
    assert code == 0, out
    old = dests[0].resolve()
    (src / "pkg" / "data.txt").write_text("v2\n")
    # Big enough that the transfer is still going when the head is killed.
    (src / "weights.bin").write_bytes(os.urandom(1 << 20) * 300)
    head = Head(["exec", "-c", str(config), f"--sync={src}", "--", "true"], cwd=src)
    parent = dests[0].parent
    deadline = time.monotonic() + 120
    staging: list[Path] = []
    while not staging and head.proc.poll() is None and time.monotonic() < deadline:
        staging = list(parent.glob("proj.sshrun-tmp-*"))
        time.sleep(0.01)
    assert staging, "no staging directory appeared\n" + head.transcript()
    # SIGKILL: the head dies mid-file; SIGINT (Ctrl-C): it stops every node's sync.
    os.kill(head.proc.pid, sig)
    assert head.wait(60) == status, head.transcript()
    assert dests[0].resolve() == old
    assert (dests[0] / "pkg" / "data.txt").read_text() == "v1\n"
    code, run = run_sshrun(["exec", "-c", str(config), "--", "cat", "pkg/data.txt"], cwd=src)
    assert code == 0 and "node0 | v1" in run.transcript(), run.transcript()
    # The next sync finishes the job and clears what the killed one left.
    code, out = _sync(config, src, tmp_path / "ev2.jsonl", command=("cat", "pkg/data.txt"))
    assert code == 0 and "node0 | v2" in out, out
    assert not list(parent.glob("proj.sshrun-tmp-*"))


@pytest.mark.slow
@pytest.mark.torch
def test_ddp_trains_from_a_tree_synced_by_the_yaml_config(sshd_cluster: SshdCluster,
                                                          tmp_path: Path) -> None:
    config, dests = _config(sshd_cluster, tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(REPO / "examples" / "train_ddp.py", src / "train_ddp.py")
    (src / "secrets.pem").write_text("key\n")
    config.write_text(config.read_text() + f"sync:\n  dir: {src}\n  exclude: [nothing]\n"
                      "torchrun:\n  nproc_per_node: 1\n")
    elsewhere = tmp_path / "elsewhere"  # the head's cwd has no train_ddp.py
    elsewhere.mkdir()
    events = tmp_path / "ev.jsonl"
    code, head = run_sshrun(["-c", str(config), "--events", str(events), "train_ddp.py",
                             "--epochs", "2", "--steps", "5"], cwd=elsewhere, timeout=240)
    assert code == 0, head.transcript()
    digests = {m.group(1) for line in head.out
               if (m := re.search(r"final-params ([0-9a-f]{16})", line))}
    assert len(digests) == 1, head.transcript()
    assert sum("final-params" in line for line in head.out) == 2
    assert "secrets.pem" in head.stderr and "not sent, secret-like" in head.stderr
    assert [e["files"] for e in _events(events, "sync_finished")] == [1, 1]
    for dest in dests:
        assert (dest / "train_ddp.py").read_bytes() == (src / "train_ddp.py").read_bytes()
        assert not (dest / "secrets.pem").exists()


@pytest.mark.slow
def test_a_restart_resyncs_what_a_node_lost(sshd_cluster: SshdCluster, tmp_path: Path) -> None:
    config, _ = _config(sshd_cluster, tmp_path)
    src = _source(tmp_path)
    events = tmp_path / "ev.jsonl"
    # Attempt 0 wipes pkg/ from node1's tree (a rebuilt node) and fails; attempt 1
    # must find it back, re-sent to node1 alone. node0 waits for the gang stop: had it
    # failed too, its failure could stop node1 before the rm ran (seen in CI).
    script = ('if [ "$SSHRUN_ATTEMPT" = 0 ]; then [ "$SSHRUN_NODE_RANK" = 1 ] || '
              'exec sleep 120; rm -rf "$(pwd -P)/pkg"; exit 3; fi; cat pkg/data.txt')
    code, out = _sync(config, src, events, "--max-restarts", "1", "--restart-backoff", "0.1",
                      command=("sh", "-c", script))
    assert code == 0, out
    assert "node1 | v1" in out, out
    finished = [(e["attempt"], e["host"], e["files"]) for e in _events(events, "sync_finished")]
    assert sorted(finished) == [(0, "node0", 4), (0, "node1", 4), (1, "node0", 0),
                                (1, "node1", 1)], finished
    # node1's tree is one the head never synced: it had to send its manifest.
    [again] = [e for e in _events(events, "sync_finished")
               if e["attempt"] == 1 and e["host"] == "node1"]
    [named] = [e for e in _events(events, "sync_finished")
               if e["attempt"] == 1 and e["host"] == "node0"]
    assert again["wire_received"] > named["wire_received"], (again, named)


@pytest.mark.slow
@pytest.mark.torch
def test_under_nnodes_min_max_a_node_that_cannot_sync_is_left_out(sshd_cluster: SshdCluster,
                                                                  tmp_path: Path) -> None:
    config, dests = _config(sshd_cluster, tmp_path)
    src = _source(tmp_path)
    dests[1].mkdir(parents=True)
    (dests[1] / "precious.txt").write_text("mine\n")
    code, head = run_sshrun(["-c", str(config), f"--sync={src}", "--nnodes", "1:2",
                             "--nproc-per-node", "1", "main.py"], cwd=tmp_path, timeout=240)
    out = head.transcript()
    assert code == 0, out
    assert "node0 r0 | from proj v1 True" in out and "leaving out node1" in out, out
    assert "is a directory sshrun did not sync" in out, out
    assert (dests[1] / "precious.txt").read_text() == "mine\n"


def _terminal_run(argv: list[str], cwd: Path, env: dict[str, str],
                  timeout: float) -> tuple[int, str, str]:
    """``argv`` with its stderr on a pseudo-terminal: (status, stdout, the terminal)."""
    main, tty = os.openpty()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=tty, start_new_session=True)
    os.close(tty)
    chunks: list[bytes] = []

    def read_terminal() -> None:
        while True:
            try:
                data = os.read(main, 65536)
            except OSError:  # EIO: the terminal's last writer has closed it
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    reader.join(10)
    os.close(main)
    return proc.returncode, out.decode(), b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
def test_a_bandwidth_limit_is_shared_by_the_nodes_and_the_bar_counts_up(
        make_sshd_cluster: MakeSshdCluster, tmp_path: Path) -> None:
    cluster = make_sshd_cluster(3)
    config, dests = _config(cluster, tmp_path, nodes=3)
    src = _source(tmp_path)
    size = 2 << 20
    (src / "weights.bin").write_bytes(os.urandom(size))
    events = tmp_path / "ev.jsonl"
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "head-cache"))
    env.pop("SSH_AUTH_SOCK", None)
    # 3 nodes x 2 MiB at 2 MiB/s: ~3 s, where the loopback alone takes a fraction of one.
    code, out, screen = _terminal_run(
        [sys.executable, "-m", "sshrun", "exec", "-c", str(config), f"--sync={src}",
         "--sync-bwlimit", "2M", "--events", str(events), "--", "cat", "pkg/data.txt"],
        src, env, timeout=240)
    assert code == 0, screen
    assert sorted(line for line in out.splitlines()) == [f"node{k} | v1" for k in range(3)]
    finished = _events(events, "sync_finished")
    assert len(finished) == 3 and all(e["bytes"] > size for e in finished), finished
    seconds = sorted(float(str(e["seconds"])) for e in finished)
    # The limit holds for the three together (6 MiB at 2 MiB/s), and it is shared:
    # nobody was served whole first, so they all finish near the end.
    assert seconds[-1] >= 2.7, seconds
    assert seconds[0] >= 0.8 * seconds[-1], seconds
    progress = _events(events, "sync_progress")
    assert len(progress) >= 3, progress
    sent = [int(str(e["bytes"])) for e in progress]
    assert sent == sorted(sent), sent
    last = progress[-1]
    assert (last["nodes"], last["synced"], last["failed"], last["comparing"]) == (3, 3, 0, 0)
    assert last["bytes"] == last["bytes_total"] == sum(int(str(e["bytes"])) for e in finished)
    assert last["files"] == last["files_total"] == sum(int(str(e["files"])) for e in finished)
    # The bar on the terminal: drawn, counting up, with the nodes synced.
    bars = re.findall(r"\r\x1b\[K(sshrun: sync \[[#.]{20}\] +(\d+)% [^\r\n\x1b]*)", screen)
    assert len(bars) >= 2, screen
    percents = [int(p) for _, p in bars]
    assert percents == sorted(percents) and 0 < percents[-1] < 100, bars
    assert all(re.search(r"MiB, files \d+/\d+, nodes synced [0-3]/3", b) for b, _ in bars), bars
    for dest in dests:
        assert (dest / "weights.bin").stat().st_size == size


@pytest.mark.slow
@pytest.mark.torch
def test_under_nnodes_min_max_a_node_lost_mid_sync_is_left_out_its_old_tree_kept(
        make_sshd_cluster: MakeSshdCluster, tmp_path: Path) -> None:
    cluster = make_sshd_cluster(2)
    config, dests = _config(cluster, tmp_path)
    src = _source(tmp_path)
    code, out = _sync(config, src, tmp_path / "ev1.jsonl", command=("true",))
    assert code == 0, out
    old = dests[1].resolve()
    (src / "pkg" / "data.txt").write_text("v2\n")
    (src / "weights.bin").write_bytes(os.urandom(4 << 20))
    events = tmp_path / "ev2.jsonl"
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "head-cache"))
    # 8 MiB at 1 MiB/s: node1 is still receiving when its sshd and sessions are killed.
    head = Head(["-c", str(config), f"--sync={src}", "--sync-bwlimit", "1M", "--nnodes", "1:2",
                 "--nproc-per-node", "1", "--events", str(events), "main.py"], cwd=src, env=env)
    staging: list[Path] = []
    deadline = time.monotonic() + 120
    while not staging and head.proc.poll() is None and time.monotonic() < deadline:
        staging = list(dests[1].parent.glob("proj.sshrun-tmp-*"))
        time.sleep(0.01)
    assert staging, "no staging directory appeared on node1\n" + head.transcript()
    cluster.kill_node(1, sessions=True)
    assert head.wait(120) == 0, head.transcript()
    out = head.transcript()
    assert "node0 r0 | from proj v2 True" in out and "node1 r" not in out, out
    assert re.search(r"leaving out node1: sync: ", out), out
    # node1 keeps the tree it had, whole: never half a tree.
    assert dests[1].resolve() == old
    assert (dests[1] / "pkg" / "data.txt").read_text() == "v1\n"
    assert not (dests[1] / "weights.bin").exists()
    assert [e["host"] for e in _events(events, "sync_finished")] == ["node0"]
    [last] = _events(events, "sync_progress")[-1:]
    assert (last["synced"], last["failed"]) == (1, 1), last


@pytest.mark.parametrize(("args", "message"), [
    (["--sync-max-size", "lots"], "--sync-max-size: 'lots' is not a size (like 500M or 2G)"),
    (["--sync-max-size", "0"], "--sync-max-size: '0' must be more than 0"),
    (["--sync-max-size", "1e400"], "--sync-max-size: '1e400' is not a size (like 500M or 2G)"),
    (["--sync-bwlimit", "fast"], "--sync-bwlimit: 'fast' is not a size (like 500M or 2G)"),
])
def test_bad_sync_flags_are_one_line(sshd_cluster: SshdCluster, tmp_path: Path,
                                     args: list[str], message: str) -> None:
    config, _ = _config(sshd_cluster, tmp_path, nodes=1)
    src = _source(tmp_path)
    code, out = _sync(config, src, tmp_path / "ev.jsonl", *args, command=("true",))
    assert code == 2, out
    assert f"sshrun: error: {message}" in out, out
    assert "Traceback" not in out


def test_sync_flags_without_sync_are_refused(tmp_path: Path) -> None:
    code, head = run_sshrun(["exec", "--local-cluster", "1", "--sync-exclude", "data", "--",
                             "true"], cwd=tmp_path)
    assert code == 2, head.transcript()
    assert ("--sync-exclude, --sync-include, --sync-max-size and --sync-bwlimit go with --sync"
            in head.stderr)
