"""A compact set of connection ids, for the aggregate detectors' members.

Its own module, not compiled with the detectors (setup.py): mypyc cannot compile a
subclass of array.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable

__all__ = ["Ids"]


class Ids(array):  # type: ignore[type-arg]
    """Connection ids, 8 bytes each (a set of ints costs ~60). Ids are added once each,
    in increasing order; `add`/`update` as for the set it replaces."""

    __slots__ = ()

    def __new__(cls, ids: Iterable[int] = ()) -> Ids:
        return super().__new__(cls, "q", ids)  # type: ignore[return-value]

    def add(self, conn_id: int) -> None:
        self.append(conn_id)

    def update(self, ids: Iterable[int]) -> None:
        self.extend(ids)
