"""The suite's own ground rules: missing team data fails under CI, and no test writes to the real cache."""

from __future__ import annotations

from pathlib import Path

import pytest

import helpers


def test_missing_shared_data_skips_locally_and_fails_under_ci(tmp_path, monkeypatch):
    monkeypatch.setattr(helpers, "SHARED", tmp_path / "shared")
    monkeypatch.delenv("FACESR_DATA", raising=False)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        helpers.shared_path("data", "videos", "talking_d0.mp4")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI"):
        helpers.shared_path("data", "videos", "talking_d0.mp4")


def test_facesr_data_comes_before_the_shared_folder(tmp_path, monkeypatch):
    (tmp_path / "mine" / "videos").mkdir(parents=True)
    monkeypatch.setenv("FACESR_DATA", str(tmp_path / "mine"))
    assert helpers.shared_path("data", "videos") == tmp_path / "mine" / "videos"


def test_the_suite_caches_in_a_folder_of_its_own(private_cache):
    import os

    from facesr.paths import cache_dir

    home = Path.home() / ".cache"
    assert cache_dir() == private_cache and home not in cache_dir().parents
    detector = os.environ.get("FACESR_DETECTOR_DIR")
    assert detector is None or Path(detector).name == "detector"  # the models `facesr fetch-models` cached
