"""Identity distance: whether a restored face is still the same person.

PSNR and detail do not say whether a face kept its identity, and that is what a GAN can get
wrong. dlib's face-recognition ResNet (the models of the `face_recognition_models` package,
run with the `dlib-bin` wheel: `pip install facesr[identity]`) maps a face to a 128-d
embedding; the distance between the embeddings of the output and of the original is the
identity measure of face-restoration papers. dlib's same-person threshold is 0.6; lower is
closer. Both faces are embedded in the same box (the original's), each with its own five
landmarks, as the `face_recognition` package does.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from .errors import UserError

SAME_PERSON = 0.6  # dlib's threshold: below it, the same person


def why_unavailable() -> str | None:
    """None where the identity measure can run here, else why not (one line)."""
    if importlib.util.find_spec("dlib") is None:
        return "dlib is not installed (pip install 'facesr[identity]')"
    if _models_dir() is None:
        return "face_recognition_models is not installed (pip install 'facesr[identity]')"
    return None


def _models_dir() -> Path | None:
    # Found without importing the package: its __init__ needs pkg_resources, gone from new setuptools.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(spec.submodule_search_locations[0]) / "models"
    return folder if folder.is_dir() else None


class IdentityEmbedder:
    """Callable: (H, W, 3) uint8 RGB face image and a box (x0, y0, x1, y1) -> 128-d embedding."""

    def __init__(self) -> None:
        why = why_unavailable()
        if why:
            raise UserError(f"the identity measure needs dlib's face-recognition model: {why}")
        import dlib

        models = _models_dir()
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._landmarks = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        self._net = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))

    def face_box(self, rgb: np.ndarray) -> tuple[int, int, int, int]:
        """dlib's own face box (the largest), or the whole image where its detector finds none."""
        found = self._detector(np.ascontiguousarray(rgb), 1)
        if not found:
            return 0, 0, rgb.shape[1], rgb.shape[0]
        r = max(found, key=lambda r: r.width() * r.height())
        return r.left(), r.top(), r.right(), r.bottom()

    def __call__(self, rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        rgb = np.ascontiguousarray(rgb)
        rect = self._dlib.rectangle(*(int(v) for v in box))
        return np.asarray(self._net.compute_face_descriptor(rgb, self._landmarks(rgb, rect)), dtype=np.float64)


def identity_distances(outputs: list[np.ndarray], originals: list[np.ndarray],
                       embedder: IdentityEmbedder | None = None) -> list[float]:
    """Embedding distance of each output from its original, in the original's face box."""
    embedder = embedder or IdentityEmbedder()
    distances = []
    for out, ref in zip(outputs, originals):
        box = embedder.face_box(ref)
        distances.append(float(np.linalg.norm(embedder(out, box) - embedder(ref, box))))
    return distances
