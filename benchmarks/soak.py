"""Soak: `facesr stream --webrtc` for minutes while aiortc peers come and go; does anything build up?

    python benchmarks/soak.py [--minutes 10] [--max-peers 4] [--stay 20,60] [--out benchmarks/results/soak]

The relay runs as its own process (`python -m facesr stream --webrtc`, as an operator runs it).
Peers (a real call, ../shared/data/videos/talking_s18.mp4 at 320x180, stamped as in
benchmarks/stream_latency.py) arrive at random, up to --max-peers at a time, each staying a
random --stay seconds, in three kinds:

* clean:  says goodbye (closes its connection) when it leaves;
* vanish: a client process killed with SIGKILL: its sockets just stop, the relay is told nothing;
* silent: exactly one, the second peer: its camera stops sending after a few seconds while its
          connection stays open (the relay's peer timeout should close it).

Before the load, --max-peers + 1 clean peers (as many as the relay holds: it is started with room
for one vanished peer it has not noticed yet) warm it up together, so that its thread pools,
which grow with the peers at once and stay, reach their working size; the idle level is taken
once they have gone.
Every --sample seconds the relay's RSS, open file descriptors and threads (/proc), its peer
count (GET /config) and the machine's load are recorded; every peer's received fps and
capture-to-display latency too. Written: OUT/soak.json and OUT/soak.png (RSS, fds, threads,
peers over time).

It holds when
* RSS grows less than 50 MB after the first --settle seconds (60): judged by the time term of
  a least-squares fit of RSS on time and the relay's peer count (peers cost memory while they
  stay; growth is what time adds), and by the idle RSS after the run against the RSS at settle;
* open fds and threads are back at their idle level once every peer has left;
* every peer that stays (clean or vanish, not refused) gets frames, and the silent peer is closed
  by the relay;
* the relay stops on SIGINT with status 0 and no traceback.

Network: everything stays on loopback inside a private network namespace; run as root (or where
`unshare -rn` works) and the script makes one itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from facesr.stream.client import ClientResult, private_network_problem, reexec_in_private_network

ROOT = Path(__file__).resolve().parent.parent

# A peer in a process of its own, killed without a goodbye: reports what it received once a second.
VANISHING_PEER = r"""
import asyncio, json, sys
import numpy as np
from facesr.stream.client import ClientResult, run_client

url, frames_file = sys.argv[1], sys.argv[2]
frames = list(np.load(frames_file))
result = ClientResult()

async def report():
    while True:
        await asyncio.sleep(1.0)
        print(json.dumps(result.summary() | {"states": result.states}), flush=True)

async def main():
    task = asyncio.ensure_future(report())
    await run_client(url, frames, seconds=24 * 3600, result=result)
    task.cancel()

asyncio.run(main())
"""


# --- the relay process --------------------------------------------------------------------------


def proc_usage(pid: int) -> dict:
    """RSS (MB), open file descriptors and threads of a process, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024
    threads = int(re.search(r"Threads:\s+(\d+)", status).group(1))
    return {"rss_mb": round(rss, 1), "fds": len(os.listdir(f"/proc/{pid}/fd")), "threads": threads}


class RelayProcess:
    """`python -m facesr stream --webrtc` on a free port; its stderr is kept."""

    def __init__(self, args) -> None:
        cmd = [sys.executable, "-m", "facesr", "stream", "--webrtc", "--port", "0",
               "--max-peers", str(args.max_peers + 1),  # room for a vanished peer the relay has not noticed yet
               "--threads", str(args.threads), "--peer-timeout", f"{args.peer_timeout:g}", *args.relay_args]
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        self.lines: list[str] = []
        self.url: str | None = None
        self._ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        if not self._ready.wait(120) or self.url is None:
            self.proc.kill()
            raise RuntimeError("the relay did not start:\n" + "".join(self.lines[-20:]))

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)
            m = re.search(r"open (http://\S+/)", line)
            if m:
                self.url = m.group(1).rstrip("/")
                self._ready.set()
        self._ready.set()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 30.0) -> dict:
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        return {"exit_status": rc, "stop_s": round(time.monotonic() - t0, 2),
                "traceback": any("Traceback" in line for line in self.lines), "stderr_tail": self.lines[-10:]}


