"""The launcher (sshrun.launcher) through the Python API, on real nodes.

Back-off and cool-downs run on an injected clock and sleep, so that a 25 s
cool-down takes no real time; the nodes are the embedded cluster (real
asyncssh servers in this process) or real sshd nodes.
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest
from conftest import MakeSshdCluster
from head import WORKERS
from jobprocs import assert_no_leftovers, new_canary

import sshrun
from sshrun.events import (
    SUPERVISOR_EVENTS,
    AttemptFailed,
    Event,
    HostLeftOut,
    JobFinished,
    JobStarted,
    NodeConnected,
    Notice,
    RanksStarted,
    Restarting,
)


class FakeTime:
    """A clock that only the launcher's sleep moves: waits cost no real time."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_backoff_doubles_up_to_its_cap_on_the_injected_clock() -> None:
    fake = FakeTime()
    events: list[Event] = []
    err = io.BytesIO()
    result = sshrun.launch(
        "sh", "-c", "exit 3", mode="exec", local_cluster=1, max_restarts=4,
        restart_backoff=1, restart_backoff_max=3, clock=fake.clock, sleep=fake.sleep,
        on_event=events.append, stdout=io.BytesIO(), stderr=err,
    )
    assert result.exit_code == 3
    assert fake.slept == [1.0, 2.0, 3.0, 3.0]
    assert result.elapsed == 9.0  # the injected clock's
    assert [a.number for a in result.attempts] == [0, 1, 2, 3, 4]
    assert all(a.exit_code == 3 and a.hosts == ("node1",) for a in result.attempts)
    # Every event, in order, each with the job's id and its attempt; the nodes' own
    # (node_connected, agent_up, ...) come between the launcher's.
    assert [e.attempt for e in events if isinstance(e, NodeConnected)] == [0, 1, 2, 3, 4]
    events = [e for e in events if not isinstance(e, SUPERVISOR_EVENTS)]
    assert [e.name for e in events] == (
        ["job_started"] + ["attempt_failed", "restarting"] * 4 + ["attempt_failed",
                                                                   "job_finished"])
    assert {e.job for e in events} == {result.job_id}
    assert [e.attempt for e in events if isinstance(e, AttemptFailed)] == [0, 1, 2, 3, 4]
    assert [(e.delay, e.restart, e.max_restarts) for e in events
            if isinstance(e, Restarting)] == [(1.0, 1, 4), (2.0, 2, 4), (3.0, 3, 4),
                                              (3.0, 4, 4)]
    assert isinstance(events[0], JobStarted) and events[0].hosts == ("node1",)
    finished = events[-1]
    assert isinstance(finished, JobFinished) and finished.result is result
    # The console report is a reader of the same events: today's lines.
    lines = err.getvalue().decode().splitlines()
    assert ("sshrun: attempt 1 failed (node1 (node 0): exited with code 3); restarting "
            "every node in 2.0s (restart 2 of 4)") in lines, lines
    assert "sshrun: exit status 3" in lines


@pytest.mark.torch
def test_cool_downs_pass_on_the_injected_clock() -> None:
    """Pool node1..node3, MIN 2, a 25 s cool-down: node2 fails, then node3; attempt 2
    waits out node2's cool-down (24 s on the clock, none in real time) and runs on
    node1 and node2."""
    fake = FakeTime()
    events: list[Event] = []
    canary = new_canary()
    out = io.BytesIO()
    result = sshrun.launch(
        str(WORKERS / "flaky.py"), local_cluster=3, nnodes="2:3", max_restarts=2,
        restart_backoff=1, host_cooldown=25,
        env=["FLAKY_UNTIL=2", f"SSHRUN_TEST_CANARY={canary}"],
        clock=fake.clock, sleep=fake.sleep, on_event=events.append, stdout=out,
        stderr=io.BytesIO(),
    )
    assert result.exit_code == 0, out.getvalue().decode()
    assert fake.slept == [1.0, 24.0]
    assert [(e.delay, e.nodes_needed) for e in events if isinstance(e, Restarting)] == [
        (1.0, None), (24.0, 2)]
    assert [(e.host, e.cooldown, e.at_start) for e in events
            if isinstance(e, HostLeftOut)] == [("node2", 25.0, False), ("node3", 25.0, False)]
    assert [a.hosts for a in result.attempts] == [
        ("node1", "node2", "node3"), ("node1", "node3"), ("node1", "node2")]
    assert [(r.host, r.attempt, r.until) for r in result.left_out] == [
        ("node2", 0, 1025.0), ("node3", 1, 1026.0)]
    # What each rank did, per attempt: rank 1 failed twice, then all succeeded.
    assert [result.rank(1, attempt=a).code for a in (0, 1)] == [3, 3]  # type: ignore[union-attr]
    assert [(r.rank, r.host, r.code) for r in result.attempts[2].ranks] == [
        (0, "node1", 0), (1, "node2", 0)]
    assert result.first_failure is None
    assert_no_leftovers(canary)


