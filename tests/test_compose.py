"""The docker-compose tier: sshrun from the head container across three node containers.

Real hostnames, separate filesystems and process tables, a bridge network, nodes that are
really killed. ``compose_cluster`` (module-wide) installs Docker and Compose when missing,
starts dockerd, builds the images (reusing the layer cache) and brings up a compose project
of its own; it is always taken down (``down -v``), also after a failure. Without Docker
these tests fail with the reason, they never skip. See tests/compose_cluster.py and
docs/docker.md.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator

import pytest
import yaml
from compose_cluster import NODES, ComposeCluster
from head import REPO
from jobprocs import new_canary

from sshrun.cluster_yaml import load_cluster_yaml
from sshrun.hostfile import load_hostfile

# The first test also pays for the setup: installing Docker, a base image and the torch
# layer on a fresh machine (about 5 minutes here); a warm run needs well under a minute.
pytestmark = [pytest.mark.timeout(1500), pytest.mark.docker, pytest.mark.torch,
              pytest.mark.slow]

HOSTFILE = "hostfiles/compose.txt"
CONFIG = "hostfiles/compose.yaml"
SYNC_CONFIG = "hostfiles/compose-sync.yaml"  # the same nodes, each with its own synced copy


def test_hostfiles_name_the_compose_nodes() -> None:
    """hostfiles/compose.txt and its YAML twin name exactly docker-compose.yml's nodes."""
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    assert sorted(name for name in services if name != "head") == list(NODES)
    for name in NODES:
        assert services[name]["hostname"] == name
    from_txt = load_hostfile(REPO / HOSTFILE)
    from_yaml = load_cluster_yaml(REPO / CONFIG).hosts
    synced = load_cluster_yaml(REPO / SYNC_CONFIG)
    for hosts in (from_txt, from_yaml, synced.hosts):
        assert [(h.host, h.slots) for h in hosts] == [(name, 2) for name in NODES]
    assert all(h.user == "root" and h.workdir == "/workspace" for h in from_yaml)
    assert all(h.user == "root" and h.workdir == "/root/job" for h in synced.hosts)
    assert synced.sync is not None and synced.sync.dir == str(REPO / "examples")


@pytest.fixture(scope="module")
def compose_cluster() -> Iterator[ComposeCluster]:
    try:
        cluster = ComposeCluster.start()
    except RuntimeError as exc:
        pytest.fail(f"the compose cluster could not start: {exc}", pytrace=False)
    print(f"\n{cluster}: {', '.join(cluster.notes) or 'inputs present'}; "
          + ", ".join(f"{k} {v:.1f}s" for k, v in cluster.timings.items()), file=sys.stderr)
    try:
        yield cluster
    finally:
        cluster.down()


def test_nodes_are_separate_hosts_with_torch_and_without_sshrun(
    compose_cluster: ComposeCluster,
) -> None:
    """Via the YAML twin: every node is its own host, with its own host key; python3 there
    has torch and no sshrun; the repository is mounted read-only."""
    probe = (
        "import importlib.util, os, socket, torch; "
        "print('probe', socket.gethostname(), torch.__version__, "
        "importlib.util.find_spec('sshrun') is None, os.access('/workspace', os.W_OK), "
        "os.path.isfile('/workspace/examples/train_ddp.py'))"
    )
    code, out, err = compose_cluster.sshrun("exec", "-c", CONFIG, "--", "python3", "-I", "-c",
                                            probe, timeout=120)
    assert code == 0, out + err
    seen = {}
    for line in out.splitlines():
        m = re.fullmatch(r"(node\d) \| probe (\S+) (\S+) (\S+) (\S+) (\S+)", line)
        if m:
            seen[m.group(1)] = m.groups()[1:]
    assert sorted(seen) == list(NODES), out + err
    for node, (hostname, torch_version, no_sshrun, writable, has_repo) in seen.items():
        assert hostname == node
        assert torch_version.startswith("2.13.0")
        assert no_sshrun == "True", f"sshrun is importable on {node}"
        assert writable == "False", f"/workspace is writable on {node}"
        assert has_repo == "True"
    keys = compose_cluster.known_hosts()
    assert sorted(keys) == list(NODES)
    assert len(set(keys.values())) == len(NODES), "nodes share a host key"