async def relay_peers(session, url: str) -> int | None:
    try:
        async with session.get(url + "/config", timeout=3) as resp:
            return (await resp.json())["peers"]
    except Exception:
        return None


# --- peers ---------------------------------------------------------------------------------------


class Peers:
    def __init__(self, url: str, frames: list[np.ndarray], frames_file: str, peer_timeout: float) -> None:
        self.url, self.frames, self.frames_file, self.peer_timeout = url, frames, frames_file, peer_timeout
        self.records: list[dict] = []
        self.active = 0
        self.t0 = time.monotonic()

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 2)

    async def run(self, kind: str, stay: float, phase: str = "load") -> dict:
        rec = {"id": len(self.records) + 1, "kind": kind, "phase": phase, "start_s": self.now(), "stay_s": round(stay, 1)}
        self.records.append(rec)
        self.active += 1
        try:
            if kind == "vanish":
                await self._vanish(rec, stay)
            else:
                await self._in_process(rec, kind, stay)
        except ConnectionError as exc:  # 503: the relay was full
            rec["refused"] = str(exc)
        except Exception as exc:
            rec["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            self.active -= 1
            rec["end_s"] = self.now()
        return rec

    async def _in_process(self, rec: dict, kind: str, stay: float) -> None:
        from facesr.stream.client import run_client

        result = ClientResult()
        stops = min(8.0, stay / 3) if kind == "silent" else None
        try:
            await run_client(self.url, self.frames, seconds=stay, camera_stops_after=stops, result=result)
        finally:
            rec.update(summarize(result))
            if stops is not None:
                rec["camera_stopped_at_s"] = stops
                closed = [t for t, state in result.states if state in ("closed", "failed") and t < stay - 0.5]
                rec["closed_by_relay_after_s"] = closed[0] if closed else None

    async def _vanish(self, rec: dict, stay: float) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", VANISHING_PEER, self.url, self.frames_file, stdout=subprocess.PIPE,
            env=os.environ | {"PYTHONPATH": str(ROOT)})
        last: dict = {}

        async def read() -> None:
            async for line in proc.stdout:
                try:
                    last.update(json.loads(line))
                except ValueError:
                    pass

        reader = asyncio.ensure_future(read())
        try:
            await asyncio.wait_for(proc.wait(), stay)
            rec["error"] = f"the peer process ended by itself with status {proc.returncode}"
        except asyncio.TimeoutError:
            proc.kill()  # SIGKILL: no goodbye, its sockets just stop
            await proc.wait()
        await asyncio.wait_for(reader, 5)
        rec.update({k: last.get(k) for k in ("received", "fps", "latency_ms_p50", "latency_ms_p95", "unread", "states")})
        rec["received"] = rec.get("received") or 0
        rec["sizes"] = [list(s) for s in last.get("sizes", [])]


def summarize(result: ClientResult) -> dict:
    s = result.summary()
    return {"received": s["received"], "fps": s["fps"],
            "latency_ms_p50": None if np.isnan(s["latency_ms_p50"]) else s["latency_ms_p50"],
            "latency_ms_p95": None if np.isnan(s["latency_ms_p95"]) else s["latency_ms_p95"],
            "unread": s["unread"], "sizes": [list(x) for x in s["sizes"]], "states": result.states}


# --- the run ---------------------------------------------------------------------------------------


