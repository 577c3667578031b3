"""torchrun's options through sshrun against real sshd nodes: what is passed on reaches
every node's torchrun (and so the ranks), --standalone and --master-port make a working
rendezvous, and the console and the log directory filter as torchrun's options say."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
from head import WORKERS, run_sshrun
from jobprocs import assert_no_leftovers, new_canary
from sshd_cluster import SshdCluster, cluster_args

pytestmark = pytest.mark.sshd
SCRIPT = str(WORKERS / "torchrun_env.py")


def test_passed_options_and_the_console_and_log_filters(sshd_cluster: SshdCluster,
                                                        tmp_path: Path) -> None:
    canary = new_canary()
    logs = tmp_path / "logs"
    code, head = run_sshrun([
        *cluster_args(sshd_cluster), "--nproc-per-node", "2", "-x",
        f"SSHRUN_TEST_CANARY={canary}",
        # passed on to every node's torchrun
        "--role", "trainer", "--virtual-local-rank", "--start-method", "fork",
        "--monitor-interval", "0.2", "--signals-to-handle", "SIGTERM,SIGINT,SIGUSR1",
        "--event-log-handler", "null", "--shutdown-timeout", "5",
        # the console and the log directory
        "--log-dir", str(logs), "--local-ranks-filter", "1", "-r", "2",
        "--duplicate-stdout-filters", "MARKED", SCRIPT])
    assert code == 0, head.transcript()
    shown = [line.split(" port=")[0] for line in head.out if " | out rank=" in line]
    # Local rank 1 only (ranks 1, 3, 5); --virtual-local-rank: every LOCAL_RANK is 0.
    assert sorted(shown) == [f"node{r // 2} r{r} | out rank={r} local=0 role=trainer "
                             "world=6" for r in (1, 3, 5)], head.transcript()
    # -r 2: stderr reaches the log directory only.
    assert not [line for line in head.err if "err rank=" in line], head.transcript()
    job = next(logs.iterdir())
    for rank in range(6):
        text = (job / "attempt-0" / f"node{rank // 2}" / f"rank-{rank}.log").read_text()
        assert f" out out rank={rank} local=0 role=trainer" in text, text
        assert f" err err rank={rank}\n" in text, text
    for node in range(3):
        filtered = (job / "attempt-0" / f"node{node}" / "filtered_stdout.log").read_text()
        assert re.findall(r" r(\d+) out rank=", filtered) == [str(2 * node)], filtered
    assert_no_leftovers(canary)


@pytest.mark.slow
def test_standalone_runs_on_the_first_host(sshd_cluster: SshdCluster) -> None:
    canary = new_canary()
    code, head = run_sshrun([*cluster_args(sshd_cluster), "--standalone", "--nnodes", "1",
                             "--nproc-per-node", "2", "-x", f"SSHRUN_TEST_CANARY={canary}",
                             SCRIPT])
    assert code == 0, head.transcript()
    shown = sorted(line.split(" port=")[0] for line in head.out if " | out rank=" in line)
    assert shown == [f"node0 r{r} | out rank={r} local={r} role=default world=2"
                     for r in (0, 1)], head.transcript()
    assert_no_leftovers(canary)


@pytest.mark.slow
def test_master_port_is_the_static_rendezvous_port(sshd_cluster: SshdCluster) -> None:
    canary = new_canary()
    with socket.socket() as probe:  # a port free on the first node's address, just now
        probe.bind(("127.0.0.2", 0))
        port = probe.getsockname()[1]
    code, head = run_sshrun([*cluster_args(sshd_cluster), "--nnodes", "2", "--master-port",
                             str(port), "-x", f"SSHRUN_TEST_CANARY={canary}", SCRIPT])
    assert code == 0, head.transcript()
    shown = sorted(line for line in head.out if " | out rank=" in line)
    assert [line.rsplit(" port=", 1)[1].split()[0] for line in shown] == [str(port)] * 2, \
        head.transcript()
    assert_no_leftovers(canary)


@pytest.mark.slow
def test_logs_specs_names_an_entry_point_on_the_nodes(sshd_cluster: SshdCluster,
                                                      tmp_path: Path) -> None:
    """--logs-specs reaches every node's torchrun, which loads the plugin found there."""
    canary = new_canary()
    (tmp_path / "mine_specs.py").write_text(
        "from torch.distributed.elastic.multiprocessing.api import DefaultLogsSpecs\n"
        "class Mine(DefaultLogsSpecs):\n"
        "    def reify(self, envs):\n"
        "        print('MINE LOGS SPECS', len(envs), flush=True)\n"
        "        return super().reify(envs)\n")
    dist = tmp_path / "mine-0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mine\nVersion: 0\n")
    (dist / "entry_points.txt").write_text("[torchrun.logs_specs]\nmine = mine_specs:Mine\n")
    code, head = run_sshrun([*cluster_args(sshd_cluster), "--nnodes", "2", "--logs-specs",
                             "mine", "-x", f"PYTHONPATH={tmp_path}",
                             "-x", f"SSHRUN_TEST_CANARY={canary}", SCRIPT])
    assert code == 0, head.transcript()
    assert sorted(line for line in head.out if "MINE LOGS SPECS" in line) == [
        "node0 torchrun | MINE LOGS SPECS 1", "node1 torchrun | MINE LOGS SPECS 1"], \
        head.transcript()
    assert_no_leftovers(canary)
