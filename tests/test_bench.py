"""`facesr bench`: the per-stage report of the exact `facesr video` path, against bicubic-only."""

from __future__ import annotations

import json
import os

import cv2
import pytest

from facesr.bench import run_bench, write_report
from facesr.detect import FaceDetector
from facesr.protocol import scene_clip
from facesr.runtime import cpu_has_native_bfloat16, cpu_prefers_int8
from facesr.video import read_frames
from helpers import assert_clean_failure, facesr, shared_path


@pytest.mark.slow
@pytest.mark.shared_data
def test_scenes_have_the_faces_they_claim(tmp_path):
    videos = shared_path("data", "videos")
    with FaceDetector("full") as detect:
        for scene, faces in (("none", 0), ("one", 1), ("several", 4)):
            clip = scene_clip(videos, scene, (480, 270), 12, tmp_path)
            counts = [len(detect(cv2.resize(f, (1280, 720)))) for f in read_frames(clip)]
            assert len(counts) == 12
            assert max(set(counts), key=counts.count) == faces, (scene, counts)


@pytest.mark.slow
@pytest.mark.shared_data
def test_bench_reports_every_stage_and_the_bicubic_ratio(tmp_path):
    report = run_bench(["lite"], sizes=["160x90"], scenes=["one"], videos=shared_path("data", "videos"), frames=20,
                       repeat=1, device="cpu", progress=False)
    (row,) = report["results"]
    assert row["out"] == "640x360" and row["model"] == "lite"
    # lite's int8 twin where the CPU suits it, else torch's bfloat16 where the CPU has it
    expected = "int8" if cpu_prefers_int8() else ("bfloat16" if cpu_has_native_bfloat16() else "float32")
    assert report["precision"] == expected
    assert report["cpu"]
    if os.path.exists("/proc/cpuinfo"):  # Linux: the CPU's bfloat16 features are named beside its model
        assert ("avx512_bf16" in report["cpu"] or "amx_tile" in report["cpu"]) == cpu_has_native_bfloat16()
    for stage in ("decode", "detect", "track", "sr", "blend", "encode", "total"):
        assert set(row["stages"][stage]) == {"p50", "p95", "p99"}
    assert row["stages"]["sr"]["p50"] > 0 and row["stages"]["encode"]["p50"] > 0
    assert "sr" not in row["bicubic_stages"] or row["bicubic_stages"]["sr"]["p99"] == 0
    assert len(row["per_frame_ms"]) == 20
    assert row["fps"] > 0 and row["time_ratio"] == pytest.approx(row["bicubic_fps"] / row["fps"], rel=0.02)
    write_report(report, str(tmp_path / "r.json"), str(tmp_path / "r.png"))
    assert json.loads((tmp_path / "r.json").read_text())["results"][0]["scene"] == "one"
    assert cv2.imread(str(tmp_path / "r.png")) is not None


def test_bench_bad_arguments(tmp_path):
    assert_clean_failure(facesr("bench", "--model", "nope"), "--model")
    assert_clean_failure(facesr("bench", "--sizes", "100x100"), "--sizes")
    assert_clean_failure(facesr("bench", "--scenes", "crowd"), "--scenes")
    assert_clean_failure(facesr("bench", "--plot", str(tmp_path / "p.jpg")), ".png")
    assert_clean_failure(facesr("bench", "--videos", str(tmp_path / "none")), "no such folder")
