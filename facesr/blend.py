"""Crop geometry, feathered masks and compositing super-resolved faces over the bicubic frame.

A face's square box grows by `margin` on each side to the crop taken from the LR frame
(clipped to the frame). Its super-resolved crop lands at s-times coordinates in the
bicubic-upscaled frame through a feathered mask: 1 in the middle, a raised-cosine ramp to 0
at the crop's edges (no ramp on an edge that is the frame's own edge), so no seam shows.
Before pasting, the face's lowest frequencies are matched to the LR input, so a generator's
slight colour or brightness drift cannot show as a patch.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np


@dataclass(frozen=True)
class Crop:
    """A region of the LR frame, (x0, y0) inclusive to (x1, y1) exclusive, and which of its edges are the frame's."""

    x0: int
    y0: int
    x1: int
    y1: int
    at_edge: tuple[bool, bool, bool, bool]  # left, top, right, bottom

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    def of(self, frame: np.ndarray) -> np.ndarray:
        return frame[self.y0 : self.y1, self.x0 : self.x1]

    def scaled(self, s: int) -> tuple[slice, slice]:
        return slice(self.y0 * s, self.y1 * s), slice(self.x0 * s, self.x1 * s)

    def overlaps(self, other: "Crop") -> bool:
        return self.x0 < other.x1 and other.x0 < self.x1 and self.y0 < other.y1 and other.y0 < self.y1


# The crop's margin around the face box, a fraction of the box's side on each side: enough
# context for the generator at the face's edge, few pixels beyond it (docs/performance.md).
MARGIN = 0.2


def face_crop(box: np.ndarray, frame_shape: tuple[int, ...], margin: float = MARGIN, min_side: int = 8) -> Crop | None:
    """The crop around an integer square face box (x0, y0, x1, y1), or None if too little of it is in frame."""
    h, w = frame_shape[:2]
    side = int(box[2] - box[0])
    pad = int(round(side * margin))
    x0, y0, x1, y1 = int(box[0]) - pad, int(box[1]) - pad, int(box[2]) + pad, int(box[3]) + pad
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if cx1 - cx0 < min_side or cy1 - cy0 < min_side:
        return None
    return Crop(cx0, cy0, cx1, cy1, (cx0 == 0, cy0 == 0, cx1 == w, cy1 == h))


