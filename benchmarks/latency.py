"""Per-stage latency of every shipped model, at the precision users get (--precision auto: see facesr/superres.py).

    python benchmarks/latency.py [--out benchmarks/results] [--frames 150] [--repeat 2] [--device auto]

Runs `facesr bench` (facesr/bench.py) over the full matrix for the CPU models (`lite`,
`lite-gan`: three call sizes x no face / one face / several faces) and, as the paper-sized
`srresnet`/`srgan` take about 300 ms per face on two CPU cores, over 320x180 with fewer frames
for them on CPU (the full matrix on CUDA). On a CPU also `lite` in the precision "auto" did not
pick, with faces: torch (bfloat16 where the CPU has it, else float32) where auto runs its int8
twin, the int8 twin where auto runs torch. Each row records its precision. Writes
latency_<device>.json and .png in --out.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from facesr.bench import SCENES, SIZES, run_bench, write_report
from facesr.paths import data_dir
from facesr.runtime import cpu_has_native_bfloat16, plan, resolve_device
from facesr.weights import load_generator


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = resolve_device(args.device).type
    videos = data_dir("videos")
    plans = [(["lite", "lite-gan"], list(SIZES), list(SCENES), args.frames, "auto")]
    if device == "cuda":
        plans.append((["srresnet", "srgan"], list(SIZES), list(SCENES), args.frames, "auto"))
    else:
        auto = plan(load_generator("lite"), args.device, "auto").precision
        other = "int8" if auto != "int8" else "bfloat16" if cpu_has_native_bfloat16() else "float32"
        plans.append((["lite"], list(SIZES), ["one", "several"], args.frames, other))
        plans.append((["srresnet", "srgan"], ["320x180"], ["one", "several"], 30, "auto"))
    report = None
    for models, sizes, scenes, frames, precision in plans:
        part = run_bench(models, sizes=sizes, scenes=scenes, videos=videos, frames=frames, repeat=args.repeat,
                         device=args.device, precision=precision)
        if report is None:
            report = part
        else:
            report["results"] += part["results"]
    args.out.mkdir(parents=True, exist_ok=True)
    write_report(report, str(args.out / f"latency_{device}.json"), str(args.out / f"latency_{device}.png"))
    print(f"wrote {args.out / f'latency_{device}.json'} and .png")


if __name__ == "__main__":
    main()
