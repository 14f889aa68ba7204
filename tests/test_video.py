"""Tests for facesr.video on small synthetic clips made with PyAV."""

from __future__ import annotations

import os
import random
import re
import time
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from facesr.errors import UserError
from facesr.video import VideoInfo, probe, transcode
from helpers import H, N, W, make_clip


def decode_video(path: Path):
    """(list of frame times as Fractions, list of RGB frames, stream rate, (w, h))."""
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        frames = list(c.decode(vs))
        return (
            [f.pts * f.time_base for f in frames],
            [f.to_ndarray(format="rgb24") for f in frames],
            vs.average_rate,
            (vs.codec_context.width, vs.codec_context.height),
        )


def audio_summary(path: Path):
    """(codec name, end time in seconds) of the first audio stream, or None."""
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return None
        a = c.streams.audio[0]
        end = max((p.pts + (p.duration or 0)) * p.time_base for p in c.demux(a) if p.pts is not None)
        return a.codec_context.name, float(end)


def double(frame: np.ndarray) -> np.ndarray:
    return cv2.resize(frame, (frame.shape[1] * 2, frame.shape[0] * 2), interpolation=cv2.INTER_LINEAR)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    return {
        "av": make_clip(d / "av.mp4"),
        "ntsc": make_clip(d / "ntsc.mp4", rate=Fraction(30000, 1001)),
        "silent": make_clip(d / "silent.mp4", audio=False),
        "audio_only": make_clip(d / "audio_only.m4a", video=False),
    }


@pytest.fixture
def out_dir(tmp_path):
    d = tmp_path / "out"
    d.mkdir()
    return d


# --- probe -------------------------------------------------------------------------------


def test_probe(clips):
    info = probe(clips["av"])
    assert isinstance(info, VideoInfo)
    assert (info.width, info.height, info.fps, info.has_audio) == (W, H, Fraction(25), True)
    assert info.frames == N
    assert info.duration == pytest.approx(N / 25, abs=0.05)
    ntsc = probe(clips["ntsc"])
    assert ntsc.fps == Fraction(30000, 1001) and ntsc.frames == N
    assert probe(clips["silent"]).has_audio is False


# --- round trips -------------------------------------------------------------------------


@pytest.mark.parametrize("clip", ["av", "ntsc"])
def test_round_trip_mp4(clips, out_dir, clip):
    src = clips[clip]
    dst = out_dir / "big.mp4"
    stats = transcode(src, dst, double, (2 * W, 2 * H), progress=False)
    assert os.listdir(out_dir) == ["big.mp4"]
    assert stats["frames"] == N and stats["audio"] == "copy" and stats["skipped_frames"] == 0
    assert stats["fps"] > 0 and stats["seconds"] > 0

    in_times, in_frames, in_rate, _ = decode_video(src)
    out_times, out_frames, out_rate, out_size = decode_video(dst)
    assert len(out_frames) == len(in_frames) == N
    assert out_rate == in_rate
    assert out_size == (2 * W, 2 * H)
    assert out_times == in_times  # same timestamps, exactly
    for a, b in zip(in_frames, out_frames):
        assert abs(float(a.mean()) - float(b.mean())) < 4

    in_audio, out_audio = audio_summary(src), audio_summary(dst)
    assert out_audio[0] == in_audio[0] == "aac"
    assert out_audio[1] == pytest.approx(in_audio[1], abs=1 / float(in_rate))

    info_in, info_out = probe(src), probe(dst)
    assert info_out.fps == info_in.fps
    assert info_out.duration == pytest.approx(info_in.duration, abs=1.01 / float(in_rate))


class Pipelined:
    """A transform with `submit`, as an Enhancer with several workers: frames finish out of order."""

    def __init__(self, fn, workers=3):
        self.fn, self.workers = fn, workers
        self.pool = ThreadPoolExecutor(workers)
        self.rng = random.Random(0)

    def submit(self, frame):
        delay = self.rng.uniform(0, 0.02)
        return self.pool.submit(lambda: (time.sleep(delay), self.fn(frame))[1])


