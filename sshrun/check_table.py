"""``sshrun check``'s output: a rich table on a terminal, plain columns when piped, JSON.

Every cell comes from one :func:`cells` row, so that the terminal and the
pipe show the same words. Below the table, one line per process already on a
node's GPUs (owner, pid, memory, command) and per warning. Text from nodes
was sanitized when it was read (``sshrun.check_result``); rich gets it as
plain ``Text``, never as markup.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from sshrun.check_result import NodeCheck, Verdict

COLUMNS = ("node", "host", "rtt", "user", "python", "torch", "gpus", "disk free", "clock",
           "workdir", "network", "verdict")


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _torch(row: NodeCheck) -> str:
    if row.torch is None:
        return "-"
    if not row.torch:
        return "none"
    parts = [row.torch_version or "?"]
    if row.cuda_version:
        parts.append(f"cuda {row.cuda_version}")
    if row.nccl_version:
        parts.append(f"nccl {row.nccl_version}")
    return " ".join(parts)


def _gpus(row: NodeCheck) -> str:
    if row.error is not None:
        return "-"
    if row.gpus is None:
        return "nvidia-smi failed" if row.gpu_error else "no GPU"
    if not row.gpus:
        return "no GPU"
    models = sorted({g.model for g in row.gpus})
    memory = max((g.memory_mib or 0) for g in row.gpus)
    busy = sum(len(g.processes) for g in row.gpus)
    text = f"{len(row.gpus)}x {'/'.join(models)} {_size(memory * 1024 * 1024)}"
    return text + (f", {busy} in use" if busy else "")


def _network(row: NodeCheck) -> str:
    net = row.network
    if net is None:
        return "-"
    if row.node == 0 and net.heard is not None:
        return f"listened, {net.heard} came" if net.ok else "cannot listen"
    text = f"ok {net.address}" if net.ok else f"FAILED {net.address}"
    if row.collective is not None:
        coll = row.collective
        if coll.ok and coll.bus_bandwidth is not None and coll.seconds is not None:
            text += (f", {coll.backend} all_reduce {coll.seconds * 1000:.1f} ms "
                     f"{coll.bus_bandwidth / 1e9:.2f} GB/s")
        elif not coll.ok:
            text += ", all_reduce failed"
    return text


def _workdir(row: NodeCheck) -> str:
    if row.workdir_ok is None:
        return "-"
    if not row.workdir_ok:
        return "MISSING"
    shown = row.workdir or "(login dir)"
    return f"{shown} (synced)" if row.synced else shown


def cells(row: NodeCheck, verdict: Verdict) -> tuple[str, ...]:
    """The row's words, column by column (COLUMNS)."""
    python = "-" if row.python is None else f"{row.python_version} {row.python}"
    return (
        str(row.node), row.host,
        "-" if row.rtt is None else f"{row.rtt * 1000:.1f} ms",
        row.user or "-", python, _torch(row), _gpus(row), _size(row.free_bytes),
        "-" if row.offset is None else f"{round(row.offset * 1000, 1) + 0.0:+.1f} ms",
        _workdir(row),
        _network(row),
        "ok" if verdict.ok else "UNFIT: " + "; ".join(verdict.problems),
    )


def notes(rows: Sequence[NodeCheck], found: Sequence[Verdict]) -> list[str]:
    """The lines under the table: GPU processes and warnings, per node."""
    lines = []
    for row, verdict in zip(rows, found, strict=True):
        for gpu in row.gpus or ():
            for p in gpu.processes:
                lines.append(f"{row.host} gpu{gpu.index}: pid {p.pid} {p.owner or '?'} "
                             f"{p.used_mib if p.used_mib is not None else '?'} MiB "
                             f"{p.command or '?'}")
        lines.extend(f"{row.host}: warning: {w}" for w in verdict.warnings
                     if not w.endswith("already on its GPUs"))
    return lines


def summary(rows: Sequence[NodeCheck], found: Sequence[Verdict]) -> str:
    unfit = [r.host for r, v in zip(rows, found, strict=True) if not v.ok]
    if not unfit:
        return f"all {len(rows)} nodes fit" if len(rows) > 1 else "the node is fit"
    return f"{len(unfit)} of {len(rows)} nodes unfit: {', '.join(unfit)}"


def plain(rows: Sequence[NodeCheck], found: Sequence[Verdict]) -> str:
    """Columns padded with spaces (the last one not), one node a line; for pipes and logs."""
    table = [COLUMNS] + [cells(r, v) for r, v in zip(rows, found, strict=True)]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS) - 1)]
    out = ["  ".join([*(c.ljust(w) for c, w in zip(line, widths, strict=False)), line[-1]])
           .rstrip() for line in table]
    out += notes(rows, found)
    out.append(summary(rows, found))
    return "\n".join(out) + "\n"


def rich_table(rows: Sequence[NodeCheck], found: Sequence[Verdict], file: TextIO,
               colour: bool | None, width: int | None = None) -> None:
    console = Console(file=file, highlight=False, force_terminal=colour,
                      no_color=colour is False, width=width)
    table = Table(header_style="bold")
    for column in COLUMNS:
        # A narrow terminal wraps a cell; cutting it ("nod…") would hide a host or a reason.
        table.add_column(column, overflow="fold")
    for row, verdict in zip(rows, found, strict=True):
        words = cells(row, verdict)
        style = "" if verdict.ok else "red"
        table.add_row(*(Text(w) for w in words[:-1]),
                      Text(words[-1], style="green" if verdict.ok else "bold red"), style=style)
    console.print(table)
    for line in notes(rows, found):
        console.print(Text(line))
    console.print(Text(summary(rows, found), style="green" if all(v.ok for v in found)
                       else "bold red"))


def as_json(rows: Sequence[NodeCheck], found: Sequence[Verdict], exit_code: int) -> str:
    """One JSON object: the exit code and one entry per node (every field, and its verdict)."""
    nodes: list[dict[str, Any]] = []
    for row, verdict in zip(rows, found, strict=True):
        entry = dataclasses.asdict(row)
        entry["verdict"] = {"ok": verdict.ok, "problems": list(verdict.problems),
                            "warnings": list(verdict.warnings)}
        nodes.append(entry)
    return json.dumps({"ok": exit_code == 0, "exit_code": exit_code, "nodes": nodes},
                      indent=2) + "\n"
