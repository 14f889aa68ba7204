"""Real photos to train beside the synthetic faces: crops of the photos scikit-image ships.

The training faces are GAN-generated, and every model learns from them a texture that real
cameras do not make: the pixel models gain +3.1 dB over bicubic on those faces and +1.3 on
real CelebA-HQ photos (weights/MODEL_CARD.md). No real face photos licensed for training can be
had here, but scikit-image's wheel carries a few real photographs with no copyright
restrictions (a cat and a coffee cup, CC0; a rocket launch, public domain) and the Middlebury
2014 stereo pair of a motorcycle (a research benchmark). Their fur, wood, metal and sensor
noise are real-camera texture at real contrast. `facesr train --photos N` adds N square crops
of them, at random sizes and positions, to the training images.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..errors import UserError

PHOTO_SIDE = 256  # the training faces' side


def _photos() -> dict[str, np.ndarray]:
    try:
        from skimage import data
    except ImportError:
        raise UserError("--photos needs scikit-image: pip install 'facesr[train]'") from None
    left, right = data.stereo_motorcycle()[:2]
    return {"chelsea": data.chelsea(), "coffee": data.coffee(), "rocket": data.rocket(),
            "motol": left, "motor": right}


def photo_crops(count: int, cache: str | Path | None = None, seed: int = 0) -> Path:
    """A folder of `count` crops of the photos (as evenly as divides), each a random square of at
    least PHOTO_SIDE pixels area-resized to PHOTO_SIDE; made once per count and cached."""
    from ..paths import cache_dir

    if count < 1:
        raise UserError(f"--photos {count}: give a positive number of crops")
    folder = Path(cache or cache_dir() / "photos") / f"{count}-{PHOTO_SIDE}px-seed{seed}"
    done = folder / ".complete"
    if done.is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    photos = _photos()
    rng = np.random.default_rng(seed)
    per, extra = divmod(count, len(photos))
    for n, (name, img) in enumerate(photos.items()):
        h, w = img.shape[:2]
        for i in range(per + (n < extra)):
            side = int(rng.integers(PHOTO_SIDE, min(h, w) + 1))
            y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
            crop = cv2.resize(np.ascontiguousarray(img[y : y + side, x : x + side]), (PHOTO_SIDE, PHOTO_SIDE),
                              interpolation=cv2.INTER_AREA)
            # "zz_" sorts the crops after the faces when both are listed together
            cv2.imwrite(str(folder / f"zz_{name}_{i}.png"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    done.touch()
    return folder
