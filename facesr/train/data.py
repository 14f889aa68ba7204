"""LR/HR training pairs made on the fly from a folder of aligned face images (and real photos)."""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from ..errors import UserError
from ..images import list_images, read_rgb
from .degrade import Degradation, camera_jpeg, degrade, h264_call


class FacePairs:
    """Holds the HR faces in memory; `batch(n)` draws n random (LR, HR) patch pairs.

    `folder` is one folder of images or several (the faces, then `photos.photo_crops`), drawn from
    alike.

    Per sample: a random face, sometimes shrunk (faces in a call come at many sizes), a
    random `patch`-pixel square crop, a horizontal flip, optionally a random contrast gain,
    then `degrade` to make its LR.

    `contrast` (low, high) draws a gain per sample and stretches the HR patch about its mean
    before the LR is made from it: the synthetic training faces are flatter than real photos
    (their luma detail is about 0.85x that of the CelebA-HQ evaluation faces), and every model
    learns from them how strong the detail it restores or invents should be (the shipped models
    all train with it; weights/MODEL_CARD.md). (1, 1), the default, is off.
    `detail` (low, high) draws a second gain and multiplies the HR patch's fine detail, the band
    above the LR's Nyquist frequency that the LR cannot hold, by it (`boost_detail`), again before
    the LR is made: the synthetic faces hold 0.62x the real photos' energy in that band, and the
    contrast gain alone stretches every band alike. (1, 1), the default, is off.
    The H.264 samples come from a cache of LRs and are left as they are.
    """

    def __init__(self, folder: str | os.PathLike | Sequence[str | os.PathLike], scale: int, patch: int,
                 degradation: Degradation, seed: int = 0, cache: str | os.PathLike | None = None,
                 contrast: tuple[float, float] = (1.0, 1.0), detail: tuple[float, float] = (1.0, 1.0)):
        if patch % scale:
            raise UserError(f"--patch {patch} must be a multiple of the scale {scale}")
        check_gains(contrast, detail)
        folders = [folder] if isinstance(folder, (str, os.PathLike)) else list(folder)
        paths, self.images = load_images(folders, patch, scale)
        self.scale, self.patch, self.degradation = scale, patch, degradation
        self.contrast, self.detail = contrast, detail
        self.rng = np.random.default_rng(seed)
        self.h264 = None
        if degradation.p_h264 > 0:
            self.h264 = LRBank.load_or_build(paths, self.images, scale, degradation, cache).h264

    def __len__(self) -> int:
        return len(self.images)

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        rng, p = self.rng, self.patch
        if self.h264 is not None and rng.random() < self.degradation.p_h264:
            return self._sample_h264()
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
        if self.contrast != (1.0, 1.0):
            hr = stretch_contrast(hr, rng.uniform(*self.contrast))
        if self.detail != (1.0, 1.0):
            hr = boost_detail(hr, rng.uniform(*self.detail), self.scale)
        return degrade(hr, self.scale, rng, self.degradation), hr

    def _sample_h264(self) -> tuple[np.ndarray, np.ndarray]:
        """An aligned patch of a face and of its cached H.264 call LR."""
        rng, s, lp = self.rng, self.scale, self.patch // self.scale
        i = rng.integers(len(self.images))
        lr_img = self.h264[i][0]
        y, x = rng.integers(lr_img.shape[0] - lp + 1), rng.integers(lr_img.shape[1] - lp + 1)
        lr = lr_img[y : y + lp, x : x + lp]
        hr = self.images[i][y * s : (y + lp) * s, x * s : (x + lp) * s]
        if rng.random() < 0.5:
            lr, hr = lr[:, ::-1], hr[:, ::-1]
        return np.ascontiguousarray(lr), np.ascontiguousarray(hr)

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        lrs, hrs = zip(*(self.sample() for _ in range(n)))
        return to_tensor(np.stack(lrs)), to_tensor(np.stack(hrs))


def check_gains(contrast: tuple[float, float], detail: tuple[float, float]) -> None:
    if not 0 < contrast[0] <= contrast[1]:
        raise UserError(f"--contrast {contrast[0]:g},{contrast[1]:g}: give two gains, 0 < LOW <= HIGH")
    if not 0 <= detail[0] <= detail[1]:
        raise UserError(f"--detail {detail[0]:g},{detail[1]:g}: give two gains, 0 <= LOW <= HIGH")


