"""The outgoing video tracks: each `recv()` is the whole per-frame transform, as in aiortc's examples.

`EnhancedTrack` (the relay): a background task drains the peer's incoming track into a
newest-frame slot as fast as aiortc decodes it, so aiortc's unbounded receive queue never
grows; `recv()` takes the newest frame, runs the Enhancer in a worker thread (never on the
event loop) and returns the upscaled frame with the input's pts and time_base. Frames that
arrived while the Enhancer was busy are dropped and counted.

`ViewerTrack` (a local source served to browsers): each viewer takes the newest frame the
source's Enhancer produced and gets a VideoFrame of its own (aiortc's encoders must not share
one frame object).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from concurrent.futures import Executor
from fractions import Fraction

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ..superres import bicubic_upscale
from ..yuv import i420_to_rgb, rgb_to_i420
from .slot import Latest, SlotClosed

MODES = ("facesr", "bicubic")


class StreamStats:
    """Counts and a sliding window of timings for one outgoing stream (what the page shows)."""

    def __init__(self, window: int = 90) -> None:
        self.frames_in = 0
        self.frames_out = 0
        self.dropped = 0
        self.in_size: tuple[int, int] | None = None
        self.out_size: tuple[int, int] | None = None
        self.enhance_ms: deque[float] = deque(maxlen=window)
        self.added_ms: deque[float] = deque(maxlen=window)  # frame arrival -> handed to the encoder
        self.in_times: deque[float] = deque(maxlen=window)
        self.out_times: deque[float] = deque(maxlen=window)
        self.last_in = time.monotonic()

    def arrived(self, width: int, height: int) -> None:
        self.frames_in += 1
        self.in_size = (width, height)
        self.last_in = time.monotonic()
        self.in_times.append(self.last_in)

    def sent(self, width: int, height: int, enhance_ms: float, added_ms: float) -> None:
        self.frames_out += 1
        self.out_size = (width, height)
        self.enhance_ms.append(enhance_ms)
        self.added_ms.append(added_ms)
        self.out_times.append(time.monotonic())

    def snapshot(self) -> dict:
        def rate(times: deque[float]) -> float:
            return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0

        def pct(values: deque[float], q: float) -> float | None:
            return round(float(np.percentile(values, q)), 1) if values else None

        return {
            "in_size": self.in_size,
            "out_size": self.out_size,
            "fps_in": round(rate(self.in_times), 1),
            "fps_out": round(rate(self.out_times), 1),
            "enhance_ms_p50": pct(self.enhance_ms, 50),
            "enhance_ms_p95": pct(self.enhance_ms, 95),
            "added_ms_p50": pct(self.added_ms, 50),
            "added_ms_p95": pct(self.added_ms, 95),
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "dropped": self.dropped,
        }


def to_frame(rgb: np.ndarray, pts: int | None, time_base: Fraction | None) -> av.VideoFrame:
    """A new yuv420p frame: the encoders' format, converted here in the worker rather than by aiortc
    on its encoder thread, by the same BT.601 conversion the incoming frames are decoded with."""
    frame = rgb_to_i420(rgb)
    frame.pts, frame.time_base = pts, time_base
    return frame


class EnhancedTrack(MediaStreamTrack):
    """A peer's camera track, enhanced: newest frame in, upscaled frame out."""

    kind = "video"

    def __init__(self, source: MediaStreamTrack, enhancer, executor: Executor, *, mode: str = "facesr") -> None:
        super().__init__()
        self.source = source
        self.enhancer = enhancer
        self.scale = enhancer.scale
        self.executor = executor
        self.mode = mode
        self.stats = StreamStats()
        self._lock = threading.Lock()
        self._slot: Latest[tuple[av.VideoFrame, float]] = Latest()
        self._last = 0
        self._drain_task = asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        try:
            while True:
                frame = await self.source.recv()
                self.stats.arrived(frame.width, frame.height)
                self._slot.put((frame, time.perf_counter()))
        except MediaStreamError:
            pass  # the peer's track ended
        finally:
            self._slot.close()

    def _process(self, mode: str):
        # Take the newest frame now, in the worker, not when the job was queued: with several
        # peers sharing the workers, a frame picked before the queue wait would be stale by now.
        taken = self._slot.get(self._last, timeout=0)
        frame, _ = taken.item
        rgb = i420_to_rgb(frame)
        with self._lock:
            if self.enhancer is None:
                raise MediaStreamError
            t0 = time.perf_counter()
            if mode == "bicubic":
                out = bicubic_upscale(rgb, self.scale)
            else:
                out = self.enhancer.enhance(rgb)
            enhance_ms = (time.perf_counter() - t0) * 1000.0
        return to_frame(out, frame.pts, frame.time_base), enhance_ms, taken

    def release(self) -> None:
        """Close the Enhancer once no worker uses it (call from a worker thread after stop())."""
        with self._lock:
            if self.enhancer is not None:
                self.enhancer.close()
                self.enhancer = None

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        try:
            await self._slot.aget(self._last)  # a frame newer than the last one sent has arrived
        except SlotClosed:
            self.stop()
            raise MediaStreamError from None
        out, enhance_ms, taken = await asyncio.get_running_loop().run_in_executor(self.executor, self._process, self.mode)
        self._last = taken.seq
        self.stats.dropped += taken.skipped
        self.stats.sent(out.width, out.height, enhance_ms, (time.perf_counter() - taken.item[1]) * 1000.0)
        return out

    def stop(self) -> None:
        super().stop()
        self._drain_task.cancel()
        self._slot.close()


class ViewerTrack(MediaStreamTrack):
    """One browser's view of a local source: the newest enhanced frame, as a frame of its own."""

    kind = "video"

    def __init__(self, source, executor: Executor, *, mode: str = "facesr") -> None:
        super().__init__()
        self.source = source  # a LocalSource
        self.executor = executor
        self.mode = mode
        self.stats = StreamStats()
        self._last = 0
        self._start: float | None = None

    def _process(self, item, mode: str) -> av.VideoFrame:
        if mode == "bicubic":
            rgb = bicubic_upscale(item.lr, item.scale)
        else:
            rgb = item.enhanced
        self._start = self._start if self._start is not None else item.captured
        pts = round((item.captured - self._start) * 90000)  # the source's clock, on WebRTC's 90 kHz video clock
        return to_frame(rgb, pts, Fraction(1, 90000))

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        try:
            taken = await self.source.output.aget(self._last)
        except SlotClosed:
            self.stop()
            raise MediaStreamError from None
        self._last = taken.seq
        self.stats.dropped += taken.skipped
        item = taken.item
        h, w = item.lr.shape[:2]
        self.stats.arrived(w, h)
        out = await asyncio.get_running_loop().run_in_executor(self.executor, self._process, item, self.mode)
        self.stats.sent(out.width, out.height, item.enhance_ms, (time.perf_counter() - item.captured) * 1000.0)
        return out
