"""The output stream and the exit status say exactly what happened, whatever the reader does.

Against real OpenSSH sshd nodes (tests/sshd_cluster.py): a reader that stalls
longer than the heartbeat timeout, or past the agent's old final drain; a head
frozen until its agents stop the job on their own; a reader that goes away
(``| head``); a line far over the framer's limit and an endless progress bar.
Every job carries a canary variable, so that each test can prove no process of
it is left anywhere afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from head import WORKERS, Head
from jobprocs import assert_no_leftovers, new_canary
from sshd_cluster import SshdCluster, cluster_args

from sshrun.output import MAX_LINE

pytestmark = pytest.mark.sshd


def one_node(cluster: SshdCluster, tmp_path: Path) -> list[str]:
    """sshrun's arguments for the cluster's first node alone."""
    hostfile = tmp_path / "one-node"
    hostfile.write_text(cluster.alias(0) + "\n")
    return ["-H", str(hostfile), "--ssh-config", str(cluster.ssh_config)]


class StalledReader:
    """``sshrun ARGS`` with its stdout in a pipe that nobody reads until ``read_all``."""

    def __init__(self, args: list[str], tmp_path: Path) -> None:
        env = dict(os.environ)
        env.pop("SSH_AUTH_SOCK", None)
        self.err_path = tmp_path / "head-stderr"
        with open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sshrun", *args], env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=err, start_new_session=True,
            )

    def read_all(self, timeout: float) -> tuple[int, list[str]]:
        """Now read everything, as fast as it comes; the exit status and the lines."""
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate(timeout=10)
            raise AssertionError(f"sshrun did not exit within {timeout}s\n{self.stderr}") \
                from None
        return self.proc.returncode, out.decode("utf-8", "replace").splitlines()

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.communicate(timeout=10)


def numbered(prefix: str, lines: list[str], width: int) -> list[int]:
    """The numbers of the lines ``<prefix><n> xxx...``, checking each line's body."""
    numbers = []
    for line in lines:
        if line.startswith(prefix):
            number, body = line[len(prefix):].split(" ", 1)
            assert body == "x" * width, line[:200]
            numbers.append(int(number))
    return numbers


@pytest.mark.slow
def test_reader_stalled_past_the_heartbeat_timeout_loses_nothing(
    sshd_cluster: SshdCluster, tmp_path: Path
) -> None:
    """A reader that stalls 8 s (heartbeat timeout 3 s): back-pressure, not a killed job.

    32 MB is more than the head's console backlog, the SSH windows and the
    agent's buffer together hold, so the command blocks on its writes while
    the reader stalls, and finishes once it reads.
    """
    canary = new_canary()
    marker = tmp_path / "marker"
    count = 400_000
    command = (
        "import sys\n"
        "out = sys.stdout\n"
        f"for i in range({count}):\n"
        "    out.write(f'{i} ' + 'x' * 72 + '\\n')\n"
        "out.flush()\n"
        f"open({str(marker)!r}, 'w').close()\n"
    )
    head = StalledReader(["exec", *one_node(sshd_cluster, tmp_path), "--heartbeat-timeout", "3",
                          "-x", f"SSHRUN_TEST_CANARY={canary}", "--",
                          "python3", "-c", command], tmp_path)
    try:
        time.sleep(8)  # the stall itself is what is tested: nothing to wait for
        assert head.proc.poll() is None, head.stderr
        assert not marker.exists(), "the command was never held back"
        # Bounded memory: the console backlog stops at 4 MiB (docs/design.md).
        assert head.rss_bytes() < 128 << 20
        code, lines = head.read_all(timeout=180)
    finally:
        head.kill()
    assert code == 0, head.stderr
    assert numbered(f"{sshd_cluster.alias(0)} | ", lines, 72) == list(range(count))
    assert marker.exists()
    assert "job finished on 1 node" in head.stderr
    assert "Traceback" not in head.stderr
    assert_no_leftovers(canary)


