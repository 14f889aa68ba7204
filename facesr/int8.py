"""The generator's network in int8, through ONNX Runtime: the CPU default where it is fastest.

ONNX Runtime's int8 convolutions (VNNI) run `lite` in 4.5 ms on one 89-px face crop, one thread,
against 7.9 ms for torch in bfloat16 and 15 ms in float32, for 0.02-0.04 dB on `facesr eval`;
on an AVX2-only CPU its SuperResolver call takes 19 ms against 35 in float32.
The 8-bit rounding of the activations changes from frame to frame; the Enhancer's hold on
one-level changes (blend.hold_small_changes) keeps that from flickering more than bicubic on
the call clips. `--precision auto` runs it on x86 CPUs with AVX2 and no AMX
(superres.int8_model), and `--precision int8` asks for it anywhere (weights/MODEL_CARD.md).

`facesr quantize` builds the int8 model from a generator's safetensors file, once, and it
ships beside that file as `{variant}-x{scale}.int8.onnx`:
  1. export `Generator.network` (the learned residual, before the bicubic skip) to ONNX,
     with dynamic batch, height and width;
  2. calibrate the activation ranges on LR faces degraded like a call (the training mix),
     per-channel 7-bit int8 weights, uint8 activations (static QDQ quantization; 7 bits so
     that AVX2's 16-bit sums cannot saturate: its products are then exact, as VNNI's are);
  3. two rewrites that change no output but ONNX Runtime's speed: PReLUs go out as
     max(x, a * x), which it runs in int8 where it left PRelu in float, and the last
     DepthToSpace moves before the dequantization, onto uint8 (together a fifth of
     `lite`'s time in ONNX Runtime's profile);
  4. record the sha256 of the source safetensors in the ONNX metadata, so a model whose
     float weights were retrained since is never run by mistake.

Only running needs onnxruntime; building also needs onnx and onnxscript (the exporter).
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
import threading
import warnings
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
                # ONNX Runtime's pool threads spin between runs by default. Beside the codec, the
                # detector and other sessions on two cores that spinning takes the CPU the rest
                # needs: the stream relay with four peers and two threads a worker ran at 5.7
                # fps per peer with it and 11.5 without (8.2 in bfloat16).
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


# --- building -------------------------------------------------------------------------


class _MaxPReLU(torch.nn.Module):
    """PReLU with every slope in [0, 1], as max(x, a * x): the same function, which ONNX Runtime
    runs as an int8 multiply and a max (0.3 ms on `lite`'s 89-px crop) where its PRelu kernel,
    left in float by the quantizer, took 1.3 ms, an eighth of the whole network."""

    def __init__(self, prelu: torch.nn.PReLU):
        super().__init__()
        self.register_buffer("slope", prelu.weight.detach().clone().view(1, -1, 1, 1))  # (1, C, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.maximum(x, x * self.slope)


class _NetworkOnly(torch.nn.Module):
    """Generator.network as a module's forward, for the exporter: a copy, its PReLUs with slopes in
    [0, 1] in the max form."""

    def __init__(self, generator: Generator):
        super().__init__()
        self.generator = copy.deepcopy(generator)
        for parent in self.generator.modules():
            for name, child in parent.named_children():
                if isinstance(child, torch.nn.PReLU) and bool(((child.weight >= 0) & (child.weight <= 1)).all()):
                    setattr(parent, name, _MaxPReLU(child))

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.generator.network(lr)


def export_onnx(generator: Generator, out: str | os.PathLike) -> None:
    """Generator.network -> float32 ONNX with dynamic batch, height and width (input "lr", output "residual")."""
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # it lists the torchvision ops it skips
    net = _NetworkOnly(generator.float().cpu()).eval()
    dims = {0: torch.export.Dim("batch", max=256), 2: torch.export.Dim("height", min=8, max=4096),
            3: torch.export.Dim("width", min=8, max=4096)}
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch's own deprecations inside the exporter
        program = torch.onnx.export(net, (torch.rand(1, 3, 64, 64),), dynamo=True, input_names=["lr"],
                                    output_names=["residual"], dynamic_shapes=(dims,), optimize=True, verbose=False)
    program.save(str(out))


def calibration_inputs(faces: str | os.PathLike, scale: int, count: int = 128, seed: int = 0) -> list[np.ndarray]:
    """`count` LR faces, each (1, 3, h, w) float32, degraded by the training mix (blur, noise, JPEG, clean)."""
    from .images import list_images, read_rgb
    from .train.degrade import degrade

    paths = list_images(faces) if os.path.isdir(faces) else []
    if not paths:
        raise UserError(f"{faces}: no face images to calibrate on")
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(paths), size=min(count, len(paths)), replace=False)
    inputs = []
    for i in sorted(picks):
        hr = read_rgb(paths[i])
        m = 2 * scale
        hr = np.ascontiguousarray(hr[: hr.shape[0] // m * m, : hr.shape[1] // m * m])
        lr = degrade(hr, scale, rng)
        inputs.append(np.ascontiguousarray(lr.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0)
    return inputs


def build_int8(generator: Generator, faces: str | os.PathLike, out: str | os.PathLike | None = None,
               count: int = 128) -> Path:
    """Export, calibrate and quantize a generator loaded from a weights file; write the int8 model
    (default: beside that file)."""
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    weights_file = generator.weights_file
    if weights_file is None:
        raise UserError("only a generator loaded from a weights file can be quantized (its int8 model records the file)")
    out = Path(out) if out is not None else int8_path(weights_file)
    inputs = calibration_inputs(faces, generator.config.scale, count)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(inputs)

        def get_next(self):
            x = next(self._it, None)
            return None if x is None else {"lr": x}

    with tempfile.TemporaryDirectory() as tmp:
        f32, pre, q = (os.path.join(tmp, n) for n in ("f32.onnx", "pre.onnx", "q.onnx"))
        export_onnx(generator, f32)
        quant_pre_process(f32, pre)
        # Percentile (99.999%) ranges measured 0.015 dB better than min/max on the eval faces. Keeping
        # the last convolution in float (output not quantized) cost 15% in time and changed nothing.
        # 7-bit weights (reduce_range): AVX2 without VNNI multiplies uint8 by int8 in pairs summed
        # to 16 bits, which 8-bit weights saturate (faces 29.82 dB against 29.96 in float32 on a
        # Zen 3); with 7 bits no sum can, so AVX2's products are exact, as VNNI's are
        # (29.92 dB), for 0.02 dB against 8 bits with VNNI (29.94).
        quantize_static(pre, q, Reader(), quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.Percentile)
        model = onnx.load(q)
        _depth_to_space_before_dequantizing(model)
        meta = {SOURCE_KEY: file_sha256(weights_file),
                CALIBRATION_KEY: f"{len(inputs)} faces from {Path(faces).name}/, training degradation mix, "
                                 "percentile 99.999, per-channel 7-bit int8 weights, uint8 activations"}
        for key, value in meta.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        out.parent.mkdir(parents=True, exist_ok=True)
        part = out.with_name(f".{out.name}.part")
        onnx.save(model, str(part))
        os.replace(part, out)
    return out


def _depth_to_space_before_dequantizing(model) -> None:
    """Rearrange the last convolution's output while it is still uint8: its quantize-dequantize
    pair then a float DepthToSpace become quantize, DepthToSpace, dequantize. The same numbers
    (the dequantization is per tensor, DepthToSpace only moves values), a quarter of the bytes
    moved: 0.34 ms against 0.58 on `lite`'s 89-px crop. A graph without that ending is left as it is."""
    nodes = model.graph.node
    if len(nodes) < 2:
        return
    dequantize, depth_to_space = nodes[-2], nodes[-1]
    if (depth_to_space.op_type != "DepthToSpace" or dequantize.op_type != "DequantizeLinear"
            or depth_to_space.input[0] != dequantize.output[0]):
        return
    quantized, scale, _ = dequantize.input
    scales = [init for init in model.graph.initializer if init.name == scale]
    if len(scales) != 1 or int(np.prod(scales[0].dims)) != 1:  # per channel: the values would move past their scales
        return
    rearranged = f"{quantized}_DepthToSpace"
    depth_to_space.input[0], depth_to_space.output[0], out = quantized, rearranged, depth_to_space.output[0]
    dequantize.input[0], dequantize.output[0] = rearranged, out
    nodes.remove(dequantize)
    nodes.append(dequantize)  # after DepthToSpace, as the graph's order must be
