"""Group commit's gathering step: take what waits in a queue, up to a count and a size."""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def take_batch(waiting: queue.Queue[T | None], first: T, size_of: Callable[[T], int],
               max_items: int, max_bytes: int) -> tuple[list[T], bool]:
    """`first` plus whatever else is already waiting, within the limits.

    Returns the batch and whether the stop marker (None) was met, so the
    writer commits what it holds before it stops.
    """
    batch = [first]
    size = size_of(first)
    while len(batch) < max_items and size < max_bytes:
        try:
            item = waiting.get_nowait()
        except queue.Empty:
            break
        if item is None:
            return batch, True
        batch.append(item)
        size += size_of(item)
    return batch, False
