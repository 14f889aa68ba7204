"""Run a generator on uint8 image crops: batching, device, precision.

The one place where numpy crops become tensors and back, shared by the Enhancer, the
full-frame tiler, training evaluation and `facesr eval`.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from .errors import UserError
from .fused import FusedNetwork
from .int8 import Int8Network, int8_status
from .models import Generator, bicubic


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available (torch sees none)")
    if name not in ("cpu", "cuda"):
        raise UserError(f"--device {name}: choose auto, cpu or cuda")
    return torch.device(name)


def bicubic_upscale(img: np.ndarray, scale: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (sH, sW, 3): the cheap background and the baseline every model is measured against."""
    return cv2.resize(img, (img.shape[1] * scale, img.shape[0] * scale), interpolation=cv2.INTER_CUBIC)


PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
PRECISION_NAMES = {dtype: name for name, dtype in PRECISIONS.items()}


def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX-512 BF16 or AMX), where it runs convolutions ~1.7x faster."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without the probes: assume not
        return False


def cpu_prefers_int8() -> bool:
    """Whether ONNX Runtime's int8 is the CPU default here: an x86 CPU with AVX2 (VNNI or not; the
    int8 file's 7-bit weights keep AVX2's 16-bit sums from saturating, `int8.build_int8`) and no
    AMX, whose bfloat16 tiles make torch the faster (measured on each kind, see the README's
    Performance). Elsewhere (ARM) it is unmeasured, and torch stays."""
    try:
        return bool(torch.cpu._is_avx2_supported()) and not torch.cpu._is_amx_tile_supported()
    except AttributeError:
        return False


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    """The torch dtype: "auto" is float16 on CUDA, bfloat16 on a CPU that has it in hardware, else float32."""
    if name == "auto":
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if cpu_has_native_bfloat16() else torch.float32
    if name not in PRECISIONS:
        raise UserError(f"--precision {name}: choose auto, {', '.join(PRECISIONS)} or int8")
    if name == "float16" and device.type != "cuda":
        raise UserError("--precision float16 runs on CUDA only; on a CPU use bfloat16 or float32")
    return PRECISIONS[name]


def int8_model(generator: Generator, precision: str, device: torch.device):
    """The int8 model file to run instead of torch, or None.

    "int8" asks for it, and fails with the reason where the model has no usable int8 file.
    "auto" takes it where the model has a current one (`lite`) on a CPU that `cpu_prefers_int8`:
    there it is the fastest path measured, 1.1-1.2x bfloat16's fps end to end on an AVX-512
    BF16 CPU, and 1.8x float32's for the SuperResolver call on an AVX2-only one, for 0.02-0.04
    dB on `facesr eval`.
    Its rounding changes from frame to frame; the Enhancer's hold on one-level changes
    (blend.hold_small_changes) keeps that under bicubic's flicker (see weights/MODEL_CARD.md).
    """
    if precision == "auto":
        if device.type != "cpu" or not cpu_prefers_int8():
            return None
        return int8_status(generator)[0]
    if precision != "int8":
        return None
    if device.type != "cpu":
        raise UserError("--precision int8 runs on a CPU, through ONNX Runtime; on CUDA use float16")
    path, why = int8_status(generator)
    if path is None:
        raise UserError(f"--precision int8: {why}")
    return path


def precision_name(generator: Generator, precision: str, device: torch.device) -> str:
    """What a SuperResolver for `generator` will run in: "int8", "bfloat16", "float32" or "float16"."""
    if int8_model(generator, precision, device) is not None:
        return "int8"
    return PRECISION_NAMES[resolve_precision(precision, device)]


def describe_precisions(chosen: dict[str, str]) -> str:
    """{model: precision} -> "int8", or "lite int8, srresnet bfloat16" where they differ (for reports)."""
    kinds = set(chosen.values())
    return kinds.pop() if len(kinds) == 1 else ", ".join(f"{m} {p}" for m, p in chosen.items())