def test_a_pipelined_transform_keeps_frames_timestamps_and_audio_in_order(clips, out_dir):
    src = clips["av"]
    transcode(src, out_dir / "sync.mp4", double, (2 * W, 2 * H), progress=False)
    stats = transcode(src, out_dir / "piped.mp4", Pipelined(double), (2 * W, 2 * H), progress=False)
    assert stats["frames"] == N and stats["audio"] == "copy"
    sync_times, sync_frames, _, _ = decode_video(out_dir / "sync.mp4")
    times, frames, _, _ = decode_video(out_dir / "piped.mp4")
    assert times == sync_times == decode_video(src)[0]
    assert all(np.array_equal(a, b) for a, b in zip(frames, sync_frames))
    assert audio_summary(out_dir / "piped.mp4") == audio_summary(out_dir / "sync.mp4")


def failing_at(n: int, exc: type[BaseException], message: str):
    """A transform that doubles frames and raises `exc(message)` on the n-th."""
    calls = []

    def flaky(frame):
        calls.append(1)
        if len(calls) == n:
            raise exc(message)
        return double(frame)

    return flaky


def test_a_pipelined_transforms_failure_is_raised_unchanged_and_leaves_nothing(clips, out_dir):
    with pytest.raises(RuntimeError, match="boom in a worker"):
        transcode(clips["av"], out_dir / "o.mp4", Pipelined(failing_at(7, RuntimeError, "boom in a worker")),
                  (2 * W, 2 * H), progress=False)
    assert os.listdir(out_dir) == []


@pytest.mark.parametrize("ext, vcodec, acodec", [(".webm", "vp9", "opus"), (".mkv", "h264", "aac"), (".mov", "h264", "aac")])
def test_other_containers(clips, out_dir, ext, vcodec, acodec):
    src, dst = clips["av"], out_dir / f"big{ext}"
    stats = transcode(src, dst, double, (2 * W, 2 * H), progress=False)
    assert os.listdir(out_dir) == [dst.name]
    assert stats["audio"] == ("copy" if acodec == "aac" else "libopus")
    in_times, in_frames, in_rate, _ = decode_video(src)
    out_times, out_frames, out_rate, out_size = decode_video(dst)
    assert len(out_frames) == N and out_size == (2 * W, 2 * H) and out_rate == in_rate
    # Matroska/WebM store milliseconds, and the muxer shifts the whole file (audio too) so that no
    # timestamp is negative (the AAC priming packet starts at -23 ms): same times up to that shift.
    shift = out_times[0] - in_times[0]
    assert 0 <= shift < 1 / in_rate
    assert all(abs(b - a - shift) <= Fraction(1, 1000) for a, b in zip(in_times, out_times))
    for a, b in zip(in_frames, out_frames):
        assert abs(float(a.mean()) - float(b.mean())) < 4
    with av.open(str(dst)) as c:
        assert c.streams.video[0].codec_context.name == vcodec
    name, end = audio_summary(dst)
    assert name == acodec
    assert end == pytest.approx(audio_summary(src)[1], abs=0.04)


def test_no_audio_odd_size_and_progress(clips, out_dir, capsys):
    dst = out_dir / "odd.mp4"
    stats = transcode(clips["silent"], dst, lambda f: cv2.resize(f, (65, 49)), (65, 49), desc="sr")
    assert stats["audio"] is None and stats["frames"] == N
    info = probe(dst)
    assert (info.width, info.height, info.has_audio) == (66, 50, False)
    err = capsys.readouterr().err
    assert "sr" in err and "frame" in err


def test_existing_dst_is_replaced(clips, out_dir):
    dst = out_dir / "x.mkv"
    dst.write_bytes(b"old")
    transcode(clips["silent"], dst, double, (2 * W, 2 * H), progress=False)
    assert probe(dst).width == 2 * W
    assert os.listdir(out_dir) == ["x.mkv"]


# --- bad input ---------------------------------------------------------------------------


