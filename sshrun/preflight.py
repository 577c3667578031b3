"""Checks over every node's hello, after all agents are up and before any spec is sent.

The supervisor brings every node up (each agent says hello), then calls
``check_hellos`` with all the hellos at once: a problem found here stops the
job before torchrun starts on any node, where it would otherwise fail on
one node, deep inside torchrun, while the others wait at the rendezvous.
Checks that need every node belong here too: torch's version on every node
must be node 0's (``version_mismatch``), unless ``--allow-version-mismatch``
says otherwise, when the launcher warns instead.

Pure: hellos and the job's configuration in, problems out; ``refusal`` turns
them into the one error the user sees (exit 2, a configuration error).
"""

from __future__ import annotations

from collections.abc import Sequence

from sshrun import rendezvous
from sshrun.errors import NodeSetupError
from sshrun.frozen_dataclass import frozen_dataclass
from sshrun.node.protocol import Hello
from sshrun.nodeset import fold_hosts
from sshrun.plan import JobConfig
from sshrun.sanitize import sanitize


@frozen_dataclass
class NodeHello:
    """One node's hello, and the host it came from (its label)."""

    host: str
    hello: Hello


@frozen_dataclass
class Problem:
    """Why a node cannot run the job as configured; ``message`` leaves out the host."""

    host: str
    message: str


@frozen_dataclass
class Mismatch:
    """Nodes whose torch is not node 0's: each version, with the hosts that have it."""

    first_host: str  # node 0's
    first_version: str
    others: tuple[tuple[str, tuple[str, ...]], ...]  # (version, hosts), in node order

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(h for _, hosts in self.others for h in hosts)

    def theirs(self) -> str:
        """``torch 2.12.0``; with several versions, where each is: ``torch 2.12.0 on
        node[1-2], 2.11.0 on node5`` (hostlists folded)."""
        if len(self.others) == 1:
            return f"torch {self.others[0][0]}"
        return "torch " + ", ".join(f"{version} on {fold_hosts(hosts)}"
                                    for version, hosts in self.others)

    def node0(self) -> str:
        return f"node 0 ({self.first_host}) has torch {self.first_version}"


def version_mismatch(hellos: Sequence[NodeHello]) -> Mismatch | None:
    """The nodes whose torch version differs from node 0's (``hellos[0]``).

    Only versions that are known are compared: a node without torch is
    refused on its own where the job needs torch (sshrun.bring_up), and an
    ``exec`` command may not need it at all.
    """
    if not hellos or hellos[0].hello.torch_version is None:
        return None
    first = hellos[0].hello.torch_version
    groups: dict[str, list[str]] = {}
    for node in hellos[1:]:
        version = node.hello.torch_version
        if version is not None and version != first:
            groups.setdefault(version, []).append(node.host)
    if not groups:
        return None
    return Mismatch(hellos[0].host, sanitize(first),
                    tuple((sanitize(v), tuple(hosts)) for v, hosts in groups.items()))


def check_hellos(hellos: Sequence[NodeHello], config: JobConfig) -> list[Problem]:
    """Every problem the hellos show: a torch version unlike node 0's first, then
    each node's own, in the order of ``hellos`` (node order)."""
    problems = []
    mismatch = version_mismatch(hellos)
    if mismatch is not None and not config.allow_version_mismatch:
        problems.append(Problem(fold_hosts(mismatch.hosts), (
            f"{mismatch.theirs()}, but {mismatch.node0()} (every node needs the same "
            "torch; --allow-version-mismatch launches anyway)")))
    if config.mode != "torchrun":
        return problems
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
