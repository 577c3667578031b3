"""``--dry-run``: every node's plan, as the real run would start it, as text.

Secrets are hidden by name (``redact_env``) and by value everywhere, as in
the real run; a value with a control character or an escape in it is shown
as a ``$'...'`` word (``\\r``, ``\\x1b``), never raw. Each node's ``run:``
line is the torchrun command line it gets, with ``-m`` or ``--no-python``
before the target as torchrun would take them (the node actually runs
sshrun's rank shim, which runs the target that way).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from sshrun.output_filters import Streams, format_filters, format_local_ranks, format_ranks
from sshrun.plan import JobPlan, format_endpoint, given_endpoint, plan_job, torchrun_args
from sshrun.redact import Redactor, redact_env
from sshrun.sanitize import shown as shell_word
from sshrun.sanitize import shown_plain

if TYPE_CHECKING:
    from sshrun.settings import Invocation


def render_dry_run(plan: JobPlan, inv: Invocation | None = None) -> str:
    """Every node's plan; ``inv`` adds the log directory and the console's filters."""
    from sshrun.settings import secret_values

    config = plan.config
    redact = Redactor(secret_values(config))
    elastic = config.membership
    if elastic is not None:
        # What the first attempt runs when every host comes up.
        pool = config.hosts
        plan = plan_job(replace(config, hosts=pool[:elastic.max_nodes]), plan.job_id)
    first = plan.nodes[0]
    endpoint: tuple[str, int | None] = (given_endpoint(config)
                                        or (first.host.host, config.rdzv_port))
    nodes = f"{len(plan.nodes)} node{'s' * (len(plan.nodes) != 1)}"
    if config.mode == "exec":
        out = [f"job {plan.job_id}: {nodes}, one command each"]
    else:
        size = plan.world_size if plan.world_size is not None else "decided at launch"
        where = ("standalone (c10d on the node, at a port free there)" if config.standalone
                 else f"{config.rdzv_backend} at {format_endpoint(*endpoint)}")
        out = [f"job {plan.job_id}: {nodes}, world size {size}", f"rendezvous: {where}"]
    if elastic is not None:
        out.append(
            f"elastic: {elastic.min_nodes} to {elastic.max_nodes} nodes from "
            f"{len(pool)} hosts; a host that fails is left out for {elastic.cooldown:g}s, "
            "spares fill in, each attempt renumbers the nodes that come up"
        )
    if inv is not None:
        out += _logs(inv)
    how = ["-m"] if config.module else ["--no-python"] if config.no_python else []
    for node in plan.nodes:
        ranks = node.ranks
        if config.mode == "exec":
            out.append(f"node {node.index}: {node.host.label}")
        else:
            shown = (f"ranks {ranks.start}-{ranks.stop - 1}" if ranks is not None
                     else f"{node.nproc} processes")
            out.append(f"node {node.index}: {node.host.label} ({shown})")
        if config.mode == "torchrun":
            argv = ["torchrun", *torchrun_args(plan, node, endpoint, node.host.host), *how,
                    *config.target]
        else:
            argv = list(config.target)
        out.append(f"  python:  {shown_plain(redact(node.python))}")
        out.append(f"  workdir: {shown_plain(redact(str(node.workdir)))}")
        out.append(f"  run:     {' '.join(shell_word(redact(arg)) for arg in argv)}")
        for name, value in redact_env(node.env, config.secrets):
            out.append(f"  env:     {name}={shown_plain(redact(value))}")
    # Again over the whole text: a secret may span two arguments.
    return redact("\n".join(out) + "\n")


def _logs(inv: Invocation) -> list[str]:
    """The log directory and the console's filters, when any is set."""
    out = []
    if inv.log_dir is not None:
        out.append(f"log dir: {shown_plain(inv.log_dir)}/{inv.job_id}/")
    console = inv.console
    parts = []
    if console.ranks is not None:
        parts.append(f"ranks {format_ranks(console.ranks)} only")
    if console.local_ranks is not None:
        parts.append(f"local ranks {format_local_ranks(console.local_ranks)} only")
    if console.redirects != Streams():
        parts.append(f"--redirects {console.redirects}")
        parts.append(f"--tee {console.tee}")
    if parts:
        still = " (every line still reaches the log dir)" if inv.log_dir is not None else ""
        out.append(f"console: {', '.join(parts)}{still}")
    for stream, needles in (("stdout", inv.duplicate.stdout), ("stderr", inv.duplicate.stderr)):
        if needles:
            out.append(f"log dir: the {stream} lines holding any of "
                       f"{shell_word(format_filters(needles))} also go to "
                       f"attempt-N/HOST/filtered_{stream}.log")
    return out
