"""A small least-recently-used cache keyed by tuples, for the objects a compiled solve must find again (a compiled
program is cached by the identity of the functions it closes over, so they are kept and reused)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class LRU(Generic[V]):
    """At most ``size`` values; :meth:`get` makes one with ``make`` where the key is missing or ``valid`` refuses
    the cached one (e.g. an ``id`` whose object is gone), and marks it as the most recent."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[Hashable, V] = OrderedDict()

    def get(self, key: Hashable, make: Callable[[], V], valid: Callable[[V], bool] = lambda _: True) -> V:
        value = self.items.get(key)
        if value is None or not valid(value):
            value = self.items[key] = make()
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        self.items.move_to_end(key)
        return value

    def clear(self) -> None:
        self.items.clear()
