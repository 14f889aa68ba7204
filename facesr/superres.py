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


def resolve_precision(name: str, device: torch.device) -> torch.dtype:
    """"auto": float16 on CUDA, bfloat16 on a CPU that has it in hardware, else float32."""
    if name == "auto":
        if device.type == "cuda":
            return torch.float16
        return torch.bfloat16 if cpu_has_native_bfloat16() else torch.float32
    if name not in PRECISIONS:
        raise UserError(f"--precision {name}: choose auto, {', '.join(PRECISIONS)}")
    if name == "float16" and device.type != "cuda":
        raise UserError("--precision float16 runs on CUDA only; on a CPU use bfloat16 or float32")
    return PRECISIONS[name]


class SuperResolver:
    """Callable: list of (h_i, w_i, 3) uint8 RGB crops -> list of (s*h_i, s*w_i, 3) uint8 RGB.

    All crops go through the generator in one batch: smaller crops are padded (mirrored) up
    to the largest and the padding is cut off the result. The network runs in `precision`
    ("auto": float16 on CUDA, bfloat16 on CPUs with native bfloat16, else float32); the
    bicubic upscale a residual generator adds to is always float32, so a lower precision only
    touches the residual (about 0.01 dB on `facesr eval`). On a CPU that upscale is OpenCV's
    INTER_CUBIC, the same filter as torch's but several times faster. The model is moved and
    cast in place (as `nn.Module.to` does), so Enhancers sharing one Generator share its precision.
    """

    def __init__(self, model: Generator, device: torch.device | str = "cpu", precision: str = "auto"):
        self.device = torch.device(device)
        self.dtype = resolve_precision(precision, self.device)
        self.precision = PRECISION_NAMES[self.dtype]
        self.model = model.to(self.device, self.dtype).eval()
        self.scale = model.config.scale

    @torch.inference_mode()
    def __call__(self, crops: Sequence[np.ndarray]) -> list[np.ndarray]:
        if not crops:
            return []
        h = max(c.shape[0] for c in crops)
        w = max(c.shape[1] for c in crops)
        batch = np.stack([_pad_to(c, h, w) for c in crops])  # (B, h, w, 3) uint8
        x = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2)  # (B, h, w, 3) -> (B, 3, h, w)
        x = x.float().div_(255.0)
        y = self.model.network(x.to(self.dtype)).float().permute(0, 2, 3, 1)  # -> (B, sh, sw, 3), a view
        if not self.model.config.bicubic_residual:
            y = y.mul_(255.0)
        elif self.device.type == "cpu":
            y = y.mul_(255.0).add_(torch.from_numpy(np.stack([_cv2_bicubic(b, self.scale) for b in batch])))
        else:  # CUDA: the bicubic skip in float32, on the device
            y = y.add_(bicubic(x, self.scale).permute(0, 2, 3, 1)).mul_(255.0)
        out = y.clamp_(0.0, 255.0).round_().to(torch.uint8).cpu().numpy()  # (B, sh, sw, 3)
        s = self.scale
        return [np.ascontiguousarray(out[i, : c.shape[0] * s, : c.shape[1] * s]) for i, c in enumerate(crops)]


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