class SuperResolver:
    """Callable: list of (h_i, w_i, 3) uint8 RGB crops -> list of (s*h_i, s*w_i, 3) uint8 RGB.

    All crops go through the generator in one batch: smaller crops are padded (mirrored) up
    to the largest and the padding is cut off the result. The network runs in `precision`
    ("auto": float16 on CUDA; on a CPU the model's int8 file through ONNX Runtime where it has
    one and the CPU suits it (`int8_model`), else bfloat16 on CPUs with native bfloat16, else
    float32); the
    bicubic upscale a residual generator adds to is always float32, so a lower precision only
    touches the residual (about 0.01 dB on `facesr eval`). On a CPU that upscale is OpenCV's
    INTER_CUBIC, the same filter as torch's but several times faster, and `lite`'s network runs
    as oneDNN's fused convolutions (facesr/fused.py), from a packed copy of the weights made
    here. The model is moved and cast in place (as `nn.Module.to` does), so Enhancers sharing
    one Generator share its precision.
    """

    def __init__(self, model: Generator, device: torch.device | str = "cpu", precision: str = "auto"):
        self.device = torch.device(device)
        int8 = int8_model(model, precision, self.device)
        self.int8 = Int8Network(int8) if int8 is not None else None
        self.dtype = torch.float32 if self.int8 else resolve_precision(precision, self.device)
        self.precision = "int8" if self.int8 else PRECISION_NAMES[self.dtype]
        self.model = model.to(self.device, self.dtype).eval()
        self.scale = model.config.scale
        # lite's network as oneDNN's fused convolutions on a CPU (facesr/fused.py), where it applies
        self.fused = FusedNetwork.of(self.model) if self.device.type == "cpu" and self.int8 is None else None

    @torch.inference_mode()
    def __call__(self, crops: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The super-resolved crops, uint8."""
        if not crops:
            return []
        batch = _batch(crops)
        if self.device.type != "cpu":
            return _cut(self._torch(batch, residual=False), crops, self.scale)
        outs = self._cpu(batch)
        if not self.model.config.bicubic_residual:
            outs = [cv2.convertScaleAbs(np.maximum(r, 0, out=r), alpha=255.0) for r in outs]
        else:  # rounded and saturated to uint8 in the same pass: round(255 * residual + bicubic)
            outs = [cv2.addWeighted(r, 255.0, _cv2_bicubic(lr, self.scale), 1.0, 0.0, dtype=cv2.CV_8U)
                    for lr, r in zip(batch, outs)]
        return _cut(outs, crops, self.scale)

    @torch.inference_mode()
    def residuals(self, crops: Sequence[np.ndarray]) -> list[np.ndarray]:
        """What the generator adds to each crop's bicubic upscale: (s*h_i, s*w_i, 3) float32, in
        levels, unrounded. The Enhancer adds it to the frame's own bicubic upscale
        (blend.paste_residual), so neither the crop's upscale nor the face as an image is made."""
        if not crops:
            return []
        batch = _batch(crops)
        if self.device.type != "cpu":
            return _cut(self._torch(batch, residual=True), crops, self.scale)
        outs = self._cpu(batch)
        for lr, r in zip(batch, outs):
            r *= np.float32(255.0)
            if not self.model.config.bicubic_residual:
                r -= _cv2_bicubic(lr, self.scale)
        return _cut(outs, crops, self.scale)

    def _torch(self, batch: np.ndarray, residual: bool) -> np.ndarray:
        """(B, h, w, 3) uint8 -> (B, sh, sw, 3) on the device (CUDA): the SR images as uint8, or
        with `residual` what the network adds to the bicubic upscale, float32 levels."""
        x = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2)  # (B, h, w, 3) -> (B, 3, h, w)
        x = x.float().div_(255.0)
        y = self.model.network(x.to(self.dtype)).float()  # the bicubic skip, where there is one, in float32
        if residual:
            if not self.model.config.bicubic_residual:
                y = y.sub_(bicubic(x, self.scale))
            return y.mul_(255.0).permute(0, 2, 3, 1).contiguous().cpu().numpy()
        if self.model.config.bicubic_residual:
            y = y.add_(bicubic(x, self.scale))
        return y.mul_(255.0).clamp_(0.0, 255.0).round_().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()

    def _cpu(self, batch: np.ndarray) -> list[np.ndarray]:
        """(B, h, w, 3) uint8 -> B x (sh, sw, 3) float32: the network's output on the CPU, in its 0..1
        units. numpy and OpenCV around it, each step one pass over the pixels: the SR images come out
        the same as torch's, bit for bit, and 0.3 ms sooner per 89-px crop (5.8 against 6.1 ms with
        `lite` in bfloat16, one thread)."""
        if self.int8 is not None:
            x = np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)  # (B, 3, h, w)
            x *= np.float32(1 / 255)
            return [cv2.merge(list(r)) for r in self.int8(x)]  # B x (3, sh, sw) -> (sh, sw, 3) float32
        # channels-last in and out (a permuted view of the HWC batch): oneDNN's fastest layout on a CPU
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).to(self.dtype).div_(255.0)
        network = self.fused or self.model.network
        y = network(x).float().permute(0, 2, 3, 1)  # (B, sh, sw, 3)
        return list(np.ascontiguousarray(y.numpy()))


