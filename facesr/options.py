"""How Enhancers are made: the options `facesr video`, `image`, `stream` and `bench` share, with
their defaults, in one place (light to import: the command line reads its defaults here)."""

from __future__ import annotations

from dataclasses import dataclass

from .track import DETECT_EVERY

# The model that runs where none is named, by use and device (runtime.default_model): for calls
# `lite-call` on a CPU (`lite` with a memory of each face's previous frame); for photos
# `lite-photo`; the paper's `srgan` on CUDA.
DEFAULT_MODELS = {"call": {"cpu": "lite-call", "cuda": "srgan"}, "photo": {"cpu": "lite-photo", "cuda": "srgan"}}


@dataclass(frozen=True)
class EnhancerOptions:
    """How Enhancers are made: the options `facesr video`, `image`, `stream` and `bench` share."""

    model: str | None = None  # a model name or .safetensors file; None: the device's default (runtime.model_name)
    scale: int = 4
    detector: str = "full"  # BlazeFace's "full" range model, or "short" for close-ups only
    detector_model: str | None = None  # a .tflite file instead of the cached one
    device: str = "auto"
    precision: str = "auto"
    detect_every: int = DETECT_EVERY
    use: str = "call"  # what the default model is chosen for: "call" (video, stream) or "photo" (image)
