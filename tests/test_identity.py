"""The identity distance (dlib's face embeddings): the same person is near, another person far."""

import numpy as np
import pytest

from facesr.identity import SAME_PERSON, why_unavailable

pytestmark = pytest.mark.skipif(why_unavailable() is not None, reason=str(why_unavailable()))


@pytest.fixture(scope="module")
def embedder():
    from facesr.identity import IdentityEmbedder

    return IdentityEmbedder()


def test_the_same_face_is_near_and_another_person_far(embedder, astronaut, grace_hopper):
    from facesr.identity import identity_distances
    from helpers import bicubic

    a = np.ascontiguousarray(astronaut[40:296, 96:352])
    h = np.ascontiguousarray(grace_hopper[110:366, 140:396])
    blurred = bicubic(a[::4, ::4], 4)
    same, soft, other = identity_distances([a, blurred, h], [a, a, a], embedder)
    assert same < 1e-6  # the original against itself
    assert 0.05 < soft < SAME_PERSON  # a blurred copy: further, still the same person
    assert other > SAME_PERSON  # Grace Hopper is not the astronaut


def test_eval_reports_identity_beside_the_other_scores(embedder, astronaut, grace_hopper, tmp_path):
    from facesr.evaluate import format_report, run_eval
    from facesr.images import write_rgb

    write_rgb(tmp_path / "astronaut.png", astronaut[40:296, 96:352])
    write_rgb(tmp_path / "hopper.png", grace_hopper[110:366, 140:396])
    report = run_eval(["lite"], str(tmp_path), None, progress=False, identity=True)
    scores = report["faces"]["scores"]
    assert all(0 < scores[m]["identity"] < SAME_PERSON for m in ("bicubic", "lite"))  # x4 from 64 px: still them
    assert "identity" in format_report(report)
