"""Value classes for the modules every command imports, without ``dataclasses``.

Speed, not taste (issue 13): importing ``dataclasses`` (it imports ``inspect``) costs
about 8 ms here, and each frozen dataclass costs about half a millisecond more when
its module is imported, since its methods are generated as source and compiled at
that moment. A ``kexec-py -s`` run is allowed about 35 ms in all. The classes on the
paths of ``-s``, ``-S``, ``-u`` and ``--help`` are therefore ``Record`` subclasses:

    class Steps(Record):
        _defaults = dict(status=False, load=True)     # field -> default (REQUIRED: none)
        __slots__ = tuple(_defaults)

which behave as ``@dataclass(frozen=True, slots=True)`` would for what kexec_py does
with them: keyword or positional construction in field order, defaults (``factory(f)``
for a fresh mutable default per instance), equality and hashing by value, the same
repr, assignment refused (``_frozen = False`` allows it), and ``replace`` (below, which
also takes real dataclasses). tests/test_record.py holds them to that.
"""

from __future__ import annotations

REQUIRED = object()         # a field without a default


class factory:
    """A default made fresh for each instance: ``factory(list)``."""

    __slots__ = ("make",)

    def __init__(self, make):
        self.make = make


class FrozenRecordError(AttributeError):
    """Assignment to a field of a frozen Record (dataclasses' FrozenInstanceError is an AttributeError too)."""


class Record:
    __slots__ = ()
    _defaults: dict = {}
    _fields: tuple = ()
    _compared: tuple = ()
    _frozen = True
    _hidden: tuple = ()             # fields left out of the repr (dataclasses' field(repr=False))
    _uncompared: tuple = ()         # fields left out of == and hash (field(compare=False))

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        defaults: dict = {}
        for klass in reversed(cls.__mro__):
            defaults.update(klass.__dict__.get("_defaults", {}))
        cls._defaults = defaults
        cls._fields = tuple(defaults)
        cls._compared = tuple(name for name in defaults if name not in cls._uncompared)

    def __init__(self, *args, **kwargs):
        fields = self._fields
        if len(args) > len(fields):
            raise TypeError(f"{type(self).__name__}() takes {len(fields)} arguments, {len(args)} given")
        values = dict(zip(fields, args))
        for name, value in kwargs.items():
            if name not in self._defaults:
                raise TypeError(f"{type(self).__name__}() got an unexpected keyword argument {name!r}")
            if name in values:
                raise TypeError(f"{type(self).__name__}() got multiple values for argument {name!r}")
            values[name] = value
        setter = object.__setattr__
        for name, default in self._defaults.items():
            value = values.get(name, default)
            if value is REQUIRED:
                raise TypeError(f"{type(self).__name__}() missing required argument {name!r}")
            if type(value) is factory:
                value = value.make()
            setter(self, name, value)

    def _values(self) -> tuple:
        return tuple(getattr(self, name) for name in self._compared)

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields if name not in self._hidden)
        return f"{type(self).__qualname__}({inner})"

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self):
        if not self._frozen:
            raise TypeError(f"unhashable type: {type(self).__name__!r}")
        return hash(self._values())

    def __setattr__(self, name, value):
        if self._frozen:
            raise FrozenRecordError(f"cannot assign to field {name!r}")
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        if self._frozen:
            raise FrozenRecordError(f"cannot delete field {name!r}")
        object.__delattr__(self, name)


def replace(obj, **changes):
    """A copy of ``obj`` (a Record or a dataclass instance) with ``changes``."""
    if isinstance(obj, Record):
        values = {name: getattr(obj, name) for name in obj._fields}
        for name in changes:
            if name not in values:
                raise TypeError(f"{type(obj).__name__} has no field {name!r}")
        values.update(changes)
        return type(obj)(**values)
    import dataclasses
    return dataclasses.replace(obj, **changes)
