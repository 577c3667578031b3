"""Run the sshrun head as a real subprocess and watch what it prints."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORKERS = REPO / "tests" / "workers"


class Watched:
    """A command in its own process group; stdout and stderr collected by threads."""

    def __init__(self, argv: Sequence[str], cwd: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.argv = list(argv)
        self.proc = subprocess.Popen(
            self.argv, cwd=cwd, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._cond = threading.Condition()
        self._threads = [
            threading.Thread(target=self._collect, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._collect, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _collect(self, stream: object, into: list[str]) -> None:
        for raw in stream:  # type: ignore[attr-defined]
            with self._cond:
                into.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cond.notify_all()

    def wait_line(self, text: str, timeout: float, count: int = 1) -> None:
        """Until ``count`` stdout/stderr lines contain ``text`` (bounded)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while sum(text in line for line in self.out + self.err) < count:
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._alive()):
                    raise AssertionError(
                        f"no {count}x {text!r} within {timeout}s; exit={self.proc.poll()}\n"
                        + self.transcript()
                    )
                self._cond.wait(min(left, 0.2))

    def _alive(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def wait(self, timeout: float) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(
                f"{self.argv[0]} did not exit within {timeout}s\n" + self.transcript()
            ) from None
        for t in self._threads:
            t.join(10)
        return code

    def transcript(self) -> str:
        return "--- stdout\n" + "\n".join(self.out) + "\n--- stderr\n" + "\n".join(self.err)

    @property
    def stdout(self) -> str:
        return "\n".join(self.out)

    @property
    def stderr(self) -> str:
        return "\n".join(self.err)


class Head(Watched):
    """``sshrun ARGS``, with our environment minus an ssh-agent (the cluster key only)."""

    def __init__(self, args: Sequence[str], cwd: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        full_env = dict(os.environ if env is None else env)
        full_env.pop("SSH_AUTH_SOCK", None)
        super().__init__([sys.executable, "-m", "sshrun", *args], cwd=cwd, env=full_env)


def run_sshrun(args: Sequence[str], timeout: float = 180, cwd: Path | None = None,
               env: dict[str, str] | None = None) -> tuple[int, Head]:
    head = Head(args, cwd=cwd, env=env)
    return head.wait(timeout), head
