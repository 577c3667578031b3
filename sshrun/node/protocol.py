"""The head/agent protocol, declared once: frames, message names, their fields, the version.

Shipped to every node with the agent (standard library only, Python 3.8) and
imported by the head, so that both sides build and read the same messages.

Agent to head (the session's stdout): frames of ``HEADER`` (kind, stream,
source, payload length) and a payload. ``KIND_OUTPUT``: bytes a rank wrote
(``stream`` 1 or 2, ``source`` its global rank, or ``SOURCE_LAUNCHER`` for
torchrun or the command itself). ``KIND_EVENT``: one JSON object, an
``Event``. Before any frame the agent writes ``SYNC_PREFIX`` and the head's
token on stdout and stderr (see ``sshrun.preamble``). An exec job's agent
then hands stdout to its command (``Passthrough``), and its frames go on
stderr, after ``FRAMES_ON_STDERR``.

Head to agent (the session's stdin): one JSON object per line, a ``Command``;
the first one (``preflight``) follows the agent's source.

Every message is a frozen record (``sshrun.node.records.frozen``: declared as
a frozen dataclass is, made without ``dataclasses``, which costs a node too
much to import) whose ``TYPE`` is its ``"type"`` on the wire. ``to_dict``
gives the JSON object; ``from_dict`` reads one, ignores fields it does not
know (a newer peer may send more) and raises ``ProtocolError``, one line
naming the message and the field, when a field is missing or of the wrong
type. ``PROTOCOL_VERSION`` changes whenever a message
changes; the head checks the agent's at ``hello``.
"""

from __future__ import annotations

import struct

from sshrun.node.records import MISSING, field, fields, frozen

try:
    # json's own C half: importing ``json`` costs a node ~3 ms more, for its
    # pure-Python fallbacks' ``re`` (and with it ``enum``), which CPython never uses.
    import _json
except ImportError:  # pragma: no cover (another Python: json itself)
    _json = None  # type: ignore[assignment]

# typing is ~3 ms to import on a node; its names are the type checker's only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, ClassVar, TypeVar

    M = TypeVar("M", bound="Message")


# --- JSON, as ``json.dumps`` and ``json.loads`` with their defaults ---------------------

_CONSTANTS = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}
_SPACE = " \t\n\r"


def _not_serializable(value: Any) -> Any:
    raise TypeError(f"Object of type {value.__class__.__name__} is not JSON serializable")


class _ScanContext:
    # What json.decoder.JSONDecoder hands its C scanner, with json.loads's defaults.
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__


if _json is not None:
    _encode = _json.make_encoder(None, _not_serializable, _json.encode_basestring_ascii,
                                 None, ": ", ", ", False, False, True)
    _scan = _json.make_scanner(_ScanContext())  # type: ignore[arg-type]

    def dumps(value: Any) -> str:
        """``json.dumps(value)``: the same text (no check for cycles: messages are trees)."""
        return "".join(_encode(value, 0))

    def loads(text: str | bytes) -> Any:
        """``json.loads(text)`` of UTF-8 text; a ``ValueError`` for anything that is not
        one JSON value."""
        if not isinstance(text, str):
            text = bytes(text).decode("utf-8")
        start = len(text) - len(text.lstrip(_SPACE))
        try:
            value, end = _scan(text, start)
        except StopIteration as exc:
            raise ValueError(f"Expecting value: char {exc.value}") from None
        if text[end:].strip(_SPACE):
            raise ValueError(f"Extra data: char {end}")
        return value
else:  # pragma: no cover
    from json import dumps, loads  # noqa: F401

# 2: output frames carry the time the agent read them (OUTPUT_TIME).
# 3: hello says torch's and CUDA's versions and which modules the preflight
#    asked about are importable; the spec carries rank_env.
# 4: ping and pong (the node's clock, for sshrun check).
# 5: the spec names the rendezvous endpoint to probe (probe_host, probe_port);
#    rdzv_probe says what the probe found.
# 6: the spec's passthrough and the passthrough event: an exec command's
#    stdout is the channel's own, the frames move to stderr.
PROTOCOL_VERSION = 6