async def soak(args, relay: RelayProcess, frames: list[np.ndarray], frames_file: str) -> dict:
    import aiohttp

    rng = random.Random(args.seed)
    peers = Peers(relay.url, frames, frames_file, args.peer_timeout)
    samples: list[dict] = []
    phase = {"name": "idle"}

    async with aiohttp.ClientSession() as http:
        async def sample() -> dict:
            s = {"t_s": peers.now(), "phase": phase["name"], **proc_usage(relay.pid),
                 "relay_peers": await relay_peers(http, relay.url), "client_peers": peers.active,
                 "load1": round(os.getloadavg()[0], 2)}
            samples.append(s)
            return s

        async def sampler() -> None:
            while True:
                await sample()
                await asyncio.sleep(args.sample)

        async def until_relay_empty(limit: float) -> float:
            t = time.monotonic()
            while time.monotonic() - t < limit:
                if await relay_peers(http, relay.url) == 0:
                    break
                await asyncio.sleep(0.5)
            return round(time.monotonic() - t, 1)

        async def idle_level() -> dict:
            await asyncio.sleep(3.0)
            got = []
            for _ in range(3):
                got.append(proc_usage(relay.pid))
                await asyncio.sleep(1.0)
            return {k: float(np.median([g[k] for g in got])) for k in got[0]}

        sampling = asyncio.ensure_future(sampler())
        idle_cold = await idle_level()
        phase["name"] = "warm-up"
        # as many peers as the relay will hold (max_peers and one vanished one it has not noticed yet):
        # its thread pools grow with the peers at once, and stay
        warm = await asyncio.gather(*(peers.run("clean", args.warmup, "warm-up") for _ in range(args.max_peers + 1)))
        await until_relay_empty(args.peer_timeout + 20)
        phase["name"] = "idle"
        idle_warm = await idle_level()

        phase["name"] = "load"
        load_start = peers.now()
        load_end = load_start + args.minutes * 60
        tasks: list[asyncio.Task] = []
        lo, hi = args.stay
        while peers.now() < load_end - lo:
            if peers.active < args.max_peers:
                n = sum(1 for r in peers.records if r["phase"] == "load")
                kind = ("clean", "silent", "vanish")[n] if n < 3 else rng.choice(("clean", "clean", "vanish"))
                stay = rng.uniform(lo, max(lo, min(hi, load_end - peers.now())))
                if kind == "silent":
                    stay = max(stay, 8.0 + args.peer_timeout + 6.0)  # long enough for the relay to notice
                tasks.append(asyncio.ensure_future(peers.run(kind, stay)))
            await asyncio.sleep(rng.uniform(1.0, 4.0))
        await asyncio.gather(*tasks)
        load_done = peers.now()
        phase["name"] = "draining"
        drained_after = await until_relay_empty(args.peer_timeout + 30)
        phase["name"] = "idle"
        idle_after = await idle_level()
        await sample()
        sampling.cancel()

    return {"samples": samples, "peers": peers.records, "warmup_peers": len(warm), "idle_cold": idle_cold,
            "idle_warm": idle_warm, "idle_after": idle_after, "load_start_s": load_start, "load_end_s": load_done,
            "drained_after_s": drained_after}


def rss_growth(samples: list[dict], start: float, end: float) -> dict:
    """RSS at settle, and growth over [start, end]: the time term of RSS ~ a + b t + c peers."""
    pts = [s for s in samples if start <= s["t_s"] <= end and s["relay_peers"] is not None]
    if len(pts) < 4:
        return {"samples": len(pts)}
    t = np.array([s["t_s"] for s in pts])
    rss = np.array([s["rss_mb"] for s in pts])
    peers = np.array([s["relay_peers"] for s in pts], float)
    a = np.stack([np.ones_like(t), t - t[0], peers], axis=1)
    coef, *_ = np.linalg.lstsq(a, rss, rcond=None)
    near = rss[t <= t[0] + 10]
    return {"samples": len(pts), "rss_at_settle_mb": round(float(near.mean()), 1),
            "rss_max_mb": round(float(rss.max()), 1),
            "trend_mb": round(float(coef[1] * (t[-1] - t[0])), 1), "mb_per_peer": round(float(coef[2]), 1),
            "span_s": round(float(t[-1] - t[0]), 1)}


