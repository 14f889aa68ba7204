"""Following faces over time: stable track IDs, smoothed boxes, fading in and out.

The detector runs every `detect_every` frames; in between, each face is carried along by
Lucas-Kanade optical flow on points inside its box. Every track's box is smoothed with a
One-Euro filter (Casiez et al., CHI 2012: heavy smoothing while still, little lag while
moving) and snapped to whole pixels with hysteresis, so a still face gives the very same
crop frame after frame. Tracks fade in and out (`Track.alpha`) so a face entering or
leaving never pops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:  # the tracker only calls the detector it is given
    from .detect import Detection, FaceDetector


class OneEuroFilter:
    """Casiez et al.'s One-Euro filter on a vector, one sample per frame."""

    def __init__(self, fps: float, min_cutoff: float = 0.6, beta: float = 0.05, d_cutoff: float = 1.0):
        self.dt = 1.0 / fps
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.value: np.ndarray | None = None
        self.deriv: np.ndarray | None = None

    def _alpha(self, cutoff: np.ndarray | float) -> np.ndarray | float:
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / self.dt)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.value is None:
            self.value, self.deriv = x.astype(np.float64), np.zeros_like(x, dtype=np.float64)
            return self.value
        d = (x - self.value) / self.dt
        self.deriv = self.deriv + self._alpha(self.d_cutoff) * (d - self.deriv)
        a = self._alpha(self.min_cutoff + self.beta * np.abs(self.deriv))
        self.value = self.value + a * (x - self.value)
        return self.value


@dataclass
class Track:
    id: int
    raw: np.ndarray  # latest measured (cx, cy, side) of the square face box, LR pixels
    filter: OneEuroFilter
    smooth: np.ndarray = field(init=False)  # One-Euro filtered (cx, cy, side)
    box: np.ndarray = field(init=False)  # integer (x0, y0, x1, y1) square box after hysteresis
    alpha: float = 0.0  # fade-in/out weight for blending, 0..1
    misses: int = 0  # detection rounds in a row without a matching detection
    hits: int = 1

    def __post_init__(self) -> None:
        self.smooth = self.filter(self.raw)
        self.box = _square_box(self.smooth)


def _square_box(cxcys: np.ndarray) -> np.ndarray:
    cx, cy, side = cxcys
    half = round(side) / 2.0
    x0, y0 = round(cx - half), round(cy - half)
    return np.array([x0, y0, x0 + round(side), y0 + round(side)], dtype=np.int64)


def _to_cxcys(box: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = box
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0)], dtype=np.float64)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


# While faces are tracked the detector runs every DETECT_EVERY frames and optical flow carries
# the boxes between: a new face still fades in within about 0.3 s at 30 fps. With no face
# tracked it runs every other frame. (Measurements: docs/performance.md.)
DETECT_EVERY = 6


