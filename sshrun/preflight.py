"""Checks over every node's hello, after all agents are up and before any spec is sent.

The supervisor brings every node up (each agent says hello), then calls
``check_hellos`` with all the hellos at once: a problem found here stops the
job before torchrun starts on any node, where it would otherwise fail on
one node, deep inside torchrun, while the others wait at the rendezvous.
Checks that need every node (versions that must agree) belong here too.

Pure: hellos and the job's configuration in, problems out; ``refusal`` turns
them into the one error the user sees (exit 2, a configuration error).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sshrun import rendezvous
from sshrun.errors import NodeSetupError
from sshrun.node.protocol import Hello
from sshrun.plan import JobConfig
from sshrun.sanitize import sanitize


@dataclass(frozen=True)
class NodeHello:
    """One node's hello, and the host it came from (its label)."""

    host: str
    hello: Hello


@dataclass(frozen=True)
class Problem:
    """Why a node cannot run the job as configured; ``message`` leaves out the host."""

    host: str
    message: str


def check_hellos(hellos: Sequence[NodeHello], config: JobConfig) -> list[Problem]:
    """Every problem the hellos show, in the order of ``hellos`` (node order)."""
    if config.mode != "torchrun":
        return []
    problems = []
    for node in hellos:
        problem = _missing_modules(node, config)
        if problem is not None:
            problems.append(problem)
    return problems


def _missing_modules(node: NodeHello, config: JobConfig) -> Problem | None:
    """The rendezvous backend's client modules that the node's interpreter lacks."""
    backend = rendezvous.backend(config.rdzv_backend)
    # A module the agent was not asked about is not known to be missing.
    missing = [m for m in backend.modules if node.hello.modules.get(m.name) is False]
    if not missing:
        return None
    names = " and ".join(repr(m.name) for m in missing)
    packages = " ".join(m.package for m in missing)
    plural = "s" if len(missing) > 1 else ""
    return Problem(node.host, (
        f"--rdzv-backend {backend.name} needs the Python module{plural} {names} "
        f"(pip install {packages}) in {sanitize(node.hello.python)}"))


def refusal(problems: Sequence[Problem]) -> NodeSetupError:
    """The one line for the user: the first problem, and which other hosts have one."""
    first = problems[0]
    message = first.message
    others = list(dict.fromkeys(p.host for p in problems[1:]))
    if others:
        message += f" (and {len(problems) - 1} more: {', '.join(others)})"
    return NodeSetupError(first.host, message)
