"""Reading a video frame by frame, transforming each frame, and writing the result.

PyAV does all the media work (no ffmpeg subprocesses).  The two entry points:

* :func:`probe` - size, frame rate, frame count and duration of a video file;
* :func:`transcode` - decode every frame as an RGB array, pass it through a
  ``transform`` (the super-resolution model), encode the result, and carry the
  audio across.

Design notes:

* **Streaming.**  Audio and video packets are demuxed together from the one
  input container, so memory does not grow with the length of the video.
* **Timestamps.**  Each output frame gets the decoded input frame's own ``pts``
  and ``time_base`` (the encoder works in the input stream's time base, so
  nothing is rounded).  Only a frame without a pts gets one synthesised from
  its index and the average frame rate.  The output stream's rate is the
  input's average rate.
* **Audio.**  The first audio stream is copied packet for packet (timestamps
  kept).  If the output container cannot hold that codec (e.g. AAC in .webm),
  it is decoded and re-encoded instead: Opus for .webm, AAC otherwise.
* **Encoding defaults.**  libx264 (.mp4/.mkv/.mov) with CRF 20 and the given
  ``preset``; libvpx-vp9 (.webm) in constant-quality mode with CRF 32,
  ``cpu-used`` 5 and row multithreading (``preset`` is an x264/x265 option
  and is ignored for VP9).  Other codecs keep their encoder's defaults unless
  ``crf`` is given.  Pixel format yuv420p wherever the codec supports it; the
  frame is padded to even dimensions by repeating its last row/column.
* **Colour.**  Frames are decoded to RGB with their own colour tags (PyAV does this); the
  output is converted with BT.709 limited range and tagged so.
* **Frame size.**  ``transform`` always gets frames of the probed (first) size:
  a stream that changes resolution midway is scaled back to it.
* **Corrupt frames.**  A packet that fails to decode in the middle of a file is
  skipped with a logged warning (counted in the returned stats); a file that
  yields no video frame at all is a :class:`UserError`.
* **Atomic output.**  The result is written to a hidden temporary file beside
  ``dst`` and renamed onto it only on success; on any failure (including
  Ctrl-C) the temporary file is removed and an existing ``dst`` is untouched.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import queue
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import av
import cv2
import numpy as np
from tqdm import tqdm

from .errors import UserError

log = logging.getLogger(__name__)

# Output extension -> (muxer name, default video codec, audio codec to re-encode to).
CONTAINERS = {
    ".mp4": ("mp4", "libx264", "aac"),
    ".mkv": ("matroska", "libx264", "aac"),
    ".mov": ("mov", "libx264", "aac"),
    ".webm": ("webm", "libvpx-vp9", "libopus"),
}
DEFAULT_CRF = {"libx264": 20, "libvpx-vp9": 32}
_PRESET_CODECS = ("libx264", "libx265")

Transform = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` finds out about a video file."""

    width: int
    height: int
    fps: Fraction  # the video stream's average frame rate
    frames: int | None  # frame count if known or estimable (for progress bars)
    duration: float | None  # seconds
    has_audio: bool


def probe(path: str | os.PathLike) -> VideoInfo:
    """Describe the first video stream of ``path``; :class:`UserError` if it is not a usable video."""
    container, info = _open_input(Path(path))
    container.close()
    return info


