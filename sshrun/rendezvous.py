"""The rendezvous backends sshrun passes to torchrun, and what each one needs: one table.

torchrun finds its backend by name in
``torch.distributed.elastic.rendezvous.registry``; the two etcd backends
import the python-etcd client there, on the node, only when the
rendezvous starts (torch 2.13: ``etcd_rendezvous.py`` and
``etcd_store.py`` ``import etcd``; ``etcd_rendezvous_backend.py``, the
``etcd-v2`` backend, also ``import urllib3.exceptions``). Without them
torch falls back to a stub whose first use raises deep inside torchrun on
one node while the others wait. So the agents report whether these modules
are importable in their hello, and ``sshrun.preflight`` refuses a job whose
nodes lack them before anything starts.

The flag lists (``--rdzv-backend``'s choices, the YAML reader's) come from
``NAMES``; what a backend needs is asked of ``backend(name)``. Pure data.
"""

from __future__ import annotations

from sshrun.frozen_dataclass import frozen_dataclass


@frozen_dataclass
class ClientModule:
    """A Python module a backend's client imports on every node."""

    name: str  # the top-level import name
    package: str  # what ``pip install`` calls the distribution that provides it


@frozen_dataclass
class Backend:
    name: str
    # What torchrun imports for it on every node (in the node's interpreter).
    modules: tuple[ClientModule, ...] = ()
    # The endpoint is a server that sshrun does not run (etcd): the user names it.
    needs_endpoint: bool = False
    # torchrun's port when the endpoint has none.
    default_port: int = 29400
    # Ranks in hostfile order (--node-rank); otherwise the rendezvous decides.
    fixed_ranks: bool = False


ETCD = ClientModule("etcd", "python-etcd")
URLLIB3 = ClientModule("urllib3", "urllib3")

BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("static", fixed_ranks=True),
    Backend("c10d"),
    # etcd's v2 API (python-etcd speaks no other): etcd 3.4 serves it with
    # --enable-v2; etcd 3.6 no longer has it.
    Backend("etcd", (ETCD,), needs_endpoint=True, default_port=2379),
    Backend("etcd-v2", (ETCD, URLLIB3), needs_endpoint=True, default_port=2379),
)}
NAMES: tuple[str, ...] = tuple(BACKENDS)
# Every backend's client modules: what each agent is asked about at hello.
CLIENT_MODULES: tuple[str, ...] = tuple(sorted({m.name for b in BACKENDS.values()
                                               for m in b.modules}))


def backend(name: str) -> Backend:
    """The backend called ``name`` (one of ``NAMES``; the flag and YAML checks come first)."""
    return BACKENDS[name]


def expected() -> str:
    """The accepted names, as an error says them: ``static, c10d, etcd or etcd-v2``."""
    return ", ".join(NAMES[:-1]) + f" or {NAMES[-1]}"
