"""The per-frame pipeline: detect -> track -> crop -> super-resolve -> blend.

`Enhancer` knows nothing of files or sockets: it maps an (H, W, 3) uint8 RGB frame to an
(sH, sW, 3) one. The video command, the stream relay and the benchmarks all drive it, so
what the benchmarks time is what users run.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager

import numpy as np

from .blend import face_crop, match_low_frequencies, paste
from .detect import FaceDetector, FaceTracker
from .models import Generator
from .superres import SuperResolver, bicubic_upscale, resolve_device
from .weights import default_model, load_generator


def threads_beside_codec() -> int:
    """The generator's share of the CPU threads while a codec runs beside it: half, at least one."""
    import torch

    return max(1, torch.get_num_threads() // 2)


@contextmanager
def beside_codec_threads():
    """Half the CPU threads (at least one) for the generator while a video codec runs in threads beside it.

    `facesr video` decodes and encodes in their own threads; on two cores a generator on both
    of them only fights libx264 for them (one face at 320x180 -> 720p: 58 fps with one
    thread against 50 with two). Restores the previous count on exit.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads_beside_codec())
    try:
        yield
    finally:
        torch.set_num_threads(before)


STAGES = ("background", "detect", "track", "sr", "blend")
IO_STAGES = ("decode", "encode")  # timed by video.transcode when it is given the Enhancer's timer


class StageTimer:
    """Milliseconds per stage per frame; `summary()` gives p50/p95/p99."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = defaultdict(list)
        self.last: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, (time.perf_counter() - t0) * 1000.0)

    def add(self, name: str, ms: float) -> None:
        """Time spent on `name` for the frame in progress."""
        self.last[name] = self.last.get(name, 0.0) + ms

    def end_frame(self) -> None:
        for name in STAGES + tuple(n for n in self.last if n not in STAGES):
            self.samples[name].append(self.last.get(name, 0.0))
        self.samples["total"].append(sum(self.last.values()))
        self.last = {}

    def merge(self, name: str, per_frame: list[float]) -> None:
        """Add a stage timed elsewhere (the encoder thread), one value per frame in order."""
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


class Enhancer:
    """Face super-resolution over a bicubic background, frame by frame, for one stream.

    model: a shipped model ("lite", "lite-gan", "srresnet", "srgan"; default lite on CPU and
    srgan on CUDA), a .safetensors path, or a
    Generator. device "auto" picks CUDA when present; precision "auto" runs the network in
    float16 on CUDA and in bfloat16 on CPUs with native bfloat16 (see SuperResolver).
    background_only=True is the bicubic-only pipeline (the benchmarks' baseline).
    One Enhancer holds one stream's tracker: use one per stream, or call reset().
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
        detect_every: int = 3,
        margin: float = 0.35,
        fps: float = 30.0,
        background_only: bool = False,
        allow_untrained: bool = False,
    ):
        self.scale = scale
        self.margin = margin
        self.background_only = background_only
        self.timer = StageTimer()
        self.resolver: SuperResolver | None = None
        self.tracker: FaceTracker | None = None
        if background_only:
            return
        if model is None:
            model = default_model(device)
        generator = model if isinstance(model, Generator) else load_generator(model, scale, allow_untrained=allow_untrained)
        if generator.config.scale != scale:
            raise ValueError(f"the model is x{generator.config.scale}, the Enhancer was asked for x{scale}")
        self.resolver = SuperResolver(generator, resolve_device(device), precision)
        self.tracker = FaceTracker(FaceDetector(detector, model_path=detector_model), detect_every=detect_every, fps=fps)

    @property
    def device(self) -> str:
        return "cpu" if self.resolver is None else str(self.resolver.device)

    def reset(self) -> None:
        """Forget the tracked faces (a new stream or a scene cut)."""
        if self.tracker:
            self.tracker.reset()

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        return self.enhance(frame)

    def enhance(self, frame: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (sH, sW, 3) uint8 RGB."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got {frame.shape} {frame.dtype}")
        timer, s = self.timer, self.scale
        with timer.stage("background"):
            out = bicubic_upscale(frame, s)
        if self.tracker is not None:
            stage = "detect" if self.tracker.detects_next else "track"
            with timer.stage(stage):
                tracks = self.tracker.update(frame)
            crops = [(c, t.alpha) for t in tracks if (c := face_crop(t.box, frame.shape, self.margin)) is not None]
            if crops:
                lr_crops = [np.ascontiguousarray(c.of(frame)) for c, _ in crops]
                with timer.stage("sr"):
                    srs = self.resolver(lr_crops)
                with timer.stage("blend"):
                    for (crop, alpha), lr, sr in zip(crops, lr_crops, srs):
                        paste(out, match_low_frequencies(sr, lr, s), crop, s, alpha=alpha)
        timer.end_frame()
        return out

    def close(self) -> None:
        if self.tracker is not None:
            self.tracker.detector.close()