# kind (1 byte), stream (1 byte), source (int32), payload length (uint32)
HEADER = struct.Struct("!cBiI")
KIND_OUTPUT = b"O"
# An output frame's payload begins with the time the agent read it (float64).
OUTPUT_TIME = struct.Struct("!d")
KIND_EVENT = b"E"
SOURCE_LAUNCHER = -1  # torchrun itself, or the command of ``sshrun exec``
# Written with the head's token to stdout and stderr before anything else:
# what a login shell printed before the agent ran comes before it, and the
# head skips (and shows) that instead of reading it as frames.
SYNC_PREFIX = b"\nsshrun-agent-sync "
# On the agent's stderr, after ``Passthrough`` on its stdout: the agent's frames follow.
FRAMES_ON_STDERR = b"\nsshrun-agent-frames-on-stderr\n"


class ProtocolError(ValueError):
    """A message that breaks the protocol: its ``str()`` says which message and field."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


def _is_number(value: Any) -> bool:
    return _is_int(value) or isinstance(value, float)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_strings(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)


def _is_str_map(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def _is_bool_map(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, bool) for k, v in value.items())


def _is_mapping(value: Any) -> bool:
    return isinstance(value, dict)


# What each field annotation accepts on the wire (annotations are strings here:
# ``from __future__ import annotations``, so they read the same on Python 3.8).
# Each: what it is called in an error, the check, and the value as the field holds it.
_CHECKS: dict[str, tuple[str, Callable[[Any], bool], Callable[[Any], Any]]] = {
    "int": ("an integer", _is_int, int),
    "int | None": ("an integer or null", _optional(_is_int), lambda value: value),
    "float": ("a number", _is_number, float),
    "str": ("a string", _is_str, str),
    "str | None": ("a string or null", _optional(_is_str), lambda value: value),
    "bool": ("true or false", lambda value: isinstance(value, bool), bool),
    "tuple[str, ...]": ("a list of strings", _is_strings, tuple),
    "dict[str, str]": ("an object of strings", _is_str_map, dict),
    "dict[str, bool]": ("an object of booleans", _is_bool_map, dict),
    "Swept": ("an object", _is_mapping, lambda value: _swept(value)),
    "dict[int, RankFailure]": ("an object", _is_mapping, lambda value: rank_failures(value)),
}


def _plain(value: Any) -> Any:
    """A field's value as JSON takes it."""
    if isinstance(value, Message):
        return value.to_dict()
    if hasattr(value, "__record_fields__") and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