def _bad_sources(tmp_path: Path, clips) -> dict[str, Path]:
    d = tmp_path / "bad"
    d.mkdir()
    (d / "empty.mp4").write_bytes(b"")
    (d / "random.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (d / "notes.txt").write_text("this is not a video\n" * 20)
    (d / "folder.mp4").mkdir()
    return {
        "missing": d / "missing.mp4",
        "empty": d / "empty.mp4",
        "random": d / "random.mp4",
        "text": d / "notes.txt",
        "directory": d / "folder.mp4",
        "audio_only": clips["audio_only"],
    }


@pytest.mark.parametrize("kind", ["missing", "empty", "random", "text", "directory", "audio_only"])
def test_bad_source(tmp_path, clips, out_dir, kind):
    src = _bad_sources(tmp_path, clips)[kind]
    with pytest.raises(UserError) as err:
        probe(src)
    assert str(src) in str(err.value)
    with pytest.raises(UserError):
        transcode(src, out_dir / "o.mp4", double, (2 * W, 2 * H), progress=False)
    assert os.listdir(out_dir) == []


def _fail_transcode(src, dst, **kw):
    with pytest.raises(UserError) as err:
        transcode(src, dst, double, (2 * W, 2 * H), progress=False, **kw)
    return str(err.value)


def test_missing_output_dir(clips, tmp_path):
    msg = _fail_transcode(clips["av"], tmp_path / "nope" / "o.mp4")
    assert "does not exist" in msg
    assert not (tmp_path / "nope").exists()


def test_output_parent_is_a_file(clips, tmp_path):
    (tmp_path / "afile").write_text("x")
    _fail_transcode(clips["av"], tmp_path / "afile" / "o.mp4")
    assert (tmp_path / "afile").read_text() == "x"


def test_output_dir_not_writable(clips, out_dir, monkeypatch):
    # We may run as root, which ignores permission bits: make the access check say no instead.
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == out_dir else real_access(p, mode, **kw))
    msg = _fail_transcode(clips["av"], out_dir / "o.mp4")
    assert "not writable" in msg
    assert os.listdir(out_dir) == []


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores permission bits")
def test_output_dir_chmod_read_only(clips, out_dir):
    out_dir.chmod(0o555)
    try:
        _fail_transcode(clips["av"], out_dir / "o.mp4")
        assert os.listdir(out_dir) == []
    finally:
        out_dir.chmod(0o755)


def test_dst_is_src(clips, tmp_path):
    src = tmp_path / "in" / "clip.mp4"
    src.parent.mkdir()
    src.write_bytes(clips["av"].read_bytes())
    before = src.read_bytes()
    (tmp_path / "link").symlink_to(src.parent)
    os.link(src, tmp_path / "hard.mp4")
    for spelling in [
        src,
        tmp_path / "in" / "." / "clip.mp4",
        tmp_path / "in" / ".." / "in" / "clip.mp4",
        tmp_path / "link" / "clip.mp4",
        tmp_path / "hard.mp4",
        os.path.relpath(src),
    ]:
        assert "overwrite the input" in _fail_transcode(src, spelling)
    assert src.read_bytes() == before
    assert sorted(os.listdir(src.parent)) == ["clip.mp4"]


def test_unsupported_extension(clips, out_dir):
    msg = _fail_transcode(clips["av"], out_dir / "o.xyz")
    assert ".mp4" in msg and ".webm" in msg
    _fail_transcode(clips["av"], out_dir / "noext")
    assert os.listdir(out_dir) == []


@pytest.mark.parametrize("codec", ["no-such-codec", "aac"])
def test_bad_codec(clips, out_dir, codec):
    _fail_transcode(clips["av"], out_dir / "o.mp4", codec=codec)
    assert os.listdir(out_dir) == []


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
@pytest.mark.parametrize("existing", [False, True])
def test_transform_failure_leaves_nothing(clips, out_dir, exc, existing):
    dst = out_dir / "o.mp4"
    if existing:
        dst.write_bytes(b"precious")
    with pytest.raises(exc, match="boom"):
        transcode(clips["av"], dst, failing_at(10, exc, "boom"), (2 * W, 2 * H), progress=False)
    if existing:
        assert os.listdir(out_dir) == ["o.mp4"] and dst.read_bytes() == b"precious"
    else:
        assert os.listdir(out_dir) == []


def test_transform_wrong_shape(clips, out_dir):
    with pytest.raises(ValueError, match="transform must return"):
        transcode(clips["av"], out_dir / "o.mp4", lambda f: f, (2 * W, 2 * H), progress=False)
    assert os.listdir(out_dir) == []


@pytest.mark.parametrize("options", [{"preset": "nonsense"}, {"crf": -100}])
def test_bad_encoder_option(clips, out_dir, options):
    assert "libx264 encoder" in _fail_transcode(clips["av"], out_dir / "o.mp4", **options)
    assert os.listdir(out_dir) == []