@pytest.mark.sshd
def test_unreachable_host_is_a_failed_attempt(make_sshd_cluster: MakeSshdCluster,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """node1 is down at attempt 0: a failed attempt (255, "unreachable"), not an error;
    it comes back during the back-off and attempt 1 runs on both nodes."""
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)  # the cluster's key only
    cluster = make_sshd_cluster(2, first_octet=60)
    cluster.kill_node(1)
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await asyncio.to_thread(cluster.start_node, 1)

    out = io.BytesIO()
    result = sshrun.launch("echo", "back", mode="exec", hosts=["node0", "node1"],
                           ssh_config=cluster.ssh_config, max_restarts=1,
                           restart_backoff=30, sleep=sleep, stdout=out,
                           stderr=io.BytesIO())
    assert result.exit_code == 0, out.getvalue()
    assert slept == [30.0]
    first = result.attempts[0]
    assert first.exit_code == 255 and first.hosts == ()
    assert first.first_failure is not None
    assert (first.first_failure.host, first.first_failure.reason) == ("node1", "unreachable")
    assert first.first_failure.message.startswith("unreachable: cannot connect to ")
    assert result.attempts[1].hosts == ("node0", "node1")
    assert sorted(out.getvalue().decode().splitlines()) == ["node0 | back", "node1 | back"]


def test_unreachable_without_restarts_raises_the_ssh_error() -> None:
    """Nothing listens on 127.0.0.254:1 (loopback): the job cannot start at all."""
    events: list[Event] = []
    with pytest.raises(sshrun.SshrunError) as caught:
        sshrun.launch("true", mode="exec", hosts="[127.0.0.254]:1", host_key_policy="insecure",
                      connect_timeout=5, on_event=events.append, quiet=True)
    assert caught.value.exit_code == 255
    # The insecure policy's warning is an event, heard by every reader.
    assert [e.name for e in events] == ["job_started", "notice", "job_finished"]
    warning = events[1]
    assert isinstance(warning, Notice) and warning.kind == "insecure_host_keys"
    assert warning.text.startswith("warning: --host-key-policy insecure: host keys are not")
    finished = events[-1]
    assert isinstance(finished, JobFinished) and finished.result.error is caught.value


def test_api_tells_resolving_notices_before_it_raises() -> None:
    err = io.StringIO()
    with pytest.raises(sshrun.ConfigError, match=r"^--nnodes 4: only 2 hosts given$"):
        sshrun.launch("t.py", nnodes=4, stderr=err, environ={"SLURM_JOB_NODELIST": "g[1-2]"})
    assert err.getvalue() == "sshrun: no hosts given; using the Slurm allocation g[1-2] (2 hosts)\n"
    quiet = io.StringIO()
    with pytest.raises(sshrun.ConfigError):
        sshrun.launch("t.py", nnodes=4, quiet=True, stderr=quiet,
                      environ={"SLURM_JOB_NODELIST": "g[1-2]"})
    assert quiet.getvalue() == ""


def test_local_cluster_takes_no_hosts_from_slurm() -> None:
    events: list[Event] = []
    result = sshrun.launch("true", mode="exec", local_cluster=2, on_event=events.append,
                           quiet=True, environ={"SLURM_JOB_NODELIST": "ignored[1-2]"})
    assert result.exit_code == 0
    # --local-cluster names the hosts, so Slurm's allocation is not used or named.
    assert [e for e in events if isinstance(e, Notice)] == []


def test_real_script_on_the_local_cluster_reports_every_rank() -> None:
    out = io.StringIO()
    result = sshrun.launch(str(WORKERS / "crash.py"), local_cluster=2, nproc_per_node=2,
                           env={"FAIL_RANK": 1, "FAIL_CODE": 42}, stdout=out,
                           stderr=io.StringIO())
    assert result.exit_code == 42
    failure = result.first_failure
    assert failure is not None
    assert (failure.host, failure.node, failure.rank, failure.local_rank, failure.code) == (
        "node1", 0, 1, 1, 42)
    assert failure.tail == ["rank 1 about to fail"]
    ranks = result.attempts[0].ranks
    assert [(r.rank, r.node, r.local_rank) for r in ranks] == [
        (0, 0, 0), (1, 0, 1), (2, 1, 0), (3, 1, 1)]
    # The others were stopped by the gang: SIGTERM from their torchrun.
    assert [(r.code, r.signal) for r in ranks if r.rank != 1] == [(143, "SIGTERM")] * 3
    assert sorted(line.split(" pid ")[0] for line in out.getvalue().splitlines()) == [
        "node1 r0 | rank 0", "node1 r1 | rank 1", "node2 r2 | rank 2", "node2 r3 | rank 3"]


