"""Training sequences for a recurrent generator: a face over consecutive frames of a call.

Two sources, each made into the LR and HR frames of a fixed window around the face:

* talking-head clips kept for training (the data folder's `videos_train`; never the
  evaluation clips in `videos`): each clip is area-downscaled by the scale as a whole frame
  and compressed with H.264 across the whole sequence, as `protocol.make_call_clip` makes a
  call (libx264 through PyAV, CRF drawn around a call's 28);
* still training faces set in smooth random motion (drift, slow zoom and turn, the camera's
  blur and noise), then downscaled and compressed the same way.

Each batch's motion is the LR flow of each patch to the one before (`facesr.memory.flow`, the
call the Enhancer makes on its crops), so a model trains on the alignment it will get. The bank is made once and
cached (`SequenceBank.build`); `SequenceBank.batch` draws random runs of consecutive frames,
sub-crops and flips them alike, and now and then cuts to another sequence mid-run, so the
model also meets history that does not belong to the face.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..images import list_images, read_rgb
from ..memory import flow
from ..protocol import downscale
from .degrade import DEGRADATIONS, Camera, Degradation, h264_roundtrip

BANK_VERSION = 1
WINDOW = 64  # LR side of the stored window around the face
CRF = (24, 32)  # around the evaluation's CRF 28
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm")


@dataclass
class Sequence:
    lr: np.ndarray  # (T, h, w, 3) uint8
    hr: np.ndarray  # (T, sh, sw, 3) uint8

    def __len__(self) -> int:
        return len(self.lr)


def _window(frames_lr: list[np.ndarray], frames_hr: list[np.ndarray], cx: float, cy: float, scale: int,
            side: int = WINDOW) -> tuple[np.ndarray, np.ndarray] | None:
    h, w = frames_lr[0].shape[:2]
    if h < side or w < side:
        return None
    x0 = int(np.clip(round(cx - side / 2), 0, w - side))
    y0 = int(np.clip(round(cy - side / 2), 0, h - side))
    lr = np.stack([f[y0 : y0 + side, x0 : x0 + side] for f in frames_lr])
    hr = np.stack([f[y0 * scale : (y0 + side) * scale, x0 * scale : (x0 + side) * scale] for f in frames_hr])
    return lr, hr


def clip_sequence(path: Path, scale: int, rng: np.random.Generator, detector, max_frames: int = 200) -> Sequence | None:
    """A training clip as a call: downscaled by a random factor (faces of call sizes), area-downscaled
    by `scale`, H.264 over the whole sequence; the window around the first frame's largest face."""
    from ..video import read_frames

    frames = list(read_frames(path, max_frames))
    if len(frames) < 8:
        return None
    found = detector(frames[0])
    if not found:
        return None
    box = max(found, key=lambda d: d.box[2] - d.box[0]).box
    face = box[2] - box[0]
    f = min(1.0, rng.uniform(140, 300) / face)  # HR face width: as the evaluation calls' faces
    h, w = frames[0].shape[:2]
    hw, hh = int(w * f) // (2 * scale) * 2 * scale, int(h * f) // (2 * scale) * 2 * scale
    hrs = [cv2.resize(fr, (hw, hh), interpolation=cv2.INTER_AREA) for fr in frames]
    crf = int(rng.integers(CRF[0], CRF[1] + 1))
    lrs = h264_roundtrip([downscale(x, scale) for x in hrs], crf, preset="medium")
    cx, cy = (box[0] + box[2]) / 2 * hw / w / scale, (box[1] + box[3]) / 2 * hh / h / scale
    window = _window(lrs, hrs, cx, cy, scale)
    if window is None:
        return None
    return Sequence(*window)


def still_sequence(hr: np.ndarray, scale: int, rng: np.random.Generator, frames: int = 12,
                   spec: Degradation = DEGRADATIONS["call"]) -> Sequence:
    """A still face in smooth random motion: a slow drift (up to about half an LR pixel a frame),
    zoom and turn, the camera's blur and noise, then H.264 across the frames."""
    h, w = hr.shape[:2]
    velocity = rng.uniform(-0.5, 0.5, 2) * scale
    zoom, turn = rng.uniform(-0.004, 0.004), rng.uniform(-0.3, 0.3)
    camera = Camera.draw(rng, spec)
    hrs = []
    for t in range(frames):
        m = cv2.getRotationMatrix2D((w / 2, h / 2), turn * t, 1.0 + zoom * t)
        m[:, 2] += velocity * t
        hrs.append(cv2.warpAffine(hr, m, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT))
    crf = int(rng.integers(CRF[0], CRF[1] + 1))
    lrs = h264_roundtrip([camera(x, scale, rng) for x in hrs], crf, preset="medium")
    lr_h, lr_w = lrs[0].shape[:2]
    side = min(WINDOW, lr_h, lr_w)
    return Sequence(*_window(lrs, hrs, lr_w / 2, lr_h / 2, scale, side))


