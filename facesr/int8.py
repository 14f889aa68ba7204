"""The generator's network in int8, through ONNX Runtime: the fast CPU path on x86 CPUs without AMX.

A model's int8 file ships beside its weights as `{variant}-x{scale}.int8.onnx` (built by
`facesr quantize`, facesr/train/quantize.py). It holds `Generator.network`, the learned
residual before the bicubic skip, with uint8 activations and per-channel 7-bit int8 weights,
and records the sha256 of the safetensors file it was built from: a file built from other
weights is never run (`int8_status`). `runtime.plan` decides where it runs.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import torch

from .errors import UserError
from .models import Generator
from .weights import file_sha256

SOURCE_KEY = "facesr.source_sha256"
CALIBRATION_KEY = "facesr.calibration"


def int8_path(weights_file: str | os.PathLike) -> Path:
    """lite-x4.safetensors -> lite-x4.int8.onnx, beside it."""
    path = Path(weights_file)
    return path.with_name(path.name.removesuffix(".safetensors") + ".int8.onnx")


def int8_status(generator: Generator) -> tuple[Path | None, str]:
    """(the int8 model to run for this generator, "") or (None, why there is none)."""
    source = getattr(generator, "weights_file", None)
    if source is None:
        return None, "the generator was not loaded from a weights file"
    path = int8_path(source)
    if not path.is_file():
        return None, f"{path.name} does not exist (build it with `facesr quantize --model {source}`)"
    if onnx_metadata(path).get(SOURCE_KEY) != file_sha256(source):
        return None, f"{path.name} was built from other weights than {Path(source).name}: rebuild it with `facesr quantize`"
    return path, ""


def onnx_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The custom metadata of an ONNX model (where facesr records what it was built from)."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable files
        raise UserError(f"{path}: not an ONNX model ({str(exc).splitlines()[0]})") from None
    return dict(session.get_modelmeta().custom_metadata_map)


class Int8Network:
    """Callable: (B, 3, h, w) float32 array in [0, 1] -> (B, 3, s*h, s*w) float32, the
    generator's `network` (its residual) in int8.

    ONNX Runtime fixes a session's thread count when it is made, so one session is kept per
    count and each call uses torch's current `torch.get_num_threads()`: the thread budget the
    rest of facesr sets (one per render worker beside a video codec) applies here too.
    Sessions run concurrently from several threads and release the GIL.
    """

    def __init__(self, path: str | os.PathLike):
        import onnxruntime as ort

        self.path = Path(path)
        self._model = self.path.read_bytes()
        self._sessions: dict[int, ort.InferenceSession] = {}
        self._lock = threading.Lock()
        self._session(torch.get_num_threads())  # fail here, not on the first frame

    def _session(self, threads: int):
        import onnxruntime as ort

        with self._lock:
            if threads not in self._sessions:
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = threads
                opts.inter_op_num_threads = 1
                # ONNX Runtime's pool threads spin between runs by default: beside the codec, the
                # detector and other sessions, that spinning takes the CPU the rest needs
                # (docs/performance.md, the relay with four peers).
                opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
                opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                try:
                    self._sessions[threads] = ort.InferenceSession(self._model, opts, providers=["CPUExecutionProvider"])
                except Exception as exc:
                    raise UserError(f"{self.path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0]})") from None
            return self._sessions[threads]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        session = self._session(torch.get_num_threads())
        return session.run(None, {"lr": np.ascontiguousarray(x, dtype=np.float32)})[0]
