"""Fixtures: real face photos shipped by registry packages, a private cache, the network namespace.

Helpers (paths, known face boxes, clips, the CLI) are in helpers.py: `from helpers import ...`.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    skimage_data = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(skimage_data.astronaut())


@pytest.fixture(scope="session")
def grace_hopper() -> np.ndarray:
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    return np.ascontiguousarray(cv2.imread(str(path))[..., ::-1])


@pytest.fixture
def faces(tmp_path, astronaut, grace_hopper):
    """A folder of three 256x256 face crops, for training runs."""
    from facesr.images import write_rgb

    folder = tmp_path / "faces"
    folder.mkdir()
    write_rgb(folder / "a.png", astronaut[:256, 128:384])
    write_rgb(folder / "b.jpg", grace_hopper[100:356, 128:384])
    write_rgb(folder / "c.png", astronaut[256:, 256:])
    return folder


# --- no test writes to the real cache -----------------------------------------------------------
# facesr caches what it makes (call clips, H.264 training banks, photo crops, bench scenes) under
# $FACESR_CACHE (default ~/.cache/facesr). The suite gets a cache of its own for the session; the
# BlazeFace models stay where `facesr fetch-models` put them ($FACESR_DETECTOR_DIR points there), as
# the suite runs without a network and could not fetch them again.
@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    real = Path(os.environ.get("FACESR_CACHE") or Path.home() / ".cache" / "facesr")
    cache = tmp_path_factory.mktemp("facesr-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACESR_CACHE", str(cache))
        if not os.environ.get("FACESR_DETECTOR_DIR") and (real / "detector").is_dir():
            mp.setenv("FACESR_DETECTOR_DIR", str(real / "detector"))
        yield cache


# --- network tests: only inside a private network namespace ------------------------------------
# `bash setup.sh test` runs the suite under `unshare -n` with loopback up and 10.213.0.1 on it
# (aioice leaves 127.0.0.1 out of its ICE candidates but uses that address), so no packet a
# test sends can leave the machine. Elsewhere those tests skip, or fail when FACESR_NETNS=1
# says the namespace was meant to be there.
@pytest.fixture(scope="session")
def private_network() -> None:
    from facesr.stream.client import private_network_problem

    problem = private_network_problem()
    if problem:
        message = f"{problem}; run the suite with `bash setup.sh test`, which makes one"
        if os.environ.get("FACESR_NETNS") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def browser_tools():
    """Chromium, ChromeDriver and Selenium, or a skip (a failure where FACESR_BROWSER=1 says they are there)."""
    import os

    from helpers import CHROMEDRIVER, CHROMIUM

    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        message = f"{', '.join(missing)} absent: `bash setup.sh test` installs Debian's chromium and chromium-driver"
        if os.environ.get("FACESR_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    pytest.importorskip("selenium")
