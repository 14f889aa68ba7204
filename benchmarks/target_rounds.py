"""The CPU target, judged by alternating rounds: bicubic-only against each model at each precision.

    python benchmarks/target_rounds.py [--rounds 8] [--model lite,lite-call,lite-recurrent] [--precisions auto,bfloat16]
                                       [--size 320x180] [--scene one]

`facesr bench`'s clip for the size and scene (one talking head, 150 frames), run through the
path `facesr video` runs (facesr.bench.time_path), once per round for the bicubic-only pipeline
and once for each model (comma-separated) at each precision, in turn. On a shared machine whose speed drifts within
minutes, each round's ratio compares runs a few seconds apart; the median over rounds is the
figure to quote. Also reports the process CPU time per frame (user + system, getrusage), which
moves less with the machine's load than wall time does.
"""

from __future__ import annotations

import argparse
import resource
import statistics

from facesr.bench import SIZES, time_path
from facesr.enhancer import Enhancer
from facesr.paths import cache_dir, data_dir
from facesr.protocol import SCENES, scene_clip


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--precisions", default="auto,bfloat16", help="the precisions to time, comma-separated")
    ap.add_argument("--model", default="lite", help="the models to time, comma-separated")
    ap.add_argument("--size", default="320x180", choices=list(SIZES))
    ap.add_argument("--scene", default="one", choices=list(SCENES))
    ap.add_argument("--parallel-frames", type=int, default=2)
    args = ap.parse_args()
    size = SIZES[args.size]
    clip = scene_clip(data_dir("videos"), args.scene, size, 150, cache_dir() / "bench")
    models, precisions = args.model.split(","), args.precisions.split(",")
    runs = {"bicubic-only": {}}
    for model in models:
        for p in precisions:
            runs[p if len(models) == 1 else f"{model} {p}"] = {"model": model, "precision": p}
    fps: dict[str, list[float]] = {name: [] for name in runs}
    cpu_ms: dict[str, list[float]] = {name: [] for name in runs}
    for n in range(args.rounds):
        for name, kw in runs.items():
            model = kw.get("model", models[0])
            enhancer = Enhancer(model, 4, fps=30.0, workers=args.parallel_frames, background_only=not kw,
                                **{k: v for k, v in kw.items() if k != "model"})
            c0 = cpu_seconds()
            result = time_path(clip, enhancer, 4, size)
            cpu_ms[name].append((cpu_seconds() - c0) / result["frames"] * 1000)
            fps[name].append(result["fps"])
            enhancer.close()
        print(f"round {n + 1}: " + ", ".join(f"{k} {v[-1]:.1f} fps" for k, v in fps.items()), flush=True)
    base = fps["bicubic-only"]
    for name in runs:
        ratios = [b / f for b, f in zip(base, fps[name])]
        cpu_ratio = statistics.median(c / b for c, b in zip(cpu_ms[name], cpu_ms["bicubic-only"]))
        print(f"{name:>18}: {statistics.median(fps[name]):6.1f} fps, time vs bicubic-only median "
              f"{statistics.median(ratios):.2f}x (rounds {min(ratios):.2f}-{max(ratios):.2f}x), "
              f"CPU {statistics.median(cpu_ms[name]):.1f} ms/frame ({cpu_ratio:.2f}x)")


if __name__ == "__main__":
    main()
