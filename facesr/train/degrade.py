"""What a video call does to a face, applied to a clean high-resolution image to make its LR twin.

Every LR image is made by antialiased (area) downscaling; on top of that a random mix of
camera blur, sensor noise and JPEG compression (blocking and ringing much like an intra-coded
H.264 frame at low bitrate). A share of the samples stays clean so the model also keeps full
detail when the input is good.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Degradation:
    p_clean: float = 0.4  # share of samples with plain area downscaling only
    p_blur: float = 0.5
    blur_sigma: tuple[float, float] = (0.3, 1.6)  # in HR pixels, before downscaling
    p_noise: float = 0.4
    noise_sigma: tuple[float, float] = (1.0, 6.0)  # in 8-bit levels, on the LR image
    p_jpeg: float = 0.6
    jpeg_quality: tuple[int, int] = (35, 90)


CLEAN = Degradation(p_clean=1.0)


def downscale(hr: np.ndarray, scale: int) -> np.ndarray:
    """Antialiased (area) downscale by an integer factor: the standard LR of the evaluation."""
    h, w = hr.shape[:2]
    return cv2.resize(hr, (w // scale, h // scale), interpolation=cv2.INTER_AREA)


def degrade(hr: np.ndarray, scale: int, rng: np.random.Generator, spec: Degradation = Degradation()) -> np.ndarray:
    """(sH, sW, 3) uint8 RGB -> (H, W, 3) uint8 RGB."""
    if rng.random() < spec.p_clean:
        return downscale(hr, scale)
    img = hr
    if rng.random() < spec.p_blur:
        img = cv2.GaussianBlur(img, (0, 0), float(rng.uniform(*spec.blur_sigma)))
    lr = downscale(img, scale)
    if rng.random() < spec.p_noise:
        noise = rng.normal(0.0, rng.uniform(*spec.noise_sigma), lr.shape)
        if rng.random() < 0.5:  # luminance-only noise, as most cameras' noise looks after their ISP
            noise = np.repeat(noise[..., :1], 3, axis=2)
        lr = np.clip(lr.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    if rng.random() < spec.p_jpeg:
        quality = int(rng.integers(spec.jpeg_quality[0], spec.jpeg_quality[1] + 1))
        ok, buf = cv2.imencode(".jpg", lr[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        lr = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    return np.ascontiguousarray(lr)
