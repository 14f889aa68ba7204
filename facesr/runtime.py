"""Where and in what arithmetic the generator runs, and which model runs by default: decided here only.

* Device: "auto" is CUDA where torch sees one, else the CPU.
* Precision: "auto" is float16 on CUDA. On a CPU it is the model's int8 file through ONNX
  Runtime on an x86 CPU with AVX2 and no AMX, where the model has a current int8 file
  (`lite` ships one); else bfloat16 on a CPU that computes it in hardware (AVX-512 BF16,
  AMX); else float32. Each choice is the fastest measured on that kind of CPU for a cost of
  at most a few hundredths of a dB (docs/performance.md). Only the network's residual runs in
  the lower precision: the bicubic upscale it adds to stays float32.
* Default model, by use: for calls (`video`, `stream`, `bench`, `eval`) `lite-call` on a CPU,
  `lite` with a memory of each face's previous frame; for photos (`image`) `lite-photo`, `lite`
  trained on clean and JPEG input; the paper's `srgan` on CUDA for both (weights/MODEL_CARD.md).

`plan(generator, device, precision)` turns the user's "auto"/names into one `Plan`, which
`SuperResolver` follows: nothing below it decides again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import UserError
from .int8 import int8_status
from .models import Generator
from .options import DEFAULT_MODELS

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
PRECISION_CHOICES = ("auto", "int8", *PRECISIONS)


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available (torch sees none)")
    if name not in ("cpu", "cuda"):
        raise UserError(f"--device {name}: choose auto, cpu or cuda")
    return torch.device(name)


def default_model(device: str | torch.device = "auto", use: str = "call") -> str:
    """The model that runs when none is named, for `use` ("call" or "photo") on `device`."""
    name = device.type if isinstance(device, torch.device) else device
    if name == "auto":
        name = resolve_device("auto").type
    if name not in DEFAULT_MODELS[use]:
        raise UserError(f"--device {name}: choose auto, cpu or cuda")
    return DEFAULT_MODELS[use][name]


def model_name(spec: str | None, device: str | torch.device = "auto", use: str = "call") -> str:
    """`--model` as given, or the default model for `use` on the device where none is."""
    return spec or default_model(device, use)


def model_names(spec: str | None, device: str | torch.device = "auto") -> list[str]:
    """`--model` as a list: comma-separated names, or the device's default model where none is given."""
    return [m for m in model_name(spec, device).split(",") if m]


def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX-512 BF16 or AMX)."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without the probes: assume not
        return False


def cpu_prefers_int8() -> bool:
    """Whether ONNX Runtime's int8 is the CPU default here: x86 with AVX2 (with or without VNNI:
    the int8 files' 7-bit weights keep AVX2's 16-bit sums exact) and without AMX, whose bfloat16
    tiles make torch the faster. Elsewhere (ARM) torch stays."""
    try:
        return bool(torch.cpu._is_avx2_supported()) and not torch.cpu._is_amx_tile_supported()
    except AttributeError:
        return False


@dataclass(frozen=True)
class Plan:
    """How one generator runs: on `device`, in `dtype`, or through the int8 file `int8` (then `dtype` is float32)."""

    device: torch.device
    dtype: torch.dtype
    int8: Path | None = None

    @property
    def precision(self) -> str:
        """"int8", "bfloat16", "float32" or "float16"."""
        if self.int8 is not None:
            return "int8"
        return next(name for name, dtype in PRECISIONS.items() if dtype == self.dtype)


def plan(generator: Generator, device: str | torch.device = "auto", precision: str = "auto") -> Plan:
    """The device and arithmetic `generator` runs in, from the user's --device and --precision."""
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    if precision not in PRECISION_CHOICES:
        raise UserError(f"--precision {precision}: choose {', '.join(PRECISION_CHOICES)}")
    if precision == "int8":
        if dev.type != "cpu":
            raise UserError("--precision int8 runs on a CPU, through ONNX Runtime; on CUDA use float16")
        path, why = int8_status(generator)
        if path is None:
            raise UserError(f"--precision int8: {why}")
        return Plan(dev, torch.float32, path)
    if precision == "auto":
        if dev.type == "cuda":
            return Plan(dev, torch.float16)
        if cpu_prefers_int8() and (path := int8_status(generator)[0]) is not None:
            return Plan(dev, torch.float32, path)
        return Plan(dev, torch.bfloat16 if cpu_has_native_bfloat16() else torch.float32)
    if precision == "float16" and dev.type != "cuda":
        raise UserError("--precision float16 runs on CUDA only; on a CPU use bfloat16 or float32")
    return Plan(dev, PRECISIONS[precision])


def describe_precisions(chosen: dict[str, str]) -> str:
    """{model: precision} -> "int8", or "lite int8, srresnet bfloat16" where they differ (for reports)."""
    kinds = set(chosen.values())
    return kinds.pop() if len(kinds) == 1 else ", ".join(f"{m} {p}" for m, p in chosen.items())
