"""The per-frame pipeline: detect -> track -> crop -> super-resolve -> blend.

`Enhancer` knows nothing of files or sockets: it maps an (H, W, 3) uint8 RGB frame to an
(sH, sW, 3) one. The video command, the stream relay and the benchmarks all drive it, so
what the benchmarks time is what users run.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .blend import HOLD_LEVELS, MARGIN, Crop, Held, face_crop, hold_small_changes, paste_residual
from .detect import FaceDetector
from .memory import Remembered, align, flow, memory_channels, remembered
from .models import Generator
from .options import EnhancerOptions
from .runtime import model_name, resolve_device
from .superres import SuperResolver, bicubic_upscale
from .track import DETECT_EVERY, FaceTracker
from .weights import load_generator


def threads_beside_codec() -> int:
    """The generator's share of the CPU threads while a codec runs beside it: half, at least one."""
    import torch

    return max(1, torch.get_num_threads() // 2)


@contextmanager
def beside_codec_threads():
    """Half the CPU threads (at least one) for the generator while a video codec runs in threads beside it.

    `facesr video` decodes and encodes in their own threads; on two cores a generator on both
    of them only fights libx264 for them (docs/performance.md). Restores the previous count on exit.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads_beside_codec())
    try:
        yield
    finally:
        torch.set_num_threads(before)


STAGES = ("background", "detect", "track", "memory", "sr", "blend")
HISTORY_MODES = ("aligned", "crop", "off")  # a recurrent generator's memory: see Enhancer


class StageTimer:
    """Milliseconds per stage per frame; `summary()` gives p50/p95/p99.

    Each frame's stage times are gathered in a dict of their own (`stage(times, name)`) and
    recorded in frame order (`record()`), so frames worked on at once in several threads are timed right.
    """

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = defaultdict(list)

    @staticmethod
    @contextmanager
    def stage(times: dict[str, float], name: str):
        """Add the time spent in the block to `times[name]`."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            times[name] = times.get(name, 0.0) + (time.perf_counter() - t0) * 1000.0

    def record(self, times: dict[str, float]) -> None:
        """One frame's stage times, frames in order."""
        for name in STAGES + tuple(n for n in times if n not in STAGES):
            self.samples[name].append(times.get(name, 0.0))
        self.samples["total"].append(sum(times.values()))

    def merge(self, name: str, per_frame: list[float]) -> None:
        """Add a stage timed elsewhere (the decoder and encoder threads), one value per frame in order."""
        total = self.samples["total"]
        for i, ms in enumerate(per_frame[: len(total)]):
            total[i] += ms
        self.samples[name] = list(per_frame[: len(total)])

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            name: {f"p{q}": float(np.percentile(v, q)) for q in (50, 95, 99)} | {"mean": float(np.mean(v))}
            for name, v in self.samples.items()
            if v
        }


@dataclass
class _Job:
    """One frame between planning (in order) and rendering (in any thread)."""

    frame: np.ndarray
    crops: list[tuple[Crop, float]]  # each face's crop and fade-in/out alpha
    ids: list[int] = field(default_factory=list)  # each face's track id
    times: dict[str, float] = field(default_factory=dict)
    done: bool = False
    previous: "_Job | None" = None  # the frame before, until this one's faces are held against it
    held: list[Held] = field(default_factory=list)  # this frame's pasted faces, for the next frame
    held_ready: threading.Event = field(default_factory=threading.Event)
    memory: dict[int, Remembered] = field(default_factory=dict)  # a recurrent generator's outputs, by track id
    memory_ready: threading.Event = field(default_factory=threading.Event)


def enhancer_factory(opts: EnhancerOptions) -> tuple[Callable[[], "Enhancer"], str]:
    """(make, device): `make()` gives a new Enhancer per stream (each its own tracker), all
    sharing one loaded generator. Fails now, with one line, if the model or detector cannot load."""
    device = str(resolve_device(opts.device))
    generator = load_generator(model_name(opts.model, device, opts.use), opts.scale)

    def make() -> Enhancer:
        return Enhancer.from_options(opts, generator=generator)

    make().close()
    return make, device


def _model_label(model: str | Generator) -> str:
    if isinstance(model, Generator):
        return Path(model.weights_file).name if model.weights_file else "generator"
    return model


