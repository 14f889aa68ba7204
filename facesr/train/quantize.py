"""`facesr quantize`: build a generator's int8 file for ONNX Runtime (run by facesr/int8.py).

  1. export `Generator.network` (the learned residual, before the bicubic skip) to ONNX,
     with dynamic batch, height and width;
  2. calibrate the activation ranges on LR faces degraded like a call (the training mix; for a
     recurrent generator, frames of faces in motion with the history it gives itself):
     static QDQ quantization, uint8 activations, per-channel int8 weights in 7 bits, so that
     AVX2's 16-bit pair sums cannot saturate and its products are exact, as VNNI's are;
  3. two rewrites that change no output but ONNX Runtime's speed: PReLUs go out as
     max(x, a * x), which it runs in int8 where it leaves PRelu in float, and the last
     DepthToSpace moves before the dequantization, onto uint8;
  4. record the sha256 of the source safetensors in the ONNX metadata.

Building needs onnx and onnxscript (the exporter) beside onnxruntime.
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..int8 import CALIBRATION_KEY, SOURCE_KEY, int8_path
from ..models import Generator
from ..weights import file_sha256


class _MaxPReLU(torch.nn.Module):
    """PReLU with every slope in [0, 1], as max(x, a * x): the same function, which ONNX Runtime
    runs as an int8 multiply and a max where it leaves PRelu in float."""

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
        program = torch.onnx.export(net, (torch.rand(1, generator.config.in_channels, 64, 64),), dynamo=True, input_names=["lr"],
                                    output_names=["residual"], dynamic_shapes=(dims,), optimize=True, verbose=False)
    program.save(str(out))


def sequence_inputs(generator: Generator, faces: str | os.PathLike, count: int = 128, frames: int = 8,
                    seed: int = 0) -> list[np.ndarray]:
    """A recurrent generator's inputs as it meets them: `count` (1, C, h, w) float32, from still faces
    set in motion and compressed (sequences.still_sequence), run in order so that each frame after
    the first carries the float model's own previous output (memory.model_input_torch)."""
    from ..images import list_images, read_rgb
    from ..memory import flow, model_input_torch
    from .sequences import still_sequence

    paths = list_images(faces) if os.path.isdir(faces) else []
    if not paths:
        raise UserError(f"{faces}: no face images to make calibration sequences from")
    rng = np.random.default_rng(seed)
    scale, inputs = generator.config.scale, []
    model = copy.deepcopy(generator).float().cpu().eval()
    for i in rng.choice(len(paths), size=min(len(paths), -(-count // frames)), replace=False):
        seq = still_sequence(read_rgb(paths[i]), scale, rng, frames=frames)
        prev = None
        with torch.no_grad():
            for t in range(frames):
                lr = torch.from_numpy(seq.lr[t]).permute(2, 0, 1)[None].float() / 255.0
                motion = torch.from_numpy(flow(seq.lr[t], seq.lr[t - 1]) if t else np.zeros(seq.lr.shape[1:3] + (2,), np.float32))
                x = model_input_torch(lr, prev, motion.permute(2, 0, 1)[None], scale)
                inputs.append(x.numpy())
                prev = model(x).clamp(0.0, 1.0)
    return inputs[:count]


def calibration_inputs(faces: str | os.PathLike, scale: int, count: int = 128, seed: int = 0) -> list[np.ndarray]:
    """`count` LR faces, each (1, 3, h, w) float32, degraded by the training mix (blur, noise, JPEG, clean)."""
    from ..images import list_images, read_rgb
    from .degrade import degrade

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
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    weights_file = generator.weights_file
    if weights_file is None:
        raise UserError("only a generator loaded from a weights file can be quantized (its int8 model records the file)")
    out = Path(out) if out is not None else int8_path(weights_file)
    if generator.config.history:
        inputs = sequence_inputs(generator, faces, count)
        described = f"{len(inputs)} frames of still faces from {Path(faces).name}/ in motion through H.264, run in order"
    else:
        inputs = calibration_inputs(faces, generator.config.scale, count)
        described = f"{len(inputs)} faces from {Path(faces).name}/, training degradation mix"

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
        # Percentile (99.999%) ranges rather than min/max; 7-bit weights (reduce_range): AVX2 without
        # VNNI multiplies uint8 by int8 in pairs summed to 16 bits, which 8-bit weights saturate and
        # 7-bit ones cannot (docs/performance.md, "int8").
        quantize_static(pre, q, Reader(), quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.Percentile)
        model = onnx.load(q)
        _depth_to_space_before_dequantizing(model)
        meta = {SOURCE_KEY: file_sha256(weights_file),
                CALIBRATION_KEY: f"{described}, percentile 99.999, per-channel 7-bit int8 weights, uint8 activations"}
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
