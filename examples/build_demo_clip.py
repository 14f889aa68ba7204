"""Build the bundled example clip: a short, low-resolution "video call" with two real faces.

The clip is what the examples and the set-up smoke test feed to facesr. It is synthesised at
set-up time instead of being committed, from two public-domain portraits that ship inside
registry packages we already depend on:

* ``skimage.data.astronaut()``: Eileen Collins, the main participant, in frame from the start;
* matplotlib's ``sample_data/grace_hopper.jpg``: Grace Hopper, who slides in from the right at
  about 2 s, is fully in frame by 3.5 s and stays to the end.

Each frame is first rendered at 1280x720 (the "ground truth"): a soft, out-of-focus room
background, the two people as feathered cut-outs with subtle head motion (a few pixels of
sway and a degree or so of rotation about the neck), and a slow camera pan/zoom over the
whole scene. The frame is then downscaled 4x with area interpolation to 320x180, where each
face is about 55 px tall: large enough for the face detector, small enough that super-
resolution visibly matters. The 320x180 clip is H.264 (crf 26) with a synthetic, speech-like
AAC audio track, so that audio pass-through can be demonstrated as well. Optionally the
1280x720 frames are also written (H.264 crf 16, no audio) as a reference for quality
measurements.

Everything is deterministic (fixed seed) and takes a few seconds to build.

Usage::

    python examples/build_demo_clip.py [OUT] [--reference REF.mp4] [--force]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from facesr.yuv import rgb_to_frame, tag_bt709

HR_SIZE = (1280, 720)  # (width, height) of the rendered ground-truth scene
DOWNSCALE = 4
LR_SIZE = (HR_SIZE[0] // DOWNSCALE, HR_SIZE[1] // DOWNSCALE)
AUDIO_RATE = 48_000
SEED = 2024
DEFAULT_OUT = Path(__file__).resolve().with_name("demo_call.mp4")

# Grace Hopper's entrance: starts sliding in at ENTER_START, settles at ENTER_END (seconds).
ENTER_START, ENTER_END = 2.0, 3.5


# --- geometry helpers (3x3 homogeneous matrices) ----------------------------------------------


def _translate(tx: float, ty: float) -> np.ndarray:
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def _scale(s: float) -> np.ndarray:
    return np.diag([s, s, 1.0])


def _rotate_about(degrees: float, cx: float, cy: float) -> np.ndarray:
    return np.vstack([cv2.getRotationMatrix2D((cx, cy), degrees, 1.0), [0.0, 0.0, 1.0]])


def _ease_out(x: float) -> float:
    """0 -> 1 on [0, 1], starting at full speed and coming smoothly to rest."""
    x = min(max(x, 0.0), 1.0)
    return 1.0 - (1.0 - x) ** 2


# --- the people -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    """A portrait cut out with a soft alpha, placed in the scene by its face box.

    ``rgba`` is the cut-out as premultiplied float32 RGBA in [0, 1]; ``face_box`` and ``neck``
    are in its (source photo) pixels. ``scale`` maps source to scene pixels, and ``face_at`` is
    where the centre of the face box sits in the scene before head motion.
    """

    rgba: np.ndarray
    face_box: tuple[float, float, float, float]  # x0, y0, x1, y1 (forehead to chin)
    neck: tuple[float, float]
    scale: float
    face_at: tuple[float, float]
    phases: np.ndarray  # random phases of the head-motion sinusoids
    sway_px: float = 3.0
    sway_deg: float = 1.2

    def to_scene(self, t: float, dx: float = 0.0) -> np.ndarray:
        """Source -> scene matrix at time t, shifted horizontally by dx scene pixels."""
        x0, y0, x1, y1 = self.face_box
        fx, fy = self.face_at[0] + dx, self.face_at[1]
        place = _translate(fx, fy) @ _scale(self.scale) @ _translate(-(x0 + x1) / 2, -(y0 + y1) / 2)
        # Head motion: slow, incommensurate sinusoids, so that it never looks like a loop.
        p = self.phases
        wave = lambda f, i: np.sin(2 * np.pi * f * t + p[i])  # noqa: E731
        sway_x = self.sway_px * (0.7 * wave(0.21, 0) + 0.3 * wave(0.53, 1))
        sway_y = 0.6 * self.sway_px * (0.7 * wave(0.17, 2) + 0.3 * wave(0.61, 3))
        angle = self.sway_deg * (0.75 * wave(0.13, 4) + 0.25 * wave(0.37, 5))
        nx, ny = (place @ [*self.neck, 1.0])[:2]
        return _translate(sway_x, sway_y) @ _rotate_about(angle, nx, ny) @ place

    def face_box_in(self, matrix: np.ndarray) -> tuple[float, float, float, float]:
        """Axis-aligned bounding box of the face box under a source -> image matrix."""
        x0, y0, x1, y1 = self.face_box
        corners = matrix @ np.array([[x0, x1, x1, x0], [y0, y0, y1, y1], [1, 1, 1, 1]])
        return corners[0].min(), corners[1].min(), corners[0].max(), corners[1].max()


def _cutout(rgb: np.ndarray, ellipses, polygons, *, feather: float = 4.0,
            pad_bottom: int = 0, pad_right: int = 0) -> np.ndarray:
    """Cut a person out of a photo with a soft alpha; returns premultiplied float32 RGBA.

    The alpha is the union of filled ellipses ((centre, axes)) and polygons, feathered with
    a Gaussian of sigma ``feather``. Where the body runs off the photo's bottom or right edge,
    the photo is continued by mirroring (``pad_*`` pixels), and the shapes may extend into
    that margin, so the cut-out never ends in a visible straight edge.
    """
    rgb = cv2.copyMakeBorder(rgb, 0, pad_bottom, 0, pad_right, cv2.BORDER_REFLECT)
    mask = np.zeros(rgb.shape[:2], np.uint8)
    for centre, axes in ellipses:
        cv2.ellipse(mask, centre, axes, 0, 0, 360, 255, -1, cv2.LINE_AA)
    for points in polygons:
        cv2.fillPoly(mask, [np.array(points, np.int32)], 255, cv2.LINE_AA)
    alpha = cv2.GaussianBlur(mask, (0, 0), feather, borderType=cv2.BORDER_REPLICATE)
    alpha = alpha.astype(np.float32) / 255.0
    return np.dstack([rgb.astype(np.float32) / 255.0 * alpha[..., None], alpha])


def _load_grace_hopper() -> np.ndarray:
    import matplotlib
    import matplotlib.cbook

    try:
        path = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    except (OSError, ValueError):
        path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"cannot read matplotlib sample image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _make_people(rng: np.random.Generator) -> tuple[Person, Person]:
    from skimage import data

    # Face height in the scene (forehead to chin); /4 gives ~55 px at 320x180.
    face_height = 220.0

    # Eileen Collins, 512x512: head and hair, the suit's collar ring, and the suit body.
    astronaut = data.astronaut()
    face_box = (172.0, 62.0, 282.0, 180.0)
    rgba = _cutout(
        astronaut,
        ellipses=[((228, 107), (72, 90))],
        polygons=[[(160, 150), (296, 150), (306, 250), (340, 288), (360, 330), (364, 512),
                   (24, 512), (28, 330), (50, 285), (114, 240), (128, 185)]],
    )
    collins = Person(
        rgba=rgba,
        face_box=face_box,
        neck=(228.0, 205.0),
        scale=face_height / (face_box[3] - face_box[1]),
        face_at=(440.0, 250.0),
        phases=rng.uniform(0, 2 * np.pi, 6),
    )

    # Grace Hopper, 512x600: cap, head, and a uniform jacket that runs off the right edge.
    hopper_rgb = _load_grace_hopper()
    face_box = (168.0, 146.0, 362.0, 328.0)
    rgba = _cutout(
        hopper_rgb,
        ellipses=[((266, 235), (101, 100))],
        polygons=[[(190, 48), (232, 28), (300, 26), (338, 52), (354, 88), (368, 122), (362, 148),
                   (164, 148), (158, 118), (170, 80)],
                  [(200, 300), (328, 312), (376, 352), (436, 384), (511, 448), (631, 560),
                   (631, 719), (28, 719), (28, 599), (40, 470), (62, 400), (120, 370), (190, 340)]],
        pad_bottom=120,
        pad_right=120,
    )
    hopper = Person(
        rgba=rgba,
        face_box=face_box,
        neck=(264.0, 345.0),
        scale=face_height / (face_box[3] - face_box[1]),
        face_at=(930.0, 290.0),
        phases=rng.uniform(0, 2 * np.pi, 6),
        sway_px=2.5,
        sway_deg=1.0,
    )
    return collins, hopper


# --- background and camera --------------------------------------------------------------------

BG_MARGIN = 64  # the background is rendered this much larger on each side than the scene


def _make_background(rng: np.random.Generator) -> np.ndarray:
    """A defocused room: warm wall lit from a window on the left, a picture, a lamp glow."""
    w, h = HR_SIZE[0] + 2 * BG_MARGIN, HR_SIZE[1] + 2 * BG_MARGIN
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    ys /= h
    xs /= w
    top = np.array([0.80, 0.76, 0.70], np.float32)
    bottom = np.array([0.56, 0.51, 0.46], np.float32)
    light = 1.0 - 0.22 * xs  # brighter towards the window
    bg = (top + (bottom - top) * ys[..., None]) * light[..., None]

    m = BG_MARGIN
    rect = lambda x0, y0, x1, y1: lambda a: cv2.rectangle(a, (m + x0, m + y0), (m + x1, m + y1), 1, -1)  # noqa: E731
    shapes = [  # (draws the shape on a mask, colour, opacity, blur sigma), in scene coordinates
        (rect(40, 30, 300, 360), (0.95, 0.95, 0.92), 0.85, 18),  # window, upper left
        (rect(165, 30, 175, 360), (0.62, 0.60, 0.57), 0.6, 6),  # its mullion
        (rect(1070, 80, 1250, 250), (0.30, 0.22, 0.16), 0.9, 5),  # picture frame, right
        (rect(1088, 98, 1232, 232), (0.45, 0.55, 0.62), 0.9, 6),  # the picture
        (lambda a: cv2.circle(a, (m + 1180, m + 430), 55, 1, -1), (1.0, 0.86, 0.62), 0.7, 30),  # lamp
        (rect(640, -80, 700, 800), (0.66, 0.62, 0.56), 0.35, 14),  # a door edge
    ]
    for draw, colour, opacity, blur in shapes:
        mask = np.zeros((h, w), np.float32)
        draw(mask)
        mask = cv2.GaussianBlur(mask, (0, 0), blur)[..., None] * opacity
        bg = bg * (1 - mask) + np.asarray(colour, np.float32) * mask

    # Smooth, low-contrast plaster texture plus a little fine grain, so nothing is flat.
    blotches = cv2.resize(rng.normal(0, 1, (h // 40, w // 40)).astype(np.float32), (w, h),
                          interpolation=cv2.INTER_CUBIC)
    bg += 0.018 * blotches[..., None]
    bg += rng.normal(0, 0.006, (h, w, 1)).astype(np.float32)
    return np.clip(bg, 0, 1).astype(np.float32)


def _camera(t: float, seconds: float) -> np.ndarray:
    """Scene -> frame matrix: a slow auto-framing zoom-out and pan to the right."""
    u = 0.5 - 0.5 * np.cos(np.pi * min(t / seconds, 1.0))  # 0 -> 1, gentle at both ends
    zoom = 1.06 - 0.04 * u
    # Pan within the range that keeps the view inside the scene at this zoom.
    cx = HR_SIZE[0] / 2 + (1 - 1 / zoom) * HR_SIZE[0] / 2 * (-0.8 + 1.1 * u)
    cy = HR_SIZE[1] / 2 + (1 - 1 / zoom) * HR_SIZE[1] / 2 * (-0.3 + 0.4 * u)
    return _translate(HR_SIZE[0] / 2, HR_SIZE[1] / 2) @ _scale(zoom) @ _translate(-cx, -cy)


# --- rendering --------------------------------------------------------------------------------


def _composite(frame: np.ndarray, rgba: np.ndarray, matrix: np.ndarray) -> None:
    """Warp premultiplied ``rgba`` by ``matrix`` and blend it over ``frame`` (in place).

    Only the frame region the warped image can reach is touched.
    """
    h, w = rgba.shape[:2]
    corners = (matrix @ np.array([[0, w, w, 0], [0, 0, h, h], [1, 1, 1, 1]]))[:2]
    x0, y0 = np.maximum(np.floor(corners.min(axis=1)).astype(int) - 2, 0)
    x1, y1 = np.minimum(np.ceil(corners.max(axis=1)).astype(int) + 2, frame.shape[1::-1])
    if x0 >= x1 or y0 >= y1:
        return
    layer = cv2.warpAffine(rgba, (_translate(-x0, -y0) @ matrix)[:2], (int(x1 - x0), int(y1 - y0)),
                           flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    region = frame[y0:y1, x0:x1]
    region *= 1.0 - np.clip(layer[..., 3:], 0.0, 1.0)
    region += layer[..., :3]


@dataclass(frozen=True)
class Scene:
    background: np.ndarray
    collins: Person
    hopper: Person
    seconds: float

    @classmethod
    def create(cls, seconds: float, seed: int = SEED) -> Scene:
        bg_rng, people_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
        collins, hopper = _make_people(people_rng)
        return cls(_make_background(bg_rng), collins, hopper, seconds)

    def layout(self, t: float) -> tuple[np.ndarray, list[tuple[Person, np.ndarray]]]:
        """Camera matrix and (person, source -> frame matrix) pairs, back to front."""
        cam = _camera(t, self.seconds)
        # She starts just out of view (her left shoulder at the right edge) and slows to rest.
        entering = 1.0 - _ease_out((t - ENTER_START) / (ENTER_END - ENTER_START))
        hopper_dx = 660.0 * entering
        return cam, [
            (self.hopper, cam @ self.hopper.to_scene(t, hopper_dx)),
            (self.collins, cam @ self.collins.to_scene(t)),
        ]

    def face_boxes(self, t: float, downscale: int = DOWNSCALE) -> dict[str, tuple]:
        """Approximate face boxes (x0, y0, x1, y1) in the downscaled frame, for checks."""
        _, people = self.layout(t)
        names = {id(self.collins): "collins", id(self.hopper): "hopper"}
        return {
            names[id(p)]: tuple(round(float(v) / downscale, 1) for v in p.face_box_in(m))
            for p, m in people
        }

    def render(self, t: float) -> np.ndarray:
        """The 1280x720 RGB uint8 frame at time t."""
        cam, people = self.layout(t)
        frame = cv2.warpAffine(self.background, (cam @ _translate(-BG_MARGIN, -BG_MARGIN))[:2],
                               HR_SIZE, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        for person, matrix in people:
            _composite(frame, person.rgba, matrix)
        return (np.clip(frame, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


# --- audio ------------------------------------------------------------------------------------

# Rough formant frequencies (Hz) of a few vowels, for a voice-like timbre.
_VOWELS = [(730, 1090, 2440), (530, 1840, 2480), (300, 870, 2240), (570, 840, 2410), (400, 2000, 2550)]


def speech_like_audio(seconds: float, rate: int = AUDIO_RATE, seed: int = SEED) -> np.ndarray:
    """Mono float32 "speech": voiced syllables in phrases, first one speaker, then another.

    A harmonic source with a gliding pitch, shaped by vowel formants and a syllable-rate
    envelope; quiet (about -24 dBFS RMS while talking, peaks at -10 dBFS) and free of clicks.
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[2])
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    out = np.zeros(n, np.float32)
    # (start, end, base pitch): the astronaut talks first, Grace Hopper after she has arrived.
    turns = [(0.3, min(2.3, seconds), 205.0), (ENTER_END + 0.2, seconds - 0.25, 165.0)]
    for start, end, f0 in turns:
        if end - start < 0.3:
            continue
        pitch = f0 * (1 + 0.06 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6.3)) - 0.04 * t / seconds)
        phase = 2 * np.pi * np.cumsum(pitch) / rate
        s = start
        while s < end - 0.15:
            dur = min(rng.uniform(0.14, 0.28), end - s)
            i0, i1 = int(s * rate), int((s + dur) * rate)
            envelope = np.sin(np.linspace(0, np.pi, i1 - i0)) ** 1.5
            formants = _VOWELS[rng.integers(len(_VOWELS))]
            syllable = np.zeros(i1 - i0)
            for k in range(1, 24):
                freq = k * f0
                if freq > 4000:
                    break
                gain = sum(np.exp(-0.5 * ((freq - fm) / (0.12 * fm)) ** 2) for fm in formants)
                syllable += (0.15 + gain) / k * np.sin(k * phase[i0:i1])
            out[i0:i1] += (envelope * syllable * rng.uniform(0.7, 1.0)).astype(np.float32)
            # Short gaps between syllables, longer ones between phrases.
            s += dur + (rng.uniform(0.25, 0.45) if rng.random() < 0.2 else rng.uniform(0.02, 0.07))
    peak = np.abs(out).max()
    return (out * (0.3 / peak) if peak > 0 else out).astype(np.float32)


