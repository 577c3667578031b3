"""``sshrun check``'s network test against a node in its own network namespace.

node0 is a loopback sshd node; the other node lives in a namespace joined by a
veth (tests/netns_node.py), and reaches node0 through the host's end of it,
which is the rendezvous address given (``--rdzv-endpoint``), as a real job's
would be. First without a rule (the check passes: the test can fail both
ways), then with an iptables rule inside the namespace that drops TCP to
node0's port: check names the node and the address it tried.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from head import run_sshrun
from netns_node import NetnsNode
from sshd_cluster import SshdCluster, pick_port

pytestmark = [pytest.mark.sshd, pytest.mark.netns, pytest.mark.slow]

NETWORK_TIMEOUT = 3.0



def _check(sshd_cluster: SshdCluster, node: NetnsNode, tmp_path: Path,
           endpoint: str) -> tuple[int, dict[str, Any], str]:
    hostfile = tmp_path / "hostfile"
    hostfile.write_text(f"{sshd_cluster.alias(0)}\n{node.alias}\n")
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(node.ssh_config_block + "\n" + sshd_cluster.ssh_config.read_text())
    code, head = run_sshrun(
        ["check", "--json", "-H", str(hostfile), "--ssh-config", str(ssh_config),
         "--python", sys.executable, "--rdzv-endpoint", endpoint,
         "--network-timeout", str(NETWORK_TIMEOUT)], timeout=120, cwd=tmp_path)
    assert "Traceback" not in head.stderr, head.transcript()
    try:
        return code, json.loads(head.stdout), head.transcript()
    except ValueError:
        pytest.fail(f"check --json printed what is not JSON:\n{head.transcript()}")


def test_check_names_the_node_that_cannot_reach_node0(
        sshd_cluster: SshdCluster, netns_node: NetnsNode, tmp_path: Path) -> None:
    port = pick_port(["0.0.0.0"])
    endpoint = f"{netns_node.host_address}:{port}"

    code, data, transcript = _check(sshd_cluster, netns_node, tmp_path, endpoint)
    assert code == 0, transcript
    assert data["nodes"][1]["network"]["ok"] is True
    assert data["nodes"][1]["network"]["address"] == endpoint

    netns_node.drop_port(netns_node.host_address, port)
    code, data, transcript = _check(sshd_cluster, netns_node, tmp_path, endpoint)
    assert code == 1, transcript
    node0, node1 = data["nodes"]
    assert node0["verdict"]["ok"] is True and node0["network"]["heard"] == 0
    assert node1["host"] == netns_node.alias
    assert node1["network"] == {"ok": False, "address": endpoint, "error": "timed out",
                                "heard": None}
    assert node1["verdict"]["problems"] == [f"cannot reach node 0 at {endpoint}: timed out"]
