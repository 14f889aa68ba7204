"""What a video call does to a face, applied to a clean high-resolution image to make its LR twin.

Every LR image is made by antialiased (area) downscaling; on top of that a random mix of
camera blur, sensor noise, JPEG and real H.264 compression. The H.264 path encodes a short
clip with libx264 through PyAV (4:2:0 chroma, CRF 26-40 like a call at low bitrate, the
face moving slightly between frames) and keeps the last, inter-predicted frame: blocking,
ringing, smeared chroma and lost texture exactly as a call delivers them. Encoding costs
milliseconds, so `data.H264Bank` makes one such LR per training image once and caches it.
A share of the samples stays clean so the model also keeps full detail when the input is good.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import cv2
import numpy as np

from ..protocol import downscale


@dataclass(frozen=True)
class Degradation:
    p_h264: float = 0.2  # share of samples from the H.264 bank (blur/noise/compression as a call)
    p_clean: float = 0.5  # of the others, the share with plain area downscaling only
    p_blur: float = 0.5
    blur_sigma: tuple[float, float] = (0.3, 1.6)  # in HR pixels, before downscaling
    p_noise: float = 0.4
    noise_sigma: tuple[float, float] = (1.0, 6.0)  # in 8-bit levels, on the LR image
    p_jpeg: float = 0.6
    jpeg_quality: tuple[int, int] = (35, 90)
    h264_crf: tuple[int, int] = (26, 40)


CLEAN = Degradation(p_clean=1.0, p_h264=0.0)
# What a photo goes through: half clean, half JPEG at web qualities; no call blur, noise or video codec.
PHOTO = Degradation(p_clean=0.5, p_h264=0.0, p_blur=0.0, p_noise=0.0, p_jpeg=1.0, jpeg_quality=(50, 95))
DEGRADATIONS = {"call": Degradation(), "photo": PHOTO, "clean": CLEAN}


@dataclass(frozen=True)
class Camera:
    """One draw of the camera's blur and noise, applied alike to every frame of a clip."""

    blur: float | None  # Gaussian sigma in HR pixels, before downscaling
    noise: float | None  # sigma in 8-bit levels, on the LR image
    luma_noise: bool  # luminance-only noise, as most cameras' noise looks after their ISP

    @staticmethod
    def draw(rng: np.random.Generator, spec: Degradation) -> "Camera":
        blur = float(rng.uniform(*spec.blur_sigma)) if rng.random() < spec.p_blur else None
        noise = float(rng.uniform(*spec.noise_sigma)) if rng.random() < spec.p_noise else None
        return Camera(blur, noise, bool(rng.random() < 0.5))

    def __call__(self, hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
        """Optical blur, downscale, sensor noise (fresh each frame): what reaches the encoder."""
        img = cv2.GaussianBlur(hr, (0, 0), self.blur) if self.blur else hr
        lr = downscale(img, scale)
        if self.noise:
            noise = rng.normal(0.0, self.noise, lr.shape[:2] + ((1,) if self.luma_noise else (3,)))
            lr = np.clip(lr.astype(np.float32) + noise, 0, 255).astype(np.uint8)
        return lr


def degrade(hr: np.ndarray, scale: int, rng: np.random.Generator, spec: Degradation = Degradation()) -> np.ndarray:
    """Blur, noise and JPEG (no H.264: see `h264_call`): (sH, sW, 3) uint8 RGB -> (H, W, 3) uint8 RGB."""
    if rng.random() < spec.p_clean:
        return downscale(hr, scale)
    lr = Camera.draw(rng, spec)(hr, scale, rng)
    return jpeg(lr, rng, spec) if rng.random() < spec.p_jpeg else np.ascontiguousarray(lr)


def jpeg(lr: np.ndarray, rng: np.random.Generator, spec: Degradation = Degradation()) -> np.ndarray:
    """An LR image through JPEG at a random quality in `spec.jpeg_quality`."""
    quality = int(rng.integers(spec.jpeg_quality[0], spec.jpeg_quality[1] + 1))
    ok, buf = cv2.imencode(".jpg", lr[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])


def camera_jpeg(hr: np.ndarray, scale: int, rng: np.random.Generator, spec: Degradation = Degradation()) -> np.ndarray:
    """The camera (blur and noise as `spec` draws them) then JPEG: `degrade`'s compressed samples, always."""
    return jpeg(Camera.draw(rng, spec)(hr, scale, rng), rng, spec)


def h264_roundtrip(frames: list[np.ndarray], crf: int, preset: str = "veryfast") -> list[np.ndarray]:
    """Encode RGB frames (even sides) as one H.264 stream with libx264 and decode them again
    (`preset` "veryfast" with zero latency as a call's encoder runs; "medium" as `protocol.make_call_clip`)."""
    import av  # here, not at the top: training on prebuilt banks needs no PyAV (a GPU machine may lack it)

    from ..yuv import i420_to_rgb, rgb_to_i420

    h, w = frames[0].shape[:2]
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt, enc.time_base = w, h, "yuv420p", Fraction(1, 25)
    enc.options = {"crf": str(crf), "preset": preset} | ({"tune": "zerolatency"} if preset == "veryfast" else {})
    packets = []
    for i, rgb in enumerate(frames):
        frame = rgb_to_i420(rgb)
        frame.pts = i
        packets += enc.encode(frame)
    packets += enc.encode(None)
    dec = av.CodecContext.create("h264", "r")
    out = [f for p in packets for f in dec.decode(p)] + list(dec.decode(None))
    return [i420_to_rgb(f) for f in out]


def h264_call(hr: np.ndarray, scale: int, rng: np.random.Generator, spec: Degradation = Degradation(),
              frames: int = 3) -> np.ndarray:
    """The LR of `hr` as the last frame of a short H.264 call clip in which the face moves slightly.

    Earlier frames are `hr` shifted and zoomed by up to a few HR pixels, so the last frame is
    inter-predicted from them, as nearly every frame of a call is. (sH, sW, 3) -> (H, W, 3).
    """
    h, w = hr.shape[:2]
    camera = Camera.draw(rng, spec)
    clip = []
    for k in range(frames - 1, -1, -1):  # the last frame is `hr` itself, so it stays aligned
        if k:
            m = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, 1.0 + rng.uniform(-0.02, 0.02) * k)
            m[:, 2] += rng.uniform(-2.0, 2.0, 2) * k
            moved = cv2.warpAffine(hr, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        else:
            moved = hr
        clip.append(camera(moved, scale, rng))
    crf = int(rng.integers(spec.h264_crf[0], spec.h264_crf[1] + 1))
    return h264_roundtrip(clip, crf)[-1]