class Enhancer:
    """Face super-resolution over a bicubic background, frame by frame, for one stream.

    model: a shipped model ("lite-call", "lite", "lite-recurrent", "lite-photo", "lite-gan", "srresnet", "srgan";
    default lite-call on CPU and srgan on CUDA), a .safetensors path, or a Generator. device
    "auto" picks CUDA when present; precision "auto" runs the network in float16 on CUDA, and on
    a CPU in the model's int8 twin or in bfloat16 where the CPU suits them (see SuperResolver).
    hold_levels: see blend.hold_small_changes (0: off). A recurrent generator (`lite-recurrent`) gets
    each face's previous output back, aligned (facesr/memory.py), kept per track id; `history`
    "aligned" (the default), or for measurements "crop" (carried by the crop's move only, no
    optical flow) or "off" (every frame a first frame).
    background_only=True is the bicubic-only pipeline (the benchmarks' baseline).
    One Enhancer holds one stream's tracker: use one per stream, or call reset().

    Each frame is planned (detect or track, then the crops) in order, and rendered (bicubic
    background, SR, blend) after. `enhance()` does both at once; `submit()` plans now and
    renders in one of `workers` threads, so with workers > 1 several frames are super-resolved
    at once while the frames' order and the tracker's stay as they were.
    """

    def __init__(
        self,
        model: str | Generator | None = None,
        scale: int = 4,
        *,
        detector: str = "full",
        detector_model: str | None = None,
        device: str = "auto",
        precision: str = "auto",
        detect_every: int = DETECT_EVERY,
        margin: float = MARGIN,
        fps: float = 30.0,
        background_only: bool = False,
        workers: int = 1,
        hold_levels: int = HOLD_LEVELS,
        history: str = "aligned",
    ):
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        if history not in HISTORY_MODES:
            raise ValueError(f"history must be one of {', '.join(HISTORY_MODES)}, not {history!r}")
        self.scale = scale
        self.margin = margin
        self.background_only = background_only
        self.timer = StageTimer()
        self.resolver: SuperResolver | None = None
        self.tracker: FaceTracker | None = None
        self.workers = workers
        self.hold_levels = hold_levels
        self.history = history
        self.history_counts = {"faces": 0, "remembered": 0}  # face crops run, and of them with history kept
        self._last_job: _Job | None = None
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="facesr-render") if workers > 1 else None
        self._jobs: deque[_Job] = deque()  # planned, not yet recorded in the timer, in frame order
        self._lock = threading.Lock()
        self.model_name = "bicubic"
        if background_only:
            return
        model = model_name(model, device) if not isinstance(model, Generator) else model
        self.model_name = _model_label(model)
        generator = model if isinstance(model, Generator) else load_generator(model, scale)
        self.scale = generator.config.scale  # a named model is loaded at `scale`; a file or Generator brings its own
        self.resolver = SuperResolver(generator, resolve_device(device), precision)
        self.tracker = FaceTracker(FaceDetector(detector, model_path=detector_model), detect_every=detect_every, fps=fps)

    @classmethod
    def from_options(cls, opts: "EnhancerOptions", *, generator: Generator | None = None, fps: float = 30.0,
                     background_only: bool = False, workers: int = 1) -> "Enhancer":
        """An Enhancer as `opts` say; `generator` (already loaded, shared by several) overrides opts.model."""
        model = generator if generator is not None else model_name(opts.model, opts.device, opts.use)
        enhancer = cls(model, opts.scale, detector=opts.detector,
                       detector_model=opts.detector_model, device=opts.device, precision=opts.precision,
                       detect_every=opts.detect_every, fps=fps, background_only=background_only, workers=workers)
        if generator is not None and not background_only:
            enhancer.model_name = model_name(opts.model, opts.device, opts.use)
        return enhancer

    @property
    def device(self) -> str:
        return "cpu" if self.resolver is None else str(self.resolver.device)

    def reset(self) -> None:
        """Forget the tracked faces (a new stream or a scene cut)."""
        if self.tracker:
            self.tracker.reset()
        with self._lock:
            self._last_job = None

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        return self.enhance(frame)

    def enhance(self, frame: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (sH, sW, 3) uint8 RGB."""
        return self._render(self._plan(frame))

    def submit(self, frame: np.ndarray) -> Future:
        """Plan `frame` now (call in frame order) and render it in a worker thread: a Future of
        what `enhance(frame)` returns. With one worker it is rendered before this returns."""
        job = self._plan(frame)
        if self._pool is not None:
            return self._pool.submit(self._render, job)
        future: Future = Future()
        future.set_result(self._render(job))
        return future

    def _plan(self, frame: np.ndarray) -> _Job:
        """Detect or track (in order: the tracker follows the faces from frame to frame), then crop."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got {frame.shape} {frame.dtype}")
        job = _Job(frame, [])
        if self.tracker is not None:
            with StageTimer.stage(job.times, "detect" if self.tracker.detects_next else "track"):
                tracks = self.tracker.update(frame)
            cropped = [(t, c) for t in tracks if (c := face_crop(t.box, frame.shape, self.margin)) is not None]
            job.crops, job.ids = [(c, t.alpha) for t, c in cropped], [t.id for t, _ in cropped]
        with self._lock:
            self._jobs.append(job)
            job.previous, self._last_job = self._last_job, job
        return job

    def _render(self, job: _Job) -> np.ndarray:
        """The bicubic background, then each face super-resolved and blended in; any thread."""
        try:
            frame, s, times = job.frame, self.scale, job.times
            with StageTimer.stage(times, "background"):
                out = bicubic_upscale(frame, s)
            if job.crops:
                lr_crops = [np.ascontiguousarray(c.of(frame)) for c, _ in job.crops]
                memory = None
                if self.resolver.recurrent:
                    if job.previous is not None:  # its outputs first: frames in flight wait here, untimed
                        job.previous.memory_ready.wait()
                    with StageTimer.stage(times, "memory"):
                        memory = self._recall(job, lr_crops, out)
                with StageTimer.stage(times, "sr"):
                    residuals = self.resolver.residuals(lr_crops, memory)
                if self.resolver.recurrent:
                    with StageTimer.stage(times, "memory"):
                        self._remember(job, out, residuals)
                    job.memory_ready.set()
                before = self._previous_held(job)
                with StageTimer.stage(times, "blend"):
                    crops = [crop for crop, _ in job.crops]
                    overlapping = any(a.overlaps(b) for i, a in enumerate(crops) for b in crops[:i])
                    bicubic = out.copy() if overlapping else None  # what a face pasted over another replaces
                    for (crop, alpha), lr, residual in zip(job.crops, lr_crops, residuals):
                        paste_residual(out, residual, lr, crop, s, alpha=alpha, bicubic=bicubic)
                    if self.hold_levels:
                        regions = [crop.scaled(s) for crop, _ in job.crops]
                        hold_small_changes(out, regions, before, self.hold_levels)
                        job.held = [Held.of(out, region) for region in regions]
            return out
        finally:
            job.previous = None
            job.memory_ready.set()
            job.held_ready.set()
            self._finished(job)

    def _recall(self, job: _Job, lr_crops: list[np.ndarray], background: np.ndarray) -> list[np.ndarray]:
        """Each face's history channels: its output in the frame before, aligned to its crop now.

        That frame's outputs are ready (`_render` waited for them: a recurrent generator runs in
        frame order). A face new to the tracker, or whose history no longer fits
        (memory.memory_channels), gets none."""
        s, before = self.scale, job.previous
        remembered: dict[int, Remembered] = {}
        if before is not None and before.frame.shape == job.frame.shape:
            remembered = before.memory
        channels, kept = [], 0
        for (crop, _), track, lr in zip(job.crops, job.ids, lr_crops):
            prev = remembered.get(track) if self.history != "off" else None
            if prev is None:
                channels.append(memory_channels(lr, None, s)[0])
                continue
            if self.history == "aligned":
                motion = flow(lr, np.ascontiguousarray(crop.of(before.frame)))
            else:
                motion = np.zeros(lr.shape[:2] + (2,), np.float32)
            ch, fits = memory_channels(lr, align(prev, crop.x0, crop.y0, motion, s), s, background[crop.scaled(s)])
            channels.append(ch)
            kept += fits
        with self._lock:
            self.history_counts["faces"] += len(lr_crops)
            self.history_counts["remembered"] += kept
        return channels

    def _remember(self, job: _Job, background: np.ndarray, residuals: list[np.ndarray]) -> None:
        """Keep each face's output (its crop of the bicubic frame plus the residual, 0..1) for the next frame."""
        for (crop, _), track, residual in zip(job.crops, job.ids, residuals):
            output = background[crop.scaled(self.scale)].astype(np.float32)
            output += residual
            output *= np.float32(1 / 255)
            job.memory[track] = remembered(np.clip(output, 0.0, 1.0, out=output), crop.x0, crop.y0)

    def _previous_held(self, job: _Job) -> list[Held]:
        """The faces pasted into the frame before, for blend.hold_small_changes.

        That frame may still be rendering in another worker: this waits for it, the one step
        of rendering that runs in frame order (it was submitted first, so it is running).
        """
        before = job.previous
        if not self.hold_levels or before is None:
            return []
        before.held_ready.wait()
        return before.held

    def _finished(self, job: _Job) -> None:
        """Record the stage times of every finished frame not preceded by an unfinished one."""
        with self._lock:
            job.done = True
            while self._jobs and self._jobs[0].done:
                self.timer.record(self._jobs.popleft().times)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        if self.tracker is not None:
            self.tracker.detector.close()
