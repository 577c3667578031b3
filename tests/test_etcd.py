"""torchrun's etcd rendezvous backends across real sshd nodes, with a real etcd server.

``--rdzv-backend etcd`` and ``etcd-v2`` pass the user's ``--rdzv-endpoint`` (the
etcd server, tests/etcd_server.py) to every node's torchrun; both backends need
python-etcd (module ``etcd``) in every node's interpreter. A node whose
interpreter lacks it is refused, naming the node and the module, before any
torchrun starts anywhere (sshrun/preflight.py).

The interpreter without python-etcd is the tests' own, run by a wrapper script
whose ``PYTHONPATH`` swaps site-packages for a folder of links to every entry but
python-etcd's (``python_without_etcd``): torch is there, ``etcd`` is not, in the
agent, torchrun and the ranks alike, as on a node where nobody installed it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import site
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from etcd_server import EtcdServer
from head import REPO, run_sshrun
from jobprocs import assert_no_leftovers, new_canary
from sshd_cluster import SshdCluster, cluster_args

pytestmark = pytest.mark.sshd

# Where each backend keeps its state in etcd (torch 2.13): etcd_rendezvous.py's
# default etcd_prefix, etcd_rendezvous_backend.py's key_prefix.
STATE_KEY = {"etcd": "/torchelastic/p2p/run_{id}", "etcd-v2": "/torch/elastic/rendezvous/{id}"}


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    with EtcdServer(tmp_path_factory.mktemp("etcd")) as server:
        yield server


def read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def torch_cuda() -> str | None:
    """torch's own answer (it imports torch, in another process)."""
    done = subprocess.run([sys.executable, "-c", "import torch; print(torch.version.cuda)"],
                          capture_output=True, text=True, timeout=120, check=True)
    text = done.stdout.strip()
    return None if text == "None" else text


def python_without_etcd(folder: Path) -> Path:
    """A wrapper that runs this interpreter as if python-etcd were not installed.

    Its ``PYTHONPATH`` holds a ``sitecustomize`` that swaps the site-packages
    folders on ``sys.path`` for a folder of links to everything in them but
    python-etcd. The variable is inherited, so the agent, torchrun and the ranks
    all lack the module, as on a node where nobody installed it.
    """
    spec = importlib.util.find_spec("etcd")
    assert spec is not None, "python-etcd is not installed (pip install -e '.[test]')"
    view = folder / "site-packages"
    view.mkdir(parents=True)
    site_dirs = [d for d in (*site.getsitepackages(), site.getusersitepackages())
                 if Path(d).is_dir()]
    for directory in site_dirs:
        for entry in Path(directory).iterdir():
            hidden = entry.name == "etcd" or entry.name.lower().startswith("python_etcd")
            if not hidden and not (view / entry.name).exists():
                (view / entry.name).symlink_to(entry)
    (folder / "sitecustomize.py").write_text(
        "import sys\n"
        f"sys.path[:] = [p for p in sys.path if p not in {site_dirs!r}] + [{str(view)!r}]\n")
    wrapper = folder / "python-without-etcd"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH={folder} exec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    # What the wrapper's interpreter finds: torch, and no etcd.
    probe = subprocess.run([str(wrapper), "-c", "import importlib.util as u; "
                            "print(u.find_spec('torch') is not None, u.find_spec('etcd'))"],
                           capture_output=True, text=True, timeout=60, check=True)
    assert probe.stdout.split() == ["True", "None"], probe.stdout + probe.stderr
    return wrapper


