"""Helpers the tests share: paths, the known face boxes, synthetic clips, picture comparisons and the CLI.

Imported as `from helpers import ...`: pyproject's [tool.pytest.ini_options] pythonpath puts
tests/ (and examples/, for build_demo_clip) on sys.path. Fixtures live in conftest.py.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
WEIGHTS = ROOT / "weights" / "lite-x4.safetensors"

# Known face boxes (x0, y0, x1, y1) in the original photos, read off BlazeFace and checked by eye.
ASTRONAUT_FACE = (177, 82, 272, 177)
GRACE_HOPPER_FACE = (171, 146, 365, 340)


# --- the team's data ---------------------------------------------------------------------------


def shared_path(*parts: str) -> Path:
    """A path in ../shared beside the checkout (for data/..., $FACESR_DATA first).

    Absent: the test skips, except under CI (`CI` set), where missing data is a failure.
    Tests that call this carry the `shared_data` marker.
    """
    candidates = []
    if parts and parts[0] == "data" and os.environ.get("FACESR_DATA"):
        candidates.append(Path(os.environ["FACESR_DATA"]).joinpath(*parts[1:]))
    candidates.append(SHARED.joinpath(*parts))
    for path in candidates:
        if path.exists():
            return path
    message = f"{' and '.join(map(str, candidates))} absent: ../shared holds the project's test data beside the checkout"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set: missing data is a failure, not a skip)")
    pytest.skip(message)


# --- pictures ----------------------------------------------------------------------------------


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def downscale(img: np.ndarray, s: int) -> np.ndarray:
    h, w = img.shape[:2]
    return cv2.resize(img, (w // s, h // s), interpolation=cv2.INTER_AREA)


def bicubic(img: np.ndarray, s: int) -> np.ndarray:
    """A plain bicubic upscale: what facesr must beat on the faces (and gives everywhere else)."""
    return cv2.resize(img, (img.shape[1] * s, img.shape[0] * s), interpolation=cv2.INTER_CUBIC)


def on_canvas(photo: np.ndarray, size=(1280, 720), at=(0, 0), canvas: np.ndarray | None = None) -> np.ndarray:
    """Place a photo on a grey canvas (a call-like frame with room around the face)."""
    w, h = size
    out = np.full((h, w, 3), 118, np.uint8) if canvas is None else canvas.copy()
    x, y = at
    ph, pw = photo.shape[:2]
    out[y : y + ph, x : x + pw] = photo[: h - y, : w - x]
    return out


def face_mask(enhanced: np.ndarray, plain: np.ndarray, level: float = 6.0) -> np.ndarray:
    """Where the Enhancer changed the bicubic picture (the faces), as a boolean (H, W) mask."""
    diff = np.abs(enhanced.astype(np.float32) - plain.astype(np.float32)).mean(axis=2)
    return cv2.GaussianBlur(diff, (0, 0), 2.0) > level


def mad(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Mean absolute difference of two (H, W, 3) pictures inside `mask`."""
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32))[mask].mean())


@dataclass
class Likeness:
    """How a picture's faces compare with the Enhancer's output and with a plain bicubic upscale.

    gain: how much of the Enhancer's change to the bicubic picture the picture holds, as the
    projection of (picture - bicubic) on (enhanced - bicubic) over the faces: 1 the Enhancer's
    picture, 0 bicubic. A video codec in between blurs both alike and adds noise that does not
    correlate with the Enhancer's change, so the gain falls somewhat but stays far from 0.
    """

    gain: float
    to_enhanced: float  # mean absolute difference on the faces
    to_bicubic: float
    face_pixels: int

    @property
    def enhanced(self) -> bool:
        """Clearly the Enhancer's faces (allowing for one leg of a video codec)."""
        return self.gain > 0.5

    @property
    def plain_bicubic(self) -> bool:
        return abs(self.gain) < 0.2


def likeness(picture: np.ndarray, enhanced: np.ndarray, plain: np.ndarray, min_pixels: int = 2000) -> Likeness:
    """Compare `picture` with `enhanced` and `plain` (bicubic) where those two differ: the faces."""
    mask = face_mask(enhanced, plain)
    assert mask.sum() >= min_pixels, f"the Enhancer changed only {mask.sum()} pixels: no face to compare on"
    change = (enhanced.astype(np.float64) - plain)[mask]
    got = (picture.astype(np.float64) - plain)[mask]
    gain = float((got * change).sum() / (change * change).sum())
    return Likeness(round(gain, 3), mad(picture, enhanced, mask), mad(picture, plain, mask), int(mask.sum()))


