"""Run a generator on uint8 image crops: batching, and the backend `runtime.plan` chose.

The one place where numpy crops become tensors and back, shared by the Enhancer, the
full-frame tiler, training evaluation and `facesr eval`.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from .fused import FusedNetwork
from .int8 import Int8Network
from .models import Generator, bicubic
from .runtime import plan


def bicubic_upscale(img: np.ndarray, scale: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (sH, sW, 3): the cheap background and the baseline every model is measured against."""
    return cv2.resize(img, (img.shape[1] * scale, img.shape[0] * scale), interpolation=cv2.INTER_CUBIC)


class SuperResolver:
    """Callable: list of (h_i, w_i, 3) uint8 RGB crops -> list of (s*h_i, s*w_i, 3) uint8 RGB.

    All crops go through the generator in one batch: smaller crops are padded (mirrored) up
    to the largest and the padding is cut off the result. Where and in what arithmetic it runs
    is `runtime.plan`'s decision, taken once here, which picks one of three backends:

    * `_TorchDevice` (CUDA): the whole generator in torch, the bicubic skip in float32;
    * `_TorchCpu`: the network in torch on the CPU, `lite`'s as oneDNN's fused convolutions
      (facesr/fused.py) where they apply, numpy and OpenCV around it;
    * `_Int8Cpu`: the network's int8 file through ONNX Runtime.

    On the CPU the bicubic skip is OpenCV's INTER_CUBIC, the same filter as torch's. The model
    is moved and cast in place (as `nn.Module.to` does), so Enhancers sharing one Generator
    share its precision.
    """

    def __init__(self, model: Generator, device: torch.device | str = "cpu", precision: str = "auto"):
        chosen = plan(model, device, precision)
        self.device, self.dtype, self.precision = chosen.device, chosen.dtype, chosen.precision
        self.model = model.to(self.device, self.dtype).eval()
        self.scale = model.config.scale
        if chosen.int8 is not None:
            self.backend: _Backend = _Int8Cpu(model, Int8Network(chosen.int8))
        elif self.device.type == "cpu":
            self.backend = _TorchCpu(self.model, FusedNetwork.of(self.model))
        else:
            self.backend = _TorchDevice(self.model)

    @property
    def recurrent(self) -> bool:
        """Whether the generator takes a memory of its previous output (facesr/memory.py) beside each crop."""
        return self.model.config.history

    @torch.inference_mode()
    def __call__(self, crops: Sequence[np.ndarray], memory: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
        """The super-resolved crops, uint8. `memory`: a recurrent generator's history channels
        per crop, (K, h_i, w_i) each (`memory.memory_channels`); None: none remembered (a first
        frame, a photo)."""
        return _cut(self.backend.images(*self._inputs(crops, memory)), crops, self.scale) if crops else []

    @torch.inference_mode()
    def residuals(self, crops: Sequence[np.ndarray], memory: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
        """What the generator adds to each crop's bicubic upscale: (s*h_i, s*w_i, 3) float32, in
        levels, unrounded. The Enhancer adds it to the frame's own bicubic upscale
        (blend.paste_residual), so neither the crop's upscale nor the face as an image is made."""
        return _cut(self.backend.residuals(*self._inputs(crops, memory)), crops, self.scale) if crops else []

    def _inputs(self, crops: Sequence[np.ndarray], memory: Sequence[np.ndarray] | None) -> tuple[np.ndarray, np.ndarray | None]:
        """(the crops as one uint8 batch, the history channels as one float32 batch or None)."""
        batch = _batch(crops)
        if not self.recurrent:
            return batch, None
        b, h, w, _ = batch.shape
        if memory is None:
            return batch, np.zeros((b, self.model.config.in_channels - 3, h, w), np.float32)
        padded = [m if m.shape[1:] == (h, w) else np.pad(m, ((0, 0), (0, h - m.shape[1]), (0, w - m.shape[2])), mode="edge")
                  for m in memory]  # each to the batch's size, as _batch pads the crops
        return batch, np.stack(padded)


class _Backend:
    """Runs a (B, h, w, 3) uint8 batch, with a recurrent generator's (B, K, h, w) float32 history
    channels beside it (`memory`): `images` gives the SR images as uint8, `residuals` what the
    generator adds to their bicubic upscale, float32 levels."""

    name = ""

    def images(self, batch: np.ndarray, memory: np.ndarray | None = None):
        raise NotImplementedError

    def residuals(self, batch: np.ndarray, memory: np.ndarray | None = None):
        raise NotImplementedError


def _network_input(batch: np.ndarray, memory: np.ndarray | None, dtype: torch.dtype) -> torch.Tensor:
    """(B, C, h, w) in 0..1: the LR batch (B, h, w, 3) uint8 and the history (B, K, h, w) beside it."""
    x = torch.from_numpy(batch).permute(0, 3, 1, 2).to(dtype).div_(255.0)
    if memory is None:
        return x
    return torch.cat([x, torch.from_numpy(memory).to(dtype)], 1)


class _TorchDevice(_Backend):
    """The generator in torch on its device (CUDA); host copies in and out."""

    name = "torch"

    def __init__(self, model: Generator):
        self.model = model
        self.device, self.dtype = next(model.parameters()).device, next(model.parameters()).dtype
        self.scale, self.bicubic_residual = model.config.scale, model.config.bicubic_residual

    def _run(self, batch: np.ndarray, memory: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(the network's output in float32, the LR batch in 0..1), both on the device."""
        x = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2)  # (B, h, w, 3) -> (B, 3, h, w), uint8 over the bus
        x = x.float().div_(255.0)
        net_in = x if memory is None else torch.cat([x, torch.from_numpy(memory).to(self.device)], 1)
        return self.model.network(net_in.to(self.dtype)).float(), x  # the bicubic skip, where there is one, in float32

    def images(self, batch: np.ndarray, memory: np.ndarray | None = None) -> np.ndarray:
        y, x = self._run(batch, memory)
        if self.bicubic_residual:
            y = y.add_(bicubic(x, self.scale))
        return y.mul_(255.0).clamp_(0.0, 255.0).round_().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()

    def residuals(self, batch: np.ndarray, memory: np.ndarray | None = None) -> np.ndarray:
        y, x = self._run(batch, memory)
        if not self.bicubic_residual:
            y = y.sub_(bicubic(x, self.scale))
        return y.mul_(255.0).permute(0, 2, 3, 1).contiguous().cpu().numpy()


class _Cpu(_Backend):
    """numpy and OpenCV around a CPU network, each step one pass over the pixels: the SR images come
    out the same as torch's, bit for bit, and sooner."""

    def __init__(self, model: Generator):
        self.scale, self.bicubic_residual = model.config.scale, model.config.bicubic_residual

    def network(self, batch: np.ndarray, memory: np.ndarray | None) -> list[np.ndarray]:
        """(B, h, w, 3) uint8 (and its history) -> B x (sh, sw, 3) float32: the network's output, in its 0..1 units."""
        raise NotImplementedError

    def images(self, batch: np.ndarray, memory: np.ndarray | None = None) -> list[np.ndarray]:
        outs = self.network(batch, memory)
        if not self.bicubic_residual:
            return [cv2.convertScaleAbs(np.maximum(r, 0, out=r), alpha=255.0) for r in outs]
        # rounded and saturated to uint8 in the same pass: round(255 * residual + bicubic)
        return [cv2.addWeighted(r, 255.0, _cv2_bicubic(lr, self.scale), 1.0, 0.0, dtype=cv2.CV_8U)
                for lr, r in zip(batch, outs)]

    def residuals(self, batch: np.ndarray, memory: np.ndarray | None = None) -> list[np.ndarray]:
        outs = self.network(batch, memory)
        for lr, r in zip(batch, outs):
            r *= np.float32(255.0)
            if not self.bicubic_residual:
                r -= _cv2_bicubic(lr, self.scale)
        return outs


class _TorchCpu(_Cpu):
    """The network in torch on the CPU: `lite`'s as oneDNN's fused convolutions where they apply."""

    def __init__(self, model: Generator, fused: FusedNetwork | None):
        super().__init__(model)
        self.fused = fused
        self.run = fused or model.network
        self.dtype = next(model.parameters()).dtype
        self.name = "cpu-fused" if fused is not None else "cpu-torch"

    def network(self, batch: np.ndarray, memory: np.ndarray | None) -> list[np.ndarray]:
        # channels-last in and out (a permuted view of the HWC batch): oneDNN's fastest layout on a CPU
        y = self.run(_network_input(batch, memory, self.dtype)).float().permute(0, 2, 3, 1)  # (B, sh, sw, 3)
        return list(np.ascontiguousarray(y.numpy()))


class _Int8Cpu(_Cpu):
    """The network's int8 file through ONNX Runtime."""

    name = "int8"

    def __init__(self, model: Generator, network: Int8Network):
        super().__init__(model)
        self.int8 = network

    def network(self, batch: np.ndarray, memory: np.ndarray | None) -> list[np.ndarray]:
        x = np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)  # (B, 3, h, w)
        x *= np.float32(1 / 255)
        if memory is not None:
            x = np.concatenate([x, memory], axis=1)  # (B, C, h, w)
        return [cv2.merge(list(r)) for r in self.int8(x)]  # B x (3, sh, sw) -> (sh, sw, 3) float32


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
