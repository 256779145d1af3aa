"""What the clients and the store set share: ``close()``, and a ``with`` block that calls it on the way out."""

from __future__ import annotations

import abc
from types import TracebackType
from typing import Self

__all__ = ["Closing"]


class Closing(abc.ABC):
    """Something that owns a connection, session or engine: ``with x:`` closes it when the block ends."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release what this object owns."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
