"""The head/agent protocol (sshrun/node/protocol.py), the version check at hello, and the
failure kinds with the one exit-status function (sshrun/failure.py).

The version and missing-field checks run against a real embedded node
(sshrun.local_cluster) with an agent bundle whose protocol differs from the
head's, built from the shipped sources by ``sshrun.agent.build_bundle``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sshrun import agent, errors, report, session
from sshrun.errors import AgentError
from sshrun.failure import Failure, FailureKind, exit_status
from sshrun.local_cluster import local_cluster
from sshrun.node import protocol
from sshrun.node.protocol import (
    COMMANDS,
    EVENTS,
    PROTOCOL_VERSION,
    Error,
    Exited,
    Heartbeat,
    Hello,
    Kill,
    Message,
    Passthrough,
    Ping,
    Pong,
    Preflight,
    ProtocolError,
    RankExit,
    RankFailure,
    RankStarted,
    RendezvousProbe,
    Spec,
    Started,
    Stop,
    Stopping,
    Swept,
)
from sshrun.transport import SSHSettings, connect

EXAMPLES: list[Message] = [
    Preflight(sync="ab" * 16, workdir="~/job"),
    Spec(mode="torchrun", tag="j.0.1", env={"A": "1"}, cwd="/w", grace=3.0, hb_timeout=9.0,
         hb_period=1.5, torchrun_args=("--nnodes", "2"), target=("script", "t.py", "-x"),
         probe_host="169.254.1.2", probe_port=29500),
    Spec(mode="exec", tag="j.1.0", argv=("echo", "hi")),
    Heartbeat(),
    Stop(reason="node2 rank 3 failed"),
    Kill(reason="interrupted twice"),
    Hello(version=PROTOCOL_VERSION, pid=12, hostname="n1", python="/usr/bin/python3",
          python_version="3.8.18", torch=True, free_port=29500, cwd="/home/u", workdir_ok=False),
    Started(pid=13, argv0="/usr/bin/python3"),
    Passthrough(),
    RankStarted(rank=3, local_rank=1, pid=14),
    RankExit(rank=3, local_rank=1, code=137, signal=9, traceback="Traceback ...\n"),
    RankExit(rank=2, local_rank=0),
    Stopping(reason="no heartbeat from the head for 30s"),
    Error(message="working directory /w does not exist on this node"),
    Exited(code=1, failures={3: RankFailure(local_rank=1, pid=14, exitcode=-9, timestamp=5)},
           stopped="node2 rank 3 failed", swept=Swept(terminated=4, killed=1, left=0)),
    Exited(code=0),
    Ping(seq=3),
    Pong(seq=3, time=1796000000.25),
    RendezvousProbe(state="unreachable", error="timed out"),
    RendezvousProbe(state="waiting"),
]


def test_the_examples_cover_every_declared_message() -> None:
    assert {type(m) for m in EXAMPLES} == set(EVENTS.values()) | set(COMMANDS.values())


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips_through_json(message: Message) -> None:
    wire = json.loads(json.dumps(message.to_dict()))
    assert wire["type"] == message.TYPE
    table = EVENTS if message.TYPE in EVENTS and not isinstance(message, Heartbeat) else COMMANDS
    assert protocol.decode(wire, table) == message


def test_unknown_fields_and_unknown_messages_are_ignored() -> None:
    wire = EXAMPLES[6].to_dict() | {"gpus": 8, "future": {"nested": True}}
    assert Hello.from_dict(wire) == EXAMPLES[6]
    assert protocol.decode({"type": "progress", "percent": 40}, EVENTS) is None


def test_a_missing_field_is_one_line_naming_the_message_and_the_field() -> None:
    wire = RankStarted(rank=1, local_rank=1, pid=2).to_dict()
    del wire["pid"]
    with pytest.raises(ProtocolError) as caught:
        protocol.decode(wire, EVENTS)
    assert str(caught.value) == "'rank_started' message without its 'pid' field"


@pytest.mark.parametrize(("wire", "says"), [
    ({"type": "rank_exit", "rank": "3", "local_rank": 1}, "'rank' is not an integer"),
    ({"type": "rank_exit", "rank": True, "local_rank": 1}, "'rank' is not an integer"),
    ({"type": "spec", "mode": "exec", "tag": "t", "argv": "echo hi"}, "not a list of strings"),
    ({"type": "spec", "mode": "exec", "tag": "t", "env": {"A": 1}}, "not an object of strings"),
    ({"type": "exited", "code": 0, "swept": {"left": "2"}}, "not an integer"),
    ({"type": "exited", "code": 0, "failures": {"x": {}}}, "failure record for rank 'x'"),
    (["hello"], "not a JSON object"),
])
def test_a_field_of_the_wrong_type_is_refused(wire: Any, says: str) -> None:
    with pytest.raises(ProtocolError, match=says):
        protocol.decode(wire, COMMANDS if wire and "spec" in str(wire) else EVENTS)


def test_numbers_for_seconds_may_be_integers_on_the_wire() -> None:
    spec = Spec.from_dict({"type": "spec", "mode": "exec", "tag": "t", "grace": 3})
    assert spec.grace == 3.0 and isinstance(spec.grace, float)


def test_an_output_frame_carries_the_time_its_bytes_were_read() -> None:
    frame = protocol.encode_output(2, 7, b"line\n", 1764661234.123456)
    kind, stream, source, length = protocol.HEADER.unpack_from(frame)
    payload = frame[protocol.HEADER.size:]
    assert (kind, stream, source, length) == (protocol.KIND_OUTPUT, 2, 7, len(payload))
    assert protocol.decode_output(payload) == (1764661234.123456, b"line\n")
    assert protocol.decode_output(protocol.OUTPUT_TIME.pack(5.0)) == (5.0, b"")


def test_an_output_frame_too_short_for_its_time_is_refused() -> None:
    with pytest.raises(ProtocolError, match="shorter than its time stamp"):
        protocol.decode_output(b"abc")


# -- against a real embedded node ------------------------------------------------------


def _start_agent(bundle: bytes, monkeypatch: pytest.MonkeyPatch) -> Hello:
    """Ship ``bundle`` as the agent to one embedded node; return its hello (or raise)."""
    monkeypatch.setattr(session, "AGENT_BUNDLE", bundle)

    async def scenario() -> Hello:
        async with local_cluster(1) as cluster:
            ssh = SSHSettings(config_paths=(cluster.ssh_config,),
                              known_hosts=(cluster.known_hosts,))
            node = await connect(cluster.hosts[0], ssh)
            agent_session = session.AgentSession(node.conn, "node1", sys.executable)
            try:
                return await agent_session.start(30)
            finally:
                # stdin EOF: the agent tears down and exits; its node reaps it
                # before the cluster (and the loop) closes.
                agent_session.close()
                if agent_session.process is not None:
                    await asyncio.wait_for(agent_session.process.wait_closed(), 30)
                node.conn.close()
                await asyncio.wait_for(node.conn.wait_closed(), 30)

    return asyncio.run(scenario())


def test_the_shipped_agent_speaks_the_heads_version(monkeypatch: pytest.MonkeyPatch) -> None:
    hello = _start_agent(agent.BUNDLE, monkeypatch)
    assert hello.version == PROTOCOL_VERSION
    assert hello.python == sys.executable


def test_an_agent_of_another_protocol_version_is_refused_naming_the_node(
        monkeypatch: pytest.MonkeyPatch) -> None:
    old = agent.source("protocol")
    line = f"PROTOCOL_VERSION = {PROTOCOL_VERSION}\n"
    assert line in old
    bundle = agent.build_bundle({"protocol": old.replace(line, "PROTOCOL_VERSION = 99\n")})
    with pytest.raises(AgentError) as caught:
        _start_agent(bundle, monkeypatch)
    assert caught.value.exit_code == errors.EXIT_SSH
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"node1: the agent speaks protocol version 99, this head speaks "
                              f"version {PROTOCOL_VERSION}")


def test_a_hello_without_a_field_is_an_agent_error_naming_the_node(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An agent whose hello lacks ``free_port``: one line, not a KeyError traceback."""
    proto, node_agent = agent.source("protocol"), agent.source("agent")
    assert "    free_port: int\n" in proto and "free_port=_free_port(), " in node_agent
    bundle = agent.build_bundle({
        "protocol": proto.replace("    free_port: int\n", ""),
        "agent": node_agent.replace("free_port=_free_port(), ", ""),
    })
    with pytest.raises(AgentError) as caught:
        _start_agent(bundle, monkeypatch)
    assert str(caught.value) == ("node1: agent protocol error: 'hello' message without its "
                                 "'free_port' field")