# --- encoding ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _atomic_output(path: Path | None) -> Iterator[Path | None]:
    """Yield a temporary path next to ``path``; move it into place only on success."""
    if path is None:
        yield None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix or '.mp4'}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _add_video_stream(container, size: tuple[int, int], fps: int, crf: int):
    # A fixed thread count keeps the encoded bytes identical from machine to machine.
    stream = container.add_stream(
        "libx264", rate=fps, width=size[0], height=size[1], pix_fmt="yuv420p",
        time_base=Fraction(1, fps), options={"crf": str(crf), "preset": "medium", "threads": "2"},
    )
    tag_bt709(stream)  # as rgb_to_frame converts
    return stream


def _encode_video_frame(container, stream, rgb: np.ndarray, index: int, fps: int) -> None:
    frame = rgb_to_frame(rgb)
    frame.pts = index
    frame.time_base = Fraction(1, fps)
    container.mux(stream.encode(frame))


def build_demo_clip(out_path, *, reference_path=None, seconds: float = 6.0, fps: int = 25) -> Path:
    """Render the demo call and write it to ``out_path`` (320x180, H.264 + AAC, mp4).

    If ``reference_path`` is given, the 1280x720 ground-truth frames are written there too
    (H.264 crf 16, video only). Both files are written atomically. Returns ``out_path``.
    """
    out_path = Path(out_path)
    reference_path = Path(reference_path) if reference_path is not None else None
    n_frames = int(round(seconds * fps))
    if n_frames < 1:
        raise ValueError(f"clip too short: {seconds} s at {fps} fps")
    scene = Scene.create(seconds)
    audio = speech_like_audio(n_frames / fps)

    # Leaving the stack closes the containers first, then moves the finished files into place.
    with contextlib.ExitStack() as stack:
        lr_tmp = stack.enter_context(_atomic_output(out_path))
        ref_tmp = stack.enter_context(_atomic_output(reference_path))
        lr = stack.enter_context(av.open(str(lr_tmp), "w", format="mp4",
                                         container_options={"movflags": "+faststart"}))
        lr_video = _add_video_stream(lr, LR_SIZE, fps, crf=26)
        lr_audio = lr.add_stream("aac", rate=AUDIO_RATE, layout="mono", bit_rate=96_000)
        ref = ref_video = None
        if ref_tmp is not None:
            ref = stack.enter_context(av.open(str(ref_tmp), "w", format="mp4",
                                              container_options={"movflags": "+faststart"}))
            ref_video = _add_video_stream(ref, HR_SIZE, fps, crf=16)

        for index in range(n_frames):
            hr = scene.render(index / fps)
            if ref is not None:
                _encode_video_frame(ref, ref_video, hr, index, fps)
            lr_frame = cv2.resize(hr, LR_SIZE, interpolation=cv2.INTER_AREA)
            _encode_video_frame(lr, lr_video, lr_frame, index, fps)

            # The audio that goes with this video frame, so the two streams stay interleaved
            # (PyAV regroups it into the 1024-sample frames AAC wants).
            a0, a1 = (len(audio) * i // n_frames for i in (index, index + 1))
            frame = av.AudioFrame.from_ndarray(audio[None, a0:a1], format="fltp", layout="mono")
            frame.sample_rate = AUDIO_RATE
            frame.pts = a0
            frame.time_base = Fraction(1, AUDIO_RATE)
            lr.mux(lr_audio.encode(frame))

        lr.mux(lr_video.encode(None))
        lr.mux(lr_audio.encode(None))
        if ref is not None:
            ref.mux(ref_video.encode(None))
    return out_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", type=Path, default=DEFAULT_OUT,
                        help=f"output clip (default: {DEFAULT_OUT.name} next to this script)")
    parser.add_argument("--reference", type=Path, metavar="REF.mp4",
                        help="also write the 1280x720 ground-truth clip here")
    parser.add_argument("--force", action="store_true", help="rebuild even if OUT (and REF, if given) exist")
    args = parser.parse_args(argv)

    if not args.force and args.out.exists() and (args.reference is None or args.reference.exists()):
        print(f"{args.out} already exists; not rebuilding (use --force to rebuild)")
        return 0
    start = time.perf_counter()
    build_demo_clip(args.out, reference_path=args.reference)
    also = f" and 1280x720 reference {args.reference}" if args.reference else ""
    print(f"wrote {args.out} (320x180, 25 fps, H.264 + AAC){also} "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
