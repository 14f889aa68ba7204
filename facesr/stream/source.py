"""A local source (a camera, a file, a URL: anything PyAV opens) enhanced in real time.

Two threads and two newest-item slots, so latency cannot build up at either step:

    reader thread --raw--> enhancer thread --output--> virtual camera, browser viewers

The reader decodes as the source delivers (a camera paces itself; a file is paced to its
timestamps, as if it were live) and keeps only the newest frame; the enhancer always takes
the newest one, so frames it could not keep up with are dropped and counted, never queued.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from ..errors import UserError
from ..yuv import i420_to_rgb
from .slot import Latest, SlotClosed


@dataclass(frozen=True)
class SourceFrame:
    lr: np.ndarray  # (H, W, 3) uint8 RGB as decoded
    captured: float  # time.perf_counter() when decoded
    index: int


@dataclass(frozen=True)
class EnhancedFrame:
    lr: np.ndarray
    enhanced: np.ndarray  # (sH, sW, 3) uint8 RGB
    scale: int
    captured: float
    enhance_ms: float
    index: int


def open_source(src: str, options: dict[str, str] | None = None):
    """Open `src` with PyAV: /dev/video* as a V4L2 camera, anything else as FFmpeg sees it."""
    if src.startswith("/dev/video"):
        fmt = "v4l2"
        if not Path(src).exists():
            raise UserError(f"--input {src}: no such camera device")
    else:
        fmt = None
        if "://" not in src and not Path(src).is_file():
            raise UserError(f"--input {src}: no such file")
    try:
        container = av.open(src, "r", format=fmt, options=options or {}, timeout=10.0)
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise UserError(f"--input {src}: cannot open ({getattr(exc, 'strerror', None) or exc})") from None
    if not container.streams.video:
        container.close()
        raise UserError(f"--input {src}: has no video stream")
    return container


class LocalSource:
    """Decode `src` in one thread, enhance the newest frame in another; `output` holds the newest result."""

    def __init__(self, src: str, enhancer, *, loop: bool = False, realtime: bool | None = None) -> None:
        self.src = src
        self.enhancer = enhancer
        self.loop = loop
        self.container = open_source(src)
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        is_file = "://" not in src and not src.startswith("/dev/")
        self.is_camera = src.startswith("/dev/video")
        self.realtime = is_file if realtime is None else realtime  # files play at their own speed, like a camera
        rate = self.stream.average_rate or self.stream.guessed_rate
        self.fps = float(rate) if rate else 30.0
        self.width = self.stream.codec_context.width
        self.height = self.stream.codec_context.height
        self.raw: Latest[SourceFrame] = Latest()
        self.output: Latest[EnhancedFrame] = Latest()
        self.frames_read = 0
        self.frames_enhanced = 0
        self.dropped = 0
        self.error: str | None = None
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._read, name="facesr-source", daemon=True),
            threading.Thread(target=self._enhance, name="facesr-source-enhance", daemon=True),
        ]

    @property
    def out_size(self) -> tuple[int, int]:
        return self.width * self.enhancer.scale, self.height * self.enhancer.scale

    def start(self) -> LocalSource:
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.raw.close()
        for t in self._threads:
            if t.is_alive():
                t.join(timeout)
        self.container.close()
        self.enhancer.close()  # the source owns its Enhancer

    def __enter__(self) -> LocalSource:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def finished(self) -> bool:
        return self.output.closed

    def _read(self) -> None:
        t_start = time.perf_counter()
        offset = 0.0  # seconds of earlier loops of a file
        last = 0.0
        try:
            while not self._stop.is_set():
                for frame in self.container.decode(self.stream):
                    if self._stop.is_set():
                        return
                    t = float(frame.pts * frame.time_base) if frame.pts is not None else self.frames_read / self.fps
                    last = t
                    if self.realtime:
                        wait = t_start + offset + t - time.perf_counter()
                        if wait > 0 and self._stop.wait(wait):
                            return
                    self.raw.put(SourceFrame(i420_to_rgb(frame), time.perf_counter(), self.frames_read))
                    self.frames_read += 1
                if self.is_camera and not self._stop.is_set():
                    self._lost("it stopped sending")  # a camera has no end: it was unplugged or failed
                    return
                if not self.loop:
                    return
                self.container.seek(0)
                offset += last + 1.0 / self.fps
        except (av.FFmpegError, OSError) as exc:
            if not self._stop.is_set():
                self._lost(getattr(exc, "strerror", None) or str(exc))
        except Exception as exc:  # anything else PyAV or a frame throws: said in one line, not a thread traceback
            self._lost(f"{type(exc).__name__}: {exc}")
        finally:
            self.raw.close()

    def _lost(self, why: str) -> None:
        self.error = f"--input {self.src}: lost after {self.frames_read} frames ({why})"

    def _enhance(self) -> None:
        last = 0
        try:
            while not self._stop.is_set():
                taken = self.raw.get(last, timeout=0.5)
                if taken is None:
                    continue
                last = taken.seq
                self.dropped += taken.skipped
                item = taken.item
                t0 = time.perf_counter()
                enhanced = self.enhancer.enhance(item.lr)
                ms = (time.perf_counter() - t0) * 1000.0
                self.output.put(EnhancedFrame(item.lr, enhanced, self.enhancer.scale, item.captured, ms, item.index))
                self.frames_enhanced += 1
        except SlotClosed:
            pass
        except Exception as exc:  # a failing Enhancer: the stream says so and stops, not a thread traceback
            self.error = self.error or f"--input {self.src}: enhancing failed ({type(exc).__name__}: {exc})"
        finally:
            self.output.close()
