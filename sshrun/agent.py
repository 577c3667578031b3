"""The node agent as the head ships it: the bootstrap, the bundle and the payload.

The head does not install anything on a node. Its one remote command runs
the constant ``BOOTSTRAP`` under the node's Python (``PYTHON -S -c BOOTSTRAP``,
see ``sshrun.session.remote_command``). The bootstrap reads an 8-hex-digit
length, then exactly that many bytes from stdin: the payload. ``BUNDLE``,
one Python source built here at import time, holds

* the agent's modules (``MODULES``: the files of ``sshrun/node`` that make
  the agent, in import order), each registered under its own name in
  ``sys.modules`` and run, so that they import one another on the node as
  they do here;
* the scripts a torchrun job needs (``SCRIPTS``: the rank shim and the
  torchrun wrapper, each with ``parent_death.py`` in front), which the agent
  writes to files for torchrun,

then calls the agent's ``main``. Compiling that source costs a node ~10 ms
of CPU per job, so what the head sends (``payload()``) is the same agent
compiled by the head's own interpreter, beside the source: a NUL byte, the
head's ``importlib.util.MAGIC_NUMBER``, the compiled bundle (marshal, zlib)
and the source (zlib). A node whose interpreter has that magic number (the
same bytecode: the head's minor version of Python) runs the code as it is;
any other decompresses and compiles the source. Nothing is written to the
node. The bootstrap still runs a plain ``BUNDLE`` (first byte not NUL) too.

Building that payload costs the head ~25 ms of CPU per run, as much as a
few nodes' worth of everything else, so it is kept as the interpreter keeps
its ``.pyc`` files: ``$XDG_CACHE_HOME/sshrun/agent/<key>.bin`` (default
``~/.cache``), the key a digest of the bundle and of what the compiled code
depends on (the interpreter's magic number and optimisation level). A copy
that cannot be read, is not whole (its own digest heads it) or cannot be
written is no error: the head builds the payload as before (sshrun.head_cache).

No user data is ever on the command line: argv, environment, working
directory and ranks follow on stdin as messages (``sshrun.node.protocol``).

Everything in ``sshrun/node`` is standard library only and Python 3.8
compatible: nodes may run an older Python than the head.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import marshal
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

from sshrun import head_cache
from sshrun.node.protocol import (
    HEADER,
    KIND_EVENT,
    KIND_OUTPUT,
    PROTOCOL_VERSION,
    SOURCE_LAUNCHER,
    SYNC_PREFIX,
)

__all__ = [
    "BOOTSTRAP", "BUNDLE", "EXEC_PARTS", "HEADER", "KIND_EVENT", "KIND_OUTPUT", "MODULES",
    "PROTOCOL_VERSION", "SCRIPTS", "SOURCE_LAUNCHER", "SYNC_PREFIX", "build_bundle",
    "build_payload", "payload", "source",
]

NODE_DIR = Path(__file__).with_name("node")

# Runs under ``PYTHON -c``: reads an 8-hex-digit length, then exactly that
# many bytes of payload from fd 0 (unbuffered, so that nothing meant for the
# agent is swallowed by a read-ahead buffer), and runs it: the head's code if
# the interpreter's magic number is the head's, else the source, compiled.
# ``_frozen_importlib_external`` is loaded in every CPython (importlib.util's
# MAGIC_NUMBER is its); where it is not, the source runs.
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
_data = _read(int(_read(8), 16))
_code = None
if _data[:1] == b"\\x00":
    import marshal, zlib
    _end = 13 + int(_data[5:13], 16)
    if _data[1:5] == getattr(sys.modules.get("_frozen_importlib_external"), "MAGIC_NUMBER", 0):
        _code = marshal.loads(zlib.decompress(_data[13:_end]))
    else:
        _data = zlib.decompress(_data[_end:])
_scope = {"__name__": "sshrun_agent"}
exec(_code or compile(_data, "<sshrun-agent>", "exec"), _scope)
sys.exit(_scope["main"]())
"""

# The agent's modules, in the order they run on the node (each imports only
# those before it).
MODULES = ("records", "protocol", "probe", "signals", "proctree", "teardown", "tmpdir",
           "buffer", "ranks", "rdzv_probe", "spawn", "agent")
# The files the agent writes for torchrun: name on the node -> parts, in order.
SCRIPTS = {
    "sshrun_rank.py": ("parent_death", "rank_shim"),
    "sshrun_torchrun.py": ("parent_death", "torchrun_wrapper"),
}

# Node-side sources that are not in the bundle: the head sends each as an exec
# command's argv (``PYTHON -c SOURCE ARGS``) when it needs it, so that jobs do
# not carry them. ``sshrun check``'s probe (sshrun.check_run).
EXEC_PARTS = ("check_probe", "sync_node")

# Runs on the node after the bundle's data (``_MODULES``, ``_SCRIPTS``); a
# module is its source, or its code compiled by the head (see ``build_payload``).
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
        code = compile(source, module.__file__, "exec") if isinstance(source, str) else source
        exec(code, module.__dict__)
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
    return (f"_MODULES = {modules!r}\n_SCRIPTS = {_scripts(text)!r}\n{_LOADER}").encode()


def _scripts(text: Callable[[str], str]) -> tuple[tuple[str, str], ...]:
    return tuple((name, "\n".join(text(part) for part in parts))
                 for name, parts in SCRIPTS.items())


def build_payload(sources: dict[str, str] | None = None) -> bytes:
    """What the head sends after the length: the bundle compiled here, and its source.

    The compiled bundle is one code object: the bundle's scripts and loader,
    with the modules' code objects (compiled under the names the loader
    gives them) in one marshal'd constant in place of their texts, so that
    nothing is parsed on the node. See the module's docstring for the layout.
    """
    def text(part: str) -> str:
        return sources[part] if sources and part in sources else source(part)

    codes = tuple((f"sshrun.node.{part}",
                   compile(text(part), f"<sshrun-agent:sshrun.node.{part}>", "exec"))
                  for part in MODULES)
    compiled = compile(f"import marshal\n_MODULES = marshal.loads({marshal.dumps(codes)!r})\n"
                       f"_SCRIPTS = {_scripts(text)!r}\n{_LOADER}", "<sshrun-agent>", "exec")
    code = zlib.compress(marshal.dumps(compiled))
    bundle = BUNDLE if sources is None else build_bundle(sources)
    return (b"\x00" + importlib.util.MAGIC_NUMBER + b"%08x" % len(code) + code
            + zlib.compress(bundle))


# The newest this many payloads are kept (one per sshrun version and Python in use).
CACHE_KEEP = 8


def payload_key() -> str:
    """What the shipped payload is built from: the bundle, and how this Python compiles."""
    digest = hashlib.sha256(BUNDLE)
    digest.update(importlib.util.MAGIC_NUMBER)
    digest.update(f"{sys.implementation.cache_tag}/{sys.flags.optimize}".encode())
    return digest.hexdigest()[:32]


@functools.cache
def payload() -> bytes:
    """``build_payload()`` of the shipped sources: built once, when the first node needs it,
    or read from the head's cache (see the module's docstring)."""
    name = f"{payload_key()}.bin"
    cached = head_cache.load("agent", name)
    if cached is not None:
        return cached
    built = build_payload()
    head_cache.store("agent", name, built, CACHE_KEEP)
    return built


BUNDLE = build_bundle()