def judge(run: dict, args, stopped: dict) -> dict:
    settle = run["load_start_s"] + args.settle
    rss = rss_growth(run["samples"], settle, run["load_end_s"])
    idle_vs_settle = (round(run["idle_after"]["rss_mb"] - rss["rss_at_settle_mb"], 1)
                      if "rss_at_settle_mb" in rss else None)
    load = [p for p in run["peers"] if p["phase"] == "load"]
    staying = [p for p in load if p["kind"] in ("clean", "vanish") and "refused" not in p]
    silent = [p for p in load if p["kind"] == "silent"]
    starved = [p["id"] for p in staying if not p.get("received")]
    silent_ok = all(p.get("received") and p.get("closed_by_relay_after_s") is not None for p in silent)
    checks = {
        "rss_growth_under_50mb": rss.get("trend_mb") is not None and rss["trend_mb"] < 50
        and (idle_vs_settle is None or idle_vs_settle < 50),
        "fds_back_to_idle": run["idle_after"]["fds"] <= run["idle_warm"]["fds"],
        "threads_back_to_idle": run["idle_after"]["threads"] <= run["idle_warm"]["threads"],
        "every_staying_peer_got_frames": bool(staying) and not starved,
        "silent_peer_closed_by_relay": bool(silent) and silent_ok,
        "relay_stopped_cleanly": stopped["exit_status"] == 0 and not stopped["traceback"],
    }
    fps = [p["fps"] for p in staying if p.get("fps")]
    lat = [p["latency_ms_p50"] for p in staying if p.get("latency_ms_p50")]
    return {
        "holds": all(checks.values()), "checks": checks, "rss": rss | {"idle_after_minus_settle_mb": idle_vs_settle},
        "peers": {"load": len(load), "clean": sum(p["kind"] == "clean" for p in load),
                  "vanish": sum(p["kind"] == "vanish" for p in load), "silent": len(silent),
                  "refused": sum("refused" in p for p in load), "errors": [p for p in load if "error" in p],
                  "starved": starved, "frames_received": sum(p.get("received") or 0 for p in load),
                  "fps_per_peer_median": round(float(np.median(fps)), 1) if fps else None,
                  "fps_per_peer_range": [min(fps), max(fps)] if fps else None,
                  "latency_ms_p50_median": round(float(np.median(lat)), 1) if lat else None,
                  "max_at_once": max((s["relay_peers"] or 0) for s in run["samples"])},
        "load1_median": round(float(np.median([s["load1"] for s in run["samples"]])), 2),
    }


