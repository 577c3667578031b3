"""What the head sends the bootstrap (sshrun/agent.py, ``payload()``): its own compiled
agent where the node's interpreter has the head's magic number, the source elsewhere.

Each check runs the real bootstrap under a real interpreter, as ``PYTHON -S -c
BOOTSTRAP`` does on a node, with the payload and a preflight on stdin and an
audit hook that reports every source compiled under the agent's names. The
agent says hello and, its stdin at EOF (the head gone), stops and exits 0.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sshrun import agent
from sshrun.node import protocol
from sshrun.node.protocol import PROTOCOL_VERSION, Preflight, encode_command

# Prints the file name of each compile of the agent's, then runs the bootstrap.
AUDITED = (
    "import os, sys\n"
    "def hook(event, args):\n"
    "    if event == 'compile' and str(args[1]).startswith('<sshrun-agent'):\n"
    "        os.write(2, ('compiled ' + str(args[1]) + '\\n').encode())\n"
    "sys.addaudithook(hook)\n"
    "exec(compile(os.environ['BOOTSTRAP'], '<bootstrap>', 'exec'), {'__name__': '__main__'})\n"
)


def run_bootstrap(python: str, payload: bytes) -> tuple[dict[str, object], list[str]]:
    """The agent's hello, and the names it compiled, from one run of ``payload``."""
    feed = b"%08x" % len(payload) + payload + encode_command(Preflight())
    result = subprocess.run([python, "-S", "-c", AUDITED], input=feed, capture_output=True,
                            timeout=60, env={**os.environ, "BOOTSTRAP": agent.BOOTSTRAP})
    stderr = result.stderr.decode(errors="replace")
    compiled = [line.split(" ", 1)[1] for line in stderr.splitlines()
                if line.startswith("compiled ")]
    out, events = result.stdout, []
    while len(out) >= protocol.HEADER.size:
        kind, _, _, size = protocol.HEADER.unpack_from(out)
        payload_bytes = out[protocol.HEADER.size:protocol.HEADER.size + size]
        out = out[protocol.HEADER.size + size:]
        if kind == protocol.KIND_EVENT:
            events.append(json.loads(payload_bytes))
    hellos = [e for e in events if e["type"] == "hello"]
    assert result.returncode == 0 and hellos, f"status {result.returncode}: {stderr[-2000:]}"
    return hellos[0], compiled


def _python_3_8() -> str:
    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3")))
    assert found, "no Python 3.8 on this machine: a node's interpreter of another magic number"
    return found[0]


def test_the_heads_interpreter_runs_the_heads_code_and_compiles_nothing() -> None:
    hello, compiled = run_bootstrap(sys.executable, agent.payload())
    assert hello["version"] == PROTOCOL_VERSION and hello["python"] == sys.executable
    assert compiled == []


def test_another_interpreter_compiles_the_source_it_came_with() -> None:
    hello, compiled = run_bootstrap(_python_3_8(), agent.payload())
    assert hello["version"] == PROTOCOL_VERSION and str(hello["python_version"]).startswith("3.8")
    assert compiled[0] == "<sshrun-agent>"
    assert compiled[1:] == [f"<sshrun-agent:sshrun.node.{part}>" for part in agent.MODULES]


def test_a_magic_number_not_the_interpreters_means_the_source() -> None:
    payload = agent.payload()
    assert payload[:1] == b"\x00"
    other = payload[:1] + b"\x00\x00\r\n" + payload[5:]
    hello, compiled = run_bootstrap(sys.executable, other)
    assert hello["version"] == PROTOCOL_VERSION
    assert compiled[0] == "<sshrun-agent>" and len(compiled) == len(agent.MODULES) + 1


@pytest.mark.parametrize("same_magic", [True, False], ids=["code", "source"])
def test_the_code_and_the_source_are_built_from_the_same_texts(same_magic: bool) -> None:
    """A payload built from changed sources carries the change in both of its halves."""
    old = agent.source("protocol")
    line = f"PROTOCOL_VERSION = {PROTOCOL_VERSION}\n"
    assert line in old
    payload = agent.build_payload({"protocol": old.replace(line, "PROTOCOL_VERSION = 99\n")})
    if not same_magic:
        payload = payload[:1] + b"\x00\x00\r\n" + payload[5:]
    hello, compiled = run_bootstrap(sys.executable, payload)
    assert hello["version"] == 99
    assert bool(compiled) is not same_magic


def test_a_plain_bundle_still_runs() -> None:
    hello, compiled = run_bootstrap(sys.executable, agent.BUNDLE)
    assert hello["version"] == PROTOCOL_VERSION and compiled[0] == "<sshrun-agent>"


def test_the_payload_is_smaller_than_the_source_it_carries() -> None:
    """Sent once per node: compressed, the head's code and the source together weigh less
    than the source alone did."""
    assert len(agent.payload()) < len(agent.BUNDLE)


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    agent.payload.cache_clear()
    yield tmp_path
    agent.payload.cache_clear()


def test_the_payload_is_kept_in_the_heads_cache_and_read_back(
        cache_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built = agent.payload()
    kept = cache_home / "sshrun" / "agent" / f"{agent.payload_key()}.bin"
    assert kept.read_bytes()[32:] == built
    agent.payload.cache_clear()

    def no_build(sources: object = None) -> bytes:
        raise AssertionError("built again, not read from the cache")

    monkeypatch.setattr(agent, "build_payload", no_build)
    assert agent.payload() == built
    hello, compiled = run_bootstrap(sys.executable, agent.payload())
    assert hello["version"] == PROTOCOL_VERSION and compiled == []


def test_a_damaged_copy_is_built_again_and_replaced(cache_home: Path) -> None:
    built = agent.payload()
    kept = cache_home / "sshrun" / "agent" / f"{agent.payload_key()}.bin"
    damaged = bytearray(kept.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    kept.write_bytes(bytes(damaged[:-100]))
    agent.payload.cache_clear()
    again = agent.payload()
    run_bootstrap(sys.executable, again)
    assert kept.read_bytes()[32:] == again and len(again) == len(built)


def test_a_cache_that_cannot_be_written_is_no_error(cache_home: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = cache_home / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    hello, _ = run_bootstrap(sys.executable, agent.payload())
    assert hello["version"] == PROTOCOL_VERSION


def test_the_key_follows_the_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    key = agent.payload_key()
    monkeypatch.setattr(agent, "BUNDLE", agent.BUNDLE + b"# changed\n")
    assert agent.payload_key() != key


def test_an_exec_agent_starts_without_the_costly_modules() -> None:
    # Each of these costs a node 1-3 ms to import (docs/benchmarks.md, "Agent cost on a
    # node"); the agent of an exec job needs none of them, torch's probe included.
    from sshrun.rendezvous import CLIENT_MODULES

    payload = agent.payload()
    feed = (b"%08x" % len(payload) + payload
            + encode_command(Preflight(modules=CLIENT_MODULES, site=False)))
    result = subprocess.run([sys.executable, "-S", "-X", "importtime", "-c", agent.BOOTSTRAP],
                            input=feed, capture_output=True, timeout=60)
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == 0, stderr[-2000:]
    imported = {line.rsplit("|", 1)[1].strip() for line in stderr.splitlines()
                if line.startswith("import time:") and "|" in line}
    assert "zlib" in imported and "ctypes" in imported  # what it does import, seen
    costly = {"json", "re", "enum", "signal", "contextlib", "functools", "importlib.util",
              "typing", "dataclasses", "subprocess", "socket"}
    assert imported & costly == set()
