"""What ``sshrun check`` found on each node, and what is wrong with it: pure values.

``sshrun.check_run`` gathers one :class:`NodeCheck` per node (the agent's
hello, ping samples, the probe's JSON from ``sshrun.node.check_probe``);
everything here is a function of those values, the head's clock passed in as
samples, so that verdicts and offsets are tested without a cluster.

Clock offset, as NTP estimates it: the head stamps a ping when it sends it
(t0) and when the pong comes back (t1); the node stamps its reading (tn).
Assuming the two legs take as long, the offset is ``tn - (t0 + t1) / 2``,
wrong by at most half the round trip ``t1 - t0``. Of several samples the one
with the shortest round trip is the least wrong, so it is the one used.

Verdicts (:func:`verdicts`): a node is unfit when it cannot be reached or
did not answer, lacks its interpreter, torch or working directory, runs a
torch or Python version unlike the majority's, has fewer GPUs than slots
(when it has any), a clock more than ``SKEW_LIMIT`` seconds off, cannot reach
node 0 on the rendezvous address, or failed the collective. Processes
already using its GPUs are a warning: shown, not failed.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sshrun import errors
from sshrun.frozen_dataclass import frozen_dataclass
from sshrun.sanitize import sanitize

SKEW_LIMIT = 1.0  # seconds: more than this between a node's clock and the head's fails it


@frozen_dataclass
class ClockSample:
    sent: float  # head's time.time() when the ping left
    node: float  # node's time.time() when it read the ping
    received: float  # head's time.time() when the pong arrived


@frozen_dataclass
class Clock:
    offset: float  # node minus head, seconds
    rtt: float  # of the sample used, seconds


def clock_offset(samples: Sequence[ClockSample]) -> Clock | None:
    """The offset from the sample with the shortest round trip; None without samples."""
    usable = [s for s in samples if s.received >= s.sent]
    if not usable:
        return None
    best = min(usable, key=lambda s: s.received - s.sent)
    return Clock(offset=best.node - (best.sent + best.received) / 2,
                 rtt=best.received - best.sent)


@frozen_dataclass
class GpuProcess:
    pid: int | None
    owner: str | None
    command: str | None
    used_mib: int | None


@frozen_dataclass
class Gpu:
    index: int | None
    model: str
    memory_mib: int | None
    used_mib: int | None
    processes: tuple[GpuProcess, ...] = ()


@frozen_dataclass
class Network:
    """Node 0's listener, or another node's connection to it."""

    ok: bool
    address: str | None = None  # what this node tried (host:port); None on node 0
    error: str | None = None
    heard: int | None = None  # node 0: how many nodes reached it


@frozen_dataclass
class Collective:
    ok: bool
    backend: str | None = None
    seconds: float | None = None  # one all_reduce
    bytes: int | None = None
    bus_bandwidth: float | None = None  # bytes per second
    error: str | None = None


@frozen_dataclass
class NodeCheck:
    """One node's row. ``error`` set: it could not be checked at all (and why)."""

    node: int
    host: str
    slots: str
    workdir: str | None
    address: str | None = None  # as the head reached it
    error: str | None = None
    unreachable: bool = False  # no SSH connection at all (exit 255)
    rtt: float | None = None  # SSH round trip to the agent, seconds
    offset: float | None = None
    user: str | None = None
    python: str | None = None
    python_version: str | None = None
    torch: bool | None = None
    torch_version: str | None = None
    cuda_version: str | None = None
    nccl_version: str | None = None
    gpus: tuple[Gpu, ...] | None = None  # None: no nvidia-smi (or it failed: gpu_error)
    gpu_error: str | None = None
    free_bytes: int | None = None
    workdir_ok: bool | None = None
    # --sync (or sync: in the config) makes the working directory: it need not exist yet.
    synced: bool = False
    network: Network | None = None
    collective: Collective | None = None


# -- the probe's JSON (node text: every field checked, nothing trusted) -------------


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _str(value: Any) -> str | None:
    return sanitize(value) if isinstance(value, str) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def gpus_from(data: dict[str, Any]) -> tuple[Gpu, ...] | None:
    raw = data.get("gpus")
    if not isinstance(raw, list):
        return None
    found = []
    for item in raw:
        gpu = _dict(item)
        procs = tuple(
            GpuProcess(pid=_int(p.get("pid")), owner=_str(p.get("owner")),
                       command=_str(p.get("command")), used_mib=_int(p.get("used_mib")))
            for p in map(_dict, gpu.get("processes") or []))
        found.append(Gpu(index=_int(gpu.get("index")), model=_str(gpu.get("model")) or "?",
                         memory_mib=_int(gpu.get("memory_mib")),
                         used_mib=_int(gpu.get("used_mib")), processes=procs))
    return tuple(found)