def _ramp(n: int, feather: int, open_start: bool, open_end: bool) -> np.ndarray:
    """1-D weights: raised-cosine rise over `feather` samples at each closed end."""
    r = np.ones(n, dtype=np.float32)
    f = min(feather, n // 2)
    if f > 0:
        rise = 0.5 - 0.5 * np.cos(np.pi * (np.arange(f, dtype=np.float32) + 0.5) / f)
        if not open_start:
            r[:f] = rise
        if not open_end:
            r[n - f :] = rise[::-1]
    return r


@lru_cache(maxsize=64)
def feather_mask(height: int, width: int, feather: int, at_edge: tuple[bool, bool, bool, bool]) -> np.ndarray:
    """(H, W, 1) float32 weights, separable, 0 at closed borders rising to 1 inside."""
    left, top, right, bottom = at_edge
    wy = _ramp(height, feather, top, bottom)
    wx = _ramp(width, feather, left, right)
    mask = wy[:, None] * wx[None, :]
    mask.setflags(write=False)
    return mask[..., None]


@lru_cache(maxsize=64)
def _mask3(height: int, width: int, feather: int, at_edge: tuple[bool, bool, bool, bool]) -> np.ndarray:
    """feather_mask repeated over the three channels, as OpenCV's element-wise ops want it."""
    mask = np.repeat(feather_mask(height, width, feather, at_edge), 3, axis=2)
    mask.setflags(write=False)
    return mask


# The feathered ramp's width, a fraction of the pasted crop's shorter side.
FEATHER = 0.18


def paste_residual(out: np.ndarray, residual: np.ndarray, lr: np.ndarray, crop: Crop, scale: int, *,
                   alpha: float = 1.0, bicubic: np.ndarray | None = None, feather_frac: float = FEATHER,
                   sigma: float = 1.0) -> None:
    """Paste a super-resolved face into `out`, the bicubic-upscaled frame, in place.

    The face is the bicubic upscale plus `residual` (what the generator adds to it: float32
    levels, (s*h, s*w, 3) for the LR crop `lr`). Before it goes in, its lowest frequencies are
    matched to the LR input: the departure of its area-downscaled self from `lr`, blurred to the
    lowest frequencies and upscaled, is taken off, so a generator's slight colour or brightness
    drift cannot show as a patch. It is blended in through the feathered mask (times `alpha`).

    The bicubic upscale is `out`'s own pixels there, so the crop's is never made (nor the
    face as an image): each step is one pass over the crop's pixels, and the sum is rounded
    once. Where an earlier face was already pasted over some of these pixels, pass the
    untouched upscale of the whole frame as `bicubic`: the face then replaces what is there.
    """
    ys, xs = crop.scaled(scale)
    region = out[ys, xs]
    base = region if bicubic is None else bicubic[ys, xs]
    h, w = lr.shape[:2]
    face_down = cv2.add(cv2.resize(residual, (w, h), interpolation=cv2.INTER_AREA),
                        cv2.resize(base, (w, h), interpolation=cv2.INTER_AREA), dtype=cv2.CV_32F)
    drift = cv2.GaussianBlur(cv2.subtract(face_down, lr, dtype=cv2.CV_32F), (0, 0), sigma)
    drift_up = cv2.resize(drift, (residual.shape[1], residual.shape[0]), interpolation=cv2.INTER_CUBIC)
    delta = cv2.subtract(residual, drift_up)  # the face minus the bicubic upscale, float32
    if bicubic is not None:
        delta = cv2.add(delta, cv2.subtract(base, region, dtype=cv2.CV_32F))  # the face minus what is there
    feather = max(2, int(round(min(residual.shape[:2]) * feather_frac)))
    mask = _mask3(residual.shape[0], residual.shape[1], feather, crop.at_edge)
    if alpha < 1.0:
        mask = mask * np.float32(alpha)
    # region + mask * delta, rounded and saturated to uint8 in OpenCV's vectorised ops (numpy's
    # broadcasting of an (H, W, 1) mask is several times slower)
    region[...] = cv2.add(cv2.multiply(delta, mask), region, dtype=cv2.CV_8U)


# --- holding still pixels still, from frame to frame -------------------------------------

# A pasted face pixel that moved by less than this many levels since the last frame keeps its
# last value: 2 holds changes of one level, which removes the generator's shimmer on compressed
# calls for a hundredth of a dB (docs/experiments.md, "holding small changes").
HOLD_LEVELS = 2


@dataclass(frozen=True)
class Held:
    """A pasted face region of an output frame, kept for the next frame's `hold_small_changes`."""

    y0: int
    x0: int
    pixels: np.ndarray

    @staticmethod
    def of(frame: np.ndarray, region: tuple[slice, slice]) -> "Held":
        ys, xs = region
        return Held(ys.start, xs.start, frame[region].copy())


def hold_small_changes(out: np.ndarray, regions: list[tuple[slice, slice]], last: list[Held],
                       levels: int = HOLD_LEVELS) -> None:
    """A temporal dead band in place: inside `regions` (the faces just pasted into `out`), every
    channel of every pixel that also lies in a face region of the last frame and differs from it
    by less than `levels` takes the last frame's value.

    Super-resolved faces change by a level or so from frame to frame where the picture does not:
    the generator's response to the call's compression noise, and its rounding (int8 most of all).
    Holding those changes removes that shimmer; real changes, a level or two past it, pass
    untouched, and a slow drift catches up once it reaches `levels`.
    """
    for ys, xs in regions:
        for h in last:
            y0, y1 = max(ys.start, h.y0), min(ys.stop, h.y0 + h.pixels.shape[0])
            x0, x1 = max(xs.start, h.x0), min(xs.stop, h.x0 + h.pixels.shape[1])
            if y0 >= y1 or x0 >= x1:
                continue
            cur = out[y0:y1, x0:x1]
            old = h.pixels[y0 - h.y0 : y1 - h.y0, x0 - h.x0 : x1 - h.x0]
            keep = (cv2.absdiff(cur, old) < levels).view(np.uint8)
            # OpenCV's masked copy: several times faster than np.copyto(where=)
            cur[...] = cv2.copyTo(old, keep, np.ascontiguousarray(cur))
