"""sshrun against real OpenSSH sshd nodes on 127.0.0.2, 127.0.0.3, 127.0.0.4.

The nodes' ``python3`` is the interpreter running the tests (see
tests/sshd_cluster.py); every job carries a canary variable so that each test
can prove that no process of the job is left anywhere afterwards.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

import pytest
from head import REPO, WORKERS, Head, run_sshrun
from jobprocs import agent_of_node, assert_no_leftovers, canary_pids, new_canary
from sshd_cluster import SshdCluster, cluster_args

pytestmark = pytest.mark.sshd


def test_every_rank_prints_with_node_and_rank_prefix(sshd_cluster: SshdCluster,
                                                     tmp_path: Path) -> None:
    canary = new_canary()
    script = tmp_path / "ranks.py"
    script.write_text(
        "import os, sys\n"
        "r = os.environ['RANK']\n"
        "print(f'out {r} node {os.environ[\"SSHRUN_NODE_RANK\"]}')\n"
        "print(f'err {r}', file=sys.stderr)\n"
        "sys.stdout.write(f'partial {r}')\n"
    )
    code, head = run_sshrun([*cluster_args(sshd_cluster), "--nproc-per-node", "2",
                             "-x", f"SSHRUN_TEST_CANARY={canary}", str(script)], cwd=tmp_path)
    assert code == 0, head.transcript()
    for rank in range(6):
        node = rank // 2
        assert f"node{node} r{rank} | out {rank} node {node}" in head.out
        assert f"node{node} r{rank} | partial {rank}" in head.out
        assert f"node{node} r{rank} | err {rank}" in head.err
        assert f"node{node} r{rank} | err {rank}" not in head.out
    assert "Traceback" not in head.stderr
    assert_no_leftovers(canary)


@pytest.mark.slow
@pytest.mark.torch
def test_ddp_gloo_three_nodes_two_procs_agree(sshd_cluster: SshdCluster, tmp_path: Path) -> None:
    canary = new_canary()
    code, head = run_sshrun(
        [*cluster_args(sshd_cluster), "--nproc-per-node", "2",
         "-x", f"SSHRUN_TEST_CANARY={canary}", str(REPO / "examples" / "train_ddp.py"),
         "--epochs", "3", "--steps", "10"], cwd=tmp_path, timeout=240,
    )
    assert code == 0, head.transcript()
    digests = {}
    for line in head.out:
        m = re.fullmatch(r"node(\d) r(\d) \| rank (\d) final-params ([0-9a-f]{16})", line)
        if m:
            assert m.group(2) == m.group(3)
            assert int(m.group(1)) == int(m.group(2)) // 2
            digests[int(m.group(2))] = m.group(4)
    assert sorted(digests) == list(range(6)), head.transcript()
    assert len(set(digests.values())) == 1, digests
    losses = [float(m.group(1)) for line in head.out
              if (m := re.search(r"epoch \d loss ([0-9.]+)", line))]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert_no_leftovers(canary)


@pytest.mark.slow
@pytest.mark.parametrize(("how", "expected"), [("exit", 7), ("signal", 137)])
def test_failing_rank_stops_every_node_and_sets_exit_status(
    sshd_cluster: SshdCluster, how: str, expected: int
) -> None:
    canary = new_canary()
    code, head = run_sshrun(
        [*cluster_args(sshd_cluster), "--nproc-per-node", "2", "--grace-period", "3",
         "-x", f"SSHRUN_TEST_CANARY={canary}", "-x", "FAIL_RANK=3", "-x", "FAIL_CODE=7",
         "-x", f"FAIL_HOW={how}", str(WORKERS / "crash.py")],
    )
    assert code == expected, head.transcript()
    report = [line for line in head.err if "first failure" in line]
    assert len(report) == 1, head.transcript()
    assert "node1 (node 1), rank 3 (local rank 1)" in report[0]
    assert ("exited with code 7" if how == "exit" else "killed by SIGKILL") in report[0]
    assert "rank 3 about to fail" in head.stderr
    assert "survivor was never stopped" not in head.stdout
    assert_no_leftovers(canary)


@pytest.mark.slow
def test_traceback_in_report(sshd_cluster: SshdCluster) -> None:
    canary = new_canary()
    code, head = run_sshrun(
        [*cluster_args(sshd_cluster), "-x", f"SSHRUN_TEST_CANARY={canary}",
         "-x", "FAIL_RANK=2", "-x", "FAIL_HOW=raise", str(WORKERS / "crash.py")],
    )
    assert code == 1, head.transcript()
    assert "node2 (node 2), rank 2" in head.stderr
    tail = head.stderr[head.stderr.index("first failure"):]
    assert "RuntimeError: boom on rank 2" in tail
    assert "sshrun_rank.py" not in tail  # the traceback starts at the user's code
    assert_no_leftovers(canary)


@pytest.mark.slow
def test_arguments_reach_the_script_literally(sshd_cluster: SshdCluster,
                                              tmp_path: Path) -> None:
    hostile = ["$(touch pwned1)", "; touch pwned2", "`touch pwned3`", "a b", "'\"", "*",
               "--epochs", "3", "\\n"]
    code, head = run_sshrun(
        [*cluster_args(sshd_cluster), "--workdir", str(tmp_path),
         "-x", "HOSTILE=$(touch pwned4)", str(WORKERS / "echo_args.py"), *hostile],
        cwd=tmp_path,
    )
    assert code == 0, head.transcript()
    import json

    argv_lines = [line.split(" | ", 1)[1] for line in head.out if " | ARGV " in line]
    assert json.loads(argv_lines[0][len("ARGV "):]) == hostile
    assert f"CWD {tmp_path}" in head.stdout
    for name in ("pwned1", "pwned2", "pwned3", "pwned4"):
        assert not (tmp_path / name).exists()
        assert not (Path.home() / name).exists()


def test_exec_runs_a_command_on_every_node(sshd_cluster: SshdCluster) -> None:
    code, head = run_sshrun(
        ["exec", *cluster_args(sshd_cluster), "--", "python3", "-c",
         "import os; print('node', os.environ['SSHRUN_NODE_RANK'])"],
    )
    assert code == 0, head.transcript()
    for k in range(3):
        assert f"node{k} | node {k}" in head.out


def test_exec_failure_exit_status(sshd_cluster: SshdCluster) -> None:
    canary = new_canary()
    code, head = run_sshrun(
        ["exec", *cluster_args(sshd_cluster), "-x", f"SSHRUN_TEST_CANARY={canary}", "--",
         "python3", "-c",
         "import os, sys, time\n"
         "if os.environ['SSHRUN_NODE_RANK'] == '1': sys.exit(5)\n"
         "time.sleep(60)"],
    )
    assert code == 5, head.transcript()
    assert "node1 (node 1)" in head.stderr
    assert_no_leftovers(canary)


@pytest.mark.slow
def test_sigterm_ignoring_worker_and_daemon_are_killed(sshd_cluster: SshdCluster,
                                                       tmp_path: Path) -> None:
    canary = new_canary()
    head = Head([*cluster_args(sshd_cluster), "--nproc-per-node", "2", "--grace-period", "2",
                 "-x", f"SSHRUN_TEST_CANARY={canary}", "-x", "IGNORE_TERM=1", "-x", "DAEMON=1",
                 "-x", f"DAEMON_PIDFILE_DIR={tmp_path}", str(WORKERS / "hang.py")])
    head.wait_line("ready", timeout=90, count=6)
    daemons = [int(p.read_text()) for p in tmp_path.glob("daemon-*.pid")]
    assert len(daemons) == 6
    assert set(daemons) <= set(canary_pids(canary))
    head.proc.send_signal(signal.SIGINT)
    assert head.wait(60) == 130, head.transcript()
    assert "interrupted" in head.stderr
    assert_no_leftovers(canary)


def test_second_ctrl_c_kills_at_once(sshd_cluster: SshdCluster) -> None:
    canary = new_canary()
    head = Head([*cluster_args(sshd_cluster), "--grace-period", "60",
                 "-x", f"SSHRUN_TEST_CANARY={canary}", "-x", "IGNORE_TERM=1",
                 str(WORKERS / "hang.py")])
    head.wait_line("ready", timeout=90, count=3)
    head.proc.send_signal(signal.SIGINT)
    head.wait_line("stopping every node", timeout=10)
    head.proc.send_signal(signal.SIGINT)
    # Well within the 60 s grace period: the second Ctrl-C did not wait for it.
    assert head.wait(30) == 130, head.transcript()
    assert_no_leftovers(canary, timeout=10)


@pytest.mark.slow
def test_sigkill_of_the_head_tears_every_node_down(sshd_cluster: SshdCluster) -> None:
    canary = new_canary()
    head = Head([*cluster_args(sshd_cluster), "--nproc-per-node", "2",
                 "-x", f"SSHRUN_TEST_CANARY={canary}", "-x", "DAEMON=1",
                 str(WORKERS / "hang.py")])
    head.wait_line("ready", timeout=90, count=6)
    os.killpg(head.proc.pid, signal.SIGKILL)
    head.wait(10)
    assert_no_leftovers(canary, timeout=30)


def test_missing_interpreter_is_a_configuration_error(sshd_cluster: SshdCluster) -> None:
    code, head = run_sshrun([*cluster_args(sshd_cluster), "--python", "/nonexistent/python3",
                             str(WORKERS / "echo_args.py")])
    assert code == 2, head.transcript()
    assert "node0: cannot run interpreter '/nonexistent/python3'" in head.stderr
    assert "Traceback" not in head.stderr


def test_missing_workdir_fails_naming_the_node(sshd_cluster: SshdCluster) -> None:
    code, head = run_sshrun([*cluster_args(sshd_cluster), "--workdir", "/nonexistent/dir",
                             str(WORKERS / "echo_args.py")])
    assert code == 2, head.transcript()
    # Checked before launch: one clear line naming the node, nothing started.
    assert head.err == ["sshrun: error: node0: working directory /nonexistent/dir does not "
                        "exist on this node (--workdir, or workdir in the config) "
                        "(and 2 more: node1, node2)"]
    assert head.out == []


def test_unknown_host_key_is_refused_with_fingerprint(sshd_cluster: SshdCluster,
                                                      tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    config.write_text(sshd_cluster.ssh_config.read_text().replace(
        str(sshd_cluster.known_hosts), str(empty)))
    code, head = run_sshrun(["-H", str(sshd_cluster.hostfile), "--ssh-config", str(config),
                             str(WORKERS / "echo_args.py")])
    assert code == 255, head.transcript()
    assert re.search(r"node0: host key SHA256:\S+ is not in known_hosts", head.stderr)
    assert "ssh-keyscan" in head.stderr
    assert "Traceback" not in head.stderr


def test_known_hosts_none_in_config_still_checks(sshd_cluster: SshdCluster,
                                                 tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    config.write_text(
        sshd_cluster.ssh_config.read_text()
        .replace(f"UserKnownHostsFile {sshd_cluster.known_hosts}", "UserKnownHostsFile none")
        .replace("StrictHostKeyChecking yes", "StrictHostKeyChecking no")
    )
    env = dict(os.environ, HOME=str(home))
    code, head = run_sshrun(["-H", str(sshd_cluster.hostfile), "--ssh-config", str(config),
                             str(WORKERS / "echo_args.py")], env=env)
    assert code == 255, head.transcript()
    assert "is not in known_hosts" in head.stderr


def test_changed_host_key_is_refused(sshd_cluster: SshdCluster, tmp_path: Path) -> None:
    import asyncssh

    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
    known = tmp_path / "known_hosts"
    lines = sshd_cluster.known_hosts.read_text().splitlines()
    first_host = lines[0].split()[0]
    lines[0] = f"{first_host} {other}"
    known.write_text("\n".join(lines) + "\n")
    config = tmp_path / "ssh_config"
    config.write_text(sshd_cluster.ssh_config.read_text().replace(
        str(sshd_cluster.known_hosts), str(known)))
    code, head = run_sshrun(["-H", str(sshd_cluster.hostfile), "--ssh-config", str(config),
                             "--host-key-policy", "accept-new", str(WORKERS / "echo_args.py")])
    assert code == 255, head.transcript()
    assert "node0: host key has CHANGED" in head.stderr
    assert "ssh-keygen -R" in head.stderr


@pytest.mark.slow
def test_accept_new_records_unknown_keys(sshd_cluster: SshdCluster, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    config = tmp_path / "ssh_config"
    config.write_text(sshd_cluster.ssh_config.read_text().replace(
        str(sshd_cluster.known_hosts), str(known)))
    code, head = run_sshrun(["-H", str(sshd_cluster.hostfile), "--ssh-config", str(config),
                             "--host-key-policy", "accept-new", str(WORKERS / "echo_args.py")])
    assert code == 0, head.transcript()
    recorded = sorted(known.read_text().splitlines())
    assert recorded == sorted(sshd_cluster.known_hosts.read_text().splitlines())
    # And now strict works with what was recorded.
    code, head = run_sshrun(["-H", str(sshd_cluster.hostfile), "--ssh-config", str(config),
                             str(WORKERS / "echo_args.py")])
    assert code == 0, head.transcript()


def test_rejected_key_is_an_auth_error(sshd_cluster: SshdCluster, tmp_path: Path) -> None:
    import asyncssh

    key = tmp_path / "other_key"
    key.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key())
    key.chmod(0o600)
    config = tmp_path / "ssh_config"
    config.write_text(sshd_cluster.ssh_config.read_text().replace(
        str(sshd_cluster.client_key), str(key)))
    code, head = run_sshrun(["-H", str(sshd_cluster.hostfile), "--ssh-config", str(config),
                             str(WORKERS / "echo_args.py")],
                            env=dict(os.environ, HOME=str(tmp_path)))
    assert code == 255, head.transcript()
    assert "node0: permission denied" in head.stderr


def test_unreachable_node_is_an_ssh_error(sshd_cluster: SshdCluster, tmp_path: Path) -> None:
    hostfile = tmp_path / "hosts"
    # 127.0.0.99 has no sshd: connection refused, at once.
    hostfile.write_text(f"node0\n[127.0.0.99]:{sshd_cluster.port}\n")
    code, head = run_sshrun(["-H", str(hostfile), "--ssh-config", str(sshd_cluster.ssh_config),
                             str(WORKERS / "echo_args.py")])
    assert code == 255, head.transcript()
    assert f"[127.0.0.99]:{sshd_cluster.port}: cannot connect" in head.stderr


def test_default_python3_on_the_nodes(sshd_cluster: SshdCluster) -> None:
    code, head = run_sshrun(["exec", *cluster_args(sshd_cluster), "--", "python3", "-c",
                             "import sys; print(sys.executable)"])
    assert code == 0, head.transcript()
    assert f"node0 | {os.path.dirname(sys.executable)}" in head.stdout


@pytest.mark.slow
def test_silent_head_makes_agents_tear_down(sshd_cluster: SshdCluster) -> None:
    """A frozen head (SIGSTOP) sends no heartbeats: every agent stops the job on its own."""
    canary = new_canary()
    head = Head([*cluster_args(sshd_cluster), "--heartbeat-timeout", "3",
                 "-x", f"SSHRUN_TEST_CANARY={canary}", str(WORKERS / "hang.py")])
    head.wait_line("ready", timeout=90, count=3)
    os.killpg(head.proc.pid, signal.SIGSTOP)
    try:
        assert_no_leftovers(canary, timeout=30)
    finally:
        os.killpg(head.proc.pid, signal.SIGKILL)
        os.killpg(head.proc.pid, signal.SIGCONT)
        head.wait(10)


@pytest.mark.slow
def test_output_flood_loses_no_line(sshd_cluster: SshdCluster, tmp_path: Path) -> None:
    script = tmp_path / "flood.py"
    script.write_text(
        "import os, sys\n"
        "r = int(os.environ['RANK'])\n"
        "out = sys.stdout\n"
        "for i in range(20000):\n"
        "    out.write(f'{r}:{i}:' + 'x' * (i % 97) + '\\n')\n"
        "out.write('L' * 300000 + '\\n')\n"
        "sys.stdout.buffer.write(b'bad \\xff\\xfe utf8 \\xe2\\x82\\xac\\n')\n"
        "out.write('10%\\r50%\\r100%\\n')\n"
        "out.flush()\n"
    )
    code, head = run_sshrun([*cluster_args(sshd_cluster), "--nproc-per-node", "2",
                             str(script)], timeout=240)
    assert code == 0, head.transcript()[-2000:]
    for rank in range(6):
        prefix = f"node{rank // 2} r{rank} | "
        mine = [line[len(prefix):] for line in head.out if line.startswith(prefix)]
        body = [line for line in mine if line.startswith(f"{rank}:")]
        assert body == [f"{rank}:{i}:" + "x" * (i % 97) for i in range(20000)]
        assert "L" * 300000 in mine
        assert "bad \ufffd\ufffd utf8 \u20ac" in mine
        assert "100%" in mine


@pytest.mark.slow
def test_c10d_rendezvous(sshd_cluster: SshdCluster) -> None:
    code, head = run_sshrun([*cluster_args(sshd_cluster), "--rdzv-backend", "c10d",
                             "-x", "ALL=1", str(WORKERS / "echo_args.py"), "x"])
    assert code == 0, head.transcript()
    ranks = sorted(int(m.group(1)) for line in head.out
                   if (m := re.match(r"node\d r(\d) \| ARGV", line)))
    assert ranks == [0, 1, 2]


@pytest.mark.slow
@pytest.mark.parametrize("daemon", [False, True], ids=["ranks", "ranks+daemons"])
def test_lost_agent_stops_the_job_and_its_node(sshd_cluster: SshdCluster, tmp_path: Path,
                                               daemon: bool) -> None:
    """SIGKILL of one node's agent: the head reports that node lost and stops the others;
    on that node, torchrun and its ranks follow their dead parents, and the agent's
    sentinel sweeps what does not (a daemon each rank double-forked)."""
    canary = new_canary()
    extra = ["-x", "DAEMON=1", "-x", f"DAEMON_PIDFILE_DIR={tmp_path}"] if daemon else []
    head = Head([*cluster_args(sshd_cluster), "--nproc-per-node", "2", "--grace-period", "2",
                 "-x", f"SSHRUN_TEST_CANARY={canary}", *extra, str(WORKERS / "hang.py")])
    head.wait_line("ready", timeout=90, count=6)
    if daemon:
        assert len(list(tmp_path.glob("daemon-*.pid"))) == 6
    os.kill(agent_of_node(canary, 1), signal.SIGKILL)
    assert head.wait(60) == 255, head.transcript()
    assert "first failure: node1 (node 1): connection to the agent lost" in head.stderr
    assert_no_leftovers(canary, timeout=30)


@pytest.mark.slow
def test_proxyjump_from_ssh_config(sshd_cluster: SshdCluster, tmp_path: Path) -> None:
    """node2 reached through node0 (ProxyJump), as a bastion setup would."""
    config = tmp_path / "ssh_config"
    config.write_text(
        "Host jumped2\n  HostName 127.0.0.4\n  ProxyJump node0\n"
        f"  Port {sshd_cluster.port}\n  User {sshd_cluster.user}\n"
        f"  IdentityFile {sshd_cluster.client_key}\n"
        f"  UserKnownHostsFile {sshd_cluster.known_hosts}\n\n"
        + sshd_cluster.ssh_config.read_text()
    )
    code, head = run_sshrun(["--hosts", "node1,jumped2", "--ssh-config", str(config),
                             "-x", "ALL=1", str(WORKERS / "echo_args.py"), "via-jump"])
    assert code == 0, head.transcript()
    assert 'jumped2 r1 | ARGV ["via-jump"]' in head.out


@pytest.mark.torch
@pytest.mark.parametrize("mode", ["exec", "torchrun"])
def test_an_exec_agent_skips_the_site_module_a_torchrun_agent_runs_it(
        sshd_cluster: SshdCluster, tmp_path: Path, mode: str) -> None:
    """The agent runs under ``python -S``. An exec job's agent never runs ``site`` (its
    .pth files and sitecustomize cost a node ~30 ms) yet reports torch, found in the
    site directories; a torchrun job's agent runs it, so that what hello finds (and
    refuses) is what the job's interpreter will find."""
    import json

    marks = tmp_path / "marks"
    marks.mkdir()
    (tmp_path / "sitecustomize.py").write_text(
        f"import os\nopen(os.path.join({str(marks)!r}, str(os.getpid())), 'w').close()\n")
    wrapper = tmp_path / "python"
    # PYTHONPATH only for the agent's own interpreter: the job's processes get
    # sshrun's environment, not the wrapper's.
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH={tmp_path} exec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    events = tmp_path / "events.jsonl"
    job = (["exec", *cluster_args(sshd_cluster), "--python", str(wrapper), "--events",
            str(events), "--", "true"] if mode == "exec" else
           [*cluster_args(sshd_cluster), "--python", str(wrapper), "--events", str(events),
            str(WORKERS / "echo_args.py")])
    code, head = run_sshrun(job, cwd=tmp_path)
    assert code == 0, head.transcript()
    ups = [e for e in map(json.loads, events.read_text().splitlines())
           if e["event"] == "agent_up"]
    assert len(ups) == sshd_cluster.n and all(e["torch"] for e in ups), ups
    agents = {str(e["pid"]) for e in ups}
    ran_site = agents & {p.name for p in marks.iterdir()}
    assert ran_site == (set() if mode == "exec" else agents)


