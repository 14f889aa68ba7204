"""Where the detector models come from: the registry wheel, sha256-checked, cached, overridable."""

import hashlib
import os

import pytest

from facesr.errors import UserError
from facesr.weights import DETECTOR_MODELS, detector_model_path
from helpers import facesr


@pytest.mark.parametrize("kind", ["short", "full"])
def test_cached_detector_models_have_the_published_sha256(kind):
    path = detector_model_path(kind)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == DETECTOR_MODELS[kind][1]


def test_a_tampered_model_is_refused(tmp_path, monkeypatch):
    name = DETECTOR_MODELS["short"][0]
    (tmp_path / name).write_bytes(b"not the model")
    monkeypatch.setenv("FACESR_DETECTOR_DIR", str(tmp_path))
    with pytest.raises(UserError, match="sha256"):
        detector_model_path("short")


def test_the_override_directory_is_used(tmp_path, monkeypatch):
    name = DETECTOR_MODELS["full"][0]
    (tmp_path / name).write_bytes(detector_model_path("full").read_bytes())
    monkeypatch.setenv("FACESR_DETECTOR_DIR", str(tmp_path))
    assert detector_model_path("full") == tmp_path / name


def test_an_explicit_missing_model_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        detector_model_path("short", tmp_path / "nope.tflite")


def test_unobtainable_models_give_one_clear_line(tmp_path, monkeypatch):
    # an empty cache and a pip that can reach no package index
    for name, value in (("FACESR_CACHE", str(tmp_path / "cache")), ("PIP_CONFIG_FILE", os.devnull), ("PIP_NO_INDEX", "1"),
                        ("PIP_FIND_LINKS", "")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("FACESR_DETECTOR_DIR", raising=False)
    proc = facesr("fetch-models")
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("facesr: error:")]
    assert len(errors) == 1 and "FACESR_DETECTOR_DIR" in errors[0] and "Traceback" not in proc.stderr
    assert not list((tmp_path / "cache" / "detector").glob("*.tflite"))


def test_unknown_detector_kind():
    with pytest.raises(UserError):
        detector_model_path("medium")


def test_default_models_are_lite_call_and_lite_photo_on_cpu_and_srgan_on_cuda():
    from facesr.runtime import default_model

    assert default_model("cpu") == "lite-call" and default_model("cuda") == "srgan"
    assert default_model("cpu", "photo") == "lite-photo" and default_model("cuda", "photo") == "srgan"


def test_an_unknown_model_name_is_a_user_error():
    from facesr.weights import load_generator

    with pytest.raises(UserError, match="choose"):
        load_generator("huge", 4)


@pytest.mark.parametrize("spec, words", [("srgan@strong", "must be a number"), ("srgan@2", "between 0"),
                                         ("lite-gan@-0.1", "between 0"), ("lite@0.5", "choose")])
def test_a_bad_gan_strength_is_a_user_error(spec, words):
    from facesr.weights import load_generator

    with pytest.raises(UserError, match=words):
        load_generator(spec, 4)