def transcode(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    transform: Transform,
    out_size: tuple[int, int],
    *,
    codec: str | None = None,
    crf: int | None = None,
    preset: str | None = "veryfast",
    progress: bool = True,
    desc: str = "facesr",
    timer=None,
) -> dict:
    """Re-encode ``src`` into ``dst`` with every video frame passed through ``transform``.

    ``transform`` gets an (H, W, 3) uint8 RGB array and must return an
    (out_h, out_w, 3) uint8 RGB array, where ``out_size == (out_w, out_h)``.
    Frame count, frame timestamps and audio are kept (see the module notes).
    The output container follows ``dst``'s extension (.mp4, .mkv, .mov, .webm).
    Exceptions raised by ``transform`` propagate unchanged (after cleanup).
    Decoding and encoding run in their own threads, overlapping the transform.
    ``timer`` (an Enhancer's StageTimer) also gets "decode" and "encode" ms per frame.

    Returns ``{"frames", "seconds", "fps", "skipped_frames", "codec", "audio"}``,
    where ``audio`` is ``"copy"``, the re-encoding codec's name, or ``None``.
    """
    src, dst = Path(src), Path(dst)
    out_w, out_h = (int(v) for v in out_size)
    if out_w <= 0 or out_h <= 0:
        raise ValueError(f"out_size must be positive, got {out_size}")
    fmt, codec, audio_fallback = check_output(src, dst, codec)
    container, info = _open_input(src)
    out = None
    tmp = None
    try:
        fd, tmp_name = _make_temp(dst)
        os.close(fd)
        tmp = Path(tmp_name)
        with _errors_as_user_error(dst, "cannot write"):
            out = av.open(str(tmp), "w", format=fmt)
        stats = _run(container, out, info, transform, (out_w, out_h), src, dst, codec, crf, preset,
                     audio_fallback, progress, desc, timer)
        with _errors_as_user_error(dst, "cannot finish writing"):
            out.close()
        os.replace(tmp, dst)
        return stats
    except BaseException:
        if out is not None:
            with contextlib.suppress(Exception):
                out.close()
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise
    finally:
        container.close()


# --- input -------------------------------------------------------------------------------


def _open_input(path: Path):
    """Open ``path`` for decoding; return (container, VideoInfo).  The caller closes the container."""
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, not a video file")
    if not path.is_file():
        raise UserError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: empty file")
    try:
        container = av.open(str(path), "r")
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a readable video file ({_reason(exc)})") from None
    try:
        return container, _describe(container, path)
    except BaseException:
        container.close()
        raise


def read_frames(path: str | os.PathLike, limit: int | None = None) -> Iterator[np.ndarray]:
    """The first `limit` (default all) decoded frames of a video as (H, W, 3) uint8 RGB."""
    path = Path(path)
    container, _ = _open_input(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        count = 0
        for packet in _demux(container, [stream], path):
            for frame in _decode(packet, path, "video") or []:
                if limit is not None and count >= limit:
                    return
                count += 1
                yield frame.to_ndarray(format="rgb24")
    finally:
        container.close()


def _describe(container, path: Path) -> VideoInfo:
    if not container.streams.video:
        raise UserError(f"{path}: no video stream")
    vs = container.streams.video[0]
    ctx = vs.codec_context
    if ctx is None or not ctx.width or not ctx.height:
        raise UserError(f"{path}: cannot decode its video stream")
    fps = vs.average_rate or vs.guessed_rate or vs.base_rate
    if not fps:
        raise UserError(f"{path}: unknown frame rate")
    fps = Fraction(fps)
    duration = None
    if vs.duration and vs.time_base:
        duration = float(vs.duration * vs.time_base)
    elif container.duration:
        duration = container.duration / av.time_base
    frames = vs.frames or (round(duration * fps) if duration else None)
    return VideoInfo(ctx.width, ctx.height, fps, frames or None, duration, bool(container.streams.audio))


# --- output ------------------------------------------------------------------------------


def check_output(src: str | os.PathLike, dst: str | os.PathLike, codec: str | None = None) -> tuple[str, str, str]:
    """Refuse a destination :func:`transcode` could not or must not write, before any work is done.

    Returns (muxer name, video codec, audio codec to re-encode to where copying is impossible).
    """
    src, dst = Path(src), Path(dst)
    suffix = dst.suffix.lower()
    if suffix not in CONTAINERS:
        raise UserError(
            f"{dst}: unsupported output extension {suffix or '(none)'}; use one of {', '.join(CONTAINERS)}"
        )
    fmt, default_codec, audio_fallback = CONTAINERS[suffix]
    codec = codec or default_codec
    _check_video_encoder(codec)
    _check_destination(src, dst)
    return fmt, codec, audio_fallback


def tag_bt709(stream) -> None:
    """Tag a video stream BT.709, limited range (HD video's convention), as `rgb_to_frame` converts.

    Players and decoders then turn the YUV back into the same colours instead of guessing.
    """
    cc = stream.codec_context
    cc.colorspace = cc.color_primaries = cc.color_trc = 1  # AVCOL_*_BT709
    cc.color_range = 1  # AVCOL_RANGE_MPEG


def rgb_to_frame(rgb: np.ndarray, pix_fmt: str = "yuv420p") -> av.VideoFrame:
    """An (H, W, 3) uint8 RGB array as a frame in `pix_fmt`, YUV formats by BT.709 limited range."""
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    if pix_fmt.startswith("yuv"):
        frame = frame.reformat(format=pix_fmt, dst_colorspace="ITU709", dst_color_range="MPEG")
    return frame


def rgb_to_i420(rgb: np.ndarray) -> av.VideoFrame:
    """An (H, W, 3) RGB array (even sides) as a yuv420p frame by OpenCV's BT.601 conversion.

    WebRTC's codecs and the training degradations use this pair: it round-trips without bias,
    where swscale's rgb24 path shifts every frame by about 1.3 levels.
    """
    return av.VideoFrame.from_ndarray(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YUV_I420), format="yuv420p")