def load_images(folders: Sequence[str | os.PathLike], patch: int, scale: int) -> tuple[list[Path], list[np.ndarray]]:
    """(paths, images) of every image at least `patch` pixels on a side in `folders`, each cropped to
    a multiple of 2 x scale (the LR then has the even sides H.264 needs)."""
    paths = []
    for f in folders:
        found = list_images(f) if os.path.isdir(f) else []
        if not found:
            raise UserError(f"{f}: no training images found")
        paths += found
    pairs = [(path, img) for path, img in zip(paths, map(read_rgb, paths)) if min(img.shape[:2]) >= patch]
    if not pairs:
        raise UserError(f"{', '.join(map(str, folders))}: no image is at least {patch}x{patch} pixels")
    m = 2 * scale
    return ([p for p, _ in pairs],
            [np.ascontiguousarray(img[: img.shape[0] // m * m, : img.shape[1] // m * m]) for _, img in pairs])


def stretch_contrast(img: np.ndarray, gain: float) -> np.ndarray:
    """uint8 image stretched by `gain` about its mean level (one level for all channels, so hues stay)."""
    mean = img.mean()
    return np.clip(np.rint(mean + gain * (img.astype(np.float32) - mean)), 0, 255).astype(np.uint8)


def detail_blur_sigma(scale: int) -> float:
    """Sigma of the Gaussian whose response is one half at the LR's Nyquist frequency, 1 / (2 scale)
    cycles per pixel: exp(-2 pi^2 sigma^2 f^2) = 1/2 there (1.5 px at x4). The image minus this
    blur is the detail an x`scale` LR loses."""
    return scale / math.pi * math.sqrt(2 * math.log(2))


def boost_detail(img: np.ndarray, gain: float, scale: int) -> np.ndarray:
    """uint8 image with its detail above the LR's Nyquist frequency multiplied by `gain`.

    The detail is the image minus a Gaussian blur whose response is one half at the LR's Nyquist
    frequency, 1 / (2 scale) cycles per pixel (sigma 1.5 px at x4): an unsharp mask tuned to the
    band an x`scale` LR loses, so the LR made from the result barely changes.
    """
    x = img.astype(np.float32)
    fine = x - cv2.GaussianBlur(x, (0, 0), detail_blur_sigma(scale), borderType=cv2.BORDER_REFLECT)
    return np.clip(np.rint(x + (gain - 1.0) * fine), 0, 255).astype(np.uint8)


def to_tensor(batch: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0)  # (B, H, W, 3) -> (B, 3, H, W)


class LRBank:
    """Degraded LRs of every training image, made once on the CPU and cached on disk: `h264`
    variants per image by `h264_call` (a short libx264 call clip through PyAV) and `jpeg`
    variants by `camera_jpeg` (blur, noise, JPEG).

    libx264 takes ~20 ms per short clip, far too slow per training sample, so each image gets its
    compressed LRs once, made in parallel worker processes, and training crops aligned patches
    from them. Each (image, kind, variant) draws from a generator seeded by itself, so the bank is
    the same whatever the number of workers. The cache file is named by a digest of the image
    files, scale, settings and counts.
    """

    def __init__(self, h264: list[list[np.ndarray]], jpeg: list[list[np.ndarray]]):
        self.h264, self.jpeg = h264, jpeg  # [image][variant] -> (h, w, 3) uint8 LR

    @classmethod
    def load_or_build(cls, paths: Sequence[str | os.PathLike], images: list[np.ndarray], scale: int, spec: Degradation,
                      cache: str | os.PathLike | None = None, h264: int = 1, jpeg: int = 0, workers: int = 0) -> "LRBank":
        from ..paths import cache_dir

        fields = asdict(spec)
        key = {"version": LR_BANK_VERSION, "scale": scale, "spec": fields, "h264": h264, "jpeg": jpeg,
               "files": [(os.path.basename(p), os.path.getsize(p)) for p in paths]}
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        path = Path(cache or cache_dir() / "h264") / f"bank-{digest}.npz"
        jobs = [(i, kind, v) for i in range(len(images)) for kind, count in (("h264", h264), ("jpeg", jpeg))
                for v in range(count)]
        if path.is_file():  # each LR stored as a PNG: lossless, a third of the bytes, a bank that travels
            with np.load(path) as z:
                made = {job: cv2.imdecode(z[_bank_key(*job)], cv2.IMREAD_UNCHANGED) for job in jobs}
        else:
            made = _build_bank(jobs, images, scale, spec, int(digest, 16) % 2**32, workers)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.stem + ".part.npz")
            np.savez(tmp, **{_bank_key(*job): cv2.imencode(".png", lr)[1] for job, lr in made.items()})
            os.replace(tmp, path)
        return cls([[made[(i, "h264", v)] for v in range(h264)] for i in range(len(images))],
                   [[made[(i, "jpeg", v)] for v in range(jpeg)] for i in range(len(images))])


LR_BANK_VERSION = 4  # bump when h264_call or camera_jpeg change, so stale caches are rebuilt


def _bank_key(i: int, kind: str, v: int) -> str:
    return f"{kind}{i}_{v}"


def _build_bank(jobs: list, images: list[np.ndarray], scale: int, spec: Degradation, seed: int,
                workers: int) -> dict:
    """{(image, kind, variant): LR}, made in `workers` processes (0: one per CPU)."""
    from concurrent.futures import ProcessPoolExecutor

    workers = workers or os.cpu_count() or 1
    args = [(images[i], kind, scale, spec, (seed, i, kind == "jpeg", v)) for i, kind, v in jobs]
    desc = "compressed LRs (cached once)"
    if workers == 1 or len(jobs) < 8:
        return {job: _bank_entry(a) for job, a in zip(jobs, tqdm(args, desc=desc, dynamic_ncols=True, leave=False))}
    with ProcessPoolExecutor(workers) as pool:
        made = pool.map(_bank_entry, args, chunksize=max(1, len(args) // (workers * 8)))
        return dict(zip(jobs, tqdm(made, total=len(args), desc=desc, dynamic_ncols=True, leave=False)))


def _bank_entry(args) -> np.ndarray:
    hr, kind, scale, spec, seed = args
    rng = np.random.default_rng(list(map(int, seed)))
    return h264_call(hr, scale, rng, spec) if kind == "h264" else camera_jpeg(hr, scale, rng, spec)
