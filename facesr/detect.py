"""Finding faces: MediaPipe's BlazeFace through the Tasks API, one frame at a time.

`FaceDetector(frame)` returns `Detection`s (box, score, six keypoints) in frame pixels;
`track.FaceTracker` decides when to call it and follows the faces between calls.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import weakref
from dataclasses import dataclass

import numpy as np

from .errors import UserError
from .weights import detector_model_path


@dataclass
class Detection:
    box: np.ndarray  # (x0, y0, x1, y1) in frame pixels, float
    score: float
    keypoints: np.ndarray | None = None  # (6, 2) x, y in frame pixels: right eye, left eye, nose tip, mouth, right and left ear


@contextlib.contextmanager
def _quiet_native_stderr():
    """Silence the C++ log lines MediaPipe/LiteRT print while a model loads."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


_live_detectors: weakref.WeakSet = weakref.WeakSet()


def _forget(detector: FaceDetector) -> None:
    # Mark the MediaPipe task closed without calling into MediaPipe. Closing goes through
    # MediaPipe's one-thread executor and waits for it; from a finalizer that can hang for
    # ever (the garbage collector may already have stopped that executor's thread when the
    # detector was part of a reference cycle), and at interpreter exit the executor is shut
    # down already. Owners close detectors explicitly (Enhancer.close); this only stops
    # MediaPipe's own finalizer from trying.
    with contextlib.suppress(Exception):
        detector._detector._handle = None
    detector._detector = None


@atexit.register
def _forget_live_detectors() -> None:
    for detector in list(_live_detectors):
        _forget(detector)


class FaceDetector:
    """MediaPipe Tasks FaceDetector with a BlazeFace model.

    "full" (full-range, sparse) finds faces from frame-filling close-ups down to about 20 px;
    "short" (short-range) is about 3x faster but misses or mis-sizes faces under ~40 px.
    """

    def __init__(self, kind: str = "full", min_confidence: float = 0.5, model_path: str | os.PathLike | None = None):
        path = detector_model_path(kind, model_path)
        os.environ.setdefault("GLOG_minloglevel", "2")
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision

        self._mp_image, self._srgb = mp.Image, mp.ImageFormat.SRGB

        options = vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            running_mode=vision.RunningMode.IMAGE,
            min_detection_confidence=min_confidence,
        )
        try:
            with _quiet_native_stderr():
                self._detector = vision.FaceDetector.create_from_options(options)
                self(np.zeros((64, 64, 3), np.uint8))  # warm-up: the first call's one-time log lines stay quiet too
        except Exception as exc:  # MediaPipe raises RuntimeError/ValueError for a bad model file
            raise UserError(f"{path}: cannot load the face detector model ({exc})") from None
        self.kind = kind
        _live_detectors.add(self)

    def __call__(self, frame: np.ndarray) -> list[Detection]:
        """(H, W, 3) uint8 RGB -> detections, boxes clipped to the frame."""
        h, w = frame.shape[:2]
        result = self._detector.detect(self._mp_image(image_format=self._srgb, data=_aligned(frame)))
        out = []
        for d in result.detections:
            b = d.bounding_box
            box = np.array([b.origin_x, b.origin_y, b.origin_x + b.width, b.origin_y + b.height], dtype=np.float64)
            box = np.clip(box, 0, [w, h, w, h])
            if box[2] - box[0] >= 2 and box[3] - box[1] >= 2:
                kps = np.array([[k.x * w, k.y * h] for k in d.keypoints or []], dtype=np.float64).reshape(-1, 2)
                out.append(Detection(box, float(d.categories[0].score), kps))
        return out

    def close(self) -> None:
        if getattr(self, "_detector", None) is not None:
            with _quiet_native_stderr():
                self._detector.close()
            self._detector = None

    def __enter__(self) -> FaceDetector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_detector", None) is not None:
            _forget(self)


def _aligned(frame: np.ndarray, alignment: int = 64) -> np.ndarray:
    """The frame in C order at a 64-byte aligned address (LiteRT otherwise copies it and logs a warning)."""
    if frame.flags.c_contiguous and frame.ctypes.data % alignment == 0:
        return frame
    buf = np.empty(frame.nbytes + alignment, np.uint8)
    offset = -buf.ctypes.data % alignment
    out = buf[offset : offset + frame.nbytes].view(frame.dtype).reshape(frame.shape)
    out[...] = frame
    return out
