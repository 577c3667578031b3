"""The Python API: the command line's job, without a shell (docs/api.md).

::

    result = sshrun.launch("train.py", "--epochs", "3", hostfile="hosts.txt",
                           nproc_per_node=2, max_restarts=1)
    launcher = sshrun.Launcher(hosts=["gpu01:8", "gpu02:8"], on_event=print)
    result = await launcher.arun("train.py")

Keywords are the command line's long options with underscores
(``--nproc-per-node`` is ``nproc_per_node``); their values go through the same
resolver and the same checks as the flags (sshrun.settings), so a bad value
raises :class:`sshrun.errors.ConfigError` with the flag's one-line message.
``mode="exec"`` is ``sshrun exec``: the target is then any command.

Nothing here exits the process or installs a signal handler unless asked
(``handle_signals=True``). Cancelling the task that awaits :meth:`Launcher.arun`
stops every node as Ctrl-C does, and then raises ``CancelledError``;
Ctrl-C during :meth:`Launcher.run` (or :func:`launch`) does the same and raises
``KeyboardInterrupt``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import io
import os
import sys
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import IO, Any

from sshrun.errors import ConfigError, SshrunError
from sshrun.events import OnEvent
from sshrun.launcher import Clock, Runtime, Sleep, binary_stream, run_job
from sshrun.result import JobResult
from sshrun.settings import Mode, Options, check_options, resolve

# Options the API takes as keywords: every long option but the dry run (which
# prints a plan: use ``sshrun --dry-run``) and what the target already says.
KEYWORDS = tuple(f.name for f in dataclasses.fields(Options)
                 if f.name not in ("mode", "target", "dry_run"))
_LISTS = ("env", "env_file", "secret", "sync_exclude", "sync_include")


class Launcher:
    """A job's settings, ready to run any number of times (each run a new job).

    ``on_event``: a callable, or several, called with every typed event
    (sshrun.events) in the event loop, the launcher's and the nodes' alike
    (``node_connected``, ``agent_up``, ``ranks_started``, ``rank_started``,
    ``rendezvous_probe``, ``rank_exited``, ``node_lost``, ``stopping``, ``node_swept``);
    keep them quick.
    ``stdout``/``stderr``: where the ranks' lines and sshrun's own go (binary or
    text files; default ``sys.stdout``/``sys.stderr`` when the job starts);
    ``quiet=True`` drops both (the events and the result still say everything).
    ``environ``: the head's environment for forwarding (default ``os.environ``).
    ``clock``/``sleep``: the launcher's time (tests pass fakes).
    """

    def __init__(self, *, mode: Mode = "run",
                 on_event: OnEvent | Iterable[OnEvent] | None = None,
                 stdout: IO[Any] | None = None, stderr: IO[Any] | None = None,
                 quiet: bool = False, handle_signals: bool = False,
                 environ: Mapping[str, str] | None = None,
                 clock: Clock | None = None, sleep: Sleep | None = None,
                 **options: object) -> None:
        self.options = _options(mode, options)
        if on_event is None:
            readers: tuple[OnEvent, ...] = ()
        elif callable(on_event):
            readers = (on_event,)
        else:
            readers = tuple(on_event)
        if not all(callable(r) for r in readers):
            raise ConfigError("on_event: expected a callable or a list of callables")
        if quiet:
            stdout = stderr = _Discard()  # type: ignore[assignment]
        self.environ = dict(environ) if environ is not None else None
        self._stderr = stderr
        self.runtime = Runtime(
            on_event=readers,
            stdout=None if stdout is None else binary_stream(stdout),
            stderr=None if stderr is None else binary_stream(stderr),
            handle_signals=handle_signals,
        )
        if clock is not None:
            self.runtime = dataclasses.replace(self.runtime, clock=clock)
        if sleep is not None:
            self.runtime = dataclasses.replace(self.runtime, sleep=sleep)

    async def arun(self, *target: object) -> JobResult:
        """Run SCRIPT [ARGS...] (or, with mode="exec", COMMAND [ARGS...]) to its end."""
        opts = dataclasses.replace(self.options, target=_target(target))
        try:
            inv = resolve(opts, self.environ)
        except SshrunError as exc:
            # No job, so no events: resolving's notices explain the error.
            for text in exc.notices:
                self._notice(f"sshrun: {text}")
            raise
        return await run_job(inv, self.runtime)

    def run(self, *target: object) -> JobResult:
        """:meth:`arun`, blocking. Inside a running event loop (a notebook) the
        job runs on a thread of its own with its own loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.arun(*target))
        if self.runtime.handle_signals:
            raise ConfigError("handle_signals=True needs the main thread's own event loop: "
                              "await arun() instead")
        return _on_a_thread(lambda: self.arun(*target))

    def _notice(self, line: str) -> None:
        stream = self._stderr if self._stderr is not None else sys.stderr
        if isinstance(stream, _Discard):
            return
        if isinstance(stream, io.TextIOBase) or hasattr(stream, "encoding"):
            print(line, file=stream)
        else:
            stream.write((line + "\n").encode())  # type: ignore[arg-type]


