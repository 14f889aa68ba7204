"""A newest-item slot: the one place where a stream decides which frame to work on next.

A producer `put()`s items as fast as they come; each consumer asks for the first item newer
than the one it last took and gets the *newest*, never a backlog. The items it never saw
are its dropped frames: `Taken.skipped` counts them. Producers and consumers may be threads
(the local source and its enhancer) or asyncio tasks (the WebRTC tracks), in any mix.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


class SlotClosed(Exception):
    """The producer has finished: no newer item will come."""


@dataclass(frozen=True)
class Taken(Generic[T]):
    seq: int  # 1 for the first item ever put
    item: T
    skipped: int  # items put since the consumer's last one that it never saw


class Latest(Generic[T]):
    """Holds only the newest item; consumers wait for one newer than the last they took."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._seq = 0
        self._item: T | None = None
        self._closed = False
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    @property
    def seq(self) -> int:
        return self._seq

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, item: T) -> None:
        with self._cond:
            if self._closed:
                return
            self._seq += 1
            self._item = item
            self._wake()

    def close(self) -> None:
        """No more items: waiting and later consumers get SlotClosed once they have seen the last one."""
        with self._cond:
            self._closed = True
            self._wake()

    def _wake(self) -> None:
        self._cond.notify_all()
        for loop, event in list(self._waiters):
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop has closed; its waiter is gone
                self._waiters.discard((loop, event))

    def _take(self, after: int) -> Taken[T] | None:
        if self._seq > after:
            return Taken(self._seq, self._item, self._seq - after - 1)  # type: ignore[arg-type]
        if self._closed:
            raise SlotClosed
        return None

    def get(self, after: int = 0, timeout: float | None = None) -> Taken[T] | None:
        """From a thread: the newest item with seq > after; None on timeout."""
        with self._cond:
            taken = self._take(after)
            if taken is None:
                self._cond.wait_for(lambda: self._seq > after or self._closed, timeout)
                taken = self._take(after)
            return taken

    async def aget(self, after: int = 0) -> Taken[T]:
        """From a coroutine: the newest item with seq > after (cancellable)."""
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        key = (loop, event)
        with self._cond:
            taken = self._take(after)
            if taken is not None:
                return taken
            self._waiters.add(key)
        try:
            while True:
                await event.wait()
                event.clear()
                with self._cond:
                    taken = self._take(after)
                if taken is not None:
                    return taken
        finally:
            with self._cond:
                self._waiters.discard(key)
