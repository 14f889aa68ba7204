"""LR/HR training pairs made on the fly from a folder of aligned face images."""

from __future__ import annotations

import os

import cv2
import numpy as np
import torch

from ..errors import UserError
from ..images import list_images, read_rgb
from .degrade import Degradation, degrade, downscale


class FacePairs:
    """Holds the HR faces in memory; `batch(n)` draws n random (LR, HR) patch pairs.

    Per sample: a random face, sometimes shrunk (faces in a call come at many sizes), a
    random `patch`-pixel square crop, a horizontal flip, then `degrade` to make its LR.
    """

    def __init__(self, folder: str | os.PathLike, scale: int, patch: int, degradation: Degradation, seed: int = 0):
        if patch % scale:
            raise UserError(f"--patch {patch} must be a multiple of the scale {scale}")
        paths = list_images(folder) if os.path.isdir(folder) else []
        if not paths:
            raise UserError(f"{folder}: no training images found")
        self.images = [img for img in map(read_rgb, paths) if min(img.shape[:2]) >= patch]
        if not self.images:
            raise UserError(f"{folder}: no image is at least {patch}x{patch} pixels")
        self.scale, self.patch, self.degradation = scale, patch, degradation
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.images)

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        rng, p = self.rng, self.patch
        img = self.images[rng.integers(len(self.images))]
        h, w = img.shape[:2]
        if rng.random() < 0.3:  # a smaller face: shrink, keeping at least one patch
            f = rng.uniform(max(p / h, p / w, 0.5), 1.0)
            img = cv2.resize(img, (max(p, round(w * f)), max(p, round(h * f))), interpolation=cv2.INTER_AREA)
            h, w = img.shape[:2]
        y, x = rng.integers(h - p + 1), rng.integers(w - p + 1)
        hr = img[y : y + p, x : x + p]
        if rng.random() < 0.5:
            hr = hr[:, ::-1]
        hr = np.ascontiguousarray(hr)
        return degrade(hr, self.scale, rng, self.degradation), hr

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        lrs, hrs = zip(*(self.sample() for _ in range(n)))
        return to_tensor(np.stack(lrs)), to_tensor(np.stack(hrs))


def to_tensor(batch: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0)  # (B, H, W, 3) -> (B, 3, H, W)


def eval_pairs(folder: str | os.PathLike, scale: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The standard evaluation: each image and its area-downscaled LR (cropped to a multiple of scale)."""
    pairs = []
    for path in list_images(folder):
        hr = read_rgb(path)
        h, w = (hr.shape[0] // scale) * scale, (hr.shape[1] // scale) * scale
        hr = np.ascontiguousarray(hr[:h, :w])
        pairs.append((downscale(hr, scale), hr))
    if not pairs:
        raise UserError(f"{folder}: no evaluation images found")
    return pairs
