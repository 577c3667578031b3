"""sshrun.frozen_dataclass behaves as @dataclass(frozen=True): each case is made both
ways from the same class body, and everything a caller can see is compared."""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib
import inspect
import pickle
import pkgutil
import time
from collections.abc import Callable
from dataclasses import FrozenInstanceError, dataclass, field
from typing import Any, ClassVar

import pytest

import sshrun
from sshrun.frozen_dataclass import frozen_dataclass

Maker = Callable[..., Any]


def _stdlib(kw_only: bool = False) -> Maker:
    return dataclass(frozen=True, kw_only=kw_only)


def _ours(kw_only: bool = False) -> Maker:
    return frozen_dataclass(kw_only=kw_only)


def _shapes(make: Callable[..., Maker]) -> dict[str, Any]:
    """The same class bodies, made with ``make``: every shape sshrun's classes have."""

    @make()
    class Plain:
        """Doc."""

        a: int
        b: str = "x"
        c: tuple[int, ...] = field(default_factory=tuple)
        hidden: int = field(default=0, repr=False, compare=False)

    @make(kw_only=True)
    class Base:
        """An event's fields."""

        name: ClassVar[str] = "base"
        job: str
        attempt: int
        when: float = field(default_factory=time.time)

    @make(kw_only=True)
    class Child(Base):
        name: ClassVar[str] = "child"  # no docstring: dataclasses writes one
        host: str
        code: int | None = None

    @make()
    class Mixed:
        """A keyword-only field among positional ones."""

        a: int
        k: int = field(kw_only=True)
        b: int = 2
        later: list[int] = field(default_factory=list, init=False, repr=False, compare=False)

    @make()
    class Own:
        """Methods of its own are kept."""

        a: int

        def __repr__(self) -> str:
            return f"Own<{self.a}>"

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Own) and other.a % 10 == self.a % 10

    @make()
    class Hashed:
        """Its own hash is kept."""

        a: int

        def __hash__(self) -> int:
            return 7

    return {"Plain": Plain, "Base": Base, "Child": Child, "Mixed": Mixed, "Own": Own,
            "Hashed": Hashed}


OURS, STDLIB = _shapes(_ours), _shapes(_stdlib)

ARGS: dict[str, list[tuple[tuple[Any, ...], dict[str, Any]]]] = {
    "Plain": [((1,), {}), ((1, "y", (2,)), {}), ((), {"a": 3, "hidden": 5})],
    "Base": [((), {"job": "j", "attempt": 0, "when": 1.0})],
    "Child": [((), {"job": "j", "attempt": 1, "host": "h", "when": 2.0}),
              ((), {"job": "j", "attempt": 1, "host": "h", "code": 3, "when": 2.0})],
    "Mixed": [((1,), {"k": 2}), ((1, 5), {"k": 2})],
    "Own": [((12,), {})],
    "Hashed": [((1,), {})],
}
BAD: dict[str, list[tuple[tuple[Any, ...], dict[str, Any]]]] = {
    "Plain": [((), {}), ((1, "y", (), 4, 5), {}), ((1,), {"a": 2}), ((1,), {"zz": 1})],
    "Base": [((), {}), ((), {"job": "j"}), (("j", 0), {})],
    "Child": [((), {"job": "j", "attempt": 0}), ((), {"host": "h"})],
    "Mixed": [((1,), {}), ((), {"k": 1}), ((1, 2, 3), {"k": 1})],
    "Own": [((), {})],
    "Hashed": [((1, 2), {})],
}


def _error(make: Callable[[], Any]) -> str:
    with pytest.raises(TypeError) as caught:
        make()
    return str(caught.value)


@pytest.mark.parametrize("name", sorted(OURS))
def test_the_class_is_the_dataclass_it_says(name: str) -> None:
    ours, theirs = OURS[name], STDLIB[name]
    assert dataclasses.is_dataclass(ours)
    assert [(f.name, f.type, f.default, f.init, f.repr, f.compare, f.kw_only)
            for f in dataclasses.fields(ours)] == \
        [(f.name, f.type, f.default, f.init, f.repr, f.compare, f.kw_only)
         for f in dataclasses.fields(theirs)]
    assert ours.__match_args__ == theirs.__match_args__
    assert str(inspect.signature(ours)) == str(inspect.signature(theirs))
    assert ours.__doc__ == theirs.__doc__
    for attr in ("init", "repr", "eq", "order", "unsafe_hash", "frozen"):
        assert getattr(ours.__dataclass_params__, attr) == \
            getattr(theirs.__dataclass_params__, attr), attr


