"""`facesr bench`: per-frame latency of the exact path users run, per stage, against bicubic-only.

For each call size (LR -> 4x output) and scene (no face, one face, several faces) a call clip
is made once from the data folder's videos (`protocol.scene_clip`: area-downscaled, H.264 CRF 28,
cached in ~/.cache/facesr/bench) and run through `video.transcode` -- PyAV decode, the Enhancer,
libx264 encode, as `facesr video` runs it -- once per model and once with the bicubic-only
pipeline, alternating, in the same process, both rendering `workers` frames at once as
`facesr video` does. Reported: p50/p95/p99 ms per frame for decode,
detect, track, SR, blend and encode (decode, encode and the render workers run in threads of
their own, overlapping, so end-to-end time per frame is less than the sum), end-to-end fps, and the
time ratio to bicubic-only. JSON, and a PNG: stacked per-stage bars and latency over time.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from .errors import UserError

SIZES = {"320x180": (320, 180), "160x90": (160, 90), "480x270": (480, 270)}
PLOT_STAGES = ("decode", "background", "detect", "track", "memory", "sr", "blend", "encode")


def time_path(clip: Path, enhancer, scale: int, size: tuple[int, int]) -> dict:
    """One `facesr video` run of `clip` through `enhancer` (decode, Enhancer, encode): fps and per-stage ms."""
    from .enhancer import beside_codec_threads
    from .video import transcode

    with tempfile.TemporaryDirectory() as tmp, beside_codec_threads():
        t0 = time.perf_counter()
        stats = transcode(clip, Path(tmp) / "out.mp4", enhancer, (size[0] * scale, size[1] * scale), progress=False,
                          timer=enhancer.timer)
        wall = time.perf_counter() - t0
    samples = enhancer.timer.samples
    return {
        "fps": stats["frames"] / wall,
        "frames": stats["frames"],
        "stages": {name: {f"p{q}": round(float(np.percentile(v, q)), 2) for q in (50, 95, 99)}
                   for name, v in samples.items() if v},
        "per_frame_ms": [round(x, 2) for x in samples["total"]],
    }


def cpu_name() -> str:
    """The CPU's model name and the features the generator's speed hangs on, from /proc/cpuinfo on
    Linux (e.g. "Intel(R) Xeon(R) Processor (avx512_bf16, amx_tile, avx512_vnni)"): the same bench
    differs by machine."""
    name, flags = platform.processor() or platform.machine(), []
    try:
        with open("/proc/cpuinfo") as f:
            first_cpu = f.read().split("\n\n")[0]  # every core lists the same model and flags
        info = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in first_cpu.splitlines() if ":" in line)}
        name = info.get("model name", name)
        flags = [f for f in ("avx512_bf16", "amx_tile", "avx512_vnni") if f in info.get("flags", "").split()]
    except OSError:
        pass
    return f"{name} ({', '.join(flags)})" if flags else name


def run_bench(models: list[str], *, sizes: list[str], scenes: list[str], videos: Path, scale: int = 4,
              frames: int = 150, repeat: int = 2, device: str = "auto", precision: str = "auto",
              workers: int = 2, progress: bool = True) -> dict:
    import torch

    from .enhancer import Enhancer, threads_beside_codec
    from .paths import cache_dir
    from .protocol import scene_clip
    from .runtime import describe_precisions, plan, resolve_device
    from .weights import load_generator

    dev = resolve_device(device)
    chosen = {m: plan(load_generator(m, scale), dev, precision).precision for m in models}
    report = {
        "device": str(dev),
        "gpu": torch.cuda.get_device_name(0) if dev.type == "cuda" else None,
        "precision": describe_precisions(chosen),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads_beside_codec(),
        "workers": workers,
        "scale": scale, "frames": frames, "repeat": repeat,
        "results": [],
    }
    cache = cache_dir() / "bench"
    for size_name in sizes:
        size = SIZES[size_name]
        for scene in scenes:
            clip = scene_clip(videos, scene, size, frames, cache)
            for model in models:
                runs = {"facesr": [], "bicubic": []}
                for _ in range(repeat):  # alternate, so drifts in machine load hit both alike
                    for name in runs:
                        enhancer = Enhancer(model, scale, device=device, precision=precision, fps=30.0,
                                            background_only=name == "bicubic", workers=workers)
                        try:
                            runs[name].append(time_path(clip, enhancer, scale, size))
                        finally:
                            enhancer.close()
                best = {k: max(v, key=lambda r: r["fps"]) for k, v in runs.items()}
                fps = {k: float(np.median([r["fps"] for r in v])) for k, v in runs.items()}
                row = {
                    "size": size_name, "out": f"{size[0] * scale}x{size[1] * scale}", "scene": scene, "model": model,
                    "precision": chosen[model],
                    "fps": round(fps["facesr"], 1), "bicubic_fps": round(fps["bicubic"], 1),
                    "time_ratio": round(fps["bicubic"] / fps["facesr"], 2),
                    "stages": best["facesr"]["stages"], "bicubic_stages": best["bicubic"]["stages"],
                    "per_frame_ms": best["facesr"]["per_frame_ms"],
                }
                report["results"].append(row)
                if progress:
                    print(format_row(row), flush=True)
    return report


def model_label(row: dict) -> str:
    """The row's model, with "int8" where it ran in int8 (the report's precision covers the rest)."""
    return f"{row['model']} int8" if row.get("precision") == "int8" else row["model"]


def format_row(row: dict) -> str:
    st = row["stages"]
    cell = lambda k: f"{st[k]['p50']:.1f}/{st[k]['p95']:.1f}/{st[k]['p99']:.1f}" if k in st else "-"  # noqa: E731
    return (f"{row['size']:>7} -> {row['out']:<9} {row['scene']:<8} {model_label(row):<9} {row['fps']:>6.1f} fps "
            f"(bicubic-only {row['bicubic_fps']:.1f}, {row['time_ratio']:.2f}x)  ms p50/p95/p99: "
            + "  ".join(f"{k} {cell(k)}" for k in ("decode", "detect", "track", "memory", "sr", "blend", "encode") if k in st))


def plot(report: dict, path: str | Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("--plot needs matplotlib (pip install matplotlib)") from None
    rows = report["results"]
    fig, (bars, lines) = plt.subplots(2, 1, figsize=(max(8, 0.9 * len(rows) + 3), 9))
    labels = [f"{r['size']}\n{r['scene']}\n{model_label(r)}" for r in rows]
    bottom = np.zeros(len(rows))
    for stage in PLOT_STAGES:
        vals = np.array([r["stages"].get(stage, {}).get("p50", 0.0) for r in rows])
        bars.bar(labels, vals, bottom=bottom, label=stage)
        bottom += vals
    bicubic = [1000.0 / r["bicubic_fps"] for r in rows]
    endtoend = [1000.0 / r["fps"] for r in rows]
    bars.plot(labels, endtoend, "k_", markersize=24, mew=2, label="end to end (ms/frame)")
    bars.plot(labels, bicubic, "r_", markersize=24, mew=2, label="bicubic-only end to end")
    bars.set_ylabel("ms per frame (p50)")
    bars.set_title(f"facesr per-stage latency, {report['device']} {report['precision']}"
                   + (f" ({report['gpu']}" if report["gpu"] else f" ({report['cpu_count']} cores")
                   + f", {report.get('workers', 1)} render workers)")
    bars.legend(fontsize=8, ncol=3)
    bars.tick_params(axis="x", labelsize=7)
    for r in rows:
        lines.plot(r["per_frame_ms"], lw=0.8, label=f"{r['size']} {r['scene']} {model_label(r)}")
    lines.set_xlabel("frame")
    lines.set_ylabel("ms (decode + Enhancer + encode)")
    lines.set_title("latency per frame over time")
    lines.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(str(path), dpi=110)
    plt.close(fig)


def write_report(report: dict, json_out: str | None, plot_out: str | None) -> None:
    if json_out:
        Path(json_out).write_text(json.dumps(report, indent=1))
    if plot_out:
        plot(report, plot_out)