def test_ddp_example_across_three_containers_all_ranks_agree(
    compose_cluster: ComposeCluster,
) -> None:
    code, out, err = compose_cluster.sshrun(
        "-H", HOSTFILE, "--nproc-per-node", "2", "examples/train_ddp.py", "--epochs", "2",
        timeout=300,
    )
    transcript = f"--- stdout\n{out}\n--- stderr\n{err}"
    assert code == 0, transcript
    digests = {}
    for line in out.splitlines():
        m = re.fullmatch(r"node(\d) r(\d) \| rank (\d) final-params ([0-9a-f]{16})", line)
        if m:
            assert m.group(2) == m.group(3), line
            # Hostfile order: node1 holds ranks 0-1, node2 ranks 2-3, node3 ranks 4-5.
            assert int(m.group(1)) == int(m.group(2)) // 2 + 1, line
            digests[int(m.group(2))] = m.group(4)
    assert sorted(digests) == list(range(6)), transcript
    assert len(set(digests.values())) == 1, digests
    losses = [float(m.group(1)) for line in out.splitlines()
              if (m := re.fullmatch(r"node1 r0 \| epoch \d loss ([0-9.]+)", line))]
    assert len(losses) == 2 and losses[-1] < losses[0], transcript


def test_ddp_trains_from_a_tree_synced_to_each_nodes_own_disk(
    compose_cluster: ComposeCluster,
) -> None:
    """hostfiles/compose-sync.yaml: --sync puts examples/ in each node's /root/job, which
    exists nowhere else, and the job trains from there; a second run sends nothing."""
    runs = []
    for k in (1, 2):
        events = f"/tmp/sync-events-{k}.jsonl"
        code, out, err = compose_cluster.sshrun(
            "-c", SYNC_CONFIG, "--events", events, "train_ddp.py", "--epochs", "2",
            timeout=300)
        transcript = f"--- stdout\n{out}\n--- stderr\n{err}"
        assert code == 0, transcript
        digests = {int(m.group(1)): m.group(2) for line in out.splitlines()
                   if (m := re.fullmatch(r"node\d r\d \| rank (\d) final-params "
                                         r"([0-9a-f]{16})", line))}
        assert sorted(digests) == list(range(6)) and len(set(digests.values())) == 1, \
            transcript
        done = compose_cluster.exec("head", "cat", events)
        assert done.returncode == 0, done.stderr
        finished = [e for e in map(json.loads, done.stdout.splitlines())
                    if e["event"] == "sync_finished"]
        assert sorted(e["host"] for e in finished) == list(NODES), finished
        runs.append(finished)
    # The first run sent examples/ whole to every node; the second found it in place.
    size = sum(p.stat().st_size for p in (REPO / "examples").iterdir() if p.is_file())
    assert all(e["bytes"] == size for e in runs[0]), runs[0]
    assert all(e["bytes"] == 0 and e["files"] == 0 for e in runs[1]), runs[1]
    for node in NODES:
        done = compose_cluster.exec(node, "sh", "-c", "readlink /root/job && "
                                    "cat /root/job/train_ddp.py")
        assert done.returncode == 0, done.stderr
        link, _, text = done.stdout.partition("\n")
        assert link.startswith("job.sshrun-"), link
        assert text == (REPO / "examples" / "train_ddp.py").read_text()


def test_killed_node_is_named_and_nothing_of_the_job_is_left(
    compose_cluster: ComposeCluster,
) -> None:
    canary = new_canary()
    job = compose_cluster.exec_background(
        "head", "sshrun", "-H", HOSTFILE, "--nproc-per-node", "2", "--grace-period", "3",
        "-x", f"SSHRUN_TEST_CANARY={canary}", "-x", "HANG_SECONDS=240",
        "tests/workers/hang.py",
    )
    try:
        job.wait_line(" ready", timeout=180, count=6)
        # The scan sees the job before the kill: two ranks and their parents per node.
        for node in ("node1", "node3"):
            found = compose_cluster.canary_processes(node, canary)
            assert len(found) >= 2, (node, found)
        killed_at = time.monotonic()
        compose_cluster.kill("node2")
        code = job.wait(timeout=90)
        detected_s = time.monotonic() - killed_at
        assert code == 255, job.transcript()
        failure = [line for line in job.err if "first failure" in line]
        assert len(failure) == 1 and "node2" in failure[0], job.transcript()
        for node in ("node1", "node3"):
            left = compose_cluster.wait_no_canary(node, canary, timeout=30)
            assert not left, f"processes of the job survive on {node}: {left}"
        print(f"\nnode2 killed: sshrun exited 255 after {detected_s:.1f}s", file=sys.stderr)
    finally:
        if job.proc.poll() is None:
            job.proc.kill()
            job.proc.wait(10)
    # The node comes back as the same host: its key is still the one the head knows.
    before = compose_cluster.known_hosts()["node2"]
    compose_cluster.restart("node2")
    assert compose_cluster.known_hosts()["node2"] == before
