"""What a recurrent model's history adds along a call, with and without aligning it to the face's motion.

Runs `facesr eval`'s call protocol (the clips as calls: area-downscaled, H.264 CRF 28) for a
single-frame model and the recurrent one, then the recurrent one again with its history carried
by the crop's move only (no optical flow), and with none (every frame a first frame), and
prints the gain over bicubic by span of face frames: the first frame (no history for any
model), 2-5, 6-15, 16-30 and the steady state.

    python benchmarks/history_gain.py [--single lite] [--model lite-recurrent] [--max-frames 150] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from facesr.evaluate import eval_videos  # noqa: E402
from facesr.paths import data_dir  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--single", default="lite", help="the single-frame model to compare with")
    ap.add_argument("--model", default="lite-recurrent", help="the recurrent model")
    ap.add_argument("--videos", default=None, help="folder of clips (default: the data folder's videos)")
    ap.add_argument("--max-frames", type=int, default=150)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    videos = args.videos or str(data_dir("videos"))
    aligned = eval_videos([args.single, args.model], videos, 4, max_frames=args.max_frames, precision=args.precision)
    unaligned = eval_videos([args.model], videos, 4, max_frames=args.max_frames, precision=args.precision,
                            history="crop")
    off = eval_videos([args.model], videos, 4, max_frames=args.max_frames, precision=args.precision, history="off")
    rows = {args.single: aligned["summary"][args.single], f"{args.model} (aligned)": aligned["summary"][args.model],
            f"{args.model} (crop move only)": unaligned["summary"][args.model],
            f"{args.model} (no history)": off["summary"][args.model]}
    spans = list(rows[args.single]["gain_along"])
    n = sum(1 for c in aligned["clips"] if c.get("face_frames"))
    print(f"{'':28} {'gain':>6} {'flicker':>8} {'better':>7} " + " ".join(f"{s:>7}" for s in spans) + f" {'history':>8}")
    for name, s in rows.items():
        kept = f"{s['remembered']:8.0%}" if "remembered" in s else f"{'-':>8}"
        print(f"{name:28} {s['gain']:+6.2f} {s['flicker']:8.3f} {s['clips_better']:>4}/{n:<2} "
              + " ".join(f"{s['gain_along'][sp]:+7.2f}" for sp in spans) + f" {kept}")
    bicubic = aligned["summary"]["bicubic"]
    print(f"{'bicubic':28} {'':>6} {bicubic['flicker']:8.3f}   (face PSNR {bicubic['face_psnr']:.2f})")
    if args.json:
        for report in (aligned, unaligned, off):
            for clip in report["clips"]:
                clip.pop("_example", None)
        Path(args.json).write_text(json.dumps({"aligned": aligned, "crop": unaligned, "off": off}, indent=2,
                                              default=str) + "\n")


if __name__ == "__main__":
    main()