def decoded_of(stats: dict) -> tuple[int, int]:
    """(N, M) of the stats' "decoded N of M frames", M the frames the input announced (for Matroska, from its
    duration: within a frame or two of N)."""
    found = re.search(r"decoded (\d+) of (\d+) frames", stats["incomplete"] or "")
    assert found, f"the stats do not say what was lost: {stats}"
    done, expected = int(found[1]), int(found[2])
    assert abs(expected - N) <= 2, stats
    return done, expected


def test_a_damaged_file_is_written_as_far_as_it_decodes_and_says_what_was_lost(clips, tmp_path, out_dir):
    """Bytes scribbled over the middle of a file: no av exception, no error; what decodes is written,
    and the stats say what was lost (the CLI turns that into IncompleteInput, exit 4)."""
    good = out_dir.parent / "good.mkv"
    transcode(clips["av"], good, lambda f: f, (W, H), progress=False)
    data = bytearray(good.read_bytes())
    rng = np.random.default_rng(1)
    for i in rng.integers(len(data) // 3, 2 * len(data) // 3, 200):
        data[i] = rng.integers(0, 256)
    bad = tmp_path / "damaged.mkv"
    bad.write_bytes(bytes(data))
    dst = out_dir / "o.mp4"
    stats = transcode(bad, dst, double, (2 * W, 2 * H), progress=False)
    assert os.listdir(out_dir) == ["o.mp4"]
    assert 0 < stats["frames"] <= N and probe(dst).frames == stats["frames"]
    lost = stats["frames"] < N or stats["skipped_frames"] > 0
    assert lost, "200 scribbled bytes went unnoticed"
    assert decoded_of(stats) == (stats["frames"], stats["expected_frames"])


# Behaviour the lead landed with issue 26 (a cut-off input is not a clean run): the frames that could be
# decoded are kept and the stats say how many of how many; `facesr video` turns that into IncompleteInput
# (exit 4; test_cli.test_a_truncated_input_keeps_its_output_and_exits_4).
def test_a_truncated_file_keeps_what_was_decoded_and_says_how_much(clips, tmp_path, out_dir):
    whole = out_dir.parent / "whole.mkv"  # Matroska: its header comes first, so half a file still opens
    transcode(clips["av"], whole, lambda f: f, (W, H), progress=False)
    data = whole.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    dst = out_dir / "o.mp4"
    stats = transcode(cut, dst, double, (2 * W, 2 * H), progress=False)
    assert os.listdir(out_dir) == ["o.mp4"]  # kept
    kept = probe(dst).frames
    assert 0 < kept < N and stats["frames"] == kept
    assert decoded_of(stats) == (kept, stats["expected_frames"])
    # a whole file is not incomplete
    assert transcode(whole, out_dir / "w.mp4", double, (2 * W, 2 * H), progress=False)["incomplete"] is None


def test_colours_survive_the_round_trip(tmp_path):
    """Output is converted and tagged BT.709; decoding it gives back the colours the transform made."""
    src = make_clip(tmp_path / "in.mp4", audio=False)
    dst = tmp_path / "out.mp4"
    blocks = np.zeros((H, W, 3), np.uint8)
    colours = [(220, 40, 30), (30, 200, 60), (40, 50, 210), (230, 210, 40)]
    for k, colour in enumerate(colours):
        blocks[:, k * W // 4 : (k + 1) * W // 4] = colour
    transcode(src, dst, lambda f: blocks, (W, H), crf=0, progress=False)
    with av.open(str(dst)) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.colorspace, cc.color_range) == (1, 1)  # BT.709, limited range
    _, frames, _, _ = decode_video(dst)
    for k, colour in enumerate(colours):
        got = frames[5][H // 2, k * W // 4 + W // 8].astype(int)
        assert np.abs(got - colour).max() <= 3, (colour, got)


def test_output_permissions_follow_the_umask(tmp_path):
    src = make_clip(tmp_path / "in.mp4", audio=False)
    old = os.umask(0o022)
    try:
        transcode(src, tmp_path / "out.mp4", lambda f: f, (W, H), progress=False)
    finally:
        os.umask(old)
    assert (tmp_path / "out.mp4").stat().st_mode & 0o777 == 0o644