# --- clips -------------------------------------------------------------------------------------

W, H, N = 64, 48, 40
SAMPLE_RATE = 44100


def make_clip(path: Path, *, rate=Fraction(25), frames=N, video=True, audio=True) -> Path:
    """A moving gradient whose brightness changes per frame, plus an optional AAC sine tone (mono)."""
    rate = Fraction(rate)
    total = int(SAMPLE_RATE * frames / rate)
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(total) / SAMPLE_RATE)).astype(np.float32)
    y, x = np.mgrid[0:H, 0:W]
    with av.open(str(path), "w") as out:
        if video:
            vs = out.add_stream("libx264", rate=rate, options={"preset": "veryfast"})
            vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        if audio:
            aus = out.add_stream("aac", rate=SAMPLE_RATE)
            aus.codec_context.layout = "mono"
        sent = 0  # audio samples sent so far
        for i in range(frames):
            if video:
                level = 30 + (i * 5) % 180
                img = np.stack([(x * 2 + i * 3) % 64 + level, y + level, np.full_like(x, level)], axis=-1)
                frame = av.VideoFrame.from_ndarray(img.clip(0, 255).astype(np.uint8), format="rgb24")
                frame.pts, frame.time_base = i, 1 / rate
                out.mux(vs.encode(frame))
            while audio and sent < min(total, int(SAMPLE_RATE * (i + 1) / rate)):
                chunk = tone[sent : sent + 1024][None, :]
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                frame.sample_rate, frame.pts, frame.time_base = SAMPLE_RATE, sent, Fraction(1, SAMPLE_RATE)
                out.mux(aus.encode(frame))
                sent += chunk.shape[1]
        if video:
            out.mux(vs.encode(None))
        if audio:
            out.mux(aus.encode(None))
    return path


def decode_rgb(path: Path) -> list[np.ndarray]:
    """Every video frame of a file as (H, W, 3) uint8 RGB."""
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


# --- the command line --------------------------------------------------------------------------


@dataclass
class Ran:
    """What a `facesr` command did: as subprocess.CompletedProcess has it."""

    returncode: int
    stdout: str
    stderr: str


def facesr(*args) -> Ran:
    """`facesr ARGS` in this process (`facesr.cli.main`), its exit status and what it printed."""
    from facesr.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in args])
        except SystemExit as exc:  # argparse
            rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return Ran(rc, out.getvalue(), err.getvalue())


def facesr_process(*args, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    """`python -m facesr ARGS` as a real process: for what only a process shows (the entry point, signals)."""
    return subprocess.run([sys.executable, "-m", "facesr", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=timeout)


def assert_clean_failure(proc, *words: str) -> None:
    """A non-zero exit with one line on stderr, `facesr: error: ...`, naming each of `words`."""
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{proc.stderr}"
    assert lines[0].startswith("facesr: error:") and "Traceback" not in proc.stderr, lines[0]
    for word in words:
        assert word in lines[0], lines[0]


# --- the browser tests: Debian's Chromium through Selenium ---------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = ROOT / "out" / "test-artifacts"  # screenshots the browser tests leave


def chromium(camera: Path, profile: Path):
    """Headless Chromium driven by Selenium, its fake camera playing `camera` (a .y4m), a fresh profile,
    no background traffic."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                 f"--use-file-for-fake-video-capture={camera}", "--allow-loopback-in-peer-connection",
                 "--autoplay-policy=no-user-gesture-required", "--window-size=1400,1000", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))


@contextlib.contextmanager
def facesr_server(*args: str):
    """`facesr ARGS` (stream --webrtc, serve) as users run it, as a process on a free port: yields its URL
    once it says where it listens, and stops it with Ctrl-C."""
    import re
    import signal

    proc = subprocess.Popen([sys.executable, "-m", "facesr", *args, "--port", "0"], cwd=ROOT,
                            stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if m := re.search(r"open (http://\S+/)", line):
                yield m.group(1)
                break
        else:
            pytest.fail(f"facesr {' '.join(args)} never said where it listens")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        proc.stderr.close()


def wait_for(driver, script: str, timeout: float, what: str):
    """The truthy value of `script` in the page once it has one; an AssertionError naming `what` after `timeout` s."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.2)
    status = driver.execute_script("var s = document.getElementById('status'); return s ? s.textContent : ''")
    raise AssertionError(f"timed out waiting for {what} (page status: {status})")
