"""The node's frozen records (sshrun/node/records.py) behave as frozen dataclasses do.

Each check declares one class body twice, once under ``records.frozen`` and
once under ``dataclasses.dataclass(frozen=True)``, and holds the record to
what the dataclass does: construction and its errors, defaults, equality,
hash, repr and the refused assignment. The protocol's own messages are held
to dataclass twins made from their fields; and the records are checked under
the oldest and newest Pythons here, as the agent runs them on nodes.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import subprocess
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from sshrun import agent
from sshrun.node import protocol, records
from sshrun.node.records import FrozenInstanceError, field, fields, frozen

Decorate = Callable[[type], type]
DATACLASS: Decorate = dataclasses.dataclass(frozen=True)
FIELD = {records.frozen: records.field, DATACLASS: dataclasses.field}


def declare(decorate: Decorate) -> tuple[type, type]:
    """A base and a class over it, declared under ``decorate``."""
    make = FIELD[decorate]

    @decorate
    class Base:
        KIND: ClassVar[str] = "base"
        first: int
        second: str = "two"

    @decorate
    class Point(Base):
        KIND: ClassVar[str] = "point"
        third: float = 3.0
        tags: dict[str, str] = make(default_factory=dict)
        names: tuple[str, ...] = ()

    return Base, Point


BOTH = [pytest.param(frozen, id="record"), pytest.param(DATACLASS, id="dataclass")]


def outcome(call: Callable[[], Any]) -> tuple[str, str]:
    """What ``call`` gives, as text: its repr, or its exception's type and message."""
    try:
        return ("value", repr(call()))
    except Exception as exc:
        return (type(exc).__name__, str(exc))


def _constructions(cls: type) -> list[Callable[[], Any]]:
    return [
        lambda: cls(1),
        lambda: cls(1, "b", 2.5, {"k": "v"}, ("n",)),
        lambda: cls(first=1, names=("x", "y")),
        lambda: cls(),
        lambda: cls(1, first=2),
        lambda: cls(1, nope=3),
        lambda: cls(1, "b", 2.5, {}, (), "too many"),
        lambda: cls(second="s"),
    ]


def test_construction_and_its_errors_read_as_a_dataclass_s() -> None:
    _, record = declare(frozen)
    _, twin = declare(DATACLASS)
    for made, expected in zip(_constructions(record), _constructions(twin), strict=True):
        assert outcome(made) == outcome(expected)
    base, base_twin = declare(frozen)[0], declare(DATACLASS)[0]
    assert outcome(lambda: base()) == outcome(lambda: base_twin())
    assert outcome(lambda: base(1, "2", 3)) == outcome(lambda: base_twin(1, "2", 3))


@pytest.mark.parametrize("decorate", BOTH)
def test_fields_come_in_order_bases_first_class_variables_left_out(decorate: Decorate) -> None:
    _, cls = declare(decorate)
    point = cls(7)
    assert point.__match_args__ == ("first", "second", "third", "tags", "names")
    assert (point.first, point.second, point.third, point.tags, point.names) == (
        7, "two", 3.0, {}, ())
    assert cls.KIND == "point"


@pytest.mark.parametrize("decorate", BOTH)
def test_defaults_a_factory_makes_each_instance_its_own(decorate: Decorate) -> None:
    _, cls = declare(decorate)
    one, two = cls(1), cls(1)
    assert one.tags is not two.tags
    assert cls.third == 3.0  # a plain default stays on the class, as a dataclass's does
    assert "tags" not in cls.__dict__


def test_equality_hash_and_repr_are_a_dataclass_s() -> None:
    base, record = declare(frozen)
    base_twin, twin = declare(DATACLASS)
    a, b = record(1, names=("n",)), record(1, names=("n",))
    assert a == b and a != record(2) and a != twin(1, names=("n",))
    assert record.__eq__(a, "text") is NotImplemented
    assert a != declare(frozen)[1](1, names=("n",))  # the same fields, another class
    assert repr(a) == repr(twin(1, names=("n",)))
    assert outcome(lambda: hash(a)) == outcome(lambda: hash(twin(1)))  # a dict field
    assert hash(base(1)) == hash(base_twin(1)) == hash((1, "two"))


@pytest.mark.parametrize("decorate", BOTH)
def test_fields_cannot_be_assigned_or_deleted(decorate: Decorate) -> None:
    _, cls = declare(decorate)
    point = cls(1)
    with pytest.raises(dataclasses.FrozenInstanceError if decorate is DATACLASS
                       else FrozenInstanceError, match="cannot assign to field 'first'"):
        point.first = 2
    with pytest.raises(AttributeError, match="cannot assign to field 'other'"):
        point.other = 2
    with pytest.raises(AttributeError, match="cannot delete field 'second'"):
        del point.second
    assert point.first == 1