class FaceTracker:
    """Per-stream face tracks with stable IDs and smoothed, jitter-free boxes.

    `update(frame)` returns the live tracks for that frame. Detection runs on frame 0 and
    every `detect_every` frames after; in between boxes follow optical flow. A track not
    re-detected for `max_misses` detection rounds fades out and is dropped.
    """

    def __init__(
        self,
        detector: FaceDetector,
        detect_every: int = DETECT_EVERY,
        fps: float = 30.0,
        max_misses: int = 2,
        iou_match: float = 0.2,
        fade_frames: int = 4,
        hysteresis: float = 1.0,
        start_score: float = 0.65,
        min_face: float = 10.0,
    ):
        self.detector = detector
        self.detect_every = max(1, detect_every)
        self.fps = fps
        self.max_misses, self.iou_match, self.hysteresis = max_misses, iou_match, hysteresis
        # a new track needs a confident detection of a face big enough to gain from SR; an
        # existing one is kept alive by any detection the detector returns (score hysteresis)
        self.start_score, self.min_face = start_score, min_face
        self.fade_step = 1.0 / max(1, fade_frames)
        self.tracks: list[Track] = []
        self._next_id = 1
        self._frame_index = 0
        self._prev_gray: np.ndarray | None = None

    def reset(self) -> None:
        self.tracks, self._frame_index, self._prev_gray = [], 0, None

    @property
    def detects_next(self) -> bool:
        """Whether the next update() runs the detector (rather than optical flow)."""
        # with no face in view, look more often so a face entering is picked up quickly
        return self._frame_index % self.detect_every == 0 or (not self.tracks and self._frame_index % 2 == 0)

    def update(self, frame: np.ndarray) -> list[Track]:
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        if self._prev_gray is not None and self._prev_gray.shape != gray.shape:
            self.reset()  # the stream changed size: start over
        if self.detects_next:
            self._associate(self.detector(frame), frame.shape)
        elif self._prev_gray is not None:
            self._follow_flow(self._prev_gray, gray)
        for t in self.tracks:
            self._smooth(t)
            # one missed detection round is forgiven; after `max_misses` the face fades out
            visible = t.misses < self.max_misses
            t.alpha = min(1.0, t.alpha + self.fade_step) if visible else max(0.0, t.alpha - self.fade_step)
        self.tracks = [t for t in self.tracks if t.alpha > 0 or t.misses < self.max_misses]
        self._prev_gray = gray
        self._frame_index += 1
        return [t for t in self.tracks if t.alpha > 0]

    def _associate(self, detections: list[Detection], shape: tuple[int, ...]) -> None:
        """Greedy IoU matching of detections to tracks; unmatched detections start new tracks."""
        pairs = sorted(
            ((_iou(t.box.astype(float), d.box), ti, di) for ti, t in enumerate(self.tracks) for di, d in enumerate(detections)),
            reverse=True,
        )
        used_t, used_d = set(), set()
        for iou, ti, di in pairs:
            if iou < self.iou_match or ti in used_t or di in used_d:
                continue
            used_t.add(ti)
            used_d.add(di)
            t = self.tracks[ti]
            t.raw, t.misses, t.hits = _to_cxcys(detections[di].box), 0, t.hits + 1
        for ti, t in enumerate(self.tracks):
            if ti not in used_t:
                t.misses += 1
        for di, d in enumerate(detections):
            small = min(d.box[2] - d.box[0], d.box[3] - d.box[1]) < self.min_face
            if di not in used_d and d.score >= self.start_score and not small:
                # a face already there when the stream starts has nothing to fade in from
                alpha = 1.0 if self._frame_index == 0 else 0.0
                self.tracks.append(Track(self._next_id, _to_cxcys(d.box), OneEuroFilter(self.fps), alpha=alpha))
                self._next_id += 1

    def _follow_flow(self, prev: np.ndarray, gray: np.ndarray) -> None:
        """Move each track by the median Lucas-Kanade flow of a grid of points in its box."""
        h, w = gray.shape
        for t in self.tracks:
            cx, cy, side = t.raw
            g = np.linspace(-0.3, 0.3, 4) * side
            pts = np.array([(cx + dx, cy + dy) for dy in g for dx in g], dtype=np.float32)
            inside = (pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)
            if inside.sum() < 4:
                continue
            pts = pts[inside].reshape(-1, 1, 2)
            win = int(np.clip(side * 0.3, 7, 31)) | 1
            nxt, status, _ = cv2.calcOpticalFlowPyrLK(prev, gray, pts, None, winSize=(win, win), maxLevel=2)
            ok = status.ravel() == 1
            if ok.sum() >= 4:
                shift = np.median((nxt - pts).reshape(-1, 2)[ok], axis=0)
                t.raw = t.raw + np.array([shift[0], shift[1], 0.0])

    def _smooth(self, t: Track) -> None:
        t.smooth = t.filter(t.raw)
        # hysteresis: keep the integer box until the smoothed box has really moved away from it
        # (the detector's boxes are whole pixels and flip by one even on a still face)
        current = _to_cxcys(t.box.astype(np.float64))
        side = current[2]
        deadband = np.array([max(self.hysteresis, 0.03 * side)] * 2 + [max(self.hysteresis, 0.06 * side)])
        if np.any(np.abs(t.smooth - current) > deadband):
            t.box = _square_box(t.smooth)