class SequenceBank:
    """The training sequences, made once (`build`) and cached as one .npz per sequence."""

    def __init__(self, sequences: list[Sequence], scale: int, seed: int = 0):
        if not sequences:
            raise ValueError("no training sequences")
        self.sequences, self.scale = sequences, scale
        self.rng = np.random.default_rng(seed)
        lengths = np.array([len(x) for x in sequences], np.float64)
        self.weights = lengths / lengths.sum()  # every frame as likely: the long real clips weigh most

    @classmethod
    def build(cls, clips: Path | None, stills: Path | None, scale: int, cache: Path, stills_count: int = 300,
              variants: int = 2, seed: int = 0, progress: bool = True) -> "SequenceBank":
        """Sequences from every clip in `clips` (`variants` draws of size and CRF each) and from
        `stills_count` of the images in `stills`; cached under `cache` by what they were made from."""
        clip_paths = sorted(p for p in clips.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES) if clips else []
        still_paths = list_images(stills)[:stills_count] if stills else []
        key = hashlib.sha256(repr((BANK_VERSION, scale, variants, seed, [(p.name, p.stat().st_size) for p in clip_paths],
                                   [p.name for p in still_paths])).encode()).hexdigest()[:12]
        folder = cache / f"sequences-x{scale}-{key}"
        folder.mkdir(parents=True, exist_ok=True)
        jobs = [("clip", p, v) for p in clip_paths for v in range(variants)] + [("still", p, 0) for p in still_paths]
        sequences: list[Sequence] = []
        detector = None
        try:
            for i, (kind, path, _variant) in enumerate(tqdm(jobs, desc="training sequences", disable=not progress)):
                file = folder / f"{i:05d}.npz"
                if file.is_file():
                    with np.load(file) as z:
                        if len(z["lr"]):
                            sequences.append(Sequence(z["lr"], z["hr"]))
                    continue
                rng = np.random.default_rng([seed, i])
                if kind == "clip":
                    if detector is None:
                        from ..detect import FaceDetector

                        detector = FaceDetector("full")
                    seq = clip_sequence(path, scale, rng, detector)
                else:
                    seq = still_sequence(read_rgb(path), scale, rng)
                tmp = folder / f"{i:05d}.tmp.npz"
                if seq is None:
                    np.savez(tmp, lr=np.zeros((0,)), hr=np.zeros((0,)))
                else:
                    np.savez(tmp, lr=seq.lr, hr=seq.hr)
                    sequences.append(seq)
                tmp.replace(file)
        finally:
            if detector is not None:
                detector.close()
        return cls(sequences, scale, seed)

    def __len__(self) -> int:
        return len(self.sequences)

    def batch(self, n: int, frames: int, patch: int, p_cut: float = 0.1):
        """n runs of `frames` consecutive frames, LR patches of `patch` pixels: (lr (n, T, h, w, 3) uint8,
        hr (n, T, sh, sw, 3) uint8, motion (n, T, h, w, 2) float32, the flow of each patch to the one
        before as the Enhancer measures it; motion[:, 0] is zero)."""
        s, rng = self.scale, self.rng
        lr = np.empty((n, frames, patch, patch, 3), np.uint8)
        hr = np.empty((n, frames, patch * s, patch * s, 3), np.uint8)
        motion = np.zeros((n, frames, patch, patch, 2), np.float32)
        for i in range(n):
            lr[i], hr[i] = self._run(frames, patch)
            if rng.random() < p_cut:  # a cut to another face from frame `cut` on
                cut = int(rng.integers(1, frames))
                lr[i, cut:], hr[i, cut:] = (a[cut:] for a in self._run(frames, patch))
            for t in range(1, frames):
                motion[i, t] = flow(lr[i, t], lr[i, t - 1])
        return lr, hr, motion

    def _run(self, frames: int, patch: int) -> tuple[np.ndarray, np.ndarray]:
        """A random run of one sequence: random place, time forward or backward, maybe mirrored."""
        s, rng = self.scale, self.rng
        while True:
            seq = self.sequences[int(rng.choice(len(self.sequences), p=self.weights))]
            h, w = seq.lr.shape[1:3]
            if len(seq) >= frames and h >= patch and w >= patch:
                break
        t0 = int(rng.integers(0, len(seq) - frames + 1))
        ts = np.arange(t0, t0 + frames)[:: -1 if rng.random() < 0.5 else 1]  # reversed: as likely a motion
        y, x = int(rng.integers(0, h - patch + 1)), int(rng.integers(0, w - patch + 1))
        lr = seq.lr[ts, y : y + patch, x : x + patch]
        hr = seq.hr[ts, y * s : (y + patch) * s, x * s : (x + patch) * s]
        if rng.random() < 0.5:
            lr, hr = lr[:, :, ::-1], hr[:, :, ::-1]
        return lr, hr
