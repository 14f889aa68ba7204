"""Where the Enhancer's time goes, by function and by torch operator, on one bench scene.

    python benchmarks/profile_enhancer.py [--model lite] [--size 320x180] [--scene one] [--precision auto] [--frames 150]

Runs the Enhancer alone (no codec threads beside it) over the bench's call clip twice: the
first pass warms up, the second is profiled with cProfile (Python functions, top by own time)
and torch.profiler (the generator's operators). This is the profile that guided the speed
work: the generator's convolutions, then the resizes and the blend.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats

import torch

from facesr.bench import SIZES
from facesr.enhancer import Enhancer
from facesr.paths import cache_dir, data_dir
from facesr.protocol import scene_clip
from facesr.video import read_frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lite")
    ap.add_argument("--size", default="320x180", choices=list(SIZES))
    ap.add_argument("--scene", default="one", choices=("none", "one", "several"))
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--frames", type=int, default=150)
    args = ap.parse_args()

    clip = scene_clip(data_dir("videos"), args.scene, SIZES[args.size], args.frames, cache_dir() / "bench")
    frames = list(read_frames(clip))
    enhancer = Enhancer(args.model, 4, device="cpu", precision=args.precision)
    for frame in frames:  # warm-up: detector, oneDNN kernels for these shapes
        enhancer(frame)
    enhancer.timer.samples.clear()

    profile = cProfile.Profile()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as ops:
        profile.enable()
        for frame in frames:
            enhancer(frame)
        profile.disable()
    enhancer.close()

    print(f"{args.model} {enhancer.resolver.precision}, {torch.get_num_threads()} threads, {len(frames)} frames of "
          f"{args.scene} at {args.size}; ms per frame by stage (p50 / mean):")
    for stage, q in enhancer.timer.summary().items():
        print(f"  {stage:10} {q['p50']:6.2f} / {q['mean']:6.2f}")
    print("\nPython functions, by own time:")
    pstats.Stats(profile).sort_stats("tottime").print_stats(12)
    print("torch operators, by own CPU time:")
    print(ops.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))


if __name__ == "__main__":
    main()
