"""Small caches of loaded things (LoRA files, IP-Adapters and their encoders), shared so each
keeps the same two rules: the most recent few are kept, and a model is named by a number given
to it once and never reused, not by id(): CPython hands a freed object's address to the next
one, and an evicted backbone's UNet is freed."""
from __future__ import annotations

import itertools
import threading
import weakref


class Kept:
    """The last `keep` values made, by key; a key seen again returns its value without making it."""

    def __init__(self, keep: int):
        self.keep, self._items, self._lock = keep, {}, threading.Lock()

    def get(self, key, make):
        with self._lock:
            if key in self._items:
                self._items[key] = self._items.pop(key)       # most recent last
                return self._items[key]
        value = make()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.keep:
                self._items.pop(next(iter(self._items)))
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_numbers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_next_number, _numbers_lock = itertools.count(), threading.Lock()


def number(obj) -> int:
    """This object's number: the same while it lives, never another's."""
    with _numbers_lock:
        found = _numbers.get(obj)
        if found is None:
            found = _numbers[obj] = next(_next_number)
        return found
