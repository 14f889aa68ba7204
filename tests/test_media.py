"""Media broken in the middle, and odd but valid media: each works or fails with one line and a
non-zero exit, never a traceback, a partial output file or a hang.

Through the command line in this process (helpers.facesr), the real `lite` Enhancer. A clip
damaged part way keeps what could be decoded and exits 4 (errors.EXIT_INCOMPLETE); everything
else that fails exits 1 and leaves the output directory as it was.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from facesr.errors import EXIT_ERROR, EXIT_INCOMPLETE
from helpers import ROOT, assert_clean_failure, decode_rgb, facesr, on_canvas

pytestmark = pytest.mark.slow


def scene(w: int, h: int, i: int, face: np.ndarray) -> np.ndarray:
    """A face on a grey canvas, moving a pixel a frame, with a white block in the top-left corner (which way is up)."""
    img = on_canvas(face, (w, h), (w // 3 + i % 8, max(0, h // 2 - face.shape[0] // 2)))
    img[: h // 6, : w // 6] = 255
    return img


def write_clip(path: Path, size=(96, 64), frames: int = 20, *, pix_fmt: str = "yuv420p", codec: str = "libx264",
               pts: list[int] | None = None, streams: int = 1, face: np.ndarray | None = None,
               rotation_matrix: tuple | None = None) -> Path:
    """A clip of `scene` frames. pts: each frame's time in ms (variable frame rate). streams: more video
    streams (half size). rotation_matrix: an MP4 track matrix written into tkhd, as a phone writes it."""
    w, h = size
    face = face if face is not None else np.full((h // 2, h // 2, 3), 200, np.uint8)
    with av.open(str(path), "w") as out:
        outs = []
        for k in range(streams):
            s = out.add_stream(codec, rate=25)
            s.width, s.height = (w, h) if k == 0 else (w // 2 // 2 * 2, h // 2 // 2 * 2)
            s.pix_fmt = pix_fmt
            if pts is not None:
                s.codec_context.time_base = s.time_base = Fraction(1, 1000)
            outs.append(s)
        for i in range(frames):
            for s in outs:
                img = cv2.resize(scene(w, h, i, face), (s.width, s.height), interpolation=cv2.INTER_AREA)
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                frame.pts, frame.time_base = (i, Fraction(1, 25)) if pts is None else (pts[i], Fraction(1, 1000))
                out.mux(s.encode(frame))
        for s in outs:
            out.mux(s.encode(None))
    if rotation_matrix is not None:
        data = bytearray(path.read_bytes())
        at = data.find(b"tkhd")
        version = data[at + 4]
        matrix = at + 8 + (32 if version == 1 else 20) + 16  # after the times, track id, duration, reserved, layer...
        data[matrix : matrix + 36] = struct.pack(">9i", *rotation_matrix)
        path.write_bytes(bytes(data))
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


@pytest.fixture(scope="module")
def face(astronaut) -> np.ndarray:
    return cv2.resize(astronaut[40:360, 100:420], (40, 40), interpolation=cv2.INTER_AREA)


def run(src: Path, dst: Path, *extra) -> tuple:
    before = digest(src)
    ran = facesr("video", src, dst, "-q", *extra)
    assert digest(src) == before, "the input changed"
    assert "Traceback" not in ran.stderr, ran.stderr
    return ran


def frame_times(path: Path) -> list[float]:
    with av.open(str(path)) as c:
        return [float(f.pts * f.time_base) for f in c.decode(video=0)]


# --- broken in the middle -----------------------------------------------------------------------------


def test_clip_overwritten_in_the_middle_keeps_what_decodes_and_says_what_was_lost(tmp_path, face):
    src = write_clip(tmp_path / "call.mp4", (96, 64), frames=60, face=face)
    data = bytearray(src.read_bytes())
    at = data.find(b"mdat") - 4  # the media data box: the packets, between the header and the index
    size = struct.unpack(">I", data[at : at + 4])[0]
    mid, span = at + size // 2, size // 6
    data[mid : mid + span] = np.random.default_rng(0).integers(0, 256, span, dtype=np.uint8).tobytes()
    src.write_bytes(bytes(data))
    ran = run(src, tmp_path / "big.mp4")
    assert ran.returncode == EXIT_INCOMPLETE, ran.stderr
    line = ran.stderr.strip().splitlines()[-1]
    assert line.startswith("facesr: incomplete input:") and "of 60 frames" in line and "damaged" in line, line
    assert len(ran.stderr.strip().splitlines()) == 1
    got = decode_rgb(tmp_path / "big.mp4")
    assert 20 <= len(got) < 60 and got[0].shape == (256, 384, 3)
    assert leftovers(tmp_path, {"call.mp4", "big.mp4"}) == []


# --- odd but valid ------------------------------------------------------------------------------------


def test_phone_clip_with_a_rotation_comes_out_upright(tmp_path, face):
    # A phone held upright records landscape frames and a track matrix that says "turn 90 degrees
    # clockwise to show" (this is the matrix phones write; ffprobe calls it rotation -90).
    src = write_clip(tmp_path / "phone.mp4", (96, 64), frames=10, face=face,
                     rotation_matrix=(0, 1 << 16, 0, -(1 << 16), 0, 0, 0, 0, 1 << 30))
    dst = tmp_path / "big.mp4"
    ran = run(src, dst)
    assert ran.returncode == 0, ran.stderr
    got = decode_rgb(dst)
    assert len(got) == 10 and got[0].shape == (96 * 4, 64 * 4, 3)  # portrait: 64x96 shown, x4
    # the stored frame's top-left white block is at the top-right once turned clockwise
    first = got[0].astype(np.float32)
    h, w = first.shape[:2]
    assert first[: h // 8, -w // 8 :].mean() > 230 and first[: h // 8, : w // 8].mean() < 200
    with av.open(str(dst)) as c:  # written upright, so no player turns it again
        assert next(c.decode(video=0)).rotation == 0


@pytest.mark.parametrize("name, kwargs", [
    ("odd size 321x181 (4:4:4)", dict(size=(321, 181), pix_fmt="yuv444p")),
    ("odd size 321x181 (4:2:0, FFV1)", dict(size=(321, 181), codec="ffv1")),
    ("10-bit", dict(pix_fmt="yuv420p10le")),
    ("4:4:4", dict(pix_fmt="yuv444p")),
])
def test_odd_but_valid_sources_work(tmp_path, face, name, kwargs):
    ext = ".mkv" if kwargs.get("codec") == "ffv1" else ".mp4"
    src = write_clip(tmp_path / f"in{ext}", frames=12, face=face, **kwargs)
    dst = tmp_path / "big.mp4"
    ran = run(src, dst)
    assert ran.returncode == 0, ran.stderr
    got = decode_rgb(dst)
    w, h = kwargs.get("size", (96, 64))
    assert len(got) == 12 and got[0].shape[:2] == (h * 4 + h * 4 % 2, w * 4 + w * 4 % 2)
    ref = cv2.resize(scene(w, h, 0, face), (w * 4, h * 4), interpolation=cv2.INTER_CUBIC)
    assert np.abs(got[0][: h * 4, : w * 4].astype(np.float32) - ref).mean() < 12  # the picture, not noise


def test_variable_frame_rate_keeps_each_frames_time(tmp_path, face):
    pts = [0, 40, 80, 200, 210, 220, 500, 540, 580, 1000, 1033, 1066, 1100, 1500]
    src = write_clip(tmp_path / "vfr.mp4", frames=len(pts), pts=pts, face=face)
    dst = tmp_path / "big.mp4"
    ran = run(src, dst)
    assert ran.returncode == 0, ran.stderr
    assert np.allclose(frame_times(dst), np.array(pts) / 1000, atol=0.002)


def test_two_video_streams_use_the_first(tmp_path, face):
    src = write_clip(tmp_path / "two.mkv", (96, 64), frames=12, streams=2, face=face)
    dst = tmp_path / "big.mkv"
    ran = run(src, dst)
    assert ran.returncode == 0, ran.stderr
    with av.open(str(dst)) as c:
        assert len(c.streams.video) == 1
    got = decode_rgb(dst)
    assert len(got) == 12 and got[0].shape == (256, 384, 3)


def test_a_video_stream_with_no_frames_fails_in_one_line(tmp_path):
    src = tmp_path / "empty.mp4"
    with av.open(str(src), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 96, 64, "yuv420p"
        a = out.add_stream("aac", rate=44100)
        a.codec_context.layout = "mono"
        for i in range(20):  # audio only: the video stream never gets a packet
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 44100, i * 1024, Fraction(1, 44100)
            out.mux(a.encode(frame))
        out.mux(a.encode(None))
    ran = run(src, tmp_path / "big.mp4")
    assert ran.returncode == EXIT_ERROR
    assert_clean_failure(ran, "empty.mp4")
    assert leftovers(tmp_path, {"empty.mp4"}) == []


# --- the output disk ----------------------------------------------------------------------------------

# A small tmpfs needs a mount namespace: root (or `unshare -rm`) in a sandbox. The facesr process runs in it.
def can_mount() -> str | None:
    if not shutil.which("unshare"):
        return "no unshare"
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt && umount /mnt"],
                           capture_output=True, text=True)
    return None if probe.returncode == 0 else f"cannot mount a tmpfs here: {probe.stderr.strip()}"


IN_SMALL_DISK = r"""
mount -t tmpfs -o size={size} tmpfs "$OUTDIR" || exit 99
"$@"
echo "status:$?"
echo "left:$(ls -A "$OUTDIR" | tr '\n' ' ')"
"""


def test_output_disk_full_fails_in_one_line_and_leaves_nothing(tmp_path, face):
    why = can_mount()
    if why:
        pytest.skip(why)
    src = write_clip(tmp_path / "call.mp4", (160, 96), frames=40, face=face)
    before = digest(src)
    outdir = tmp_path / "disk"
    outdir.mkdir()
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c", IN_SMALL_DISK.format(size="256k"), "sh",
         sys.executable, "-m", "facesr", "video", str(src), str(outdir / "big.mp4"), "-q", "--crf", "0"],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=os.environ | {"OUTDIR": str(outdir)})
    out = dict(line.split(":", 1) for line in proc.stdout.strip().splitlines())
    assert out["status"] == str(EXIT_ERROR), (proc.stdout, proc.stderr)
    assert_clean_failure(subprocess.CompletedProcess([], 1, "", proc.stderr), "No space left on device")
    assert out["left"].strip() == "", proc.stdout  # nothing left in the full folder
    assert digest(src) == before


def test_output_folder_made_read_only_mid_write(tmp_path, face):
    why = can_mount()
    if why:
        pytest.skip(why)
    src = write_clip(tmp_path / "call.mp4", (96, 64), frames=40, face=face)
    outdir = tmp_path / "out"
    outdir.mkdir()
    script = r"""
