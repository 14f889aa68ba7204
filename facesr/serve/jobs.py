"""The jobs behind `facesr serve`: what an upload is (judged by decoding it), and the queue that enhances them.

Each upload is saved under a name of the server's choosing (`<workdir>/<job id>/upload`): the
name the person gave is only ever used, cleaned, in the download name. `inspect_upload` decides
from the file's content whether it is a photo (JPEG, PNG, WebP: Pillow reads its header) or a
video (MP4, MOV, WebM: PyAV opens the container and its video stream), and refuses the rest.

`JobQueue` runs `jobs` jobs at a time in worker threads (never on the event loop), the others
waiting in the order they came. A job's files are deleted `keep_seconds` after it finished
(`sweep`), when it is deleted, and all of them when the queue closes.
"""

from __future__ import annotations

import itertools
import logging
import re
import shutil
import tempfile
import threading
import time
import unicodedata
import uuid
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError
from .options import ServeOptions

log = logging.getLogger("facesr.serve")

MODES = ("faces", "whole")
IMAGE_FORMATS = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WebP"}  # Pillow's name -> ours
VIDEO_FORMATS = ("mov", "mp4", "webm", "matroska")  # FFmpeg demuxer names (mov,mp4,m4a,... and matroska,webm)
ACCEPTED = "a photo (JPEG, PNG, WebP) or a video (MP4, MOV, WebM)"
JOB_ID = re.compile(r"^[0-9a-f]{32}$")


class Refused(Exception):
    """An upload the server will not take: the HTTP status and a one-line reason."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Cancelled(Exception):
    """The job was deleted, or the server is stopping."""


@dataclass(frozen=True)
class Media:
    kind: str  # "image" or "video"
    format: str  # "JPEG", "PNG", "WebP", or the container ("mp4", "webm", ...)
    width: int
    height: int
    seconds: float | None = None
    frames: int | None = None
    audio: bool = False


def _clock(seconds: float) -> str:
    """4.5 s, 59 s, 2:05 min."""
    if seconds < 60:
        return f"{seconds:.3g} s"
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d} min"


def inspect_upload(path: Path, opts: ServeOptions) -> Media:
    """What the file at `path` is, by its content; `Refused` (415, or 413 for too big a picture or
    too long a video) with a one-line reason otherwise. A file cut off or damaged after its
    header passes here and fails in its job, where the decoder finds out."""
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = None  # the size is checked below, from the header, before any decoding
    try:
        with Image.open(path) as im:
            fmt, (w, h) = im.format, im.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        fmt = None
    if fmt is not None:
        if fmt not in IMAGE_FORMATS:
            raise Refused(415, f"a {fmt} image is not accepted: upload {ACCEPTED}")
        if w * h > opts.max_image_pixels:
            raise Refused(413, f"the photo is {w}x{h}: the limit is {opts.max_image_pixels / 1e6:.1f} megapixels")
        return Media("image", IMAGE_FORMATS[fmt], w, h)
    return _inspect_video(path, opts)


def _inspect_video(path: Path, opts: ServeOptions) -> Media:
    import av

    try:
        container = av.open(str(path), "r")
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError):
        raise Refused(415, f"not {ACCEPTED}") from None
    try:
        names = container.format.name.split(",")
        if not any(n in VIDEO_FORMATS for n in names):
            raise Refused(415, f"a {names[0]} file is not accepted: upload {ACCEPTED}")
        if not container.streams.video:
            raise Refused(415, f"the {names[0]} file has no video stream: upload {ACCEPTED}")
        vs = container.streams.video[0]
        w, h = vs.codec_context.width, vs.codec_context.height
        if not w or not h:
            raise Refused(415, "the video stream has no picture size: upload a playable video")
        seconds = None
        if vs.duration and vs.time_base:
            seconds = float(vs.duration * vs.time_base)
        elif container.duration:
            seconds = container.duration / av.time_base
        if seconds is not None and seconds > opts.max_video_seconds:
            raise Refused(413, f"the video is {_clock(seconds)} long: the limit is {_clock(opts.max_video_seconds)}")
        if w * h > opts.max_video_pixels:
            raise Refused(413, f"the video is {w}x{h}: the limit is {opts.max_video_pixels:,} pixels a frame "
                               "(1280x720)")
        return Media("video", "webm" if "webm" in names else names[0], w, h, seconds, vs.frames or None,
                     bool(container.streams.audio))
    finally:
        container.close()


def safe_stem(filename: str | None) -> str:
    """A download name's stem from what the person called the file: ASCII letters, digits, - and _ only."""
    from urllib.parse import unquote

    stem = Path(unquote(str(filename or "")).replace("\\", "/")).stem  # some clients percent-encode the name
    stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_-")[:60]
    return stem or "upload"