def _batch(crops: Sequence[np.ndarray]) -> np.ndarray:
    """(B, h, w, 3) uint8: the crops, smaller ones padded (mirrored) to the largest."""
    h = max(c.shape[0] for c in crops)
    w = max(c.shape[1] for c in crops)
    return np.stack([_pad_to(c, h, w) for c in crops])


def _cut(outs, crops: Sequence[np.ndarray], s: int) -> list[np.ndarray]:
    """Each output without the padding of its crop."""
    return [np.ascontiguousarray(out[: c.shape[0] * s, : c.shape[1] * s]) for out, c in zip(outs, crops)]


def _cv2_bicubic(img: np.ndarray, scale: int) -> np.ndarray:
    """(h, w, 3) uint8 -> (sh, sw, 3) float32 in 0..255: unrounded, so it equals models.bicubic (times 255)."""
    return cv2.resize(img.astype(np.float32), (img.shape[1] * scale, img.shape[0] * scale), interpolation=cv2.INTER_CUBIC)


def _pad_to(img: np.ndarray, h: int, w: int) -> np.ndarray:
    dh, dw = h - img.shape[0], w - img.shape[1]
    if dh == 0 and dw == 0:
        return img
    border = cv2.BORDER_REFLECT_101 if dh < img.shape[0] and dw < img.shape[1] else cv2.BORDER_REPLICATE
    return cv2.copyMakeBorder(img, 0, dh, 0, dw, border)


def upscale_tiled(image: np.ndarray, resolver: SuperResolver, tile: int = 192, overlap: int = 16) -> np.ndarray:
    """Run the generator over a whole image in overlapping tiles, blended without seams.

    Tiles of `tile` LR pixels step by `tile - 2*overlap`; each tile's output is weighted by a
    ramp across the overlaps and the weighted sum normalised, so no tile edge shows.
    """
    from .blend import feather_mask

    h, w = image.shape[:2]
    s = resolver.scale
    tile = max(tile, 4 * overlap, 16)
    if h <= tile and w <= tile:
        return resolver([image])[0]
    step = tile - 2 * overlap
    ys = list(range(0, max(h - tile, 0) + 1, step))
    xs = list(range(0, max(w - tile, 0) + 1, step))
    if ys[-1] + tile < h:
        ys.append(h - tile)
    if xs[-1] + tile < w:
        xs.append(w - tile)
    acc = np.zeros((h * s, w * s, 3), np.float32)
    weight = np.zeros((h * s, w * s, 1), np.float32)
    for y in ys:
        for x in xs:
            y1, x1 = min(y + tile, h), min(x + tile, w)
            out = resolver([image[y:y1, x:x1]])[0].astype(np.float32)
            # feather only the sides that overlap another tile
            edges = (x == 0, y == 0, x1 == w, y1 == h)
            m = feather_mask(out.shape[0], out.shape[1], overlap * s, edges) + 1e-4
            acc[y * s : y1 * s, x * s : x1 * s] += out * m
            weight[y * s : y1 * s, x * s : x1 * s] += m
    return np.clip(acc / weight + 0.5, 0, 255).astype(np.uint8)