# -- failure kinds and the exit status ---------------------------------------------------

EXIT_STATUS = {
    FailureKind.EXIT: 42,
    FailureKind.SIGNAL: 137,
    FailureKind.LAUNCHER: 42,
    FailureKind.LOST: errors.EXIT_SSH,
    FailureKind.UNREACHABLE: errors.EXIT_SSH,
    FailureKind.ERROR: errors.EXIT_USAGE,
}


def test_every_failure_kind_has_an_exit_status() -> None:
    assert set(EXIT_STATUS) == set(FailureKind)


@pytest.mark.parametrize("kind", list(FailureKind))
def test_exit_status_of_each_failure_kind(kind: FailureKind) -> None:
    code = {FailureKind.SIGNAL: 137}.get(kind, 42)
    failure = Failure(1, "n2", kind, rank=3, local_rank=1, code=code, message="why")
    assert exit_status(failure) == EXIT_STATUS[kind]
    # An interrupt wins over any failure.
    assert exit_status(failure, interrupted=True) == errors.EXIT_INTERRUPTED
    assert "n2 (node 1)" in report.describe(failure)


@pytest.mark.parametrize("kind", [FailureKind.EXIT, FailureKind.SIGNAL, FailureKind.LAUNCHER])
def test_a_failure_without_a_status_still_fails(kind: FailureKind) -> None:
    assert exit_status(Failure(0, "n1", kind)) == errors.EXIT_FAILURE


