"""`facesr eval`: the quality report on face photos and on compressed call clips."""

import json

import pytest

from facesr.evaluate import format_report, run_eval
from facesr.images import read_rgb, write_rgb
from helpers import assert_clean_failure, facesr, shared_path


@pytest.fixture(scope="module")
def face_folder(tmp_path_factory, astronaut, grace_hopper):
    folder = tmp_path_factory.mktemp("faces")
    write_rgb(folder / "astronaut.png", astronaut[40:296, 96:352])
    write_rgb(folder / "hopper.png", grace_hopper[110:366, 140:396])
    return folder


def test_faces_report_scores_each_model_beside_bicubic(face_folder, tmp_path):
    report = run_eval(["lite"], str(face_folder), None, json_out=str(tmp_path / "r.json"),
                      figure_out=str(tmp_path / "f.png"), progress=False)
    scores = report["faces"]["scores"]
    assert set(scores) == {"bicubic", "lite"} and report["faces"]["count"] == 2
    assert scores["lite"]["psnr"] > scores["bicubic"]["psnr"]
    assert scores["lite"]["ssim"] > scores["bicubic"]["ssim"]
    assert scores["bicubic"]["hf_ratio"] < scores["lite"]["hf_ratio"] < 1.0
    assert scores["bicubic"]["faces_found"] == 1.0 and scores["lite"]["landmark_error"] < 0.1
    assert json.loads((tmp_path / "r.json").read_text())["faces"]["scores"]["lite"] == pytest.approx(scores["lite"])
    fig = read_rgb(tmp_path / "f.png")
    assert fig.shape[1] == 4 * 192 and fig.shape[0] > 2 * 192  # LR | bicubic | lite | original, a row per face
    assert "lite" in format_report(report)


@pytest.mark.slow
@pytest.mark.shared_data
def test_videos_report_face_region_gain_and_flicker(tmp_path):
    clip = shared_path("data", "videos", "talking_d0.mp4")
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / clip.name).symlink_to(clip)
    report = run_eval(["lite"], None, str(videos), max_frames=16, progress=False)
    [result] = report["videos"]["clips"]
    assert result["frames"] == 16 and result["face_frames"] == 16
    assert result["gain"]["lite"] > 0.0  # SR beats bicubic on the face
    assert 0.0 < result["flicker"]["lite"] < 5.0 and 0.0 < result["flicker"]["bicubic"] < 5.0
    summary = report["videos"]["summary"]
    assert summary["lite"]["gain"] == pytest.approx(result["gain"]["lite"])


def test_eval_command_prints_tables_and_rejects_bad_input(face_folder, tmp_path):
    ok = facesr("eval", "--faces", face_folder, "--videos", "", "--model", "lite", "-q", "--json", tmp_path / "r.json")
    assert ok.returncode == 0, ok.stderr
    assert "bicubic" in ok.stdout and "lite" in ok.stdout and (tmp_path / "r.json").is_file()
    assert_clean_failure(facesr("eval", "--faces", tmp_path / "nope", "--videos", ""), "no such folder")
    assert_clean_failure(facesr("eval", "--faces", face_folder, "--videos", "", "--model", "huge"), "huge")
    assert_clean_failure(facesr("eval", "--faces", face_folder, "--videos", "", "--figure", tmp_path / "f.jpg"), ".png")
    assert_clean_failure(facesr("eval", "--faces", "", "--videos", ""), "nothing to evaluate")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_clean_failure(facesr("eval", "--faces", empty, "--videos", ""), "no images")
