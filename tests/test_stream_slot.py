"""The newest-frame slot: consumers get the newest item, never a backlog, and count what they skipped."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from facesr.stream.slot import Latest, SlotClosed


def test_newest_wins_and_skips_are_counted():
    slot: Latest[int] = Latest()
    assert slot.get(0, timeout=0.01) is None
    for i in range(5):
        slot.put(i)
    taken = slot.get(0)
    assert (taken.seq, taken.item, taken.skipped) == (5, 4, 4)
    assert slot.get(taken.seq, timeout=0.01) is None  # nothing newer: wait, then nothing
    slot.put(5)
    taken = slot.get(taken.seq)
    assert (taken.item, taken.skipped) == (5, 0)


def test_close_ends_consumers_after_the_last_item():
    slot: Latest[int] = Latest()
    slot.put(1)
    slot.close()
    slot.put(2)  # ignored after close
    assert slot.get(0).item == 1
    with pytest.raises(SlotClosed):
        slot.get(1)


def test_thread_producer_wakes_asyncio_consumer():
    slot: Latest[int] = Latest()

    async def consume():
        seen, last, skipped = [], 0, 0
        try:
            while True:
                taken = await slot.aget(last)
                last, skipped = taken.seq, skipped + taken.skipped
                seen.append(taken.item)
                await asyncio.sleep(0.01)  # a slow consumer: the producer runs ahead
        except SlotClosed:
            return seen, skipped

    def produce():
        for i in range(200):
            slot.put(i)
            time.sleep(0.001)
        slot.close()

    async def main():
        thread = threading.Thread(target=produce)
        thread.start()
        result = await consume()
        thread.join()
        return result

    seen, skipped = asyncio.run(main())
    assert seen == sorted(seen) and seen[-1] == 199
    assert len(seen) + skipped == 200 and skipped > 50  # it skipped, it did not queue


def test_asyncio_waiter_is_cancellable():
    slot: Latest[int] = Latest()

    async def main():
        task = asyncio.ensure_future(slot.aget(0))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not slot._waiters

    asyncio.run(main())