def test_an_exec_commands_stdout_is_the_channels_own(sshd_cluster: SshdCluster,
                                                     tmp_path: Path) -> None:
    """``Passthrough``: the command writes into the pipe that sshd reads, the agent's (its
    parent's) own stdout, so its bytes never cross the agent; its stderr still comes
    framed through the agent, and both arrive whole."""
    script = ('readlink /proc/$$/fd/1; readlink /proc/$PPID/fd/1; '
              'seq 1 50000; echo to-stderr >&2')
    code, head = run_sshrun(["exec", *cluster_args(sshd_cluster), "--python", sys.executable,
                             "--", "sh", "-c", script], cwd=tmp_path)
    assert code == 0, head.transcript()
    for k in range(sshd_cluster.n):
        mine = [line.split(" | ", 1)[1] for line in head.stdout.splitlines()
                if line.startswith(f"node{k} | ")]
        ours, agents, *numbers = mine
        assert ours == agents and ours.startswith(("pipe:[", "socket:[")), mine[:2]
        assert numbers == [str(i) for i in range(1, 50001)]
        assert f"node{k} | to-stderr" in head.stderr.splitlines(), head.stderr


HOLDER = """
import os, socket, sys, time
path, ready = sys.argv[1], sys.argv[2]
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path)
server.listen(1)
open(ready, "w").close()
conn, _ = server.accept()
_, fds, _, _ = socket.recv_fds(conn, 16, 4)
deadline = time.monotonic() + 60
while time.monotonic() < deadline and not os.path.exists(ready + ".stop"):
    time.sleep(0.05)
"""

