"""Image and video quality metrics on uint8 RGB images: the numbers `facesr eval` reports."""

from __future__ import annotations

import cv2
import numpy as np


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB over all pixels and channels (8-bit peak)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # BT.601


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of uint8 RGB, float64 in [0, 255]."""
    return rgb.astype(np.float64) @ np.array(LUMA_WEIGHTS)


def high_frequency_energy(rgb: np.ndarray, scale: int) -> float:
    """Spectral energy of the luma above the LR Nyquist frequency, 1 / (2 * scale) cycles per pixel.

    That band is exactly the detail a x`scale` LR image cannot hold: bicubic upscaling
    leaves it nearly empty, a GAN has to invent it. A Hann window keeps the image borders
    from leaking energy into it.
    """
    y = luma(rgb)
    h, w = y.shape
    window = np.outer(np.hanning(h), np.hanning(w))
    spectrum = np.abs(np.fft.fft2((y - y.mean()) * window)) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij")
    return float(spectrum[np.hypot(fx, fy) > 0.5 / scale].sum())


def hf_energy_ratio(outputs: list[np.ndarray], originals: list[np.ndarray], scale: int) -> float:
    """Detail of the outputs relative to the originals: 1 is as much as the original, bicubic far below."""
    return sum(high_frequency_energy(o, scale) for o in outputs) / sum(high_frequency_energy(r, scale) for r in originals)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity (Wang et al. 2004) of the luma: 11x11 Gaussian window, sigma 1.5."""
    x, y = luma(a), luma(b)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(img: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(img, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s[5:-5, 5:-5].mean()) if min(s.shape) > 10 else float(s.mean())


def flicker(out_prev: np.ndarray, out: np.ndarray, ref_prev: np.ndarray, ref: np.ndarray) -> float:
    """How far the output's frame-to-frame change departs from the original's (mean absolute, 8-bit levels).

    Zero when the output changes exactly as the original does; flicker, shimmer and
    popping texture raise it. Compared on the luma.
    """
    return float(np.mean(np.abs((luma(out) - luma(out_prev)) - (luma(ref) - luma(ref_prev)))))


def landmark_error(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean distance between matching keypoints, in units of the true inter-ocular distance."""
    iod = float(np.linalg.norm(truth[0] - truth[1]))
    return float(np.mean(np.linalg.norm(found - truth, axis=1)) / max(iod, 1e-6))
