"""Find a job's processes anywhere on this machine, to prove teardown.

Every test job gets ``-x SSHRUN_TEST_CANARY=<unique>``; the agent puts it in
the environment of everything the job starts, daemons included. A process
counts while it lives (zombies are dead and do not count).
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path


def new_canary() -> str:
    return uuid.uuid4().hex


def canary_pids(canary: str) -> list[int]:
    needle = f"\0SSHRUN_TEST_CANARY={canary}\0".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
            if stat[stat.rindex(b")") + 2 :].split()[0] == b"Z":
                continue
            with open(f"/proc/{name}/environ", "rb") as f:
                if needle in b"\0" + f.read():
                    found.append(int(name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def environ(pid: int) -> dict[str, str]:
    """The environment of process ``pid`` (OSError when it is gone)."""
    with open(f"/proc/{pid}/environ", "rb") as f:
        items = f.read().split(b"\0")
    return dict(i.decode(errors="replace").split("=", 1) for i in items if b"=" in i)


def start_time(pid: int) -> int | None:
    """Start time of a live (not zombie) process ``pid``, or None: with the pid, its identity."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def torchrun_of_node(canary: str, node: int) -> int:
    """The pid of node ``node``'s torchrun (the agent's child) in the job ``canary``."""
    found = []
    for pid in canary_pids(canary):
        try:
            is_torchrun = b"sshrun_torchrun" in Path(f"/proc/{pid}/cmdline").read_bytes()
            if is_torchrun and environ(pid).get("SSHRUN_NODE_RANK") == str(node):
                found.append(pid)
        except OSError:
            continue
    assert len(found) == 1, f"node {node} torchrun: {describe(canary_pids(canary))}"
    return found[0]


def agent_of_node(canary: str, node: int) -> int:
    """The pid of node ``node``'s agent: its torchrun's parent."""
    with open(f"/proc/{torchrun_of_node(canary, node)}/stat", "rb") as f:
        # The command name may hold spaces and parentheses: fields follow the last ')'.
        return int(f.read().rsplit(b")", 1)[1].split()[1])


def describe(pids: list[int]) -> str:
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            out.append(f"{pid}: {cmdline}")
        except OSError:
            out.append(f"{pid}: (gone)")
    return "; ".join(out)


def wait_gone(canary: str, timeout: float) -> list[int]:
    """Poll until no process carries the canary, or the deadline; return survivors."""
    deadline = time.monotonic() + timeout
    while True:
        pids = canary_pids(canary)
        if not pids or time.monotonic() >= deadline:
            return pids
        time.sleep(0.1)


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def assert_no_leftovers(canary: str, timeout: float = 15) -> None:
    """No process of the job may survive it, anywhere on this machine."""
    left = wait_gone(canary, timeout)
    assert not left, f"processes of the job survive: {describe(left)}"