@pytest.mark.parametrize("name", sorted(OURS))
def test_instances_behave_the_same(name: str) -> None:
    ours, theirs = OURS[name], STDLIB[name]
    for args, kwargs in ARGS[name]:
        a, b = ours(*args, **kwargs), theirs(*args, **kwargs)
        assert repr(a).replace("_ours", "") == repr(b)
        assert dataclasses.asdict(a) == dataclasses.asdict(b)
        twin = ours(*args, **kwargs)
        assert (a == twin) == (b == theirs(*args, **kwargs))
        assert (hash(a) == hash(twin)) == (hash(b) == hash(theirs(*args, **kwargs)))
        assert (a == b) is False  # another class, as two dataclasses are
        for field_name in [f.name for f in dataclasses.fields(ours)] + ["other"]:
            with pytest.raises(FrozenInstanceError):
                setattr(a, field_name, 1)
            with pytest.raises(FrozenInstanceError):
                delattr(a, field_name)
        changes = {f.name: getattr(a, f.name) for f in dataclasses.fields(ours)[:1] if f.init}
        assert dataclasses.replace(a, **changes) == a
        assert copy.deepcopy(a) == a and copy.copy(a) == a


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_arguments_are_refused_in_the_same_words(name: str) -> None:
    for args, kwargs in BAD[name]:
        assert _error(functools.partial(OURS[name], *args, **kwargs)) == \
            _error(functools.partial(STDLIB[name], *args, **kwargs)), (args, kwargs)


def test_an_event_pickles_and_compares_after() -> None:
    from sshrun.events import NodeConnected

    event = NodeConnected(job="j", attempt=0, host="node0", node=0, address="127.0.0.2")
    assert pickle.loads(pickle.dumps(event)) == event and hash(event) == hash(copy.copy(event))


def test_factories_are_called_afresh_and_init_false_fields_are_set() -> None:
    one, two = OURS["Mixed"](1, k=2), OURS["Mixed"](1, k=2)
    assert one.later == [] and one.later is not two.later
    assert OURS["Plain"](1).c == () and OURS["Base"](job="j", attempt=0).when > 0


def test_subclasses_follow_the_frozen_rule() -> None:
    with pytest.raises(TypeError, match="non-frozen dataclass from a frozen one"):
        @dataclass
        class Loose(OURS["Base"]):  # type: ignore[misc]
            extra: int = 0

    @dataclass(frozen=True, kw_only=True)
    class Strict(OURS["Base"]):  # type: ignore[misc]
        extra: int = 0

    assert Strict(job="j", attempt=0, when=1.0).extra == 0

    @dataclass
    class Thawed:
        a: int

    with pytest.raises(TypeError, match="frozen dataclass from a non-frozen one"):
        @frozen_dataclass
        class Refrozen(Thawed):
            b: int = 0


def test_what_it_does_not_make_is_refused() -> None:
    with pytest.raises(TypeError, match="__post_init__"):
        @frozen_dataclass
        class WithPost:
            a: int

            def __post_init__(self) -> None:
                pass
    with pytest.raises(TypeError, match="__setattr__"):
        @frozen_dataclass
        class WithSetattr:
            a: int

            def __setattr__(self, name: str, value: object) -> None:
                pass


def test_a_class_variable_is_no_frozen_field() -> None:
    # As dataclasses' frozen __setattr__: only fields are refused on a subclass's
    # instance (a plain subclass, not made by either decorator).
    for made in (OURS["Child"], STDLIB["Child"]):
        class Loose(made):  # type: ignore[misc, valid-type]
            pass

        item = Loose(job="j", attempt=0, host="h")
        item.name = "mine"
        assert item.name == "mine"
        with pytest.raises(FrozenInstanceError):
            item.host = "other"


def test_a_repr_that_reaches_itself_says_so() -> None:
    ours, theirs = OURS["Plain"]([]), STDLIB["Plain"]([])
    ours.a.append(ours)
    theirs.a.append(theirs)
    assert repr(ours) == repr(theirs) == "_shapes.<locals>.Plain(a=[...], b='x', c=())"


def _sshrun_classes() -> list[type]:
    found = []
    for info in pkgutil.iter_modules(sshrun.__path__):
        if info.name == "__main__":
            continue
        module = importlib.import_module(f"sshrun.{info.name}")
        for value in vars(module).values():
            if (isinstance(value, type) and value.__module__ == module.__name__
                    and dataclasses.is_dataclass(value)
                    and hasattr(value.__init__, "__signature__")):
                found.append(value)
    return found


def test_sshrun_makes_its_frozen_dataclasses_this_way() -> None:
    # The point of the module: nearly every dataclass of sshrun; each is what
    # @dataclass(frozen=True) would make of the same fields.
    classes = _sshrun_classes()
    assert len(classes) >= 75
    for cls in classes:
        fields = dataclasses.fields(cls)
        twin = dataclasses.make_dataclass(cls.__name__, [
            (f.name, f.type, field(default=f.default, default_factory=f.default_factory,
                                   init=f.init, repr=f.repr, compare=f.compare,
                                   hash=f.hash, kw_only=f.kw_only)) for f in fields],
            frozen=True)
        assert str(inspect.signature(cls)) == str(inspect.signature(twin)), cls
        assert cls.__match_args__ == twin.__match_args__, cls
        assert cls.__dataclass_params__.frozen and cls.__dataclass_params__.eq, cls
