"""What one node agent costs its node in CPU, beside ``python -c pass``, with idle processes around.

The agent runs as the head starts it for an exec job (``PYTHON -S -c
BOOTSTRAP``, the payload on stdin: the agent compiled by this interpreter
and its source, then the preflight, ``site`` false as for exec;
``--source``: the plain bundle, which the node compiles), says hello, gets
a spec for ``exec -- true``, runs it, sweeps, sends ``exited`` and exits: a
job that exits cleanly. It runs under a measuring process that is a child
subreaper, so that every process the agent leaves behind (its sentinel)
comes back to it; that process reaps them all and reads
``RUSAGE_CHILDREN``: the CPU (user + system) of the agent and every helper
it forked, the job's own process included. The job's (``true`` under the
same measure) and the interpreter's start-up (``python -c pass``) are
measured the same way and subtracted:

    agent cost = cpu(agent running `true`) - cpu(true) - cpu(python -c pass)

Each case runs with ``--extra`` idle processes (``sleep``) on the machine,
spawned before and killed after, so that a cost that grows with the machine's
processes shows. Medians of ``--repeat`` runs, and the same from the fastest run of
each (CPU time on a shared machine only grows with the neighbours' load); the result
is a Markdown table.

The agent comes from whatever ``sshrun`` is first on the path, so the same
script measures another tree (an older commit, say):

    python bench/agent_cost.py --extra 100,5000 --repeat 15
    git archive REV sshrun | tar -x -C /tmp/before
    PYTHONPATH=/tmp/before python bench/agent_cost.py

``--phases`` adds where the agent's start-up goes: the payload's unpacking, then
per part of the bundle its code (unmarshalled where the interpreter's magic
number is the head's, else compiled) and its run (its imports included),
timed in process.
Linux only, like the agent. Nothing is contacted: the agent's stdin and
stdout are pipes.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import marshal
import os
import resource
import select
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

from sshrun import agent
from sshrun.node.protocol import HEADER, KIND_EVENT, Preflight, Spec, encode_command

PR_SET_CHILD_SUBREAPER = 36


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _read_event(fd: int, buf: bytearray, deadline: float) -> dict[str, object]:
    """The next event frame on ``fd`` (output frames skipped)."""
    while True:
        while len(buf) >= HEADER.size:
            kind, _, _, size = HEADER.unpack_from(buf)
            if len(buf) < HEADER.size + size:
                break
            payload = bytes(buf[HEADER.size:HEADER.size + size])
            del buf[:HEADER.size + size]
            if kind == KIND_EVENT:
                event: dict[str, object] = json.loads(payload)
                return event
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise SystemExit("the agent did not answer within 60 s")
        data = os.read(fd, 65536)
        if not data:
            raise SystemExit(f"the agent closed its stdout early: {bytes(buf[:200])!r}")
        buf += data


def shipped(plain: bool) -> bytes:
    """What the head sends after the length: its payload, or (``plain``, or a tree from
    before payloads) the bundle's source."""
    build = getattr(agent, "payload", None)
    return agent.BUNDLE if plain or build is None else bytes(build())


