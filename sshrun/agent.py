"""The node agent as the head ships it: the bootstrap and the bundle.

The head does not install anything on a node. Its one remote command runs
the constant ``BOOTSTRAP`` under the node's Python (``PYTHON -c BOOTSTRAP``,
see ``sshrun.session.remote_command``). The bootstrap reads an 8-hex-digit
length, then exactly that many bytes from stdin: ``BUNDLE``, one Python
source built here at import time, which holds

* the agent's modules (``MODULES``: the files of ``sshrun/node`` that make
  the agent, in import order), each registered under its own name in
  ``sys.modules`` and run, so that they import one another on the node as
  they do here;
* the scripts a torchrun job needs (``SCRIPTS``: the rank shim and the
  torchrun wrapper, each with ``parent_death.py`` in front), which the agent
  writes to files for torchrun,

then calls the agent's ``main``. No user data is ever on the command line:
argv, environment, working directory and ranks follow on stdin as messages
(``sshrun.node.protocol``).

Everything in ``sshrun/node`` is standard library only and Python 3.8
compatible: nodes may run an older Python than the head.
"""

from __future__ import annotations

from pathlib import Path

from sshrun.node.protocol import (
    HEADER,
    KIND_EVENT,
    KIND_OUTPUT,
    PROTOCOL_VERSION,
    SOURCE_LAUNCHER,
    SYNC_PREFIX,
)

__all__ = [
    "BOOTSTRAP", "BUNDLE", "HEADER", "KIND_EVENT", "KIND_OUTPUT", "MODULES", "PROTOCOL_VERSION",
    "SCRIPTS", "SOURCE_LAUNCHER", "SYNC_PREFIX", "build_bundle", "source",
]

NODE_DIR = Path(__file__).with_name("node")

# Runs under ``PYTHON -c``: reads an 8-hex-digit length, then exactly that
# many bytes of source from fd 0 (unbuffered, so that nothing meant for the
# agent is swallowed by a read-ahead buffer), and runs it.
BOOTSTRAP = """\
import os, sys
def _read(n):
    data = b""
    while len(data) < n:
        chunk = os.read(0, n - len(data))
        if not chunk:
            sys.exit(3)
        data += chunk
    return data
_scope = {"__name__": "sshrun_agent"}
exec(compile(_read(int(_read(8), 16)), "<sshrun-agent>", "exec"), _scope)
sys.exit(_scope["main"]())
"""

# The agent's modules, in the order they run on the node (each imports only
# those before it).
MODULES = ("records", "protocol", "probe", "proctree", "teardown", "tmpdir", "buffer", "ranks",
           "agent")
# The files the agent writes for torchrun: name on the node -> parts, in order.
SCRIPTS = {
    "sshrun_rank.py": ("parent_death", "rank_shim"),
    "sshrun_torchrun.py": ("parent_death", "torchrun_wrapper"),
}

# Runs on the node after the bundle's data (``_MODULES``, ``_SCRIPTS``).
_LOADER = '''
import sys, types
def _load():
    for name in ("sshrun", "sshrun.node"):
        package = types.ModuleType(name)
        package.__path__ = []
        sys.modules[name] = package
    for name, source in _MODULES:
        module = types.ModuleType(name)
        module.__file__ = "<sshrun-agent:" + name + ">"
        sys.modules[name] = module
        parent, _, leaf = name.rpartition(".")
        setattr(sys.modules[parent], leaf, module)
        exec(compile(source, module.__file__, "exec"), module.__dict__)
    return sys.modules["sshrun.node.agent"]
_agent = _load()
def main():
    return _agent.main(dict(_SCRIPTS))
'''


def source(part: str) -> str:
    """The text of ``sshrun/node/<part>.py``, read, never imported."""
    return (NODE_DIR / f"{part}.py").read_text(encoding="utf-8")


def build_bundle(sources: dict[str, str] | None = None) -> bytes:
    """The source the bootstrap runs; ``sources`` replace parts' texts (by part name)."""
    def text(part: str) -> str:
        return sources[part] if sources and part in sources else source(part)

    modules = tuple((f"sshrun.node.{part}", text(part)) for part in MODULES)
    scripts = tuple((name, "\n".join(text(part) for part in parts))
                    for name, parts in SCRIPTS.items())
    return (f"_MODULES = {modules!r}\n_SCRIPTS = {scripts!r}\n{_LOADER}").encode()


BUNDLE = build_bundle()