def i420_to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """A decoded frame as (H, W, 3) uint8 RGB: OpenCV's inverse of `rgb_to_i420` for even-sided yuv420p."""
    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        return cv2.cvtColor(frame.to_ndarray(), cv2.COLOR_YUV2RGB_I420)  # (3H/2, W) planes -> (H, W, 3)
    return frame.to_ndarray(format="rgb24")


def _check_video_encoder(codec: str) -> None:
    try:
        enc = av.codec.Codec(codec, "w")
    except (av.codec.codec.UnknownCodecError, av.FFmpegError, ValueError):
        raise UserError(f"unknown video codec {codec!r}") from None
    if enc.type != "video":
        raise UserError(f"{codec!r} is not a video codec")


def _check_destination(src: Path, dst: Path) -> None:
    """Refuse outputs we could not (or must not) write, before anything is opened for writing."""
    parent = dst.parent
    if not parent.exists():
        raise UserError(f"{dst}: output directory {parent} does not exist")
    if not parent.is_dir():
        raise UserError(f"{dst}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{dst}: output directory {parent} is not writable")
    if dst.is_dir():
        raise UserError(f"{dst}: is a directory")
    same = src.resolve() == dst.resolve()
    if not same and src.exists() and dst.exists():
        with contextlib.suppress(OSError):
            same = os.path.samefile(src, dst)
    if same:
        raise UserError(f"{dst}: output would overwrite the input {src}")


def _make_temp(dst: Path):
    """A fresh hidden ``.<name>.<random>.part<suffix>`` file beside ``dst``."""
    try:
        fd, name = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.stem}.", suffix=f".part{dst.suffix}")
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 would make the finished video private
        return fd, name
    except OSError as exc:
        raise UserError(f"{dst}: cannot write to {dst.parent} ({_reason(exc)})") from None


def _add_video_stream(out, codec: str, info: VideoInfo, in_stream, size, crf, preset):
    enc = av.codec.Codec(codec, "w")
    formats = [f.name for f in enc.video_formats or []]
    pix_fmt = "yuv420p" if not formats or "yuv420p" in formats else formats[0]
    options = {}
    crf = DEFAULT_CRF.get(codec) if crf is None else crf
    if crf is not None:
        options["crf"] = str(crf)
    if codec in _PRESET_CODECS and preset:
        options["preset"] = preset
    if codec == "libvpx-vp9":
        options.update({"cpu-used": "5", "row-mt": "1"})
    try:
        vs = out.add_stream(codec, rate=info.fps, time_base=in_stream.time_base, options=options)
    except ValueError as exc:  # the muxer does not accept this codec
        raise UserError(f"cannot write video codec {codec!r} here: {exc}") from None
    vs.width, vs.height = size
    vs.pix_fmt = pix_fmt  # bit_rate stays 0, so libvpx-vp9 with a CRF runs in constant-quality mode
    if pix_fmt.startswith("yuv"):
        tag_bt709(vs)
    try:  # open now, so that bad settings (e.g. an unknown preset) get a clear message
        vs.codec_context.open()
    except (av.FFmpegError, ValueError) as exc:
        raise UserError(f"cannot set up the {codec} encoder with {options or 'defaults'}: {_reason(exc)}") from None
    return vs


