"""The evaluation protocol: the data every quality and speed number of facesr is measured on.

`facesr eval`, training's evaluation and the benchmarks all take their inputs from here, so
a number in one is comparable with a number in another:

* face photos: each image and its area-downscaled LR (`eval_pairs`);
* calls: a clip area-downscaled and compressed with H.264 at a call's quality
  (`make_call_clip`; `call_clip` caches it);
* bench scenes: no face, one face, a 2x2 gallery of faces, at a call size (`scene_clip`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from .errors import UserError
from .images import list_images, read_rgb
from .paths import cache_dir

if TYPE_CHECKING:
    from .video import VideoInfo

# PyAV (facesr.video) is imported where clips are made: the face photos and training need none.

SCENES = ("none", "one", "several")


def downscale(hr: np.ndarray, scale: int) -> np.ndarray:
    """Area downscaling by `scale`: the clean LR of the protocol (and of training's clean samples)."""
    h, w = hr.shape[:2]
    return cv2.resize(hr, (w // scale, h // scale), interpolation=cv2.INTER_AREA)


# --- face photos -------------------------------------------------------------------------


def eval_pairs(folder: str | os.PathLike, scale: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The standard evaluation: each image and its area-downscaled LR (cropped to a multiple of scale)."""
    pairs = []
    for path in list_images(folder):
        hr = read_rgb(path)
        h, w = (hr.shape[0] // scale) * scale, (hr.shape[1] // scale) * scale
        hr = np.ascontiguousarray(hr[:h, :w])
        pairs.append((downscale(hr, scale), hr))
    if not pairs:
        raise UserError(f"{folder}: no evaluation images found")
    return pairs


# --- calls ---------------------------------------------------------------------------------


def make_call_clip(src: str | os.PathLike, dst: str | os.PathLike, scale: int = 4, crf: int = 28,
                   progress: bool = False) -> VideoInfo:
    """Simulate a low-resolution call from a clip: area-downscale by `scale`, then H.264 at `crf`.

    Sizes are rounded down to even numbers (yuv420p); audio is carried over as usual.
    """
    from .video import probe, transcode

    info = probe(src)
    w, h = (info.width // scale) // 2 * 2, (info.height // scale) // 2 * 2

    def shrink(frame: np.ndarray) -> np.ndarray:
        return cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)

    transcode(src, dst, shrink, (w, h), crf=crf, preset="medium", progress=progress, desc="downscale")
    return probe(dst)


def call_clip(src: Path, scale: int, crf: int = 28) -> Path:
    """The clip as a call: area-downscaled by `scale`, H.264 at `crf`; made once, cached."""
    st = src.stat()
    dst = cache_dir() / "eval" / f"{src.stem}-{st.st_size}-x{scale}-crf{crf}.mp4"
    if not dst.is_file():
        dst.parent.mkdir(parents=True, exist_ok=True)
        make_call_clip(src, dst, scale=scale, crf=crf)
    return dst


# --- bench scenes ------------------------------------------------------------------------


# The shared clips each scene is made from (all framed 16:9, 1280x720):
# none: the room beside the person in talking_s18; one: talking_s18, a person in a room at
# webcam framing; several: four talking-head clips in a 2x2 grid (a gallery view).
SCENE_CLIPS = {
    "none": ("talking_s18.mp4",),
    "one": ("talking_s18.mp4",),
    "several": ("talking_d3.mp4", "talking_d6.mp4", "talking_d9.mp4", "talking_d10.mp4"),  # 30 fps, >= 354 frames
}


SCENES_VERSION = 2  # part of the cached clips' names: bump it when a scene changes


def _scene_frames(videos: Path, scene: str, frames: int):
    """HR (720, 1280, 3) RGB frames of a scene."""
    from .video import read_frames

    clips = SCENE_CLIPS[scene]
    missing = [c for c in clips if not (videos / c).is_file()]
    if missing:
        raise UserError(f"{videos}: missing {', '.join(missing)} (the bench scenes are made from ../shared/data/videos)")
    if scene == "one":
        yield from read_frames(videos / clips[0], frames)
    elif scene == "none":
        for f in read_frames(videos / clips[0], frames):
            room = f[:, :400]  # the left of the room: no one there
            yield cv2.resize(room[:225], (1280, 720), interpolation=cv2.INTER_LINEAR)
    else:
        readers = [read_frames(videos / c, frames) for c in clips]
        for tiles in zip(*readers):
            canvas = np.full((720, 1280, 3), 40, np.uint8)
            for i, tile in enumerate(tiles):  # each close-up fitted into a 640x360 cell
                y, x = divmod(i, 2)
                y0, x0 = y * 360, x * 640 + 140
                canvas[y0 : y0 + 360, x0 : x0 + 360] = cv2.resize(tile, (360, 360), interpolation=cv2.INTER_AREA)
            yield canvas


def scene_clip(videos: Path, scene: str, size: tuple[int, int], frames: int, cache: Path, crf: int = 28) -> Path:
    """The scene at `size` as a compressed call clip (cached)."""
    import av

    w, h = size
    path = cache / f"{scene}_v{SCENES_VERSION}_{w}x{h}_{frames}f_crf{crf}.mp4"
    if path.is_file():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=30, options={"crf": str(crf), "preset": "medium"})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for hr in _scene_frames(videos, scene, frames):
            lr = cv2.resize(hr, size, interpolation=cv2.INTER_AREA)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(lr, format="rgb24")))
        out.mux(stream.encode(None))
    tmp.replace(path)
    return path