@dataclass
class Job:
    id: str
    seq: int
    dir: Path
    media: Media
    mode: str
    model: str  # the spec load_generator takes: "lite", "srgan@0.5", a .safetensors path
    label: str  # the model as the person chose it
    stem: str
    state: str = "queued"
    error: str | None = None
    done: int = 0  # frames (video) or tiles (whole photo) or 0/1 (faces in a photo)
    total: int | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None  # time.monotonic()
    finished: float | None = None  # time.monotonic()
    seconds: float | None = None  # how long it ran
    faces: list[list[int]] = field(default_factory=list)  # face boxes in the result, x0 y0 x1 y1
    result: Path | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    future: Future | None = None

    @property
    def upload(self) -> Path:
        return self.dir / "upload"

    @property
    def unit(self) -> str:
        return "frames" if self.media.kind == "video" else "tiles" if self.mode == "whole" else "images"

    @property
    def download_name(self) -> str:
        return f"{self.stem}_facesr_x4{'.mp4' if self.media.kind == 'video' else '.png'}"

    @property
    def progress(self) -> float:
        if self.state == "done":
            return 1.0
        if self.state != "running" or not self.total:
            return 0.0
        return min(self.done / self.total, 0.99)

    def eta(self) -> float | None:
        """Seconds left, from the pace so far (None until there is one)."""
        p = self.progress
        if self.state != "running" or self.started is None or p < 0.02:
            return None
        elapsed = time.monotonic() - self.started
        return max(0.0, elapsed / p * (1 - p))


class _CountingResolver:
    """A SuperResolver that counts the tiles `upscale_tiled` sends it (for progress) and stops on cancel."""

    def __init__(self, resolver, job: Job, stopping: threading.Event):
        self.resolver, self.job, self.stopping = resolver, job, stopping
        self.scale = resolver.scale

    def __call__(self, crops):
        _check_cancel(self.job, self.stopping)
        out = self.resolver(crops)
        self.job.done += 1
        return out


def tile_count(h: int, w: int, tile: int, overlap: int = 16) -> int:
    """How many tiles superres.upscale_tiled runs over an h x w image."""
    tile = max(tile, 4 * overlap, 16)
    if h <= tile and w <= tile:
        return 1
    step = tile - 2 * overlap

    def along(n: int) -> int:
        starts = list(range(0, max(n - tile, 0) + 1, step))
        return len(starts) + (starts[-1] + tile < n)

    return along(h) * along(w)


def _check_cancel(job: Job, stopping: threading.Event) -> None:
    if job.cancel.is_set() or stopping.is_set():
        raise Cancelled("cancelled")