def launch(*target: object, **keywords: Any) -> JobResult:
    """Run one job and wait for it: ``Launcher(**keywords).run(*target)``."""
    return Launcher(**keywords).run(*target)


def _options(mode: object, given: Mapping[str, object]) -> Options:
    """The keywords as :class:`Options`, shaped as the command line gives them."""
    values: dict[str, Any] = {}
    for name, value in given.items():
        if name not in KEYWORDS:
            close = difflib.get_close_matches(name, KEYWORDS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            what = ("the dry run is the command line's (sshrun --dry-run)"
                    if name == "dry_run" else f"not an option of sshrun{hint}")
            raise ConfigError(f"{name}: {what}")
        if value is None:
            continue
        if name == "hosts" and not isinstance(value, str):
            value = ",".join(_strings(value, name))
        elif name == "env" and isinstance(value, Mapping):
            value = tuple(f"{k}={v}" for k, v in _pairs(value))
        elif name in _LISTS:
            value = (_path(value),) if isinstance(value, (str, os.PathLike)) \
                else tuple(_strings(value, name))
        elif name in ("hostfile", "config", "ssh_config", "workdir", "python", "events",
                      "log_dir", "sync"):
            value = _path(value)
        values[name] = value
    if mode not in ("run", "exec"):
        raise ConfigError(f"mode: expected 'run' or 'exec', got {mode!r}")
    opts = Options(mode=mode, **values)
    check_options(opts)
    return opts


def _strings(value: object, name: str) -> list[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ConfigError(f"{name}: expected a list of strings, got {type(value).__name__}")
    items = [_path(v) if isinstance(v, os.PathLike) else v for v in value]
    if not all(isinstance(v, str) for v in items):
        raise ConfigError(f"{name}: expected a list of strings")
    return items


def _pairs(mapping: Mapping[object, object]) -> list[tuple[str, str]]:
    pairs = []
    for key, value in mapping.items():
        if not isinstance(key, str) or not isinstance(value, (str, int, float)) \
                or isinstance(value, bool):
            raise ConfigError(f"env: expected NAME: value strings, got {key!r}")
        pairs.append((key, str(value)))
    return pairs


def _path(value: object) -> Any:
    """A path-like value as text; anything else as it is (the checks say what is wrong)."""
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def _target(target: tuple[object, ...]) -> tuple[str, ...]:
    out = []
    for item in target:
        if isinstance(item, os.PathLike):
            item = os.fspath(item)
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            item = str(item)
        if not isinstance(item, str):
            raise ConfigError(f"the script and its arguments must be strings, got {item!r}")
        out.append(item)
    return tuple(out)


class _Discard(io.RawIOBase):
    """Output nobody wants (quiet=True)."""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return len(data)


def _on_a_thread(make: Callable[[], Coroutine[Any, Any, JobResult]]) -> JobResult:
    """Run the job on a thread with its own event loop; Ctrl-C here cancels it there."""
    box: dict[str, Any] = {}
    started = threading.Event()

    async def main() -> JobResult:
        box["loop"], box["task"] = asyncio.get_running_loop(), asyncio.current_task()
        started.set()
        return await make()

    def body() -> None:
        try:
            box["result"] = asyncio.run(main())
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=body, name="sshrun-job", daemon=True)
    thread.start()
    interrupted = False
    while thread.is_alive():
        try:
            thread.join(0.2)
        except KeyboardInterrupt:
            interrupted = True
            if started.is_set():
                box["loop"].call_soon_threadsafe(box["task"].cancel)
    if interrupted:
        raise KeyboardInterrupt
    if "error" in box:
        raise box["error"]
    return box["result"]  # type: ignore[no-any-return]