@pytest.mark.slow
def test_output_before_exit_reaches_a_reader_stalled_past_the_final_drain(
    sshd_cluster: SshdCluster, tmp_path: Path
) -> None:
    """6 MB written, then exit, while the reader stalls 9 s: every line, then exit 0."""
    canary = new_canary()
    count = 120_001
    command = (
        "import sys\n"
        f"for i in range({count}):\n"
        "    sys.stdout.write(f'{i} ' + 'x' * 44 + '\\n')\n"
    )
    head = StalledReader(["exec", *one_node(sshd_cluster, tmp_path),
                          "-x", f"SSHRUN_TEST_CANARY={canary}", "--",
                          "python3", "-c", command], tmp_path)
    try:
        time.sleep(9)  # longer than the agent's old 5 s final drain
        code, lines = head.read_all(timeout=180)
    finally:
        head.kill()
    assert code == 0, head.stderr
    assert numbered(f"{sshd_cluster.alias(0)} | ", lines, 44) == list(range(count))
    assert "connection to the agent lost" not in head.stderr
    assert_no_leftovers(canary)


@pytest.mark.slow
def test_an_agents_own_stop_is_a_failure(sshd_cluster: SshdCluster) -> None:
    """A head frozen past the heartbeat timeout, then thawed: its agents stopped the
    job on their own, and sshrun says so and exits 255, never 0."""
    canary = new_canary()
    head = Head([*cluster_args(sshd_cluster), "--heartbeat-timeout", "3",
                 "-x", f"SSHRUN_TEST_CANARY={canary}", "-x", "HANG_SECONDS=60",
                 str(WORKERS / "hang.py")])
    try:
        head.wait_line("ready", timeout=90, count=3)
        os.killpg(head.proc.pid, signal.SIGSTOP)
        try:
            assert_no_leftovers(canary, timeout=30)
        finally:
            os.killpg(head.proc.pid, signal.SIGCONT)
        code = head.wait(60)
    finally:
        if head.proc.poll() is None:
            os.killpg(head.proc.pid, signal.SIGKILL)
            head.wait(10)
    assert code == 255, head.transcript()
    report = [line for line in head.err if "first failure" in line]
    assert len(report) == 1, head.transcript()
    assert "stopped by its agent: no heartbeat from the head for 3s" in report[0]
    assert "job finished" not in head.stderr
    assert "Traceback" not in head.stderr


PRINT_FOREVER = (
    "import itertools, os, sys, time\n"
    "tag = os.environ.get('RANK', 'cmd')\n"
    "for i in itertools.count():\n"
    "    print(tag, i, flush=True)\n"
    "    time.sleep(0.001)\n"
)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["exec", "run"])
def test_closed_stdout_stops_the_job_quietly(sshd_cluster: SshdCluster, tmp_path: Path,
                                             mode: str) -> None:
    """``sshrun ... | head -n 3``: every node stopped, exit 141, no traceback."""
    canary = new_canary()
    script = tmp_path / "forever.py"
    script.write_text(PRINT_FOREVER)
    target = ["--", "python3", str(script)] if mode == "exec" else [str(script)]
    env = dict(os.environ)
    env.pop("SSH_AUTH_SOCK", None)
    pipe_out, pipe_in = os.pipe()  # sshrun ... | head -n 3
    reader = subprocess.Popen(["head", "-n", "3"], stdin=pipe_out, stdout=subprocess.PIPE)
    os.close(pipe_out)
    sshrun = subprocess.Popen(
        [sys.executable, "-m", "sshrun", *([mode] if mode == "exec" else []),
         *cluster_args(sshd_cluster), "--grace-period", "3",
         "-x", f"SSHRUN_TEST_CANARY={canary}", *target],
        env=env, stdin=subprocess.DEVNULL, stdout=pipe_in, stderr=subprocess.PIPE,
        start_new_session=True,
    )
    os.close(pipe_in)
    try:
        shown, _ = reader.communicate(timeout=120)
        _, err = sshrun.communicate(timeout=60)
    finally:
        if sshrun.poll() is None:
            os.killpg(sshrun.pid, signal.SIGKILL)
            sshrun.communicate(timeout=10)
    stderr = err.decode(errors="replace")
    assert len(shown.splitlines()) == 3
    assert sshrun.returncode == 141, stderr
    assert "Traceback" not in stderr
    assert "BrokenPipeError" not in stderr
    assert "stdout closed: stopping every node" in stderr
    assert "job finished" not in stderr
    assert_no_leftovers(canary)


