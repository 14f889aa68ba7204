"""Shared fixtures: real face photos shipped by registry packages, ../shared data, the shipped weights."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
WEIGHTS = ROOT / "weights" / "lite-x4.safetensors"

# Known face boxes (x0, y0, x1, y1) in the original photos, read off BlazeFace and checked by eye.
ASTRONAUT_FACE = (177, 82, 272, 177)
GRACE_HOPPER_FACE = (171, 146, 365, 340)


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    skimage_data = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(skimage_data.astronaut())


@pytest.fixture(scope="session")
def grace_hopper() -> np.ndarray:
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return np.ascontiguousarray(cv2.imread(str(path))[..., ::-1])


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: ../shared holds the project's test data beside the checkout")
    return path


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def downscale(img: np.ndarray, s: int) -> np.ndarray:
    h, w = img.shape[:2]
    return cv2.resize(img, (w // s, h // s), interpolation=cv2.INTER_AREA)


def on_canvas(photo: np.ndarray, size=(1280, 720), at=(0, 0), canvas: np.ndarray | None = None) -> np.ndarray:
    """Place a photo on a grey canvas (a call-like frame with room around the face)."""
    w, h = size
    out = np.full((h, w, 3), 118, np.uint8) if canvas is None else canvas.copy()
    x, y = at
    ph, pw = photo.shape[:2]
    out[y : y + ph, x : x + pw] = photo[: h - y, : w - x]
    return out


# --- network tests: only inside a private network namespace ------------------------------------
# `bash setup.sh test` runs the suite under `unshare -n` with loopback up and 10.213.0.1 on it
# (aioice leaves 127.0.0.1 out of its ICE candidates but uses that address), so no packet a
# test sends can leave the machine. Elsewhere those tests skip, or fail when FACESR_NETNS=1
# says the namespace was meant to be there.
@pytest.fixture(scope="session")
def private_network() -> None:
    import os

    from facesr.stream.client import private_network_problem

    problem = private_network_problem()
    if problem:
        message = f"{problem}; run the suite with `bash setup.sh test`, which makes one"
        if os.environ.get("FACESR_NETNS") == "1":
            pytest.fail(message)
        pytest.skip(message)
