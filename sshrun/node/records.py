"""Frozen record classes without ``dataclasses``: ``@frozen`` and ``field``.

The protocol's messages are declared as frozen dataclasses are (annotated
fields, defaults, ``field(default_factory=...)``), but the agent cannot
afford ``dataclasses`` on a node: importing it pulls in ``inspect``, ``ast``,
``dis``, ``tokenize`` and ``typing``, and making each class compiles its
methods, ~14 ms of CPU per agent start (docs/benchmarks.md, "Agent cost on a
node"). ``frozen`` makes the same class from the class's own
``__annotations__`` (strings: its module has ``from __future__ import
annotations``) with generic methods and no code generated: positional or
keyword ``__init__`` in field order, a ``repr``, equality and a hash over the
fields, and assignment refused (``FrozenInstanceError``, an
``AttributeError``). tests/test_records.py holds it to the dataclass's
behaviour. Annotations that start with ``ClassVar`` are no fields; a base
class's fields come first, as with dataclasses.

``fields(cls)`` lists a record class's ``Field``s (name, type, default,
``default_factory``; ``MISSING`` where none); ``replace(record, **changes)``
is ``dataclasses.replace``'s. Type checkers see ``frozen`` as a frozen
dataclass (PEP 681, ``dataclass_transform``), so they accept the functions
of ``dataclasses`` too, but a record is no dataclass at run time:
``dataclasses.fields``, ``replace`` and ``asdict`` raise ``TypeError`` on it
and ``is_dataclass`` says False. Use this module's.

Runs on the node: standard library only, Python 3.8.
"""

from __future__ import annotations

# typing is ~3 ms to import on a node; its names are the type checker's only.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar, dataclass_transform

    T = TypeVar("T")
else:
    def dataclass_transform(**_options):
        return lambda decorated: decorated


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class FrozenInstanceError(AttributeError):
    """An assignment to (or deletion of) a field of a frozen record."""


class Field:
    __slots__ = ("default", "default_factory", "name", "type")

    def __init__(self, default: Any = MISSING, default_factory: Any = MISSING) -> None:
        self.name = ""
        self.type = ""
        self.default = default
        self.default_factory = default_factory

    def __repr__(self) -> str:
        return (f"Field(name={self.name!r}, type={self.type!r}, default={self.default!r}, "
                f"default_factory={self.default_factory!r})")


def field(*, default_factory: Callable[[], T]) -> T:
    """A field whose default is made afresh for each instance by ``default_factory``."""
    # The class's attribute only until ``frozen`` reads it: to the type checker, the value.
    return Field(default_factory=default_factory)  # type: ignore[return-value]


def fields(record: Any) -> tuple[Field, ...]:
    """A record class's (or instance's) fields, in ``__init__`` order."""
    found: tuple[Field, ...] = record.__record_fields__
    return found


def replace(record: T, **changes: Any) -> T:
    """A copy of ``record`` with ``changes`` to its fields, as ``dataclasses.replace``."""
    values = {f.name: getattr(record, f.name) for f in fields(record)}
    values.update(changes)
    made: T = type(record)(**values)
    return made


def _listed(names: list[str]) -> str:
    """Names as Python's own argument errors list them: 'a', 'b', and 'c'."""
    quoted = [repr(name) for name in names]
    if len(quoted) <= 2:
        return " and ".join(quoted)
    return ", ".join(quoted[:-1]) + ", and " + quoted[-1]


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    # The errors read as those of the __init__ that dataclasses would generate.
    cls = type(self)
    where = f"{cls.__qualname__}.__init__()"
    specs: tuple[Field, ...] = cls.__record_fields__
    names: tuple[str, ...] = cls.__match_args__
    values = dict(zip(names, args))  # noqa: B905 (no strict= on 3.8; counted below)
    for key in kwargs:
        if key in values:
            raise TypeError(f"{where} got multiple values for argument {key!r}")
        if key not in cls.__record_names__:
            raise TypeError(f"{where} got an unexpected keyword argument {key!r}")
    if len(args) > len(specs):
        least = cls.__record_required__ + 1
        most = len(specs) + 1
        takes = (f"{most} positional argument{'s' if most > 1 else ''}" if least == most
                 else f"from {least} to {most} positional arguments")
        given = len(args) + 1
        raise TypeError(f"{where} takes {takes} but {given} "
                        f"{'was' if given == 1 else 'were'} given")
    values.update(kwargs)
    missing = [f.name for f in specs if f.name not in values
               and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        raise TypeError(f"{where} missing {len(missing)} required positional "
                        f"argument{'s' if len(missing) > 1 else ''}: {_listed(missing)}")
    setter = object.__setattr__
    for f in specs:
        if f.name in values:
            setter(self, f.name, values[f.name])
        elif f.default_factory is not MISSING:
            setter(self, f.name, f.default_factory())
        else:
            setter(self, f.name, f.default)


def _values(self: Any) -> tuple[Any, ...]:
    return tuple(getattr(self, name) for name in self.__match_args__)


def _repr(self: Any) -> str:
    shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__match_args__)
    return f"{type(self).__qualname__}({shown})"


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is self.__class__:
        return _values(self) == _values(other)
    return NotImplemented


def _hash(self: Any) -> int:
    return hash(_values(self))


def _setattr(self: Any, name: str, value: Any) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _delattr(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def frozen(cls: type[T]) -> type[T]:
    """``cls`` as a frozen record over its annotated fields (see the module's docstring)."""
    specs: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        for f in base.__dict__.get("__record_fields__", ()):
            specs[f.name] = f
    # The class's own (a base's are not its fields); inspect is what the node cannot afford.
    annotations: dict[str, str] = cls.__dict__.get("__annotations__", {})  # noqa: RUF063
    if not annotations and "__annotate__" in cls.__dict__:
        annotations = cls.__annotations__  # lazily made (PEP 649), should a Python do so
    for name, kind in annotations.items():
        if str(kind).startswith(("ClassVar", "typing.ClassVar")):
            continue
        value = cls.__dict__.get(name, MISSING)
        f = value if isinstance(value, Field) else Field(default=value)
        f.name, f.type = name, kind
        if f.default is not MISSING and type(f.default).__hash__ is None:
            raise ValueError(f"mutable default {type(f.default)} for field {name} is not "
                             "allowed: use default_factory")
        if isinstance(value, Field):
            delattr(cls, name)  # a default_factory's: no default shared on the class
        specs[name] = f
    ordered = tuple(specs.values())
    has_default = False
    for f in ordered:
        required = f.default is MISSING and f.default_factory is MISSING
        if required and has_default:
            raise TypeError(f"non-default argument {f.name!r} follows default argument")
        has_default = has_default or not required
    methods = {
        "__record_fields__": ordered, "__record_names__": frozenset(specs),
        "__record_required__": sum(f.default is MISSING and f.default_factory is MISSING
                                   for f in ordered),
        "__match_args__": tuple(specs), "__init__": _init, "__repr__": _repr, "__eq__": _eq,
        "__hash__": _hash, "__setattr__": _setattr, "__delattr__": _delattr,
    }
    for attr, method in methods.items():
        setattr(cls, attr, method)
    return cls