class _Audio:
    """Carries the first audio stream across: copied packet for packet if the output container
    takes its codec, else decoded and re-encoded (Opus for .webm, AAC otherwise).

    Undecodable packets, and packets or frames whose timestamps go backwards (a damaged
    file), are dropped and counted in ``dropped``; the muxer would refuse the latter.
    """

    def __init__(self, out, in_stream, fallback: str, src: Path):
        self.src = src
        self.dropped = 0
        self.last = None  # time of the last packet (copy) or the end of the last frame (re-encode)
        try:
            self.stream = out.add_stream_from_template(in_stream)
            self.mode = "copy"
            return
        except ValueError:  # the muxer does not take this codec
            pass
        dec = in_stream.codec_context
        if dec is None:
            raise UserError(f"{src}: cannot decode its audio to convert it for this container")
        enc = av.codec.Codec(fallback, "w")
        rate = dec.sample_rate or 48000
        if enc.audio_rates and rate not in enc.audio_rates:
            rate = max(enc.audio_rates)
        self.stream = out.add_stream(fallback, rate=rate, time_base=Fraction(1, rate))
        self.stream.codec_context.layout = dec.layout if dec.channels else "stereo"
        self.mode = enc.name

    def packets(self, packet):
        """Output packets for one input audio packet."""
        if self.mode == "copy":
            if packet.dts is None:  # the empty flush packet demux yields at the end
                return []
            t = packet.dts * packet.time_base
            if self.last is not None and t <= self.last:
                self.dropped += 1
                return []
            self.last = t
            packet.stream = self.stream
            return [packet]
        frames = _decode(packet, self.src, "audio")
        if frames is None:
            self.dropped += 1
            return []
        out = []
        for frame in frames:
            if frame.pts is not None and frame.time_base:
                t = frame.pts * frame.time_base
                if self.last is not None and t < self.last:
                    self.dropped += 1
                    continue
                self.last = t + Fraction(frame.samples, frame.sample_rate)
            out += self.stream.encode(frame)
        return out

    def flush(self):
        return [] if self.mode == "copy" else self.stream.encode(None)


# --- the loop ----------------------------------------------------------------------------


def _submitter(transform: Transform) -> tuple[Callable[[np.ndarray], Future], int]:
    """(submit, frames in flight): a transform with ``submit`` (an Enhancer with several workers)
    works on ``workers`` frames at once; any other callable on one frame at a time, right away."""
    if hasattr(transform, "submit"):
        return transform.submit, getattr(transform, "workers", 1)

    def now(frame: np.ndarray) -> Future:
        future: Future = Future()
        future.set_result(transform(frame))
        return future

    return now, 0