SENDER = """
import socket, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.connect(sys.argv[1])
socket.send_fds(sock, [b"x"], [1])
print("handed over", flush=True)
"""


def test_a_stdout_held_outside_the_job_does_not_keep_it_open(sshd_cluster: SshdCluster,
                                                              tmp_path: Path) -> None:
    """The command hands its stdout (the channel's, under passthrough) to a process that is
    not in the job's tree, so no sweep reaches it and sshd never sees stdout end. Once the
    agent has said ``exited`` and stdout has been quiet for 2 s, the head closes it: the
    job ends, whole, while the holder still holds it."""
    import subprocess
    import time

    sock, ready = tmp_path / "holder.sock", tmp_path / "ready"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(sock), str(ready)])
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert time.monotonic() < deadline and holder.poll() is None, "holder not up"
            time.sleep(0.02)
        hosts = tmp_path / "one"
        hosts.write_text(sshd_cluster.aliases[0] + "\n")
        start = time.monotonic()
        code, head = run_sshrun(["exec", "-H", str(hosts), "--ssh-config",
                                 str(sshd_cluster.ssh_config), "--python", sys.executable,
                                 "--", sys.executable, "-c", SENDER, str(sock)],
                                timeout=60, cwd=tmp_path)
        took = time.monotonic() - start
        assert code == 0, head.transcript()
        assert head.stdout.splitlines() == ["node0 | handed over"], head.transcript()
        assert holder.poll() is None, "the holder is gone: nothing held the channel open"
        assert took < 20, f"{took:.1f}s"
    finally:
        (tmp_path / "ready.stop").touch()
        holder.wait(timeout=30)
