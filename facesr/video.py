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
* **Rotation.**  A display matrix (a phone's portrait clip: landscape frames that players
  turn) is applied: frames are turned upright after decoding, :func:`probe` gives the upright
  size, and the output is written upright, with no matrix.
* **Damaged or cut-off input.**  A packet that fails to decode is skipped, and a
  read error part way ends the input there; what was decoded is written and the
  returned stats say what was lost (``incomplete``: "decoded 64 of 150 frames
  (...)"), for the caller to report. A file that yields no video frame at all is
  a :class:`UserError`.
* **Atomic output.**  The result is written to a hidden temporary file beside
  ``dst`` and renamed onto it only on success; on any failure (including
  Ctrl-C, a full disk) the temporary file is removed and an existing ``dst`` is
  untouched. Where the folder has become read-only so that it cannot be removed,
  it is emptied and the error says so.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
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
import numpy as np
from tqdm import tqdm

from .errors import UserError
from .yuv import rgb_to_frame, tag_bt709

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
    frames_exact: bool = False  # `frames` is the count the container records, not an estimate from the duration
    rotation: int = 0  # degrees counterclockwise (0, 90, 180, 270) the stored frames are turned to show them upright;
    # width and height are the upright size

    @property
    def stored_size(self) -> tuple[int, int]:
        """(width, height) of the frames as decoded, before turning them upright."""
        return (self.height, self.width) if self.rotation in (90, 270) else (self.width, self.height)


def upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """A decoded frame turned as its display matrix says (`VideoInfo.rotation`)."""
    return np.ascontiguousarray(np.rot90(rgb, rotation // 90)) if rotation else rgb


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

    Returns ``{"frames", "expected_frames", "incomplete", "seconds", "fps", "skipped_frames",
    "codec", "audio"}``, where ``audio`` is ``"copy"``, the re-encoding codec's name, or ``None``,
    and ``incomplete`` is None or why fewer frames came out than the input announced.
    """
    src, dst = Path(src), Path(dst)
    out_w, out_h = (int(v) for v in out_size)
    if out_w <= 0 or out_h <= 0:
        raise ValueError(f"out_size must be positive, got {out_size}")
    fmt, codec, audio_fallback = check_output(src, dst, codec)
    container, info = _open_input(src)
    out = None
    tmp = None
    fd = -1  # kept open on the temporary file: it can still be emptied if the folder turns read-only
    try:
        fd, tmp_name = _make_temp(dst)
        tmp = Path(tmp_name)
        with _errors_as_user_error(dst, "cannot write"):
            out = av.open(str(tmp), "w", format=fmt)
        run = _Transcoder(container, out, info, (out_w, out_h), src, dst, (codec, crf, preset, audio_fallback), timer)
        stats = run.run(transform, progress, desc)
        with _errors_as_user_error(dst, "cannot finish writing"):
            out.close()
        with _errors_as_user_error(dst, "cannot move the finished video into place"):
            os.replace(tmp, dst)
        return stats
    except BaseException as exc:
        if out is not None:
            with contextlib.suppress(Exception):
                out.close()
        left = _remove_temp(tmp, fd) if tmp is not None else None
        if left and isinstance(exc, UserError):
            raise UserError(f"{exc}; {left}") from None
        raise
    finally:
        if fd >= 0:
            os.close(fd)
        container.close()


def _remove_temp(tmp: Path, fd: int) -> str | None:
    """Remove the temporary output; where that is impossible (a folder made read-only part way),
    empty it through the descriptor still open on it. None, or what was left behind."""
    try:
        tmp.unlink(missing_ok=True)
        return None
    except OSError as exc:
        why = _reason(exc)
    try:
        os.ftruncate(fd, 0)
        return f"could not remove the temporary file {tmp} ({why}): it is left empty"
    except OSError:
        return f"could not remove the temporary file {tmp} ({why})"


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
        info = _describe(container, path)
        rotation = _display_rotation(path)
    except BaseException:
        container.close()
        raise
    if rotation:  # the stored size read as the upright one's, turned: the same swap as stored_size
        w, h = dataclasses.replace(info, rotation=rotation).stored_size
        info = dataclasses.replace(info, width=w, height=h, rotation=rotation)
    return container, info


def _display_rotation(path: Path, max_packets: int = 64) -> int:
    """The first video frame's display matrix as a turn of 0, 90, 180 or 270 degrees counterclockwise
    (the nearest quarter turn). FFmpeg gives the matrix with the decoded frames, so one is decoded
    here, from a container of its own; 0 where none decodes."""
    try:
        with av.open(str(path), "r") as container:
            stream = container.streams.video[0]
            for i, packet in enumerate(container.demux(stream)):
                if i >= max_packets:
                    break
                for frame in _decode(packet, path, "video") or []:
                    return round((frame.rotation or 0) / 90) % 4 * 90
    except (av.FFmpegError, OSError, ValueError, IndexError, AttributeError):
        pass
    return 0


def read_frames(path: str | os.PathLike, limit: int | None = None) -> Iterator[np.ndarray]:
    """The first `limit` (default all) decoded frames of a video as (H, W, 3) uint8 RGB."""
    path = Path(path)
    container, info = _open_input(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        count = 0
        for packet in _demux(container, [stream], path):
            for frame in _decode(packet, path, "video") or []:
                if limit is not None and count >= limit:
                    return
                count += 1
                yield upright(frame.to_ndarray(format="rgb24"), info.rotation)
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
    return VideoInfo(ctx.width, ctx.height, fps, frames or None, duration, bool(container.streams.audio),
                     frames_exact=bool(vs.frames))


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
            if packet.size == 0:  # the empty packet demux yields at the end of the stream
                return []
            if packet.dts is None:
                self.dropped += 1
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
#
# Three threads, in order: decode -> transform (the calling thread) -> encode and mux.
# Decoding and encoding overlap the transform of the frames between them (PyAV, OpenCV and
# torch release the GIL while they work); bounded channels keep a few frames in flight and
# every frame and audio packet in its order. An error in any step stops all three and is
# raised in the calling thread, the transform's own exceptions unchanged.


@dataclass
class _VideoFrame:
    """A decoded frame on its way to the encoder; `image` becomes a Future while it is transformed."""

    image: np.ndarray | Future
    pts: int | None
    time_base: Fraction | None


@dataclass
class _AudioPackets:
    """Output audio packets, muxed between the video frames they came between."""

    packets: list


@dataclass
class _EndOfInput:
    pass


@dataclass
class _Failed:
    error: BaseException


class _Channel:
    """A bounded queue between two threads that gives up when `stop` is set."""

    def __init__(self, stop: threading.Event, size: int = 4):
        self._queue: queue.Queue = queue.Queue(maxsize=size)
        self._stop = stop

    def put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def get(self):
        """The next item, or None once stopped."""
        while not self._stop.is_set():
            try:
                return self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
        return None


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


class _Transcoder:
    """One run of `transcode`: the decoder thread, the transform in the calling thread, the encoder thread."""

    def __init__(self, container, out, info: VideoInfo, size: tuple[int, int], src: Path, dst: Path,
                 encoder: tuple[str, int | None, str | None, str], timer=None):
        codec, crf, preset, audio_fallback = encoder
        self.container, self.out, self.info, self.size, self.src, self.dst = container, out, info, size, src, dst
        self.video_in = container.streams.video[0]
        self.video_in.thread_type = "AUTO"
        audio_in = container.streams.audio[0] if container.streams.audio else None
        out_w, out_h = size
        self.enc_size = (out_w + out_w % 2, out_h + out_h % 2)
        self.video_out = _add_video_stream(out, codec, info, self.video_in, self.enc_size, crf, preset)
        self.audio = _Audio(out, audio_in, audio_fallback, src) if audio_in is not None else None
        self.streams = (self.video_in, audio_in) if audio_in is not None else (self.video_in,)
        self.stop = threading.Event()
        self.decoded, self.transformed = _Channel(self.stop), _Channel(self.stop)
        self.failures: list[BaseException] = []
        self.frames_written = 0
        self.damaged_packets = 0
        self.read_error: str | None = None
        self.decode_ms: list[float] = []
        self.encode_ms: list[float] = []
        self.timer = timer
        self.codec = codec

    # decoder thread
    def decode(self) -> None:
        """Demux and decode every packet in order; audio is (re-)decoded here too, one thread per input."""
        try:
            for packet in self._packets():
                if self.audio is not None and packet.stream_index != self.video_in.index:
                    if not self.decoded.put(_AudioPackets(self.audio.packets(packet))):
                        return
                elif not self._decode_video(packet):
                    return
            self.decoded.put(_EndOfInput())
        except BaseException as exc:  # handed to the calling thread, raised there
            self.decoded.put(_Failed(exc))

    def _packets(self):
        """The input's packets; a read error part way ends the input there (reported as incomplete)."""
        it = self.container.demux(*self.streams)
        while True:
            try:
                yield next(it)
            except StopIteration:
                return
            except (av.FFmpegError, OSError) as exc:
                self.read_error = _reason(exc)
                return

    def _decode_video(self, packet) -> bool:
        t0 = time.perf_counter()
        frames = _decode(packet, self.src, "video")
        if frames is None:
            self.damaged_packets += 1
            return True
        for frame in frames:
            # Scaled to the probed size, so a mid-stream resolution change (common in recorded
            # calls) still gives the transform the frame size it was set up for.
            w, h = self.info.stored_size
            rgb = upright(frame.to_ndarray(format="rgb24", width=w, height=h), self.info.rotation)
            self.decode_ms.append((time.perf_counter() - t0) * 1000.0)
            if not self.decoded.put(_VideoFrame(rgb, frame.pts, frame.time_base)):
                return False
            t0 = time.perf_counter()  # not counting the wait for room in the channel
        return True

    # calling thread
    def transform_all(self, transform: Transform) -> None:
        """Submit each decoded frame to the transform and hand results on in order."""
        submit, in_flight = _submitter(transform)
        pending: collections.deque = collections.deque()  # frames being transformed, audio between them
        while not self.failures:
            item = self.decoded.get()
            if item is None:
                return
            if isinstance(item, _Failed):
                raise item.error
            if isinstance(item, _VideoFrame):
                item.image = submit(item.image)
            pending.append(item)
            end = isinstance(item, _EndOfInput)
            self._hand_on(pending, keep=0 if end else in_flight)
            if end:
                return

    def _hand_on(self, pending: collections.deque, keep: int) -> None:
        """Pass finished items to the encoder in order, blocking until at most `keep` frames are in flight."""
        while pending:
            item = pending[0]
            if isinstance(item, _VideoFrame) and len(pending) <= keep and not item.image.done():
                return
            pending.popleft()
            if isinstance(item, _VideoFrame):
                item.image = item.image.result()  # the transform's own exception, unchanged
                _check_transformed(item.image, self.size)
            self.transformed.put(item)

    # encoder thread
    def encode(self, bar) -> None:
        last_time = None
        try:
            while (item := self.transformed.get()) is not None:
                if isinstance(item, _AudioPackets):
                    self._mux(item.packets)
                elif isinstance(item, _EndOfInput):
                    self._mux(self.video_out.encode(None))
                    if self.audio is not None:
                        self._mux(self.audio.flush())
                    return
                else:
                    t0 = time.perf_counter()
                    last_time = self._encode_frame(item, last_time)
                    self.encode_ms.append((time.perf_counter() - t0) * 1000.0)
                    bar.update(1)
        except BaseException as exc:
            self.failures.append(exc)
            self.stop.set()

    def _encode_frame(self, item: _VideoFrame, last_time: Fraction | None) -> Fraction:
        """Encode one frame with the input frame's own timestamp; one is invented only where it has
        none, and nudged forward in the (damaged-file) case where it does not increase."""
        vframe = _to_video_frame(item.image, self.size, self.enc_size, self.video_out.pix_fmt)
        pts, tb = item.pts, item.time_base or self.video_in.time_base
        if pts is None:
            pts, tb = round(self.frames_written / self.info.fps / self.video_in.time_base), self.video_in.time_base
        if last_time is not None and pts * tb <= last_time:
            pts = int(last_time / tb) + 1
        vframe.pts, vframe.time_base = pts, tb
        self._mux(self.video_out.encode(vframe))
        self.frames_written += 1
        return pts * tb

    def _mux(self, packets) -> None:
        with _errors_as_user_error(self.dst, "cannot write"):
            self.out.mux(packets)

    def run(self, transform: Transform, progress: bool, desc: str) -> dict:
        start = time.perf_counter()
        bar = tqdm(total=self.info.frames, unit="frame", desc=desc, disable=not progress, file=sys.stderr,
                   dynamic_ncols=True)
        reader = threading.Thread(target=self.decode, name="facesr-decode", daemon=True)
        writer = threading.Thread(target=self.encode, args=(bar,), name="facesr-encode", daemon=True)
        reader.start()
        writer.start()
        try:
            self.transform_all(transform)
            writer.join()
            if self.failures:
                raise self.failures[0]
        finally:
            self.stop.set()
            reader.join()
            writer.join()
            bar.close()
        return self._stats(time.perf_counter() - start)

    def _stats(self, seconds: float) -> dict:
        n = self.frames_written
        if n == 0:
            why = f": {self.read_error}" if self.read_error else ""
            raise UserError(f"{self.src}: no video frames could be decoded{why}")
        if self.timer is not None:
            self.timer.merge("decode", self.decode_ms)
            self.timer.merge("encode", self.encode_ms)
        if self.damaged_packets:
            log.info("%s: skipped %d undecodable video packet(s)", self.src, self.damaged_packets)
        if self.audio is not None and self.audio.dropped:
            log.info("%s: dropped %d damaged or out-of-order audio packet(s)", self.src, self.audio.dropped)
        return {
            "frames": n,
            "expected_frames": self.info.frames,
            "incomplete": _incomplete(n, self.info, self.damaged_packets, self.read_error),
            "seconds": seconds,
            "fps": n / seconds if seconds > 0 else float("inf"),
            "skipped_frames": self.damaged_packets,
            "codec": self.codec,
            "audio": self.audio.mode if self.audio is not None else None,
        }


def _incomplete(frames: int, info: VideoInfo, damaged: int, read_error: str | None) -> str | None:
    """Why the input gave fewer frames than it announced ("decoded 64 of 150 frames: ..."), or None."""
    expected = info.frames
    short = expected is not None and frames < (expected if info.frames_exact else 0.95 * expected - 1)
    if not (short or damaged or read_error):
        return None
    of = f" of {expected}" if expected else ""
    causes = [f"{damaged} damaged packet(s) skipped"] if damaged else []
    if read_error:
        causes.append(f"read error: {read_error}")
    elif short:
        causes.append("the input ends early")
    return f"decoded {frames}{of} frames ({'; '.join(causes)})"


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