class JobQueue:
    """Jobs in, `opts.jobs` at a time in worker threads, the rest in order; their files kept `opts.keep_seconds`."""

    def __init__(self, opts: ServeOptions):
        self.opts = opts
        self.root = Path(tempfile.mkdtemp(prefix="facesr-serve-", dir=opts.workdir))
        self.jobs: dict[str, Job] = {}
        self.reserved = 0  # uploads being received: they count against max_queue too
        self.running = 0
        self.peak_running = 0  # the most jobs that ever ran at once (the tests check --jobs holds)
        self.stopping = threading.Event()
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=opts.jobs, thread_name_prefix="facesr-job")
        self._generators: OrderedDict[str, object] = OrderedDict()
        self._generators_lock = threading.Lock()

    # --- admission -------------------------------------------------------------------------

    def active(self) -> int:
        return sum(j.state in ("queued", "running") for j in self.jobs.values()) + self.reserved

    def reserve(self) -> Path | None:
        """A fresh folder for an upload about to be received, or None when the queue is full."""
        with self._lock:
            if self.stopping.is_set() or self.active() >= self.opts.max_queue:
                return None
            self.reserved += 1
        folder = self.root / uuid.uuid4().hex
        folder.mkdir()
        return folder

    def release(self, folder: Path, keep: bool = False) -> None:
        """The upload into `folder` is over: either it became a job (`keep`) or its folder goes."""
        with self._lock:
            self.reserved -= 1
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)

    def submit(self, folder: Path, media: Media, mode: str, model: str, label: str, filename: str | None) -> Job:
        job = Job(folder.name, next(self._seq), folder, media, mode, model, label, safe_stem(filename))
        job.total = 1 if media.kind == "image" and mode == "faces" else None
        with self._lock:
            self.jobs[job.id] = job
        job.future = self._pool.submit(self._run, job)
        return job

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id) if JOB_ID.match(job_id) else None

    def ahead(self, job: Job) -> int:
        """Jobs that will start before this queued one."""
        return sum(j.state == "queued" and j.seq < job.seq for j in list(self.jobs.values()))

    # --- running ---------------------------------------------------------------------------

    def _run(self, job: Job) -> None:
        if job.cancel.is_set() or self.stopping.is_set():
            return
        with self._lock:
            self.running += 1
            self.peak_running = max(self.peak_running, self.running)
        job.started = time.monotonic()
        job.state = "running"
        state, error = "failed", "interrupted"
        try:
            if job.media.kind == "image":
                self._image(job)
            else:
                self._video(job)
            state, error = "done", None
        except Cancelled:
            error = "cancelled"
        except UserError as exc:
            error = self._public(job, str(exc))
        except Exception as exc:  # a bug: the job fails with one line, the server stays up
            log.exception("job %s failed", job.id)
            error = f"internal error: {type(exc).__name__}: {self._public(job, str(exc))}"
        finally:
            job.finished = time.monotonic()
            job.seconds = job.finished - job.started
            with self._lock:
                self.running -= 1
            if state == "failed":
                self._delete_files(job)
            job.state, job.error = state, error  # published last: a failed job's files are gone by then

    def _public(self, job: Job, message: str) -> str:
        """An error for the page: the server's paths replaced by what the person uploaded, one line."""
        message = message.replace(str(job.upload), "the file").replace(str(job.dir), "").replace(str(self.root), "")
        return " ".join(message.split())

    def generator(self, spec: str):
        """A loaded generator, shared by jobs (a few kept: blended GAN strengths are models of their own)."""
        from ..weights import load_generator

        with self._generators_lock:
            if spec in self._generators:
                self._generators.move_to_end(spec)
                return self._generators[spec]
            net = load_generator(spec, self.opts.scale)
            self._generators[spec] = net
            while len(self._generators) > 4:
                self._generators.popitem(last=False)
            return net

    def _frame_transform(self, job: Job, fps: float = 30.0):
        """(transform, closer): the job's mode as a function of one RGB frame, and what releases it."""
        from ..enhancer import Enhancer
        from ..options import EnhancerOptions
        from ..superres import SuperResolver, upscale_tiled

        generator = self.generator(job.model)
        if job.mode == "faces":
            opts = EnhancerOptions(model=job.model, scale=self.opts.scale, device=self.opts.device,
                                   precision=self.opts.precision)
            enhancer = Enhancer.from_options(opts, generator=generator, fps=fps)
            return enhancer, enhancer.close
        resolver = SuperResolver(generator, self.opts.device, self.opts.precision)
        counting = _CountingResolver(resolver, job, self.stopping)
        tile = self.opts.tile

        def whole(frame: np.ndarray) -> np.ndarray:
            return upscale_tiled(frame, counting if job.media.kind == "image" else resolver, tile=tile)

        return whole, (lambda: None)

    def _image(self, job: Job) -> None:
        from ..images import read_rgb, write_rgb
        from ..superres import bicubic_upscale

        img = read_rgb(job.upload)  # a cut-off or undecodable file fails the job here, with a reason
        if job.mode == "whole":
            job.total = tile_count(img.shape[0], img.shape[1], self.opts.tile)
        transform, close = self._frame_transform(job)
        try:
            _check_cancel(job, self.stopping)
            big = transform(img)
        finally:
            close()
        job.done = job.total or 1
        _check_cancel(job, self.stopping)
        s = big.shape[0] // img.shape[0]
        write_rgb(job.dir / "bicubic.png", bicubic_upscale(img, s))  # the compare view's other half
        job.faces = self._faces(img, s)
        write_rgb(job.dir / "result.png", big)
        job.result = job.dir / "result.png"

    def _video(self, job: Job) -> None:
        from ..images import write_rgb
        from ..superres import bicubic_upscale
        from ..video import probe, read_frames, transcode

        info = probe(job.upload)
        job.total = info.frames
        s = self.opts.scale
        preview_at = max(0, (info.frames or 1) // 2)
        kept: dict[str, np.ndarray] = {}
        transform, close = self._frame_transform(job, fps=float(info.fps) or 30.0)

        def step(frame: np.ndarray) -> np.ndarray:
            _check_cancel(job, self.stopping)
            out = transform(frame)
            if job.done in (0, preview_at):  # the compare view's frame: the middle one, or the first of a short read
                kept["input"], kept["index"] = frame, job.done
            job.done += 1
            return out

        result = job.dir / "result.mp4"
        try:
            stats = transcode(job.upload, result, step, (info.width * s, info.height * s), progress=False)
        finally:
            close()
        if stats["incomplete"]:
            result.unlink(missing_ok=True)
            raise UserError(f"the video is cut off or damaged: {stats['incomplete']}")
        job.total = job.done = stats["frames"]
        # the compare view: one frame, bicubic | facesr as encoded in the result
        *_, enhanced = read_frames(result, kept["index"] + 1)
        write_rgb(job.dir / "bicubic.png", bicubic_upscale(kept["input"], s))
        write_rgb(job.dir / "preview.png", enhanced)
        job.faces = self._faces(kept["input"], s)
        job.result = result

    def _faces(self, img: np.ndarray, s: int) -> list[list[int]]:
        """The faces in `img`, largest first, as boxes in the result (for the page's zoom)."""
        from ..detect import FaceDetector

        try:
            with FaceDetector("full") as detector:
                found = detector(np.ascontiguousarray(img))
        except UserError:
            return []
        boxes = sorted((d.box for d in found), key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))
        return [[int(round(v * s)) for v in box] for box in boxes[:8]]

    # --- deleting --------------------------------------------------------------------------

    def _delete_files(self, job: Job) -> None:
        shutil.rmtree(job.dir, ignore_errors=True)
        job.result = None

    def delete(self, job: Job) -> None:
        """Forget a job and delete its files (a running one stops at its next frame or tile)."""
        job.cancel.set()
        if job.future is not None:
            job.future.cancel()
        with self._lock:
            self.jobs.pop(job.id, None)
        if job.state != "running":
            self._delete_files(job)
        else:  # its worker deletes the files when it stops
            job.future.add_done_callback(lambda _: self._delete_files(job))

    def sweep(self, now: float | None = None) -> int:
        """Delete the jobs that finished more than keep_seconds ago; how many went."""
        now = time.monotonic() if now is None else now
        old = [j for j in list(self.jobs.values())
               if j.finished is not None and now - j.finished >= self.opts.keep_seconds]
        for job in old:
            self.delete(job)
        return len(old)

    def close(self, wait: float = 10.0) -> None:
        """Stop: queued jobs are dropped, running ones stop at their next frame or tile, every file goes."""
        self.stopping.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + wait
        while self.running and time.monotonic() < deadline:
            time.sleep(0.05)
        shutil.rmtree(self.root, ignore_errors=True)
