"""End-to-end `facesr video` throughput against the bicubic-only pipeline, in one process.

    python benchmarks/video_fps.py [CLIP ...] [--scale 4] [--model lite] [--parallel-frames 2] [--repeat 3] [--json OUT]

Each clip (default: the data folder's videos/talking_s18.mp4) is first made into a call-like
input: area-downscaled by the scale (1280x720 -> 320x180) and H.264-compressed at CRF 28.
Then the exact path users run (PyAV decode -> Enhancer -> libx264 encode, the generator on half
the threads beside the codec, `--parallel-frames` frames rendered at once, as `facesr video`) is timed with face
super-resolution and with `--background-only`, alternating, `--repeat` times each; medians
and their ratio are reported, with the Enhancer's per-stage p50/p95 ms per frame.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from facesr.enhancer import Enhancer, beside_codec_threads, threads_beside_codec
from facesr.protocol import make_call_clip
from facesr.video import transcode


def run_once(clip: Path, out: Path, enhancer: Enhancer, scale: int, width: int, height: int) -> float:
    stats = transcode(clip, out, enhancer, (width * scale, height * scale), progress=False)
    return stats["fps"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clips", nargs="*", type=Path, default=None)
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--model", default="lite")
    ap.add_argument("--detector", default="full")
    ap.add_argument("--parallel-frames", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if not args.clips:
        from facesr.paths import data_dir

        args.clips = [data_dir("videos/talking_s18.mp4")]

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for clip in args.clips:
            if not clip.is_file():
                sys.exit(f"{clip}: not found (the default clip lives in ../shared beside the checkout)")
            lr = Path(tmp) / f"{clip.stem}_lr.mp4"
            info = make_call_clip(clip, lr, scale=args.scale, crf=28)
            fps = {"facesr": [], "bicubic": []}
            timers = []
            for _ in range(args.repeat):
                for name in fps:
                    enhancer = Enhancer(args.model, args.scale, detector=args.detector, fps=float(info.fps),
                                        background_only=name == "bicubic", workers=args.parallel_frames)
                    with beside_codec_threads():
                        fps[name].append(run_once(lr, Path(tmp) / "out.mp4", enhancer, args.scale, info.width, info.height))
                    if name == "facesr":
                        timers.append(enhancer.timer.summary())
                    enhancer.close()
            med = {k: statistics.median(v) for k, v in fps.items()}
            row = {
                "clip": clip.name,
                "input": f"{info.width}x{info.height}",
                "output": f"{info.width * args.scale}x{info.height * args.scale}",
                "frames": info.frames,
                "model": args.model,
                "torch_threads": threads_beside_codec(),
                "parallel_frames": args.parallel_frames,
                "fps_facesr": med["facesr"],
                "fps_bicubic_only": med["bicubic"],
                "time_ratio_vs_bicubic_only": med["bicubic"] / med["facesr"],
                "runs": fps,
                "stages_ms": {k: {q: round(v[q], 2) for q in ("p50", "p95")} for k, v in timers[-1].items()},
            }
            results.append(row)
            print(f"{clip.name} {row['input']} -> {row['output']}: facesr {med['facesr']:.1f} fps, "
                  f"bicubic-only {med['bicubic']:.1f} fps, time ratio {row['time_ratio_vs_bicubic_only']:.2f}x")
            print("  per-stage ms p50/p95: " + ", ".join(f"{k} {v['p50']}/{v['p95']}" for k, v in row["stages_ms"].items()))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
