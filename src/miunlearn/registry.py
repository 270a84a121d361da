"""Name -> factory registries (datasets, models, approximators, audit attacks, methods).

Components register themselves by decorating a factory::

    @METHODS.register("remi")
    class ReMI: ...

and are looked up with :meth:`Registry.get`, which names the valid choices when a name is unknown.
A registered class states its name only in the decorator: the registry sets its ``name`` attribute.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from miunlearn.errors import MiunlearnError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of factories of one kind (e.g. ``"model"``)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._entries:
                raise RuntimeError(f"{self.kind} {name!r} is registered twice")
            if isinstance(obj, type):
                stated = obj.__dict__.get("name", name)
                if stated != name:
                    raise RuntimeError(f"{self.kind} {name!r} is registered as {name!r} but names itself {stated!r}")
                obj.name = name
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise MiunlearnError(self.unknown_message(name)) from None

    def validate(self, name: str) -> str:
        self.get(name)
        return name

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(str(name), self.names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown {self.kind} {name!r}{hint}; valid: {', '.join(self.names())}"

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
