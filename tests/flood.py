"""64 ranks flooding a reader that stalls: sshrun's stdout piped into workers/stalling_reader.py.

``flood(args, ...)`` runs ``sshrun ARGS workers/flood.py`` (run mode: ARGS name the
nodes and ``--nproc-per-node``) with its stdout in a real pipe to the stalling reader,
samples the head's resident memory (``/proc/PID/status`` VmRSS) all along, and returns
what the reader found and the head's peak (VmHWM, the kernel's high-water mark of the
head's own address space: every page it ever held, not only what a sample saw). Not
``ru_maxrss`` from ``wait4``: Linux carries the forking process's RSS across ``execve``
into it, so a head started from a pytest that has imported torch reads ~500 MiB.
Used by tests/test_flood_memory.py and bench/memory.py. Every wait is bounded; a run
past its deadline is killed with its process group and is an AssertionError.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

WORKERS = Path(__file__).resolve().parent / "workers"


@dataclass
class FloodResult:
    code: int  # sshrun's exit status
    lines: list[int]  # lines each rank's reader got, intact and in order
    checksum: str  # of what came, rank by rank
    expected: str  # of what every rank wrote
    bad: list[str]  # lines that were no rank's next line (the first few)
    held: int  # ranks still writing when the stall ended
    peak_rss: int  # bytes: the head's high-water mark (VmHWM)
    stall_rss: list[int] = field(default_factory=list)  # VmRSS samples during the stall
    rss: list[int] = field(default_factory=list)  # every VmRSS sample
    wall: float = 0.0
    stderr: str = ""


def memory(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) in bytes, or None once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in text.splitlines()
             if line.startswith(("VmRSS:", "VmHWM:"))}
    if "VmRSS" not in found or "VmHWM" not in found:
        return None  # a zombie: its address space is gone
    return found["VmRSS"], found["VmHWM"]


def flood(args: list[str], ranks: int, lines: int, tmp: Path, stall: float,
          width: int = 80, timeout: float = 600.0, python: str = sys.executable) -> FloodResult:
    done = tmp / "flood-done"
    done.mkdir(exist_ok=True)
    err_path = tmp / "flood-head-stderr"
    env = dict(os.environ)
    env.pop("SSH_AUTH_SOCK", None)
    argv = [python, "-m", "sshrun", *args, "-x", f"FLOOD_LINES={lines}",
            "-x", f"FLOOD_WIDTH={width}", "-x", f"FLOOD_DONE={done}", str(WORKERS / "flood.py")]
    start = time.monotonic()
    with open(err_path, "wb") as err:
        head = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=err, start_new_session=True)
    assert head.stdout is not None
    reader = subprocess.Popen(
        [python, str(WORKERS / "stalling_reader.py"), str(ranks), str(lines), str(width),
         str(done), str(stall)], stdin=head.stdout, stdout=subprocess.PIPE)
    head.stdout.close()  # the reader's end now: when it goes, sshrun sees EPIPE
    samples: list[tuple[float, int]] = []
    high = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            now = memory(head.pid)
            if now is not None:
                samples.append((time.time(), now[0]))
                high[0] = max(high[0], now[1])
            stop.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    deadline = start + timeout
    try:
        while True:
            pid, status = os.waitpid(head.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"sshrun did not finish within {timeout:.0f}s:\n"
                                     + err_path.read_text(errors="replace")[-3000:])
            time.sleep(0.05)  # polling waitpid with a deadline: there is no waitpid timeout
        head.returncode = os.waitstatus_to_exitcode(status)
        stop.set()
        sampler.join(5)
        out, _ = reader.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        stop.set()
        if head.returncode is None:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(10)
        if reader.poll() is None:
            reader.kill()
            reader.communicate(timeout=10)
    wall = time.monotonic() - start
    found = json.loads(out)
    return FloodResult(
        code=head.returncode, lines=found["lines"], checksum=found["checksum"],
        expected=found["expected"], bad=found["bad"], held=found["held"],
        peak_rss=max(high[0], *(r for _, r in samples), 0),
        stall_rss=[r for t, r in samples if found["stall"][0] <= t <= found["stall"][1]],
        rss=[r for _, r in samples], wall=wall, stderr=err_path.read_text(errors="replace"))