def plot(run: dict, report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = run["samples"]
    t = np.array([x["t_s"] for x in s]) / 60
    fig, axes = plt.subplots(4, 1, figsize=(10, 9), sharex=True)
    series = [("rss_mb", "RSS (MB)"), ("fds", "open fds"), ("threads", "threads")]
    for ax, (key, label) in zip(axes, series):
        ax.plot(t, [x[key] for x in s], lw=1.2)
        ax.set_ylabel(label)
    axes[3].step(t, [x["relay_peers"] or 0 for x in s], where="post", label="relay's peers")
    axes[3].step(t, [x["client_peers"] for x in s], where="post", ls="--", label="peers connecting or connected")
    axes[3].set_ylabel("peers")
    axes[3].legend(loc="upper right", fontsize=8)
    axes[3].set_xlabel("minutes")
    settle = (run["load_start_s"] + report["settings"]["settle_s"]) / 60
    for ax in axes:
        ax.axvspan(run["load_start_s"] / 60, run["load_end_s"] / 60, color="0.93", zorder=0)
        ax.axvline(settle, color="0.5", ls=":", lw=1)
        ax.grid(alpha=0.3)
    for p in run["peers"]:
        if p["kind"] != "clean" and p["phase"] == "load":
            axes[3].annotate(p["kind"], (p["start_s"] / 60, 0.2), fontsize=6, rotation=90, color="C3")
    v = report["verdict"]
    fig.suptitle(f"facesr stream --webrtc soak: {report['settings']['minutes']:g} min, up to "
                 f"{report['settings']['max_peers']} peers; RSS trend {v['rss'].get('trend_mb')} MB after settle; "
                 f"{'holds' if v['holds'] else 'FAILS'}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="length of the load phase (default 10)")
    p.add_argument("--max-peers", type=int, default=4, help="peers at once (default 4)")
    p.add_argument("--stay", default="20,60", help="each peer stays a random time in this range of seconds (20,60)")
    p.add_argument("--sample", type=float, default=3.0, help="seconds between samples (3)")
    p.add_argument("--settle", type=float, default=60.0, help="seconds of load before RSS growth counts (60)")
    p.add_argument("--warmup", type=float, default=10.0, help="seconds the warm-up peers stay (10)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--peer-timeout", type=float, default=5.0, help="the relay's --peer-timeout (5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clip", default=None, help="default ../shared/data/videos/talking_s18.mp4 ($FACESR_DATA first)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "soak"))
    p.add_argument("relay_args", nargs="*", help="after --: more `facesr stream` options (--model, --precision)")
    args = p.parse_args()
    args.stay = tuple(float(v) for v in args.stay.split(","))
    if private_network_problem():
        reexec_in_private_network()
    data = Path(os.environ.get("FACESR_DATA") or ROOT.parent / "shared" / "data")
    clip = Path(args.clip) if args.clip else data / "videos" / "talking_s18.mp4"
    if not clip.is_file():
        sys.exit(f"{clip}: no such clip (../shared/data beside the checkout, or --clip)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from facesr.stream.client import load_clip

    frames = load_clip(str(clip), (320, 180), frames=90)
    with tempfile.TemporaryDirectory() as tmp:
        frames_file = os.path.join(tmp, "frames.npy")
        np.save(frames_file, np.stack(frames))
        started = time.time()
        relay = RelayProcess(args)
        try:
            run = asyncio.run(soak(args, relay, frames, frames_file))
        finally:
            stopped = relay.stop()
    report = {
        "settings": {"minutes": args.minutes, "max_peers": args.max_peers, "stay_s": list(args.stay),
                     "sample_s": args.sample, "settle_s": args.settle, "warmup_s": args.warmup,
                     "peer_timeout_s": args.peer_timeout, "threads": args.threads, "seed": args.seed,
                     "clip": clip.name, "relay_command": " ".join(relay.cmd[1:]), "cpu_count": os.cpu_count(),
                     "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))},
        "relay_stop": stopped,
        "idle": {"cold": run["idle_cold"], "after_warmup": run["idle_warm"], "after_run": run["idle_after"]},
        "drained_after_s": run["drained_after_s"],
    }
    report["verdict"] = judge(run, args, stopped)
    report["peers"] = run["peers"]
    report["samples"] = run["samples"]
    report["load_start_s"], report["load_end_s"] = run["load_start_s"], run["load_end_s"]
    (out / "soak.json").write_text(json.dumps(report, indent=1))
    plot(run, report, out / "soak.png")
    v = report["verdict"]
    print(json.dumps({"holds": v["holds"], "checks": v["checks"], "rss": v["rss"], "idle": report["idle"],
                      "peers": {k: x for k, x in v["peers"].items() if k != "errors"}, "errors": v["peers"]["errors"],
                      "load1_median": v["load1_median"], "relay_stop": {k: x for k, x in stopped.items()
                                                                        if k != "stderr_tail"}}, indent=1))
    print(f"wrote {out / 'soak.json'} and {out / 'soak.png'}")
    return 0 if v["holds"] else 1


if __name__ == "__main__":
    sys.exit(main())