def network_from(data: Any) -> Network | None:
    if not isinstance(data, dict):
        return None
    return Network(ok=data.get("ok") is True, address=_str(data.get("address")),
                   error=_str(data.get("error")), heard=_int(data.get("heard")))


def collective_from(data: Any) -> Collective | None:
    if not isinstance(data, dict):
        return None
    return Collective(ok=data.get("ok") is True, backend=_str(data.get("backend")),
                      seconds=_float(data.get("seconds")), bytes=_int(data.get("bytes")),
                      bus_bandwidth=_float(data.get("bus_bandwidth")),
                      error=_str(data.get("error")))


def with_probe(row: NodeCheck, data: dict[str, Any]) -> NodeCheck:
    """``row`` with what the node's probe said (its JSON object)."""
    return replace(row, user=_str(data.get("user")), nccl_version=_str(data.get("nccl_version")),
                   gpus=gpus_from(data), gpu_error=_str(data.get("gpu_error")),
                   free_bytes=_int(data.get("free_bytes")),
                   network=network_from(data.get("network")),
                   collective=collective_from(data.get("collective")))


# -- verdicts -----------------------------------------------------------------------


def majority(values: Sequence[str | None]) -> str | None:
    """The most common value; a tie goes to the one seen first (node order)."""
    known = [v for v in values if v is not None]
    if not known:
        return None
    counts = Counter(known)
    top = max(counts.values())
    return next(v for v in known if counts[v] == top)


@frozen_dataclass
class Verdict:
    problems: tuple[str, ...] = ()  # the node is unfit
    warnings: tuple[str, ...] = ()  # worth a look, not a failure

    @property
    def ok(self) -> bool:
        return not self.problems


def verdicts(rows: Sequence[NodeCheck], skew_limit: float = SKEW_LIMIT) -> list[Verdict]:
    """One verdict per row, in order: what makes each node unfit, and what is odd."""
    checked = [r for r in rows if r.error is None]
    torch_major = majority([r.torch_version for r in checked])
    python_major = majority([r.python_version for r in checked])
    found = []
    for row in rows:
        if row.error is not None:
            found.append(Verdict(problems=(row.error,)))
            continue
        problems: list[str] = []
        warnings: list[str] = []
        if row.workdir_ok is False:
            problems.append(f"working directory {row.workdir} missing")
        if not row.torch:
            problems.append(f"no torch for {row.python}")
        elif row.torch_version != torch_major and torch_major is not None:
            problems.append(f"torch {row.torch_version} (most nodes: {torch_major})")
        if row.python_version != python_major and python_major is not None:
            problems.append(f"Python {row.python_version} (most nodes: {python_major})")
        if row.gpus and row.slots.isdigit() and len(row.gpus) < int(row.slots):
            problems.append(f"{len(row.gpus)} GPUs for {row.slots} slots")
        if row.gpu_error is not None:
            warnings.append(row.gpu_error)
        busy = sum(len(g.processes) for g in row.gpus or ())
        if busy:
            warnings.append(f"{busy} process{'es' if busy > 1 else ''} already on its GPUs")
        if row.offset is not None and abs(row.offset) > skew_limit:
            problems.append(f"clock {row.offset:+.1f}s off the head's")
        net = row.network
        if net is not None and not net.ok:
            where = f" at {net.address}" if net.address else ""
            problems.append(f"cannot reach node 0{where}: {net.error}" if row.node
                            else f"node 0 cannot listen: {net.error}")
        coll = row.collective
        if coll is not None and not coll.ok:
            problems.append(f"all_reduce failed: {coll.error}")
        found.append(Verdict(tuple(problems), tuple(warnings)))
    return found


def exit_code(rows: Sequence[NodeCheck], found: Sequence[Verdict]) -> int:
    """DESIGN.md §3: 255 when a node cannot be reached at all, 1 when any is unfit, else 0."""
    if any(r.unreachable for r in rows):
        return errors.EXIT_SSH
    if not all(v.ok for v in found):
        return errors.EXIT_FAILURE
    return errors.EXIT_OK