@pytest.mark.slow
def test_long_line_and_endless_bar_through_real_nodes(sshd_cluster: SshdCluster,
                                                      tmp_path: Path) -> None:
    """A 5 MiB line comes in marked pieces that join to it; a 15 MB bar with no
    newline shows its last state; exit 0."""
    canary = new_canary()
    size = 5 * MAX_LINE + 17
    command = (
        "import sys\n"
        "out = sys.stdout\n"
        f"line = ''.join(chr(97 + i % 26) for i in range({size}))\n"
        "out.write(line + '\\n')\n"
        "out.write('after\\n')\n"
        "i = 0\n"
        "while i < 150000:\n"
        "    out.write(''.join(f'\\r{k % 100:3d}%|{\"#\" * 80}| {k}'\n"
        "                      for k in range(i, i + 1000)))\n"
        "    i += 1000\n"
        "out.flush()\n"
    )
    head = Head(["exec", *one_node(sshd_cluster, tmp_path), "-x", f"SSHRUN_TEST_CANARY={canary}",
                 "--", "python3", "-c", command])
    code = head.wait(180)
    assert code == 0, head.transcript()[-3000:]
    host = sshd_cluster.alias(0)
    joined: list[str] = []
    for line in head.out:
        if line.startswith(f"{host} + "):
            joined[-1] += line[len(host) + 3:]
        else:
            assert line.startswith(f"{host} | "), line[:100]
            joined.append(line[len(host) + 3:])
    expected = "".join(chr(97 + i % 26) for i in range(size))
    assert joined == [expected, "after", f" 99%|{'#' * 80}| 149999"]
    assert sum(line.startswith(f"{host} + ") for line in head.out) == 5
    assert_no_leftovers(canary)


def test_a_closed_stderr_does_not_crash_the_head(sshd_cluster: SshdCluster,
                                                 tmp_path: Path) -> None:
    """stderr closed from the start: the rank's stderr lines and sshrun's report go
    nowhere, the job runs to its end, and its stdout is whole."""
    canary = new_canary()
    env = dict(os.environ)
    env.pop("SSH_AUTH_SOCK", None)
    read_end, write_end = os.pipe()
    os.close(read_end)  # a stderr that nobody will ever read: EPIPE
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "sshrun", "exec", *one_node(sshd_cluster, tmp_path),
             "-x", f"SSHRUN_TEST_CANARY={canary}", "--", "python3", "-c",
             "import sys\nfor i in range(1000):\n    print(i)\n    print(i, file=sys.stderr)\n"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=write_end,
            timeout=120, check=False,
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 0
    host = sshd_cluster.alias(0)
    assert proc.stdout.decode().splitlines() == [f"{host} | {i}" for i in range(1000)]
    assert_no_leftovers(canary)


@pytest.mark.slow
def test_dry_run_into_a_closed_pipe_exits_141_quietly(tmp_path: Path) -> None:
    """``sshrun --dry-run ... | head -n 1`` with a plan far larger than the pipe holds."""
    env = dict(os.environ)
    env.pop("PYTHONUNBUFFERED", None)  # buffered, as in a user's shell
    pipe_out, pipe_in = os.pipe()
    reader = subprocess.Popen(["head", "-n", "1"], stdin=pipe_out, stdout=subprocess.PIPE)
    os.close(pipe_out)
    sshrun = subprocess.Popen(
        [sys.executable, "-m", "sshrun", "--dry-run", "--hosts", "gpu[1-20000]", "train.py"],
        env=env, stdin=subprocess.DEVNULL, stdout=pipe_in, stderr=subprocess.PIPE,
        cwd=Path(__file__).resolve().parent.parent,
    )
    os.close(pipe_in)
    shown, _ = reader.communicate(timeout=60)
    _, err = sshrun.communicate(timeout=60)
    assert shown.decode().startswith("job ")
    assert sshrun.returncode == 141, err.decode(errors="replace")
    assert err == b""