class Message:
    """A protocol message; subclasses are frozen records (``@frozen``) with a ``TYPE``."""

    TYPE: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.TYPE}
        for f in fields(self):
            data[f.name] = _plain(getattr(self, f.name))
        return data

    @classmethod
    def from_dict(cls: type[M], data: dict[str, Any]) -> M:
        """The message in ``data``; unknown fields ignored, a missing or bad one refused."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                if f.default is MISSING and f.default_factory is MISSING:
                    raise ProtocolError(f"{cls.TYPE!r} message without its {f.name!r} field")
                continue
            value = data[f.name]
            expected, check, convert = _CHECKS[str(f.type)]
            if not check(value):
                raise ProtocolError(f"{cls.TYPE!r} message: {f.name!r} is not {expected}: "
                                    f"{dumps(value)[:80]}")
            values[f.name] = convert(value)
        return cls(**values)


# -- head to agent ------------------------------------------------------------------


@frozen
class Preflight(Message):
    """Sent with the agent's source: what to check before hello, and the sync token.

    ``modules``: top-level module names whose presence hello reports (the
    rendezvous clients, ``sshrun.rendezvous.CLIENT_MODULES``), found without
    importing them. ``site``: find torch and the modules as the job's own
    interpreter will, after the ``site`` module the agent's ``python -S``
    skipped (``.pth`` files, ``sitecustomize``); false (exec: nothing is
    refused on what hello says) looks in the site directories without them
    (``sshrun.node.probe``).
    """

    TYPE: ClassVar[str] = "preflight"
    sync: str | None = None
    workdir: str | None = None
    modules: tuple[str, ...] = ()
    site: bool = True


@frozen
class Spec(Message):
    """What to run. ``mode`` "torchrun": ``torchrun_args`` and ``target`` (the shim's
    arguments: script or module, then the user's), and ``rank_env``, set in every
    rank over what torchrun set (``sshrun.plan.rank_env``); "exec": ``argv``.
    ``probe_host``/``probe_port``: the rendezvous endpoint this node's agent
    connects to when start-up stalls (``sshrun.node.rdzv_probe``; None: no probe,
    as on the store's own host). ``passthrough`` (exec): the command may write
    its stdout straight into the channel's (see ``Passthrough``)."""

    TYPE: ClassVar[str] = "spec"
    mode: str
    tag: str
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    grace: float = 10.0
    hb_timeout: float = 30.0
    hb_period: float = 0.0
    torchrun_args: tuple[str, ...] = ()
    target: tuple[str, ...] = ()
    argv: tuple[str, ...] = ()
    rank_env: dict[str, str] = field(default_factory=dict)
    probe_host: str | None = None
    probe_port: int | None = None
    passthrough: bool = False


@frozen
class Heartbeat(Message):
    """The head lives; also the agent's, when it has nothing else to send."""

    TYPE: ClassVar[str] = "hb"


@frozen
class Ping(Message):
    """Answer at once with the node's clock (``sshrun check``'s offset and round trip)."""

    TYPE: ClassVar[str] = "ping"
    seq: int


@frozen
class Stop(Message):
    """Stop the job: SIGTERM, the grace period, SIGKILL."""

    TYPE: ClassVar[str] = "stop"
    reason: str = "stopped by the head"


@frozen
class Kill(Message):
    """Stop the job at once: SIGKILL without a grace period."""

    TYPE: ClassVar[str] = "kill"
    reason: str = "killed by the head"


# -- agent to head ------------------------------------------------------------------


@frozen
class Hello(Message):
    """The agent is up: who and where it is, and what it can run.

    ``python`` is the interpreter's path (``sys.executable``); ``torch`` whether
    torch is importable, ``torch_version`` its version and ``cuda_version``
    the CUDA it was built for (None: built without CUDA, or no torch), read
    from torch's files without importing it; ``modules``: each module the
    preflight asked about, importable or not.
    """

    TYPE: ClassVar[str] = "hello"
    version: int
    pid: int
    hostname: str
    python: str
    python_version: str
    torch: bool
    free_port: int
    cwd: str
    workdir_ok: bool = True
    torch_version: str | None = None
    cuda_version: str | None = None
    modules: dict[str, bool] = field(default_factory=dict)


@frozen
class Pong(Message):
    """A ping's answer: ``time`` is the node's ``time.time()`` when it read the ping."""

    TYPE: ClassVar[str] = "pong"
    seq: int
    time: float


@frozen
class Passthrough(Message):
    """The agent's last frame on its stdout (an exec job's ``Spec.passthrough``).

    From here on the channel's stdout is the command's own stdout, unframed,
    from the command to sshd with no copy through the agent (the agent's
    hop was a third of a node's CPU while output streamed); the agent's
    frames (events, the command's stderr) continue on the channel's stderr
    after ``FRAMES_ON_STDERR``. The two streams are no longer ordered with
    each other: ``Exited`` may come before the last of stdout, which ends
    with the channel.
    """

    TYPE: ClassVar[str] = "passthrough"


@frozen
class Started(Message):
    TYPE: ClassVar[str] = "started"
    pid: int
    argv0: str


@frozen
class RankStarted(Message):
    TYPE: ClassVar[str] = "rank_started"
    rank: int
    local_rank: int
    pid: int


@frozen
class RankExit(Message):
    """A rank ended. ``code`` None: it died without a status (its shim was killed)."""

    TYPE: ClassVar[str] = "rank_exit"
    rank: int
    local_rank: int
    code: int | None = None
    signal: int | None = None
    traceback: str | None = None


@frozen
class RendezvousProbe(Message):
    """What connecting to the rendezvous endpoint found, sent when it changes:
    ``state`` "reachable", "waiting" (refused: not listening yet) or
    "unreachable", with ``error`` ("timed out", "No route to host", ...)."""

    TYPE: ClassVar[str] = "rdzv_probe"
    state: str
    error: str | None = None


@frozen
class Stopping(Message):
    """Teardown began, and why: the head's reason, or the agent's own."""

    TYPE: ClassVar[str] = "stopping"
    reason: str


@frozen
class Error(Message):
    """The node cannot run the job as configured (no working directory, no program)."""

    TYPE: ClassVar[str] = "error"
    message: str


@frozen
class Swept:
    """How many of the job's processes needed SIGTERM, then SIGKILL; how many are left."""

    terminated: int = 0
    killed: int = 0
    left: int = 0


@frozen
class RankFailure:
    """torchrun's record of one failed rank (its ``ChildFailedError``)."""

    local_rank: int | None = None
    pid: int | None = None
    exitcode: int | None = None  # negative: killed by that signal
    timestamp: int | None = None


def rank_failures(value: Any) -> dict[int, RankFailure]:
    """torchrun's failure records (rank -> fields), as the wrapper writes them."""
    if not isinstance(value, dict):
        raise ProtocolError("'exited' message: 'failures' is not an object")
    failures = {}
    for rank, info in value.items():
        if not (isinstance(info, dict) and rank.lstrip("-").isdigit()):
            raise ProtocolError(f"'exited' message: bad failure record for rank {rank!r}")
        known = {f.name for f in fields(RankFailure)}
        given = {k: v for k, v in info.items() if k in known}
        if not all(v is None or _is_int(v) for v in given.values()):
            raise ProtocolError(f"'exited' message: bad failure record for rank {rank!r}")
        failures[int(rank)] = RankFailure(**given)
    return failures


def _swept(value: dict[str, Any]) -> Swept:
    known = {f.name for f in fields(Swept)}
    counts = {k: v for k, v in value.items() if k in known}
    if not all(_is_int(v) for v in counts.values()):
        raise ProtocolError("'exited' message: 'swept' holds a count that is not an integer")
    return Swept(**counts)


@frozen
class Exited(Message):
    """The job on this node is over and swept; all of its output was sent before this
    (but for a ``Passthrough`` stdout, which ends with the channel)."""

    TYPE: ClassVar[str] = "exited"
    code: int  # shell-style: 128+N for death by signal N
    failures: dict[int, RankFailure] = field(default_factory=dict)
    stopped: str | None = None  # why teardown began; None: the job ended by itself
    swept: Swept = field(default_factory=Swept)


EVENTS: dict[str, type[Message]] = {
    cls.TYPE: cls
    for cls in (Hello, Started, RankStarted, RankExit, Stopping, Error, Exited, Heartbeat,
                Pong, RendezvousProbe, Passthrough)
}
COMMANDS: dict[str, type[Message]] = {
    cls.TYPE: cls for cls in (Preflight, Spec, Heartbeat, Stop, Kill, Ping)
}


def decode(data: Any, table: dict[str, type[Message]]) -> Message | None:
    """The message ``data`` holds; None for a type this side does not know (newer peers)."""
    if not isinstance(data, dict):
        raise ProtocolError(f"a message that is not a JSON object: {dumps(data)[:80]}")
    cls = table.get(data.get("type"))  # type: ignore[arg-type]
    return cls.from_dict(data) if cls is not None else None


def encode_frame(kind: bytes, stream: int, source: int, payload: bytes) -> bytes:
    return HEADER.pack(kind, stream, source, len(payload)) + payload


def encode_output(stream: int, source: int, data: bytes, when: float) -> bytes:
    """An output frame: ``data`` as read at ``when`` (``time.time()`` on the node)."""
    return output_header(stream, source, len(data), when) + data


def output_header(stream: int, source: int, size: int, when: float) -> bytes:
    """An output frame up to its ``size`` bytes of data: a queue appends the data
    itself after it, without building the frame first (one copy less per chunk)."""
    return (HEADER.pack(KIND_OUTPUT, stream, source, OUTPUT_TIME.size + size)
            + OUTPUT_TIME.pack(when))


def decode_output(payload: bytes) -> tuple[float, bytes]:
    """An output frame's payload: the time it was read, and the bytes."""
    if len(payload) < OUTPUT_TIME.size:
        raise ProtocolError("an output frame shorter than its time stamp")
    return OUTPUT_TIME.unpack_from(payload)[0], payload[OUTPUT_TIME.size:]


def encode_event(event: Message) -> bytes:
    return encode_frame(KIND_EVENT, 0, 0, dumps(event.to_dict()).encode())


def encode_command(command: Message) -> bytes:
    return dumps(command.to_dict()).encode() + b"\n"