def test_cancelling_arun_stops_every_node() -> None:
    canary = new_canary()
    events: list[Event] = []
    out = io.BytesIO()

    async def main() -> None:
        launcher = sshrun.Launcher(local_cluster=2, env=[f"SSHRUN_TEST_CANARY={canary}"],
                                   on_event=events.append, stdout=out, stderr=io.BytesIO())
        task = asyncio.ensure_future(launcher.arun(str(WORKERS / "hang.py")))
        async with asyncio.timeout(90):
            while out.getvalue().count(b"ready") < 2:
                assert not task.done(), out.getvalue()
                await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            async with asyncio.timeout(60):
                await task

    asyncio.run(main())
    finished = events[-1]
    assert isinstance(finished, JobFinished), events
    assert finished.exit_code == 130 and finished.result.interrupted
    assert_no_leftovers(canary)


def test_quiet_cancel_tells_the_interrupt_notice_as_an_event(tmp_path: Path) -> None:
    """quiet=True prints nothing; the notice still reaches on_event and --events."""
    canary = new_canary()
    events: list[Event] = []
    path = tmp_path / "events.jsonl"
    started = asyncio.Event()

    def heard(event: Event) -> None:
        events.append(event)
        if sum(isinstance(e, RanksStarted) for e in events) == 2:
            started.set()

    async def main() -> None:
        launcher = sshrun.Launcher(local_cluster=2, env=[f"SSHRUN_TEST_CANARY={canary}"],
                                   on_event=heard, quiet=True, events=str(path))
        task = asyncio.ensure_future(launcher.arun(str(WORKERS / "hang.py")))
        async with asyncio.timeout(90):
            await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            async with asyncio.timeout(60):
                await task

    asyncio.run(main())
    notices = [e for e in events if isinstance(e, Notice)]
    assert [(n.kind, n.text, n.lines) for n in notices] == [
        ("interrupted", "interrupted: stopping every node (Ctrl-C again to kill at once)", ())]
    assert isinstance(events[-1], JobFinished) and events[-1].exit_code == 130
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    written = [line for line in lines if line["event"] == "notice"]
    assert [(w["kind"], w["text"], w["lines"], w["attempt"]) for w in written] == [
        ("interrupted", "interrupted: stopping every node (Ctrl-C again to kill at once)",
         [], 0)]
    assert_no_leftovers(canary)


def test_run_inside_a_running_loop_uses_a_thread_of_its_own() -> None:
    async def main() -> sshrun.JobResult:
        return sshrun.Launcher(mode="exec", local_cluster=1, quiet=True).run("true")

    assert asyncio.run(main()).exit_code == 0


@pytest.mark.parametrize(("keywords", "message"), [
    ({"nproc_per_nodes": 2}, "nproc_per_nodes: not an option of sshrun (did you mean "
                             "nproc_per_node?)"),
    ({"local_cluster": 2, "nproc_per_node": "many"}, "--nproc-per-node: expected "),
    ({"hostfile": "h.txt", "hosts": "a"}, "-H/--hostfile and --hosts cannot be used together"),
    ({"local_cluster": 2, "env": [1]}, "env: expected a list of strings"),
    ({"local_cluster": 2, "mode": "exec", "nproc_per_node": 2},
     "--nproc-per-node: a torchrun option, not one of sshrun exec"),
    ({"local_cluster": 2, "grace_period": float("inf")}, "--grace-period: expected "),
    ({"local_cluster": 2, "max_restarts": -1}, "--max-restarts: expected "),
    ({"local_cluster": 2, "module": "yes"}, "--module: expected True or False"),
    ({"local_cluster": 2, "dry_run": True}, "dry_run: the dry run is the command line's"),
    ({"local_cluster": 0}, "--local-cluster: expected "),
    ({"environ": {}}, "no cluster given"),
    ({"local_cluster": 2, "rdzv_backend": "zookeeper"}, "--rdzv-backend: expected one of"),
])
def test_bad_keywords_raise_config_error(keywords: dict[str, object], message: str) -> None:
    with pytest.raises(sshrun.ConfigError) as caught:
        sshrun.launch("train.py", quiet=True, **keywords)  # type: ignore[arg-type]
    assert str(caught.value).startswith(message), str(caught.value)


def test_import_sshrun_is_light(tmp_path: Path) -> None:
    import subprocess
    import sys

    from head import REPO

    code = ("import sys, sshrun; light = 'asyncssh' not in sys.modules; "
            "sshrun.Launcher; print(light, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=REPO)
    assert done.stdout.split() == ["True", "False"], done.stderr
