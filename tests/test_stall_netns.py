"""A start-up that stalls because one node cannot reach the rendezvous names that node.

node0 is a loopback sshd node; node1 (``nsnode``) lives in its own network
namespace (tests/netns_node.py), joined by a veth, and reaches node0 through
the host's end of it: that is the static rendezvous's master address given
(``--master-addr``/``--master-port``), on which node0's torchrun hosts the
TCP store. First the control, without a rule: the job runs and nothing is
said of the rendezvous. Then an iptables rule in the namespace drops TCP to
that port: every node waits at the rendezvous, and the start-up report names
node1, its ranks and the address its agent could not reach, apart from node0,
exactly; the event file has the ``rendezvous_probe`` event; Ctrl-C (SIGINT to
sshrun) stops the job, and nothing of it is left on either side.
"""

from __future__ import annotations

import json
import re
import signal
import sys
from pathlib import Path

import pytest
from head import WORKERS, Head
from jobprocs import assert_no_leftovers, new_canary
from netns_node import NetnsNode
from sshd_cluster import SshdCluster, pick_port

pytestmark = [pytest.mark.sshd, pytest.mark.netns, pytest.mark.slow]



def _launch(sshd_cluster: SshdCluster, node: NetnsNode, tmp_path: Path, port: int,
            canary: str, events: Path, logs: Path) -> Head:
    hostfile = tmp_path / "hostfile"
    hostfile.write_text(f"{sshd_cluster.alias(0)}\n{node.alias}\n")
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(node.ssh_config_block + "\n" + sshd_cluster.ssh_config.read_text())
    return Head(["-H", str(hostfile), "--ssh-config", str(ssh_config),
                 "--python", sys.executable, "--nproc-per-node", "2",
                 "--master-addr", node.host_address, "--master-port", str(port),
                 "--startup-report", "2", "--events", str(events), "--log-dir", str(logs),
                 "-x", f"SSHRUN_TEST_CANARY={canary}", str(WORKERS / "torchrun_env.py")],
                cwd=tmp_path)


def _stop(head: Head) -> None:
    if head.proc.poll() is None:
        head.proc.kill()
        head.wait(30)


def test_a_stall_names_the_node_that_cannot_reach_the_rendezvous(
        sshd_cluster: SshdCluster, netns_node: NetnsNode, tmp_path: Path) -> None:
    port = pick_port(["0.0.0.0"])
    endpoint = f"{netns_node.host_address}:{port}"
    node0, node1 = sshd_cluster.alias(0), netns_node.alias

    # The control: the way is open, the rendezvous completes, the job runs.
    canary = new_canary()
    head = _launch(sshd_cluster, netns_node, tmp_path, port, canary, tmp_path / "ok.jsonl",
                   tmp_path / "ok-logs")
    try:
        code = head.wait(240)
    finally:
        _stop(head)
    assert code == 0, head.transcript()
    assert sum("| out rank=" in line for line in head.out) == 4, head.transcript()
    assert "cannot reach the rendezvous" not in head.stderr, head.transcript()
    assert_no_leftovers(canary)

    netns_node.drop_port(netns_node.host_address, port)
    canary = new_canary()
    events = tmp_path / "stall.jsonl"
    head = _launch(sshd_cluster, netns_node, tmp_path, port, canary, events,
                   tmp_path / "logs")
    named = (f"{node0} r[0-1] (at the rendezvous), {node1} r[2-3] "
             f"(cannot reach the rendezvous at {endpoint}: timed out)")
    try:
        head.wait_line(named, timeout=180)
        head.proc.send_signal(signal.SIGINT)
        code = head.wait(120)
    finally:
        _stop(head)
    assert code == 130, head.transcript()
    reports = [line for line in head.err if line.startswith("sshrun: start-up still going")]
    # At the threshold nobody has probed yet (that begins a few seconds into
    # torchrun's wait): no alarm, whatever stage each node is at.
    assert reports[0].startswith("sshrun: start-up still going after 2s: 4 of 4 ranks not "
                                 "started: "), head.transcript()
    assert "cannot reach" not in reports[0], head.transcript()
    assert re.fullmatch(r"sshrun: start-up still going after \d+\.\ds: 4 of 4 ranks not "
                        rf"started: {re.escape(named)}", reports[-1]), head.transcript()
    assert not any("every rank started" in line for line in head.err), head.transcript()
    # The event file and the log directory's events.jsonl both have it.
    (logged,) = (tmp_path / "logs").glob("*/events.jsonl")
    in_log = [e for e in map(json.loads, logged.read_text().splitlines())
              if e["event"] == "rendezvous_probe"]
    probes = [e for e in map(json.loads, events.read_text().splitlines())
              if e["event"] == "rendezvous_probe"]
    assert probes == in_log
    assert probes and all(e["host"] == node1 and e["node"] == 1 for e in probes), probes
    assert (probes[-1]["state"], probes[-1]["address"], probes[-1]["error"]) == (
        "unreachable", endpoint, "timed out"), probes
    assert_no_leftovers(canary)
