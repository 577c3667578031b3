"""``@frozen_dataclass``: ``@dataclass(frozen=True)``, made without generating code.

``dataclasses`` writes each class's ``__init__``, ``__repr__``, ``__eq__``,
``__hash__``, ``__setattr__`` and ``__delattr__`` as source text and compiles
it: ~0.6 ms a class, 48 ms of the head's start for sshrun's ~80 frozen
dataclasses, two thirds of importing all of sshrun beyond asyncssh
(docs/benchmarks.md, "The head's fixed cost"). ``frozen_dataclass`` lets
``dataclasses`` do everything else (the fields, their defaults and options,
``__match_args__``, the class attributes) and gives the class the same six
methods as plain functions that read the fields, ~0.03 ms a class:

* it is a dataclass: ``is_dataclass``, ``fields``, ``asdict``, ``replace``
  and ``__dataclass_params__`` (``frozen``, ``eq``, ``init``, ``repr``) say
  what ``@dataclass(frozen=True)`` says, a subclass must be frozen too, and
  ``inspect.signature`` gives the fields;
* ``__init__`` takes the fields in order (``kw_only``: by keyword only, as
  ``field(kw_only=...)`` does per field), fills defaults and calls each
  ``default_factory`` afresh, sets fields with ``init=False`` from their
  factory, and refuses what a generated one refuses with the same
  ``TypeError`` messages;
* ``repr``, equality and the hash follow each field's ``repr``, ``compare``
  and ``hash``, and a method the class defines itself is kept, as
  ``dataclasses`` keeps it.

No ``__post_init__``, ``InitVar``, ``order``, ``slots`` or ``unsafe_hash``:
a class that needs one uses ``@dataclass`` (``frozen_dataclass`` refuses
it). tests/test_frozen_dataclass.py holds each class of sshrun, and the
cases above, to ``@dataclass(frozen=True)``'s behaviour. An instance costs
~2 µs more to make; no class made per line of output uses it.
"""

from __future__ import annotations

import dataclasses
import inspect
import threading
from collections.abc import Callable
from dataclasses import MISSING, FrozenInstanceError
from typing import Any, TypeVar, dataclass_transform, overload

T = TypeVar("T")

_FIELDS = "__dataclass_fields__"
_PARAMS = "__dataclass_params__"


@overload
def frozen_dataclass(cls: type[T], /) -> type[T]: ...


@overload
def frozen_dataclass(*, kw_only: bool = False) -> Callable[[type[T]], type[T]]: ...


@dataclass_transform(frozen_default=True, field_specifiers=(dataclasses.field,))
def frozen_dataclass(cls: type[T] | None = None, /, *,
                     kw_only: bool = False) -> type[T] | Callable[[type[T]], type[T]]:
    """The class as ``@dataclass(frozen=True, kw_only=kw_only)`` makes it; see above."""
    if cls is None:
        return lambda c: _make(c, kw_only)
    return _make(cls, kw_only)


def _make(cls: type[T], kw_only: bool) -> type[T]:
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__qualname__}: frozen_dataclass makes no __post_init__ call")
    own_doc = cls.__dict__.get("__doc__")
    own = {name for name in ("__init__", "__repr__", "__eq__", "__hash__") if name in cls.__dict__}
    for name in ("__setattr__", "__delattr__"):
        if name in cls.__dict__:
            raise TypeError(f"Cannot overwrite attribute {name} in class {cls.__name__}")
    # dataclasses refuses a non-frozen subclass of a frozen one; it is processed as
    # not frozen (no code for that either), so its frozen bases say so meanwhile.
    bases = [b.__dict__[_PARAMS] for b in cls.__mro__[1:] if _PARAMS in b.__dict__]
    if any(not p.frozen for p in bases):
        raise TypeError("cannot inherit frozen dataclass from a non-frozen one")
    for params in bases:
        params.frozen = False
    if not own_doc:
        cls.__doc__ = "-"  # written below, from the fields: dataclasses would ask inspect
    try:
        dataclasses.dataclass(cls, init=False, repr=False, eq=False, kw_only=kw_only)
    finally:
        for params in bases:
            params.frozen = True
    params = cls.__dict__[_PARAMS]
    params.init = params.repr = params.eq = params.frozen = True
    if any(repr(getattr(f, "_field_type", "")) == "_FIELD_INITVAR"
           for f in getattr(cls, _FIELDS).values()):
        raise TypeError(f"{cls.__qualname__}: frozen_dataclass takes no InitVar")

    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    names = frozenset(f.name for f in fields)  # no ClassVar: dataclasses' frozen set
    methods = {
        "__init__": _init(cls, fields),
        "__repr__": _repr(tuple(f.name for f in fields if f.repr)),
        "__eq__": _eq(tuple(f.name for f in fields if f.compare)),
        "__setattr__": _setattr(cls, names),
        "__delattr__": _delattr(cls, names),
    }
    # As dataclasses decides (frozen and eq): a hash of the compared fields, unless
    # the class says how to hash (its own __hash__, not Python's None for its __eq__).
    class_hash = cls.__dict__.get("__hash__", MISSING)
    if class_hash is MISSING or (class_hash is None and "__eq__" in cls.__dict__):
        methods["__hash__"] = _hash(tuple(f.name for f in fields
                                          if (f.compare if f.hash is None else f.hash)))
        own.discard("__hash__")
    for name, method in methods.items():
        if name in own:
            continue
        method.__qualname__ = f"{cls.__qualname__}.{name}"
        setattr(cls, name, method)
    if not own_doc:
        # What dataclasses writes: the name and inspect.signature(cls), without self.
        signature = methods["__init__"].__signature__  # type: ignore[attr-defined]
        shown = signature.replace(parameters=list(signature.parameters.values())[1:])
        cls.__doc__ = cls.__name__ + str(shown).replace(" -> None", "")
    return cls


