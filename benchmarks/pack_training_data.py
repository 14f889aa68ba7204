"""Pack the training data to travel to a GPU machine that has no ../shared (and no PyAV): at most ~50 MB.

    python benchmarks/pack_training_data.py [--out pack] [--faces 900] [--variants 1]

Writes, under OUT (git-ignored):
    data/faces/train/   the first N training faces (JPEG files as they are)
    data/faces/eval/    the 56 evaluation faces
    cache/h264/         the LR banks `benchmarks/train_gpu.sh` trains from (JPEG and H.264 variants,
                        made here with PyAV: the GPU machine needs neither PyAV nor libx264)
Then, on the GPU machine: `FACESR_DATA=pack/data FACESR_CACHE=pack/cache bash benchmarks/train_gpu.sh`.
The banks are found by a digest of the files, scale, degradations and counts, so the recipes in
train_gpu.sh must use the same --bank-variants as this script's --variants.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch

from facesr.images import list_images
from facesr.paths import data_dir
from facesr.train.batches import TensorBatches
from facesr.train.degrade import DEGRADATIONS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("pack"))
    ap.add_argument("--faces", type=int, default=900, help="training faces to take (default 900: the pack stays under 50 MB)")
    ap.add_argument("--variants", type=int, default=1, help="JPEG and H.264 LRs per face and kind (default 1)")
    ap.add_argument("--degradations", default="call,photo", help="the banks to build (default call,photo)")
    ap.add_argument("--workers", type=int, default=0, help="processes building the banks (default: one per CPU)")
    args = ap.parse_args()

    train_dir, eval_dir = args.out / "data" / "faces" / "train", args.out / "data" / "faces" / "eval"
    for src, dst, count in ((data_dir("faces/train"), train_dir, args.faces), (data_dir("faces/eval"), eval_dir, None)):
        dst.mkdir(parents=True, exist_ok=True)
        for path in list_images(src)[:count]:
            if not (dst / path.name).is_file():
                shutil.copy2(path, dst / path.name)
    for name in args.degradations.split(","):
        # building the batches builds (or finds) the bank the recipe will load
        TensorBatches([train_dir], 4, 128, DEGRADATIONS[name], torch.device("cpu"), cache=args.out / "cache" / "h264",
                      variants=args.variants, workers=args.workers)
    total = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"{args.out}: {total / 1e6:.1f} MB", file=sys.stderr)


if __name__ == "__main__":
    main()