@pytest.mark.parametrize("decorate", BOTH)
def test_declarations_a_dataclass_refuses_are_refused(decorate: Decorate) -> None:
    with pytest.raises(ValueError, match="mutable default <class 'dict'> for field env"):
        @decorate
        class Mutable:
            env: dict[str, str] = {}  # noqa: RUF012
    with pytest.raises(TypeError, match="non-default argument 'late' follows default argument"):
        @decorate
        class Order:
            early: int = 0
            late: int


def test_fields_lists_names_types_and_defaults() -> None:
    listed = {f.name: (f.type, f.default, f.default_factory) for f in fields(protocol.Spec)}
    assert listed["mode"] == ("str", records.MISSING, records.MISSING)
    assert listed["grace"] == ("float", 10.0, records.MISSING)
    assert listed["env"] == ("dict[str, str]", records.MISSING, dict)
    assert fields(protocol.Spec(mode="exec", tag="t")) == fields(protocol.Spec)
    assert field(default_factory=list).default_factory is list


def _twin(cls: type) -> type:
    """A frozen dataclass with the fields of the record class ``cls``."""
    specs = []
    for f in fields(cls):
        if f.default_factory is not records.MISSING:
            specs.append((f.name, f.type, dataclasses.field(default_factory=f.default_factory)))
        elif f.default is not records.MISSING:
            specs.append((f.name, f.type, dataclasses.field(default=f.default)))
        else:
            specs.append((f.name, f.type))
    return dataclasses.make_dataclass(cls.__name__, specs, frozen=True)


MESSAGES: list[type] = sorted({*protocol.EVENTS.values(), *protocol.COMMANDS.values(),
                               protocol.Swept, protocol.RankFailure}, key=lambda c: c.__name__)


@pytest.mark.parametrize("cls", MESSAGES, ids=lambda c: c.__name__)
def test_each_message_matches_its_dataclass_twin(cls: type) -> None:
    twin = _twin(cls)
    required = {f.name: f.type for f in fields(cls)
                if f.default is records.MISSING and f.default_factory is records.MISSING}
    sample = {"int": 3, "float": 1.5, "str": "s", "bool": True,
              "int | None": None, "str | None": "x"}
    values = {name: sample[kind] for name, kind in required.items()}
    assert repr(cls(**values)) == repr(twin(**values))
    assert cls(**values) == cls(**values)
    assert outcome(lambda: cls(**values, extra=1)) == outcome(lambda: twin(**values, extra=1))
    if required:
        assert outcome(lambda: cls()) == outcome(lambda: twin())
    assert [f.name for f in fields(cls)] == [f.name for f in dataclasses.fields(twin)]


def _pythons() -> list[str]:
    found = [sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{v}*/bin/python3")))
             for v in ("3.8", "3.13")]
    assert all(found), "no Python 3.8 and 3.13 on this machine to load the records with"
    return [paths[0] for paths in found]


@pytest.mark.parametrize("python", _pythons(), ids=os.path.basename)
def test_records_work_on_the_nodes_pythons(python: str) -> None:
    """The records module as shipped, under another interpreter: a class, its errors."""
    check = (
        "import sys, types\n"
        "m = types.ModuleType('records')\n"
        "exec(compile(sys.stdin.read(), 'records', 'exec'), m.__dict__)\n"
        "ns = {'frozen': m.frozen, 'field': m.field}\n"
        "exec('from __future__ import annotations\\n'\n"
        "     '@frozen\\n'\n"
        "     'class P:\\n'\n"
        "     '    K: ClassVar[int] = 1\\n'\n"
        "     '    a: int\\n'\n"
        "     '    b: dict[str, int] = field(default_factory=dict)\\n', ns)\n"
        "P = ns['P']\n"
        "p = P(1)\n"
        "assert repr(p) == 'P(a=1, b={})' and p == P(1, {}) and p.b is not P(1).b, repr(p)\n"
        "try:\n"
        "    p.a = 2\n"
        "except AttributeError as e:\n"
        "    assert str(e) == \"cannot assign to field 'a'\"\n"
        "try:\n"
        "    P()\n"
        "except TypeError as e:\n"
        "    assert 'missing 1 required positional argument' in str(e), e\n"
        "print('ok')\n"
    )
    result = subprocess.run([python, "-c", check], input=agent.source("records"),
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "ok", result.stdout + result.stderr


def test_replace_is_dataclasses_replace() -> None:
    _, record = declare(frozen)
    _, twin = declare(DATACLASS)
    changed = records.replace(record(1, tags={"a": "b"}), second="new", names=("n",))
    assert repr(changed) == repr(dataclasses.replace(twin(1, tags={"a": "b"}), second="new",
                                                     names=("n",)))
    assert outcome(lambda: records.replace(record(1), nope=2)) == outcome(
        lambda: dataclasses.replace(twin(1), nope=2))
    spec = protocol.Spec(mode="exec", tag="t", env={"A": "1"})
    assert records.replace(spec, argv=("true",)) == protocol.Spec(mode="exec", tag="t",
                                                                  env={"A": "1"}, argv=("true",))