def test_exit_status_without_a_failure() -> None:
    assert exit_status(None) == errors.EXIT_OK
    assert exit_status(None, output_closed=True) == errors.EXIT_PIPE
    assert exit_status(None, interrupted=True) == errors.EXIT_INTERRUPTED


def test_kinds_compare_as_their_words() -> None:
    assert FailureKind.LOST == "lost" and FailureKind("unreachable") is FailureKind.UNREACHABLE
    assert [str(k) for k in FailureKind] == ["exit", "signal", "lost", "error", "launcher",
                                             "unreachable"]


def test_an_unreachable_node_is_described_by_its_message() -> None:
    failure = Failure(2, "n3", FailureKind.UNREACHABLE, message="unreachable: refused")
    assert report.describe(failure) == "n3 (node 2): unreachable: refused"


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)


@given(_JSON)
def test_the_nodes_json_is_json(value: object) -> None:
    # protocol's dumps/loads (json's C half, without importing json on a node) are
    # json.dumps and json.loads, text for text.
    import json

    from sshrun.node import protocol

    assert protocol.dumps(value) == json.dumps(value)
    assert protocol.loads(json.dumps(value)) == value
    assert protocol.loads(json.dumps(value).encode()) == value


def test_the_nodes_json_refuses_what_json_refuses() -> None:
    import math

    from sshrun.node import protocol

    for bad in ["", " ", "{", '{"a": 1} x', "[1,]", "nul", '"\x01"', b"\xff"]:
        with pytest.raises(ValueError):
            protocol.loads(bad)
    assert protocol.loads(' \n{"a": [1, 2.5]}\r\n') == {"a": [1, 2.5]}
    assert math.isinf(protocol.loads("Infinity")) and math.isnan(protocol.loads("NaN"))
    with pytest.raises(TypeError, match="not JSON serializable"):
        protocol.dumps({"a": object()})