import os, subprocess, sys, threading
from facesr import video
from facesr.errors import UserError
src, dst, outdir = sys.argv[1:4]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", outdir], check=True)
count = [0]
def transform(frame):
    count[0] += 1
    if count[0] == 10:  # mid-write: the folder goes read-only (a read-only bind mount over it)
        subprocess.run(["mount", "--bind", outdir, outdir], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", outdir], check=True)
    import cv2
    return cv2.resize(frame, (frame.shape[1] * 4, frame.shape[0] * 4))
h, w = 64, 96
try:
    video.transcode(src, dst, transform, (w * 4, h * 4), progress=False)
    print("status: ok")
except UserError as exc:
    print("status: error:", exc)
print("left:", " ".join(sorted(os.listdir(outdir))))
print("sizes:", " ".join(str(os.path.getsize(os.path.join(outdir, n))) for n in sorted(os.listdir(outdir))))
"""
    proc = subprocess.run(["unshare", "-m", sys.executable, "-c", script, str(src), str(outdir / "big.mp4"), str(outdir)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert "Traceback" not in proc.stderr, proc.stderr
    out = dict(line.split(":", 1) for line in proc.stdout.strip().splitlines())
    # the folder cannot be written, so the temporary file cannot be removed: it is emptied, and the error says so
    status = out["status"].strip()
    assert status.startswith("error") and "read-only" in status.lower() and "left empty" in status, proc.stdout
    left = out["left"].split()
    assert all(name.startswith(".big.") and name.endswith(".part.mp4") for name in left), proc.stdout
    assert "big.mp4" not in left
    assert out["sizes"].split() == ["0"] * len(left), proc.stdout


# --- a camera that disappears -------------------------------------------------------------------------


class VanishingCamera:
    """A real clip as a camera that is unplugged after `after` frames: a read error, or the frames just end."""

    def __init__(self, path: str, after: int, how: str) -> None:
        self.real = av.open(path)
        self.after, self.how = after, how

    def __getattr__(self, name):
        return getattr(self.real, name)

    def decode(self, stream):
        for i, frame in enumerate(self.real.decode(stream)):
            if i == self.after:
                if self.how == "read error":
                    raise OSError(19, "No such device")  # ENODEV, what V4L2 says when the camera goes
                return
            yield frame


@pytest.mark.network
@pytest.mark.parametrize("how", ["read error", "frames stop"])
def test_a_camera_that_disappears_stops_the_relay_cleanly(private_network, tmp_path, face, monkeypatch, how):
    from facesr.stream import source as source_module

    clip = write_clip(tmp_path / "cam.mp4", (96, 64), frames=60, face=face)
    monkeypatch.setattr(source_module, "open_source", lambda src, options=None: VanishingCamera(str(clip), 30, how))
    # the relay runs in this (main) thread, for its signal handlers; a timer stops it as Ctrl-C would if it hangs
    timer = threading.Timer(60, lambda: os.kill(os.getpid(), signal.SIGINT))
    t = time.monotonic()
    timer.start()
    try:
        got = facesr("stream", "--input", "/dev/video42", "--webrtc", "--port", "0")
    finally:
        timer.cancel()
    assert time.monotonic() - t < 55, "the relay did not stop after its camera went away"
    assert got.returncode == EXIT_ERROR and "Traceback" not in got.stderr, got.stderr
    last = got.stderr.strip().splitlines()[-1]
    assert last.startswith("facesr: error: --input /dev/video42: lost after") and "frames" in last, last
    assert ("No such device" if how == "read error" else "stopped sending") in last
