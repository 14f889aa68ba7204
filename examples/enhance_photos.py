"""Use facesr from Python: enhance the face photos that scikit-image and matplotlib ship.

    python examples/enhance_photos.py [OUT_DIR]

Each photo is shrunk 4x (as a low-resolution call would deliver it), then brought back with
bicubic interpolation and with facesr; the three are saved side by side with the original,
and the face-region PSNR of each is printed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import skimage.data

import facesr
from facesr.images import read_rgb, write_rgb
from facesr.metrics import psnr

PHOTOS = {
    "astronaut": lambda: skimage.data.astronaut(),
    "grace_hopper": lambda: read_rgb(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"),
}


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    enhancer = facesr.Enhancer("lite", scale=4)  # detector + tracker + generator for one stream
    for name, load in PHOTOS.items():
        hr = load()
        hr = hr[: hr.shape[0] // 4 * 4, : hr.shape[1] // 4 * 4]
        lr = cv2.resize(hr, (hr.shape[1] // 4, hr.shape[0] // 4), interpolation=cv2.INTER_AREA)

        enhancer.reset()  # each photo is a new "stream"
        sr = enhancer(lr)  # (H, W, 3) uint8 RGB -> (4H, 4W, 3)
        bicubic = cv2.resize(lr, (hr.shape[1], hr.shape[0]), interpolation=cv2.INTER_CUBIC)

        x0, y0, x1, y1 = (4 * v for v in enhancer.tracker.tracks[0].box)  # the face, in output pixels
        face = (slice(y0, y1), slice(x0, x1))
        print(f"{name}: face PSNR bicubic {psnr(bicubic[face], hr[face]):.2f} dB, "
              f"facesr {psnr(sr[face], hr[face]):.2f} dB")
        nearest = cv2.resize(lr, (hr.shape[1], hr.shape[0]), interpolation=cv2.INTER_NEAREST)
        write_rgb(out_dir / f"{name}_lr_bicubic_facesr_original.png", np.hstack([nearest, bicubic, sr, hr]))
    enhancer.close()
    print(f"comparisons written to {out_dir}/")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "out/examples"))
