"""What a recurrent generator remembers of a face: its previous output, aligned to the current crop.

For each tracked face the Enhancer keeps the generator's last output (the SR crop) and where it
was taken. On the next frame that output is carried into the current crop by the crop's own move
and the face's motion inside it (OpenCV's DIS optical flow between the two LR frames, at crop
size), then folded to LR resolution by space-to-depth, as FRVSR (Sajjadi et al., CVPR 2018)
feeds its previous estimate back. What is fed is the detail that output holds beyond the bicubic
upscale of the current crop, the part a residual network adds: history that fits is small
numbers to add. Two more channels say where that history is valid (it came from inside the
previous crop) and how far the current LR frame departs from it (the history downscaled): the
network learns to trust it where it fits.

History is dropped, never blended, where it no longer fits the face: too little of the crop
covered by the previous one, or a mean departure above `CUT_ERROR` (a scene cut, another
person, an occlusion, a move the flow could not follow). The Enhancer drops it as well for a
new track and a track found again.

The input layout, channel by channel (`memory_channels` for the Enhancer, `model_input_torch`
for training; both end in `history_channels_torch`):
    0..2              the LR crop, RGB in 0..1
    3..3+3s^2-1       the aligned previous output less the current crop's bicubic upscale, where
                      valid, space-to-depth (torch.pixel_unshuffle's order)
    3+3s^2            valid: the share of each LR pixel that came from inside the previous output
    3+3s^2+1          departure: mean |LR - previous output area-downscaled| over RGB, where valid
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

from .models import history_channels

# Above this mean departure (0..1 units, over the valid part) the history is another picture:
# a cut or another face; a face aligned with its last frame departs by a small part of it.
CUT_ERROR = 0.06
MIN_VALID = 0.5  # below this share of the crop covered by the previous output, start afresh

_local = threading.local()


def _dis() -> cv2.DISOpticalFlow:
    """One DIS flow object per thread (it keeps state between calls)."""
    if not hasattr(_local, "dis"):
        _local.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
    return _local.dis


def flow(current: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """(h, w, 2) float32, LR pixels: for each pixel of `current`, where it was in `previous`
    (both (h, w, 3) uint8 RGB of the same region)."""
    a = cv2.cvtColor(current, cv2.COLOR_RGB2GRAY)
    b = cv2.cvtColor(previous, cv2.COLOR_RGB2GRAY)
    return _dis().calc(a, b, None)


@dataclass
class Remembered:
    """A face's last output and the LR crop's top-left corner: `output` (sh, sw, 4) float32, the SR
    crop's RGB in 0..1 and a fourth channel of ones (`remembered` makes it), which the resampling
    turns into the share of each pixel that came from inside it."""

    output: np.ndarray
    x0: int
    y0: int


def remembered(rgb: np.ndarray, x0: int, y0: int) -> Remembered:
    """A face's output (sh, sw, 3) float32 in 0..1, kept for the next frame."""
    return Remembered(cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA), x0, y0)  # float RGBA: alpha 1


def align(prev: Remembered, x0: int, y0: int, motion: np.ndarray, scale: int) -> np.ndarray:
    """The previous output resampled onto the current crop (top-left (x0, y0), LR flow `motion`
    of shape (h, w, 2)): (sh, sw, 4) float32, RGB zero outside the previous crop and the share
    of each pixel that came from inside it."""
    h, w = motion.shape[:2]
    where = cv2.resize(motion, (w * scale, h * scale), interpolation=cv2.INTER_LINEAR)
    where *= np.float32(scale)
    where[..., 0] += np.arange(w * scale, dtype=np.float32) + np.float32((x0 - prev.x0) * scale)
    where[..., 1] += np.arange(h * scale, dtype=np.float32)[:, None] + np.float32((y0 - prev.y0) * scale)
    return cv2.remap(prev.output, where, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def memory_channels(lr: np.ndarray, aligned: np.ndarray | None, scale: int,
                    upscaled: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
    """(the history channels (3 s^2 + 2, h, w) float32, whether the history was kept).

    `lr` (h, w, 3) uint8; `aligned` from `align`, or None for a face with no history;
    `upscaled`: the crop's bicubic upscale (sh, sw, 3) uint8 where the caller has it (the Enhancer
    has the frame's), else made here."""
    import torch

    h, w = lr.shape[:2]
    if aligned is None:
        return np.zeros((history_channels(scale), h, w), np.float32), False
    if upscaled is None:
        upscaled = cv2.resize(lr.astype(np.float32), (w * scale, h * scale), interpolation=cv2.INTER_CUBIC)

    def chw(a: np.ndarray):
        return torch.from_numpy(a).permute(2, 0, 1)[None].float()

    with torch.inference_mode():
        history, keep = history_channels_torch(chw(lr) / 255, chw(aligned), chw(upscaled) / 255, scale)
    return history[0].numpy(), bool(keep[0])


def history_channels_torch(lr, aligned, upscaled, scale: int):
    """The history channels and the gate, for a batch: lr (B, 3, h, w) and upscaled (its bicubic
    upscale, (B, 3, sh, sw)) in 0..1, aligned (B, 4, sh, sw) as `align` gives ->
    ((B, 3 s^2 + 2, h, w), keep (B,) bool); zero where the history was dropped."""
    import torch
    import torch.nn.functional as F

    valid = aligned[:, 3:]
    small = F.avg_pool2d(aligned, scale)  # area downscaling: RGB and cover at once
    cover = small[:, 3:]
    departure = (lr - small[:, :3]).abs().mean(1, keepdim=True) * cover
    keep = (cover.mean((1, 2, 3)) >= MIN_VALID) & (departure.sum((1, 2, 3)) <= CUT_ERROR * cover.sum((1, 2, 3)))
    detail = aligned[:, :3] - upscaled * valid  # the aligned output less the upscale, where it came from
    history = torch.cat([F.pixel_unshuffle(detail, scale), cover, departure], 1)
    return history * keep.to(history.dtype).view(-1, 1, 1, 1), keep


def model_input_torch(lr, prev, motion, scale: int):
    """Training's twin of `align` + `memory_channels` for crops that stay in place, in torch:
    lr (B, 3, h, w) in 0..1, prev (B, 3, sh, sw) or None, motion (B, 2, h, w) LR pixels ->
    (B, 3 + 3 s^2 + 2, h, w), differentiable in `prev` (backpropagation through time)."""
    import torch
    import torch.nn.functional as F

    b, _, h, w = lr.shape
    if prev is None:
        return torch.cat([lr, lr.new_zeros(b, history_channels(scale), h, w)], 1)
    sh, sw = h * scale, w * scale
    up = F.interpolate(motion, size=(sh, sw), mode="bilinear", align_corners=False) * scale
    gx = torch.arange(sw, dtype=lr.dtype, device=lr.device).view(1, 1, sw) + up[:, 0]
    gy = torch.arange(sh, dtype=lr.dtype, device=lr.device).view(1, sh, 1) + up[:, 1]
    grid = torch.stack([(2 * gx + 1) / sw - 1, (2 * gy + 1) / sh - 1], dim=-1)  # cv2.remap's pixel centres
    ones = prev.new_ones(b, 1, sh, sw)
    aligned = F.grid_sample(torch.cat([prev, ones], 1), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    upscaled = F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False)
    return torch.cat([lr, history_channels_torch(lr, aligned, upscaled, scale)[0]], 1)
