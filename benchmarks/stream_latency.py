"""`facesr stream --webrtc`: capture-to-display latency and received fps, for 1 and 4 peers.

    python benchmarks/stream_latency.py [--seconds 15] [--peers 1,4] [--model lite] [--precision auto] [--threads 2] [--json OUT]

A real call (../shared/data/videos/talking_s18.mp4 at 320x180, 30 fps) goes from aiortc
client peers through the relay (started in this process, the model loaded as `facesr stream`
loads it) and back at 4x. Each frame carries a stamp (facesr.stream.client), so latency is
per frame: from the client's camera handing the frame to its encoder to the client decoding
the relay's answer (VP8 both ways, two encodes and two decodes included). The same run with
the relay's bicubic-only path is the baseline, as a difference (what face SR adds) and ratio.

Network: everything stays on loopback inside a private network namespace; run as root
(or where `unshare -rn` works) and the script makes one itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from facesr.stream.client import private_network_problem, reexec_in_private_network


async def measure(args) -> dict:
    from facesr.enhancer import enhancer_factory
    from facesr.options import EnhancerOptions
    from facesr.stream.client import load_clip, run_client
    from facesr.stream.options import StreamOptions
    from facesr.stream.run import start_site
    from facesr.stream.server import Relay, bitrate_for, set_video_bitrate

    make, device = enhancer_factory(EnhancerOptions(model=args.model, scale=args.scale, precision=args.precision))
    frames = load_clip(str(args.clip), (320, 180), frames=150)
    set_video_bitrate(bitrate_for(320 * args.scale, 180 * args.scale))
    relay = Relay(make, StreamOptions(max_peers=max(args.peers), threads=args.threads), device=device)
    runner, port = await start_site(relay.app, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{port}"
    report = {"device": device, "model": args.model or "default", "precision": args.precision,
              "threads": args.threads, "seconds": args.seconds,
              "cpu_count": os.cpu_count(), "runs": []}
    try:
        await run_client(url, frames, seconds=2.0)  # warm-up: model, detector, worker pools
        for peers in args.peers:
            for mode in ("bicubic", "facesr"):
                results = await asyncio.gather(*(run_client(url, frames, seconds=args.seconds, mode=mode,
                                                            warmup=args.warmup) for _ in range(peers)))
                latencies = [ms for r in results for ms in r.latency_ms]
                import numpy as np

                run = {
                    "peers": peers, "mode": mode,
                    "latency_ms_p50": round(float(np.percentile(latencies, 50)), 1),
                    "latency_ms_p95": round(float(np.percentile(latencies, 95)), 1),
                    "fps_per_peer": round(float(np.mean([r.fps for r in results])), 2),
                    "frames_sent": sum(r.sent for r in results),
                    "frames_received": sum(r.received for r in results),
                    "relay_dropped": sum(r.stats.get("dropped") or 0 for r in results),
                    "relay_frames_in": sum(r.stats.get("frames_in") or 0 for r in results),
                    "relay_enhance_ms_p50": round(float(np.median([r.stats.get("enhance_ms_p50") or 0 for r in results])), 1),
                    "sizes": sorted({s for r in results for s in r.sizes}),
                }
                report["runs"].append(run)
                print(json.dumps(run), flush=True)
                await asyncio.sleep(1.0)
    finally:
        await runner.cleanup()
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", type=Path, default=None, help="default: the data folder's videos/talking_s18.mp4")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds of each run left out (connection, first frames)")
    ap.add_argument("--peers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4])
    ap.add_argument("--model", default=None)
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="auto", help="the generator's arithmetic, as `facesr stream --precision`")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.clip is None:
        from facesr.paths import data_dir

        args.clip = data_dir("videos/talking_s18.mp4")
    if not args.clip.is_file():
        sys.exit(f"{args.clip}: not found")
    if private_network_problem():
        reexec_in_private_network()
    report = asyncio.run(measure(args))
    by = {(r["peers"], r["mode"]): r for r in report["runs"]}
    print(f"\n{'peers':>5} {'mode':>8} {'p50 ms':>8} {'p95 ms':>8} {'fps/peer':>9} {'dropped':>8}")
    for (peers, mode), r in by.items():
        print(f"{peers:>5} {mode:>8} {r['latency_ms_p50']:>8} {r['latency_ms_p95']:>8} {r['fps_per_peer']:>9} "
              f"{r['relay_dropped']:>5}/{r['relay_frames_in']}")
    for peers in args.peers:
        f, b = by[(peers, "facesr")], by[(peers, "bicubic")]
        print(f"{peers} peer(s): face SR adds {f['latency_ms_p50'] - b['latency_ms_p50']:+.0f} ms at p50 "
              f"({f['latency_ms_p50'] / b['latency_ms_p50']:.2f}x the bicubic relay)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