def _init(cls: type, fields: tuple[dataclasses.Field[Any], ...]) -> Callable[..., None]:
    taken = [f for f in fields if f.init]
    # dataclasses' order: the positional fields, then the keyword-only ones.
    ordered = [f for f in taken if not f.kw_only] + [f for f in taken if f.kw_only]
    positional = tuple(f.name for f in ordered if not f.kw_only)
    plan = tuple((f.name, f.default, f.default_factory) for f in ordered)
    factories = tuple((f.name, f.default_factory) for f in fields
                      if not f.init and f.default_factory is not MISSING)
    keyword = frozenset(f.name for f in ordered if f.kw_only)
    accepted = frozenset(f.name for f in ordered)
    setter = object.__setattr__
    where = f"{cls.__qualname__}.__init__()"

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        given = len(args)
        if given > len(positional):
            _too_many(where, plan[:len(positional)], given,
                      sum(1 for k in kwargs if k in keyword))
        if kwargs and not accepted.issuperset(kwargs):
            extra = next(k for k in kwargs if k not in accepted)
            raise TypeError(f"{where} got an unexpected keyword argument {extra!r}")
        for name, value in zip(positional, args):  # noqa: B905 (counted above)
            if name in kwargs:
                raise TypeError(f"{where} got multiple values for argument {name!r}")
            setter(self, name, value)
        missing: list[str] = []
        for name, default, factory in plan[given:]:
            if name in kwargs:
                setter(self, name, kwargs[name])
            elif default is not MISSING:
                setter(self, name, default)
            elif factory is not MISSING:
                setter(self, name, factory())
            else:
                missing.append(name)
        if missing:
            _missing(where, missing, positional)
        for name, factory in factories:
            setter(self, name, factory())

    empty = inspect.Parameter.empty
    parameters = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    for f in ordered:
        default = (f.default if f.default is not MISSING else _FACTORY
                   if f.default_factory is not MISSING else empty)
        kind = (inspect.Parameter.KEYWORD_ONLY if f.kw_only
                else inspect.Parameter.POSITIONAL_OR_KEYWORD)
        parameters.append(inspect.Parameter(f.name, kind, default=default, annotation=f.type))
    __init__.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        parameters, return_annotation=None, __validate_parameters__=False)
    return __init__


# What a generated __init__'s signature shows for a default_factory: "<factory>".
_FACTORY = getattr(dataclasses, "_HAS_DEFAULT_FACTORY", inspect.Parameter.empty)


def _too_many(where: str, positional: tuple[tuple[str, Any, Any], ...], given: int,
              keyword_given: int) -> None:
    # Python's own words (counting self), as for the generated function.
    most = len(positional) + 1
    least = 1 + sum(1 for _, default, factory in positional
                    if default is MISSING and factory is MISSING)
    takes = (f"{most} positional argument{'s' * (most != 1)}" if least == most
             else f"from {least} to {most} positional arguments")
    given += 1
    also = (f" positional argument{'s' * (given != 1)} (and {keyword_given} keyword-only "
            f"argument{'s' * (keyword_given != 1)})" if keyword_given else "")
    raise TypeError(f"{where} takes {takes} but {given}{also} "
                    f"{'was' if given == 1 and not keyword_given else 'were'} given")


def _missing(where: str, missing: list[str], positional: tuple[str, ...]) -> None:
    # As Python words it: the positional ones first, then the keyword-only ones.
    for kind in ("positional", "keyword-only"):
        some = [n for n in missing if (n in positional) == (kind == "positional")]
        if some:
            quoted = [repr(n) for n in some]
            listed = (quoted[0] if len(quoted) == 1 else
                      " and ".join(quoted) if len(quoted) == 2 else
                      ", ".join(quoted[:-1]) + ", and " + quoted[-1])
            raise TypeError(f"{where} missing {len(some)} required {kind} "
                            f"argument{'s' * (len(some) != 1)}: {listed}")


_repr_running = threading.local()


def _repr(names: tuple[str, ...]) -> Callable[[Any], str]:
    def __repr__(self: Any) -> str:
        # As dataclasses' (reprlib.recursive_repr): an object inside itself is "...".
        running = _repr_running.__dict__.setdefault("ids", set())
        key = id(self)
        if key in running:
            return "..."
        running.add(key)
        try:
            shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        finally:
            running.discard(key)
        return f"{self.__class__.__qualname__}({shown})"
    return __repr__


def _eq(names: tuple[str, ...]) -> Callable[[Any, object], Any]:
    def __eq__(self: Any, other: object) -> Any:
        if other.__class__ is self.__class__:
            return (tuple(getattr(self, n) for n in names)
                    == tuple(getattr(other, n) for n in names))
        return NotImplemented
    return __eq__


def _hash(names: tuple[str, ...]) -> Callable[[Any], int]:
    def __hash__(self: Any) -> int:
        return hash(tuple(getattr(self, n) for n in names))
    return __hash__


def _setattr(cls: type, names: frozenset[str]) -> Callable[[Any, str, Any], None]:
    def __setattr__(self: Any, name: str, value: Any) -> None:
        if type(self) is cls or name in names:
            raise FrozenInstanceError(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)  # type: ignore[arg-type]
    return __setattr__


def _delattr(cls: type, names: frozenset[str]) -> Callable[[Any, str], None]:
    def __delattr__(self: Any, name: str) -> None:
        if type(self) is cls or name in names:
            raise FrozenInstanceError(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)  # type: ignore[arg-type]
    return __delattr__