def _drive_agent(python: str, bundle: bytes) -> None:
    """Start one agent, run ``true`` through it, and wait for its ``exited``."""
    token = uuid.uuid4().hex
    proc = subprocess.Popen([python, "-S", "-c", agent.BOOTSTRAP], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdin is not None and proc.stdout is not None
    fd = proc.stdout.fileno()
    preflight = encode_command(Preflight(sync=token, site=False))
    proc.stdin.write(b"%08x" % len(bundle) + bundle + preflight)
    proc.stdin.flush()
    buf = bytearray()
    deadline = time.monotonic() + 60
    # The sync marker comes before any frame.
    marker = b"\nsshrun-agent-sync " + token.encode() + b"\n"
    while marker not in buf:
        if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
            raise SystemExit("no sync marker from the agent")
        data = os.read(fd, 65536)
        if not data:
            raise SystemExit("the agent exited before its sync marker")
        buf += data
    del buf[:buf.index(marker) + len(marker)]
    hello = _read_event(fd, buf, deadline)
    assert hello["type"] == "hello", hello
    spec = Spec(mode="exec", tag=f"bench.{token}.0", grace=10.0, hb_timeout=30.0,
                hb_period=10.0, argv=("true",))
    proc.stdin.write(encode_command(spec))
    proc.stdin.flush()
    while True:
        event = _read_event(fd, buf, deadline)
        if event["type"] == "exited":
            assert event["code"] == 0, event
            break
    proc.stdin.close()
    proc.wait(60)
    proc.stdout.close()


def measured(argv: list[str] | None, python: str, bundle: bytes = b"") -> float:
    """CPU seconds of one run (``argv``, or an agent of ``bundle`` when None) and everything
    it forked."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read_end)
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
            before = _cpu_children()
            if argv is None:
                _drive_agent(python, bundle)
            else:
                subprocess.run(argv, check=True, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL)
            # Orphans (the agent's sentinel) came back to us: reap them too.
            with contextlib.suppress(ChildProcessError):
                while True:
                    os.wait()
            os.write(write_end, repr(_cpu_children() - before).encode())
            code = 0
        except BaseException as exc:  # reported by the parent, which sees no number
            os.write(2, f"measure: {exc!r}\n".encode())
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        text = f.read()
    _, status = os.waitpid(pid, 0)
    if status != 0 or not text:
        raise SystemExit(f"measuring {argv or 'the agent'} failed")
    return float(text)


@contextlib.contextmanager
def idle_processes(count: int) -> Iterator[None]:
    """``count`` sleeping processes on the machine for the duration; killed afterwards."""
    sleep = "/bin/sleep"
    pids: list[int] = []
    try:
        for _ in range(count):
            pids.append(os.posix_spawn(sleep, [sleep, "3600"], dict(os.environ)))
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def _processes() -> int:
    return sum(name.isdigit() for name in os.listdir("/proc"))


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def min_ms(samples: list[float]) -> float:
    return min(samples) * 1000


# Unpacks the payload as the bootstrap does, then loads the agent's modules as the
# bundle's loader does, timing each: its code unmarshalled (the head's magic number)
# or its source compiled, then run (its imports included). Reads a marshal'd
# (version 2) tuple: the head's magic, the payload, then (name, source, code) per module.
# json is imported after the last one: protocol's run includes it, as on a node.
PHASES = """
import marshal, sys, time, types, zlib
t = time.process_time
magic, payload, modules = marshal.loads(sys.stdin.buffer.read())
same = magic == getattr(sys.modules.get("_frozen_importlib_external"), "MAGIC_NUMBER", 0)
a = t()
if payload[:1] != b"\\x00":  # a tree from before payloads: its plain bundle
    same = False
    compile(payload, "<sshrun-agent>", "exec")
elif same:
    zlib.decompress(payload[13:13 + int(payload[5:13], 16)])
else:
    compile(zlib.decompress(payload[13 + int(payload[5:13], 16):]), "<sshrun-agent>", "exec")
out = [("payload", (t() - a) * 1000, 0.0)]
for name in ("sshrun", "sshrun.node"):
    package = types.ModuleType(name)
    package.__path__ = []
    sys.modules[name] = package
for name, source, code in modules:
    a = t()
    code = marshal.loads(code) if same else compile(source, name, "exec")
    b = t()
    module = types.ModuleType(name)
    sys.modules[name] = module
    parent, _, leaf = name.rpartition(".")
    setattr(sys.modules[parent], leaf, module)
    exec(code, module.__dict__)
    out.append((leaf, (b - a) * 1000, (t() - b) * 1000))
import json
print(json.dumps([same, out]))
"""


def phases(python: str, repeat: int) -> tuple[bool, list[tuple[str, float, float]]]:
    """Whether ``python`` runs the head's code, and the median CPU ms, per part of the
    payload, of its code (unmarshalled or compiled) and of running it."""
    import importlib.util

    modules = []
    for part in agent.MODULES:
        name, text = f"sshrun.node.{part}", agent.source(part)
        code = compile(text, f"<sshrun-agent:{name}>", "exec")
        modules.append((name, text, marshal.dumps(code)))
    feed = marshal.dumps((importlib.util.MAGIC_NUMBER, shipped(False), modules), 2)
    runs = [json.loads(subprocess.run([python, "-S", "-c", PHASES], input=feed, capture_output=True,
                                      check=True, timeout=60).stdout)
            for _ in range(repeat)]
    same = bool(runs[0][0])
    return same, [(str(name), statistics.median(run[1][i][1] for run in runs),
                   statistics.median(run[1][i][2] for run in runs))
                  for i, (name, _, _) in enumerate(runs[0][1])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable,
                        help="the node's interpreter (default: this one)")
    parser.add_argument("--extra", default="100,5000",
                        help="idle processes to add, comma-separated counts")
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--phases", action="store_true",
                        help="also time the payload's unpacking and the loader, in process")
    parser.add_argument("--source", action="store_true",
                        help="send the bundle's source, which the node compiles, not the "
                             "payload")
    args = parser.parse_args()

    import sshrun
    bundle = shipped(args.source)
    sent = "the bundle's source" if bundle is agent.BUNDLE else "the payload"
    print(f"agent from {os.path.dirname(sshrun.__file__)}, python {args.python}, {sent} "
          f"({len(bundle):,} bytes), median of {args.repeat}\n")
    print("| extra processes | on the machine | python -c pass | true | agent (exec true) "
          "| agent beyond python -c pass | the same, from the fastest runs |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for count in (int(c) for c in args.extra.split(",")):
        with idle_processes(count):
            total = _processes()
            base, job, whole = [], [], []
            for _ in range(args.repeat):
                base.append(measured([args.python, "-c", "pass"], args.python))
                job.append(measured(["true"], args.python))
                whole.append(measured(None, args.python, bundle))
        cost = median_ms(whole) - median_ms(job) - median_ms(base)
        floor = min_ms(whole) - min_ms(job) - min_ms(base)
        print(f"| {count} | {total} | {median_ms(base):.1f} ms | {median_ms(job):.1f} ms "
              f"| {median_ms(whole):.1f} ms | **{cost:.1f} ms** | {floor:.1f} ms |", flush=True)
    if args.phases:
        same, parts = phases(args.python, args.repeat)
        how = "unmarshal (the head's magic number)" if same else "compile (another magic number)"
        print(f"\n| part of the payload | {how} | run (its imports included) |")
        print("|---|---:|---:|")
        for name, loaded, ran in parts:
            print(f"| {name} | {loaded:.1f} ms | {ran:.1f} ms |")


if __name__ == "__main__":
    main()