def _run(container, out, info, transform, size, src, dst, codec, crf, preset, audio_fallback,
         progress, desc, timer=None) -> dict:
    """Three threads, in order: decode -> transform (this thread) -> encode and mux.

    Decoding and encoding overlap the transform of the frames between them (PyAV, OpenCV
    and torch release the GIL while they work); bounded queues keep a few frames in flight
    and every frame and audio packet in its order. A transform with ``submit`` (an Enhancer
    with several workers) transforms that many frames at once in threads of its own. An error
    in any step stops all three and is raised here, the transform's own exceptions unchanged.
    """
    ivs = container.streams.video[0]
    ivs.thread_type = "AUTO"
    ias = container.streams.audio[0] if container.streams.audio else None
    out_w, out_h = size
    enc_size = (out_w + out_w % 2, out_h + out_h % 2)
    ovs = _add_video_stream(out, codec, info, ivs, enc_size, crf, preset)
    audio = _Audio(out, ias, audio_fallback, src) if ias is not None else None
    streams = (ivs, ias) if ias is not None else (ivs,)

    decoded: queue.Queue = queue.Queue(maxsize=4)
    transformed: queue.Queue = queue.Queue(maxsize=4)
    stop = threading.Event()
    failures: list[BaseException] = []
    counts = {"frames": 0, "skipped": 0}
    decode_ms: list[float] = []
    encode_ms: list[float] = []

    def put(q: queue.Queue, item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def get(q: queue.Queue):
        while not stop.is_set():
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                continue
        return ("stopped",)

    def read() -> None:
        try:
            for packet in _demux(container, streams, src):
                if ias is not None and packet.stream_index == ias.index:
                    # Audio is decoded (where it is re-encoded) here, with the demuxing: one thread
                    # per input container. Only the muxing happens in the encode thread.
                    if not put(decoded, ("audio", audio.packets(packet))):
                        return
                    continue
                t0 = time.perf_counter()
                frames = _decode(packet, src, "video")
                if frames is None:
                    counts["skipped"] += 1
                    continue
                for frame in frames:
                    # Scaled to the probed size, so a mid-stream resolution change (common in
                    # recorded calls) still gives the transform the frame size it was set up for.
                    rgb = frame.to_ndarray(format="rgb24", width=info.width, height=info.height)
                    ms = (time.perf_counter() - t0) * 1000.0
                    if not put(decoded, ("video", rgb, frame.pts, frame.time_base, ms)):
                        return
                    t0 = time.perf_counter()  # not counting the wait for room in the queue
            put(decoded, ("end",))
        except BaseException as exc:  # handed to the main thread, raised there
            put(decoded, ("error", exc))

    def write(bar) -> None:
        n = 0
        last_time = None
        try:
            while True:
                item = get(transformed)
                kind = item[0]
                if kind == "stopped":
                    return
                if kind == "audio":
                    with _errors_as_user_error(dst, "cannot write"):
                        out.mux(item[1])
                    continue
                if kind == "end":
                    with _errors_as_user_error(dst, "cannot write"):
                        out.mux(ovs.encode(None))
                        if audio is not None:
                            out.mux(audio.flush())
                    counts["frames"] = n
                    return
                _, rgb, pts, tb = item
                t0 = time.perf_counter()
                vframe = _to_video_frame(rgb, size, enc_size, ovs.pix_fmt)
                # Keep the input frame's own timestamp; invent one only where it has none,
                # and nudge it forward in the (damaged-file) case where it does not increase.
                tb = tb or ivs.time_base
                if pts is None:
                    pts, tb = round(n / info.fps / ivs.time_base), ivs.time_base
                if last_time is not None and pts * tb <= last_time:
                    pts = int(last_time / tb) + 1
                vframe.pts, vframe.time_base = pts, tb
                last_time = pts * tb
                with _errors_as_user_error(dst, "cannot write"):
                    out.mux(ovs.encode(vframe))
                encode_ms.append((time.perf_counter() - t0) * 1000.0)
                n += 1
                bar.update(1)
        except BaseException as exc:
            failures.append(exc)
            stop.set()

    start = time.perf_counter()
    bar = tqdm(total=info.frames, unit="frame", desc=desc, disable=not progress, file=sys.stderr,
               dynamic_ncols=True)
    reader = threading.Thread(target=read, name="facesr-decode", daemon=True)
    writer = threading.Thread(target=write, args=(bar,), name="facesr-encode", daemon=True)
    reader.start()
    writer.start()
    submit, in_flight = _submitter(transform)
    pending: collections.deque = collections.deque()  # video frames being transformed, audio between them

    def hand_on(keep: int) -> None:
        """Pass finished items to the encoder in order, blocking until at most `keep` frames are in flight."""
        while pending and (pending[0][0] != "video" or len(pending) > keep or pending[0][1].done()):
            item = pending.popleft()
            if item[0] == "video":
                _, future, pts, tb = item
                result = future.result()  # the transform's own exception, unchanged
                _check_transformed(result, size)
                item = ("video", result, pts, tb)
            put(transformed, item)

    try:
        while not failures:
            item = get(decoded)
            kind = item[0]
            if kind == "error":
                raise item[1]
            if kind == "stopped":
                break
            if kind == "video":
                _, rgb, pts, tb, ms = item
                decode_ms.append(ms)
                item = ("video", submit(rgb), pts, tb)
            pending.append(item)
            hand_on(0 if kind == "end" else in_flight)
            if kind == "end":
                break
        writer.join()
        if failures:
            raise failures[0]
    finally:
        stop.set()
        reader.join()
        writer.join()
        bar.close()
    n, skipped = counts["frames"], counts["skipped"]
    if n == 0:
        raise UserError(f"{src}: no video frames could be decoded")
    if timer is not None:
        timer.merge("decode", decode_ms)
        timer.merge("encode", encode_ms)
    if skipped:
        log.warning("%s: skipped %d undecodable video packet(s)", src, skipped)
    if audio is not None and audio.dropped:
        log.warning("%s: dropped %d damaged or out-of-order audio packet(s)", src, audio.dropped)
    seconds = time.perf_counter() - start
    return {
        "frames": n,
        "seconds": seconds,
        "fps": n / seconds if seconds > 0 else float("inf"),
        "skipped_frames": skipped,
        "codec": codec,
        "audio": audio.mode if audio is not None else None,
    }


def _demux(container, streams, src: Path):
    it = container.demux(*streams)
    while True:
        try:
            packet = next(it)
        except StopIteration:
            return
        except (av.FFmpegError, OSError) as exc:
            raise UserError(f"{src}: read error ({_reason(exc)})") from None
        yield packet


def _decode(packet, src: Path, kind: str):
    """Decoded frames of ``packet``, or None if it is corrupt (the caller counts and reports it)."""
    try:
        return packet.decode()
    except av.FFmpegError as exc:
        log.debug("%s: undecodable %s packet at pts %s (%s)", src, kind, packet.pts, _reason(exc))
        return None


def _check_transformed(rgb, size) -> None:
    out_w, out_h = size
    if not (isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.shape == (out_h, out_w, 3)):
        got = f"{rgb.dtype} {rgb.shape}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
        raise ValueError(f"transform must return uint8 ({out_h}, {out_w}, 3), got {got}")


def _to_video_frame(rgb, size, enc_size, pix_fmt) -> av.VideoFrame:
    out_w, out_h = size
    pad_h, pad_w = enc_size[1] - out_h, enc_size[0] - out_w
    if pad_h or pad_w:
        rgb = np.pad(rgb, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return rgb_to_frame(np.ascontiguousarray(rgb), pix_fmt)


@contextlib.contextmanager
def _errors_as_user_error(path: Path, what: str):
    try:
        yield
    except (av.FFmpegError, OSError) as exc:
        raise UserError(f"{path}: {what} ({_reason(exc)})") from None


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def make_call_clip(src: str | os.PathLike, dst: str | os.PathLike, scale: int = 4, crf: int = 28,
                   progress: bool = False) -> VideoInfo:
    """Simulate a low-resolution call from a clip: area-downscale by `scale`, then H.264 at `crf`.

    Sizes are rounded down to even numbers (yuv420p); audio is carried over as usual.
    """
    import cv2

    info = probe(src)
    w, h = (info.width // scale) // 2 * 2, (info.height // scale) // 2 * 2

    def shrink(frame: np.ndarray) -> np.ndarray:
        return cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)

    transcode(src, dst, shrink, (w, h), crf=crf, preset="medium", progress=progress, desc="downscale")
    return probe(dst)
