"""Training batches made whole, as tensors on the training device (a GPU): `TensorBatches`.

`data.FacePairs` makes each sample on the CPU with numpy and OpenCV, which cannot feed a GPU
that runs hundreds of steps a second. Here the training images live on the device as uint8,
and each batch is cut, augmented and degraded there in a few tensor ops: random crops (some
from a face first shrunk), flips, the contrast gain, optical blur, area downscaling and sensor
noise. What a tensor op cannot do, JPEG and H.264, comes from an `LRBank` built once on the
CPU (several variants per image, PyAV in parallel processes) and cropped in step with the HR.
The mix of clean, camera-only, JPEG and H.264 samples is the `Degradation`'s, as in FacePairs.

It runs on any device: the CPU runs the very same code in the tests.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError
from .data import LRBank, check_gains, detail_blur_sigma, load_images
from .degrade import Degradation

SHRINK_SHARE = 0.3  # as FacePairs: a share of the faces first shrunk (faces in a call come at many sizes)


class TensorBatches:
    """`batch(n)`: (LR (n, 3, p/s, p/s), HR (n, 3, p, p)) float in [0, 1] on `device`."""

    def __init__(self, folders: Sequence[str | os.PathLike], scale: int, patch: int, degradation: Degradation,
                 device: torch.device, seed: int = 0, cache: str | os.PathLike | None = None,
                 contrast: tuple[float, float] = (1.0, 1.0), detail: tuple[float, float] = (1.0, 1.0),
                 variants: int = 4, workers: int = 0):
        if patch % scale:
            raise UserError(f"--patch {patch} must be a multiple of the scale {scale}")
        check_gains(contrast, detail)
        paths, images = load_images(folders, patch, scale)
        sizes = {img.shape for img in images}
        if len(sizes) != 1:
            raise UserError(f"tensor batches need training images of one size; found {len(sizes)} sizes")
        self.scale, self.patch, self.spec, self.device = scale, patch, degradation, device
        self.contrast, self.detail = contrast, detail
        self.images = torch.from_numpy(np.stack(images)).to(device)  # (N, H, W, 3) uint8
        self.gen = torch.Generator(device=device).manual_seed(seed)
        s = degradation
        self.shares = {  # per sample, the kind of LR it gets
            "h264": s.p_h264,
            "jpeg": (1 - s.p_h264) * (1 - s.p_clean) * s.p_jpeg,
            "camera": (1 - s.p_h264) * (1 - s.p_clean) * (1 - s.p_jpeg),
            "clean": (1 - s.p_h264) * s.p_clean,
        }
        n_h264 = variants if s.p_h264 > 0 else 0
        n_jpeg = variants if self.shares["jpeg"] > 0 else 0
        self.banks = {}
        if n_h264 or n_jpeg:
            bank = LRBank.load_or_build(paths, images, scale, degradation, cache, h264=n_h264, jpeg=n_jpeg,
                                        workers=workers)
            for kind, lrs in (("h264", bank.h264), ("jpeg", bank.jpeg)):
                if lrs and lrs[0]:
                    self.banks[kind] = torch.from_numpy(np.stack([np.stack(v) for v in lrs])).to(device)  # (N, V, h, w, 3)

    def __len__(self) -> int:
        return self.images.shape[0]

    def _uniform(self, n: int, low: float, high: float) -> torch.Tensor:
        return torch.rand(n, generator=self.gen, device=self.device) * (high - low) + low

    def _ints(self, n: int, high: int | torch.Tensor) -> torch.Tensor:
        """n random integers in [0, high) (high a number or a tensor of n)."""
        return (torch.rand(n, generator=self.gen, device=self.device) * high).long()

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        kinds = list(self.shares)
        p = torch.tensor([self.shares[k] for k in kinds], device=self.device)
        kind = torch.multinomial(p, n, replacement=True, generator=self.gen)  # (n,)
        lrs, hrs = [], []
        for k, name in enumerate(kinds):
            m = int((kind == k).sum())
            if m == 0:
                continue
            if name in self.banks:
                lr, hr = self._from_bank(self.banks[name], m)
            else:
                hr = self._augmented_hr(m)
                lr = self._camera(hr) if name == "camera" else F.avg_pool2d(hr, self.scale)
            lrs.append(lr)
            hrs.append(hr)
        order = torch.randperm(n, generator=self.gen, device=self.device)
        return torch.cat(lrs)[order] / 255.0, torch.cat(hrs)[order] / 255.0  # the loop sets the memory format

    # --- HR patches ----------------------------------------------------------------------

    def _crop(self, images: torch.Tensor, idx: torch.Tensor, side: int, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
        """(m, 3, side, side) float: the square of `side` at (ys, xs) of each image idx."""
        ar = torch.arange(side, device=self.device)
        rows = (ys[:, None] + ar)[:, :, None]  # (m, side, 1)
        cols = (xs[:, None] + ar)[:, None, :]  # (m, 1, side)
        return images[idx[:, None, None], rows, cols].permute(0, 3, 1, 2).float()  # (m, side, side, 3) -> (m, 3, side, side)

    def _augmented_hr(self, m: int) -> torch.Tensor:
        """(m, 3, p, p) float levels: random crops, a share from a shrunk face, flips, contrast, detail."""
        _, h, w, _ = self.images.shape
        p = self.patch
        shrunk = int(round(m * SHRINK_SHARE))
        parts = []
        for count, side in ((m - shrunk, p), (shrunk, None)):
            if count == 0:
                continue
            if side is None:  # one shrink factor for this share of the batch: a window of p / f, resized to p
                f = float(self._uniform(1, max(p / h, p / w, 0.5), 1.0))
                side = min(h, w, int(round(p / f)))
            idx = self._ints(count, len(self))
            crop = self._crop(self.images, idx, side, self._ints(count, h - side + 1), self._ints(count, w - side + 1))
            if side != p:
                crop = F.interpolate(crop, size=(p, p), mode="area")
            parts.append(crop)
        hr = torch.cat(parts)
        hr = torch.where(self._uniform(m, 0, 1)[:, None, None, None] < 0.5, hr.flip(-1), hr)
        if self.contrast != (1.0, 1.0):  # about each patch's mean level, one gain for all channels
            gain = self._uniform(m, *self.contrast)[:, None, None, None]
            mean = hr.mean(dim=(1, 2, 3), keepdim=True)
            hr = mean + gain * (hr - mean)
        if self.detail != (1.0, 1.0):
            gain = self._uniform(m, *self.detail)[:, None, None, None]
            sigma = torch.full((m,), detail_blur_sigma(self.scale), device=self.device)
            hr = hr + (gain - 1.0) * (hr - gaussian_blur(hr, sigma))
        return hr.round_().clamp_(0, 255)

    def _from_bank(self, bank: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Aligned LR and HR patches of random images and variants of a bank of compressed LRs."""
        n_img, n_var, lh, lw, _ = bank.shape
        s, lp = self.scale, self.patch // self.scale
        idx, var = self._ints(m, n_img), self._ints(m, n_var)
        ys, xs = self._ints(m, lh - lp + 1), self._ints(m, lw - lp + 1)
        ar = torch.arange(lp, device=self.device)
        lr = bank[idx[:, None, None], var[:, None, None], (ys[:, None] + ar)[:, :, None], (xs[:, None] + ar)[:, None, :]]
        lr = lr.permute(0, 3, 1, 2).float()
        hr = self._crop(self.images, idx, self.patch, ys * s, xs * s)
        flip = self._uniform(m, 0, 1)[:, None, None, None] < 0.5
        return torch.where(flip, lr.flip(-1), lr), torch.where(flip, hr.flip(-1), hr)

    # --- the camera ----------------------------------------------------------------------

    def _camera(self, hr: torch.Tensor) -> torch.Tensor:
        """Optical blur, area downscaling, sensor noise (luma-only or per channel), as `degrade.Camera`."""
        m, spec = hr.shape[0], self.spec
        blurred = self._uniform(m, 0, 1) < spec.p_blur
        sigma = torch.where(blurred, self._uniform(m, *spec.blur_sigma), torch.zeros(m, device=self.device))
        lr = F.avg_pool2d(gaussian_blur(hr, sigma), self.scale)
        noisy = (self._uniform(m, 0, 1) < spec.p_noise)[:, None, None, None]
        level = self._uniform(m, *spec.noise_sigma)[:, None, None, None]
        luma_only = (self._uniform(m, 0, 1) < 0.5)[:, None, None, None]
        shape = lr.shape
        noise = torch.randn(shape, generator=self.gen, device=self.device)
        noise = torch.where(luma_only, noise[:, :1].expand(shape), noise)
        lr = lr + torch.where(noisy, noise * level, torch.zeros_like(lr))
        return lr.round_().clamp_(0, 255)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Each image of (m, C, H, W) blurred by a Gaussian of its own sigma (0: unchanged), reflected borders."""
    m, c, h, w = x.shape
    radius = max(1, math.ceil(3 * float(sigma.max()))) if float(sigma.max()) > 0 else 0
    if radius == 0:
        return x
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    safe = sigma.clamp(min=1e-6)[:, None]
    kernel = torch.exp(-0.5 * (t[None, :] / safe) ** 2)
    kernel = torch.where(sigma[:, None] > 0, kernel, (t[None, :] == 0).to(x.dtype))
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (m C, k)
    y = F.pad(x.reshape(1, m * c, h, w), (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, kernel[:, None, None, :], groups=m * c)  # along rows
    y = F.conv2d(y, kernel[:, None, :, None], groups=m * c)  # along columns
    return y.reshape(m, c, h, w)
