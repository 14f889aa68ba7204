"""The command line as users meet it: real subprocesses, real files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from facesr.images import read_rgb, write_rgb
from facesr.video import probe
from conftest import ROOT
from test_video import make_clip


def facesr(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "facesr", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def assert_clean_failure(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{proc.stderr}"
    assert lines[0].startswith("facesr: error:") and "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0]


@pytest.fixture(scope="module")
def demo_clip(tmp_path_factory) -> Path:
    sys.path.insert(0, str(ROOT / "examples"))
    from build_demo_clip import build_demo_clip

    return build_demo_clip(tmp_path_factory.mktemp("demo") / "call.mp4", seconds=2.0)


def test_video_round_trip_keeps_frames_fps_timestamps_and_audio(demo_clip, tmp_path):
    out = tmp_path / "out.mp4"
    proc = facesr("video", demo_clip, out, "--quiet")
    assert proc.returncode == 0, proc.stderr
    src, dst = probe(demo_clip), probe(out)
    assert (dst.width, dst.height) == (src.width * 4, src.height * 4)
    assert dst.fps == src.fps and dst.has_audio
    with av.open(str(demo_clip)) as a, av.open(str(out)) as b:
        ta = [f.time for f in a.decode(video=0)]
        tb = [f.time for f in b.decode(video=0)]
        assert len(ta) == len(tb) == 50
        assert np.allclose(ta, tb, atol=1e-3)
        assert b.streams.audio[0].codec_context.name == a.streams.audio[0].codec_context.name


def test_side_by_side_and_background_only(demo_clip, tmp_path):
    sbs, bic = tmp_path / "sbs.mkv", tmp_path / "bic.mp4"
    assert facesr("video", demo_clip, sbs, "--side-by-side", "-q").returncode == 0
    assert facesr("video", demo_clip, bic, "--background-only", "-q").returncode == 0
    assert (probe(sbs).width, probe(sbs).height) == (2 * 1280, 720)
    assert (probe(bic).width, probe(bic).height) == (1280, 720)


def test_image_file_and_folder(astronaut, grace_hopper, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    write_rgb(src / "astronaut.png", astronaut[::4, ::4])
    write_rgb(src / "hopper.jpg", grace_hopper[::4, ::4])
    (src / "notes.txt").write_text("not an image")
    proc = facesr("image", src, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["astronaut.png", "hopper.png"]
    assert read_rgb(tmp_path / "out" / "hopper.png").shape == (600, 512, 3)
    proc = facesr("image", src / "astronaut.png", tmp_path / "full.png", "--full-frame", "--tile", "48")
    assert proc.returncode == 0, proc.stderr
    assert read_rgb(tmp_path / "full.png").shape == (512, 512, 3)


# --- bad input: one line, non-zero exit, nothing left behind ----------------------------


@pytest.fixture
def inputs(tmp_path) -> dict[str, Path]:
    d = tmp_path / "inputs"
    d.mkdir()
    (d / "empty.mp4").write_bytes(b"")
    (d / "corrupt.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    (d / "text.mp4").write_text("hello, this is not a video\n")
    make_clip(d / "audio.m4a", video=False)
    make_clip(d / "good.mp4")
    return d


@pytest.mark.parametrize("name,words", [
    ("missing.mp4", ["missing.mp4"]),
    ("empty.mp4", ["empty.mp4"]),
    ("corrupt.mp4", ["corrupt.mp4"]),
    ("text.mp4", ["text.mp4"]),
    ("audio.m4a", ["audio.m4a"]),
])
def test_video_bad_inputs(inputs, tmp_path, name, words):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert_clean_failure(facesr("video", inputs / name, out_dir / "x.mp4"), *words)
    assert list(out_dir.iterdir()) == []


def test_video_bad_outputs(inputs, tmp_path):
    good = inputs / "good.mp4"
    before = sorted(p.name for p in inputs.iterdir())
    assert_clean_failure(facesr("video", good, tmp_path / "no" / "such" / "dir.mp4"))
    assert_clean_failure(facesr("video", good, good))
    assert_clean_failure(facesr("video", good, inputs / ".." / "inputs" / "good.mp4"))
    assert_clean_failure(facesr("video", good, inputs / "out.xyz"), ".xyz")
    (tmp_path / "afile").write_text("x")
    assert_clean_failure(facesr("video", good, tmp_path / "afile" / "out.mp4"))
    assert sorted(p.name for p in inputs.iterdir()) == before
    assert probe(good).frames == 40  # the input is untouched


def test_image_bad_inputs(inputs, tmp_path, astronaut):
    photo = tmp_path / "photo.png"
    write_rgb(photo, astronaut[::4, ::4])
    assert_clean_failure(facesr("image", inputs / "text.mp4", tmp_path / "o.png"), "not a readable image")
    assert_clean_failure(facesr("image", inputs / "missing.png", tmp_path / "o.png"))
    assert_clean_failure(facesr("image", photo, tmp_path / "o.gif"), ".gif")
    assert_clean_failure(facesr("image", photo, photo))
    assert_clean_failure(facesr("image", photo, tmp_path / "nodir" / "o.png"))
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    assert_clean_failure(facesr("image", empty, tmp_path / "o_dir"))
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "o_dir").exists()


def test_bad_option_values_are_reported_by_argparse():
    proc = facesr("video", "a.mp4", "b.mp4", "--detect-every", "0")
    assert proc.returncode == 2 and "--detect-every" in proc.stderr and "Traceback" not in proc.stderr


def test_float16_on_a_cpu_is_a_clean_error(astronaut, tmp_path):
    photo = tmp_path / "photo.png"
    write_rgb(photo, astronaut[::4, ::4])
    assert_clean_failure(facesr("image", photo, tmp_path / "o.png", "--device", "cpu", "--precision", "float16"),
                         "--precision float16")
    assert not (tmp_path / "o.png").exists()


def test_a_gan_strength_runs_and_a_bad_one_is_a_clean_error(astronaut, tmp_path):
    photo = tmp_path / "photo.png"
    write_rgb(photo, astronaut[::4, ::4])
    assert_clean_failure(facesr("image", photo, tmp_path / "bad.png", "--model", "lite-gan@3"), "lite-gan@3", "between")
    assert not (tmp_path / "bad.png").exists()
    proc = facesr("image", photo, tmp_path / "half.png", "--model", "lite-gan@0.5")
    assert proc.returncode == 0, proc.stderr
    assert read_rgb(tmp_path / "half.png").shape == (512, 512, 3)