@pytest.mark.slow
@pytest.mark.torch
@pytest.mark.parametrize("backend", ["etcd-v2", "etcd"])
def test_ddp_over_an_etcd_rendezvous(sshd_cluster: SshdCluster, etcd: EtcdServer,
                                     tmp_path: Path, backend: str) -> None:
    """Three nodes meet at the etcd server, train together, and end with the same model."""
    canary = new_canary()
    events = tmp_path / "events.jsonl"
    rdzv_id = f"etcd-test-{backend}"
    code, head = run_sshrun(
        [*cluster_args(sshd_cluster), "--nproc-per-node", "1", "--rdzv-backend", backend,
         "--rdzv-endpoint", etcd.endpoint, "--rdzv-id", rdzv_id, "--events", str(events),
         "-x", f"SSHRUN_TEST_CANARY={canary}", str(REPO / "examples" / "train_ddp.py"),
         "--epochs", "2", "--steps", "5"], cwd=tmp_path, timeout=240)
    assert code == 0, head.transcript()
    digests = {}
    for line in head.out:
        m = re.fullmatch(r"node\d r(\d) \| rank (\d) final-params ([0-9a-f]{16})", line)
        if m:
            assert m.group(1) == m.group(2), line
            digests[int(m.group(2))] = m.group(3)
    # The rendezvous decides the ranks: every one of 0..2 once, whichever node holds it.
    assert sorted(digests) == [0, 1, 2], head.transcript()
    assert len(set(digests.values())) == 1, digests
    # The nodes met in etcd, under this run's id (attempt 0 keeps the user's id).
    status, _ = etcd.get("/v2/keys" + STATE_KEY[backend].format(id=rdzv_id))
    assert status == 200, f"no rendezvous state in etcd for {rdzv_id}"
    # Each agent said which torch and which rendezvous clients it has.
    ups = [e for e in read_events(events) if e["event"] == "agent_up"]
    assert sorted(e["host"] for e in ups) == ["node0", "node1", "node2"]
    cuda = torch_cuda()
    for up in ups:
        assert os.path.samefile(up["python"], sys.executable)  # the nodes' python3
        assert up["torch"] is True
        assert up["torch_version"] == importlib.metadata.version("torch")
        assert up["cuda_version"] == cuda
        assert up["modules"] == {"etcd": True, "urllib3": True}
    assert_no_leftovers(canary)


@pytest.mark.parametrize("backend", ["etcd", "etcd-v2"])
def test_a_node_without_python_etcd_is_refused_before_anything_starts(
        sshd_cluster: SshdCluster, etcd: EtcdServer, tmp_path: Path, backend: str) -> None:
    wrapper = python_without_etcd(tmp_path / "py")
    config = tmp_path / "cluster.yaml"
    config.write_text(
        "hosts:\n"
        "  - node0\n"
        f"  - {{host: node1, python: {wrapper}}}\n"
        "  - node2\n"
        f"ssh: {{config: {sshd_cluster.ssh_config}}}\n"
        f"torchrun: {{rdzv_backend: {backend}, rdzv_endpoint: '{etcd.endpoint}'}}\n")
    canary = new_canary()
    events = tmp_path / "events.jsonl"
    rdzv_id = f"refused-{backend}"
    code, head = run_sshrun(["-c", str(config), "--rdzv-id", rdzv_id, "--events", str(events),
                             "-x", f"SSHRUN_TEST_CANARY={canary}", "-x", "ALL=1",
                             str(REPO / "tests" / "workers" / "echo_args.py")])
    assert code == 2, head.transcript()
    assert head.stderr == (f"sshrun: error: node1: --rdzv-backend {backend} needs the Python "
                           f"module 'etcd' (pip install python-etcd) in {sys.executable}")
    assert head.stdout == ""
    # Every agent said hello; none was sent a spec: no torchrun ran anywhere.
    log = read_events(events)
    ups = {e["host"]: e["modules"] for e in log if e["event"] == "agent_up"}
    assert ups == {"node0": {"etcd": True, "urllib3": True},
                   "node1": {"etcd": False, "urllib3": True},
                   "node2": {"etcd": True, "urllib3": True}}
    assert not [e for e in log if e["event"] == "ranks_started"]
    assert log[-1]["event"] == "job_finished" and log[-1]["exit_code"] == 2
    status, _ = etcd.get("/v2/keys" + STATE_KEY[backend].format(id=rdzv_id))
    assert status == 404, "a torchrun reached the rendezvous"
    assert_no_leftovers(canary)

