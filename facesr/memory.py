"""What a recurrent generator remembers of a face: its previous output, aligned to the current crop.

For each tracked face the Enhancer keeps the generator's last output (the SR crop) and where it
was taken. On the next frame that output is carried into the current crop by the crop's own move
and the face's motion inside it (OpenCV's DIS optical flow between the two LR frames, at crop
size), then folded to LR resolution by space-to-depth, as FRVSR (Sajjadi et al., CVPR 2018)
feeds its previous estimate back. Two more channels say where that history is valid (it came
from inside the previous crop) and how far the current LR frame departs from it (the history
downscaled): the network learns to trust it where it fits.

History is dropped, never blended, where it no longer fits the face: too little of the crop
covered by the previous one, or a mean departure above `CUT_ERROR` (a scene cut, another
person, an occlusion, a move the flow could not follow). The Enhancer drops it as well for a
new track and a track found again.

The input layout, channel by channel (`model_input`; `model_input_torch` is training's twin):
    0..2              the LR crop, RGB in 0..1
    3..3+3s^2-1       the aligned previous output, space-to-depth (torch.pixel_unshuffle's order)
    3+3s^2            valid: the share of each LR pixel covered by the previous output
    3+3s^2+1          departure: mean |LR - previous output area-downscaled| over RGB, where valid
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

# Above this mean departure (0..1 units, over the valid part) the history is another picture:
# a cut or another face. Aligned frames of a call at CRF 28 depart by about 0.01-0.03.
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
    """A face's last output: the SR crop (sh, sw, 3) float32 in 0..1 and the LR crop's top-left corner."""

    output: np.ndarray
    x0: int
    y0: int


def align(prev: Remembered, x0: int, y0: int, motion: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """The previous output resampled onto the current crop (top-left (x0, y0), LR flow `motion`
    of shape (h, w, 2)): ((sh, sw, 3) float32, (sh, sw) float32 valid 0/1)."""
    h, w = motion.shape[:2]
    sh, sw = h * scale, w * scale
    up = cv2.resize(motion, (sw, sh), interpolation=cv2.INTER_LINEAR) * np.float32(scale)
    gx = np.arange(sw, dtype=np.float32)[None, :] + np.float32((x0 - prev.x0) * scale)
    gy = np.arange(sh, dtype=np.float32)[:, None] + np.float32((y0 - prev.y0) * scale)
    map_x, map_y = up[..., 0] + gx, up[..., 1] + gy
    ph, pw = prev.output.shape[:2]
    aligned = cv2.remap(prev.output, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    valid = ((map_x >= 0) & (map_x <= pw - 1) & (map_y >= 0) & (map_y <= ph - 1)).astype(np.float32)
    aligned *= valid[..., None]  # nothing from outside the previous crop
    return aligned, valid


def space_to_depth(img: np.ndarray, scale: int) -> np.ndarray:
    """(sh, sw, c) -> (h, w, c s^2), channels in torch.pixel_unshuffle's order (c, row, column)."""
    sh, sw, c = img.shape
    h, w = sh // scale, sw // scale
    return img.reshape(h, scale, w, scale, c).transpose(0, 2, 4, 1, 3).reshape(h, w, c * scale * scale)


def _area(img: np.ndarray, scale: int) -> np.ndarray:
    return cv2.resize(img, (img.shape[1] // scale, img.shape[0] // scale), interpolation=cv2.INTER_AREA)


def memory_channels(lr: np.ndarray, aligned: np.ndarray | None, valid: np.ndarray | None,
                    scale: int) -> tuple[np.ndarray, bool]:
    """(the history channels (h, w, 3 s^2 + 2) float32, whether the history was kept).

    `lr` (h, w, 3) uint8; `aligned`, `valid` from `align`, or None for a face with no history."""
    h, w = lr.shape[:2]
    channels = np.zeros((h, w, 3 * scale * scale + 2), np.float32)
    if aligned is None:
        return channels, False
    cover = _area(valid, scale)
    departure = np.abs(lr.astype(np.float32) * np.float32(1 / 255) - _area(aligned, scale)).mean(axis=2) * cover
    if cover.mean() < MIN_VALID or departure.sum() > CUT_ERROR * cover.sum():
        return channels, False
    channels[..., :-2] = space_to_depth(aligned, scale)
    channels[..., -2] = cover
    channels[..., -1] = departure
    return channels, True


def model_input_torch(lr, prev, motion, scale: int):
    """Training's twin of `align` + `memory_channels` for crops that stay in place, in torch:
    lr (B, 3, h, w) in 0..1, prev (B, 3, sh, sw) or None, motion (B, 2, h, w) LR pixels ->
    (B, 3 + 3 s^2 + 2, h, w), differentiable in `prev` (backpropagation through time)."""
    import torch
    import torch.nn.functional as F

    b, _, h, w = lr.shape
    if prev is None:
        return torch.cat([lr, lr.new_zeros(b, 3 * scale * scale + 2, h, w)], 1)
    sh, sw = h * scale, w * scale
    up = F.interpolate(motion, size=(sh, sw), mode="bilinear", align_corners=False) * scale
    gx = torch.arange(sw, dtype=lr.dtype, device=lr.device).view(1, 1, sw) + up[:, 0]
    gy = torch.arange(sh, dtype=lr.dtype, device=lr.device).view(1, sh, 1) + up[:, 1]
    grid = torch.stack([(2 * gx + 1) / sw - 1, (2 * gy + 1) / sh - 1], dim=-1)  # cv2.remap's pixel centres
    aligned = F.grid_sample(prev, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    valid = ((gx >= 0) & (gx <= sw - 1) & (gy >= 0) & (gy <= sh - 1)).to(lr.dtype).unsqueeze(1)
    aligned = aligned * valid  # as BORDER_CONSTANT: nothing from outside the previous crop
    cover = F.avg_pool2d(valid, scale)
    departure = (lr - F.avg_pool2d(aligned, scale)).abs().mean(1, keepdim=True) * cover
    keep = (cover.mean((1, 2, 3)) >= MIN_VALID) & (departure.sum((1, 2, 3)) <= CUT_ERROR * cover.sum((1, 2, 3)))
    keep = keep.to(lr.dtype).view(b, 1, 1, 1)
    history = torch.cat([F.pixel_unshuffle(aligned, scale), cover, departure], 1) * keep
    return torch.cat([lr, history], 1)
