"""Chaos: a node of a running job is black-holed (every packet dropped, no RST, no FIN).

Node 0 is node0 of the loopback sshd cluster; node 1 is an sshd in its own network
namespace (tests/netns_node.py). Once both ranks are ready, iptables DROPs everything into
and out of node 1's namespace. Then:

* node 1's agent hears no heartbeat for ``--heartbeat-timeout`` seconds and tears its
  whole tree down on its own: the head cannot reach it, so nothing else could;
* the head declares node 1 lost within a bounded time, stops node 0 and exits 255 with
  a report that names node 1 as lost;
* no process of the job is left anywhere, checked while the DROP rules are still in place.

The rendezvous store runs on node 0 and listens on this machine's end of the veth, the
one address of this machine that node 1's namespace can reach.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest
from head import WORKERS, Head
from jobprocs import assert_no_leftovers, canary_pids, describe, new_canary
from netns_node import NetnsNode
from sshd_cluster import SshdCluster, pick_port

pytestmark = [pytest.mark.sshd, pytest.mark.netns, pytest.mark.slow]

HEARTBEAT_TIMEOUT = 4.0
GRACE = 3.0
READY_TIMEOUT = 60.0
# The node tears down after the heartbeat timeout, then SIGTERM and at most the grace.
NODE_TEARDOWN_BOUND = HEARTBEAT_TIMEOUT + GRACE + 10.0
AGENT_EXIT_BOUND = NODE_TEARDOWN_BOUND + 10.0  # the agent's last output waits at most 5 s
HEAD_EXIT_BOUND = 40.0  # from the black hole to the head's exit status
LOST_WORDING = r": lost: no word from the node for \d+s \(--heartbeat-timeout 4\)"



def _in_netns(node: NetnsNode, canary: str) -> list[int]:
    return [pid for pid in canary_pids(canary) if node.contains(pid)]


def _not_sshd(node: NetnsNode) -> list[int]:
    """Processes in the namespace other than sshd's (the agent's bootstrap, for one)."""
    found = []
    for pid in node.pids():
        try:
            if os.readlink(f"/proc/{pid}/exe") != node.sshd_tools.sshd:
                found.append(pid)
        except OSError:
            continue
    return found


def test_blackholed_node_is_lost_and_tears_itself_down(
    sshd_cluster: SshdCluster, netns_node: NetnsNode, tmp_path: Path
) -> None:
    canary = new_canary()
    lost = netns_node.alias
    hostfile = tmp_path / "hostfile"
    hostfile.write_text(f"{sshd_cluster.alias(0)}\n{lost}\n")
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(netns_node.ssh_config_block + "\n" + sshd_cluster.ssh_config.read_text())
    # TCPStore listens on every address of node 0; node 1 reaches it through the veth.
    rdzv = f"{netns_node.host_address}:{pick_port(['0.0.0.0'])}"
    head = Head(
        ["-H", str(hostfile), "--ssh-config", str(ssh_config), "--nproc-per-node", "1",
         "--heartbeat-timeout", str(HEARTBEAT_TIMEOUT), "--grace-period", str(GRACE),
         "--rdzv-endpoint", rdzv, "-x", f"SSHRUN_TEST_CANARY={canary}",
         str(WORKERS / "hang.py")],
        cwd=tmp_path,
    )
    try:
        head.wait_line(" ready", timeout=READY_TIMEOUT, count=2)
        job = canary_pids(canary)
        inside = _in_netns(netns_node, canary)
        assert inside, f"no process of the job in {netns_node.name}: {describe(job)}"
        assert set(job) - set(inside), f"no process of the job on node0: {describe(job)}"

        holed_at = time.monotonic()
        netns_node.blackhole()

        # (b) The black-holed node's agent tears its tree down on its own.
        while (left := _in_netns(netns_node, canary)) and (
            time.monotonic() - holed_at < NODE_TEARDOWN_BOUND
        ):
            time.sleep(0.1)
        node_s = time.monotonic() - holed_at
        assert not left, (
            f"{lost} kept the job's processes {node_s:.1f}s after the head fell silent "
            f"(--heartbeat-timeout {HEARTBEAT_TIMEOUT}): {describe(left)}\n" + head.transcript()
        )

        # (a) The head declares the node lost, stops node0 and exits 255.
        code = head.wait(max(1.0, HEAD_EXIT_BOUND - (time.monotonic() - holed_at)))
        head_s = time.monotonic() - holed_at
        assert code == 255, head.transcript()
        report = [line for line in head.err if "first failure" in line]
        assert len(report) == 1, head.transcript()
        assert f"first failure: {lost} (node 1): " in report[0], head.transcript()
        # Lost by the head's watchdog ("no word from the node"), or by SSH keepalives.
        assert re.search(LOST_WORDING, report[0]), head.transcript()
        assert "node0 (node 0)" not in head.stderr, head.transcript()

        # Nothing of the job survives anywhere, while the rules still drop everything.
        assert_no_leftovers(canary, timeout=30)
        # The agent itself exits too (its last output to the head bounded): only the sshd
        # listener and the session that holds the dead connection remain.
        while (others := _not_sshd(netns_node)) and (
            time.monotonic() - holed_at < AGENT_EXIT_BOUND
        ):
            time.sleep(0.1)
        assert not others, f"left in {netns_node.name}: {describe(others)}"
        rules = netns_node.rules().splitlines()
        assert "-A INPUT -j DROP" in rules and "-A OUTPUT -j DROP" in rules, rules
        print(f"\n{netns_node!r}: node tree gone {node_s:.1f}s, head exited {head_s:.1f}s "
              "after the black hole")
    finally:
        if head.proc.poll() is None:
            os.killpg(head.proc.pid, signal.SIGKILL)
            head.proc.wait(10)
        if netns_node.blackholed:
            netns_node.restore()
