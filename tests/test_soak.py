"""A short soak of `facesr stream --webrtc` (benchmarks/soak.py): about a minute, two peers at a time.

Peers come and go (closing cleanly, vanishing with SIGKILL, one whose camera stops while its
connection stays open); the relay's open fds and threads must be back at their idle level once
every peer has left, every peer that stays must get frames, the silent one must be closed by the
relay, the relay must stop cleanly, and its RSS must not grow by 50 MB after the first 15 s.
The 10-minute run and its figures are in docs/performance.md ("Soak").
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers import ROOT, shared_path


@pytest.mark.slow
@pytest.mark.network
@pytest.mark.shared_data
def test_short_soak_holds(private_network, tmp_path):
    clip = shared_path("data", "videos", "talking_s18.mp4")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--minutes", "0.6", "--max-peers", "2",
         "--stay", "10,20", "--warmup", "5", "--settle", "15", "--sample", "2", "--clip", str(clip), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert (tmp_path / "soak.json").is_file() and (tmp_path / "soak.png").is_file(), proc.stdout + proc.stderr
    report = json.loads((tmp_path / "soak.json").read_text())
    verdict = report["verdict"]
    print(json.dumps({"checks": verdict["checks"], "rss": verdict["rss"], "idle": report["idle"],
                      "peers": {k: v for k, v in verdict["peers"].items() if k != "errors"}}))
    assert verdict["peers"]["errors"] == [], verdict["peers"]["errors"]
    assert verdict["peers"]["silent"] == 1 and verdict["peers"]["vanish"] >= 1 and verdict["peers"]["clean"] >= 1
    assert verdict["checks"] == {name: True for name in verdict["checks"]}, verdict
    assert proc.returncode == 0
