"""An aiortc client for a facesr relay that measures what a caller sees, capture to display.

`ClipTrack` plays frames (a real clip, resized to the call's size) as a 30 fps camera and
stamps each with its number: a row of black and white blocks in the top-left corner that
survives VP8 and the upscale. When the relay's frame comes back, `read_stamp` finds which
sent frame it is, so latency is measured per frame from the moment the "camera" handed it
to the encoder to the moment the client decoded the answer, with no clock shared with the
server. `run_client` connects, streams for a while and returns every received frame's latency.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from dataclasses import dataclass, field

import cv2
import numpy as np
from aiohttp import ClientSession
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack

from ..yuv import i420_to_rgb, rgb_to_i420

PRIVATE_ADDRESS = "10.213.0.1"  # put on lo in a private network namespace: aioice skips 127.0.0.1

STAMP_BITS = 12  # frame number mod 4096 (2 minutes at 30 fps)
CHECK_BITS = 4
BLOCK = 8  # stamp block side in input pixels


def private_network_problem() -> str | None:
    """Why this process is not in a private network namespace fit for WebRTC tests, or None.

    Fit means: only the loopback interface (no packet can leave the machine) and
    PRIVATE_ADDRESS on it (`ip addr add 10.213.0.1/32 dev lo`), for aioice's candidates.
    """
    names = [name for _, name in socket.if_nameindex()]
    if names != ["lo"]:
        return f"network interfaces {names}: not a private namespace with only loopback"
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((PRIVATE_ADDRESS, 0))
    except OSError:
        return f"{PRIVATE_ADDRESS} is not on lo (ip addr add {PRIVATE_ADDRESS}/32 dev lo)"
    return None


def reexec_in_private_network() -> None:
    """Run this very script again inside a private network namespace (a benchmark's peers and relay
    then talk over loopback only), or exit saying how, where that cannot be made."""
    import shutil
    import sys

    if os.environ.get("FACESR_BENCH_NETNS") == "1" or not shutil.which("unshare"):
        sys.exit("run this inside a private network namespace: unshare -n sh -c "
                 f"'ip link set lo up && ip addr add {PRIVATE_ADDRESS}/32 dev lo && python {' '.join(sys.argv)}'")
    script = f'ip link set lo up && ip addr add {PRIVATE_ADDRESS}/32 dev lo && exec "$@"'
    os.environ["FACESR_BENCH_NETNS"] = "1"
    for ns in (["unshare", "-n"], ["unshare", "-rn"]):
        os.execvp(ns[0], [*ns, "sh", "-c", script, "sh", sys.executable, *sys.argv])


def _check(n: int) -> int:
    return (n ^ (n >> 4) ^ (n >> 8) ^ 0x5) & 0xF


def stamp(rgb: np.ndarray, n: int) -> np.ndarray:
    """Draw frame number `n` into the top-left corner (a copy): 16 blocks, black 0, white 1."""
    out = rgb.copy()
    n %= 1 << STAMP_BITS
    bits = [(n >> i) & 1 for i in range(STAMP_BITS)] + [(_check(n) >> i) & 1 for i in range(CHECK_BITS)]
    out[: BLOCK + 4, : (len(bits)) * BLOCK + 4] = 128  # a grey frame around it
    for i, b in enumerate(bits):
        out[2 : 2 + BLOCK, 2 + i * BLOCK : 2 + (i + 1) * BLOCK] = 255 if b else 0
    return out


def read_stamp(rgb: np.ndarray, scale: float) -> int | None:
    """The frame number stamped into an image upscaled by `scale`, or None if it does not read back."""
    y = int((2 + BLOCK / 2) * scale)
    values = []
    for i in range(STAMP_BITS + CHECK_BITS):
        x = int((2 + (i + 0.5) * BLOCK) * scale)
        r = max(1, int(scale * BLOCK / 4))
        values.append(float(rgb[y - r : y + r, x - r : x + r].mean()))
    bits = [1 if v > 128 else 0 for v in values]
    if any(40 < v < 215 for v in values):
        return None  # a block neither black nor white: not a clean read
    n = sum(b << i for i, b in enumerate(bits[:STAMP_BITS]))
    check = sum(b << i for i, b in enumerate(bits[STAMP_BITS:]))
    return n if check == _check(n) else None


def load_clip(path: str, size: tuple[int, int], frames: int = 150) -> list[np.ndarray]:
    """The first `frames` frames of a clip, resized (by area) to `size` = (width, height)."""
    from ..video import read_frames

    clip = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in read_frames(path, frames)]
    if not clip:
        raise ValueError(f"{path}: no frames")
    return clip


class ClipTrack(VideoStreamTrack):
    """A camera that plays `frames` in a loop at 30 fps, each stamped with its number.

    stops_after: seconds after which the camera goes quiet (sends nothing more, the track
    still live and the connection still open), as a camera that froze or was unplugged.
    """

    def __init__(self, frames: list[np.ndarray], stops_after: float | None = None) -> None:
        super().__init__()
        self.frames = frames
        self.count = 0
        self.sent_at: dict[int, float] = {}  # stamp -> time handed to the encoder
        self.stops_after = stops_after
        self._started: float | None = None

    async def recv(self):
        now = time.perf_counter()
        self._started = self._started if self._started is not None else now
        if self.stops_after is not None and now - self._started >= self.stops_after:
            await asyncio.Event().wait()  # silent from now on, until the connection closes
        pts, time_base = await self.next_timestamp()
        n = self.count
        self.count += 1
        frame = rgb_to_i420(stamp(self.frames[n % len(self.frames)], n))
        frame.pts, frame.time_base = pts, time_base
        self.sent_at[n % (1 << STAMP_BITS)] = time.perf_counter()
        return frame


@dataclass
class ClientResult:
    sent: int = 0
    received: int = 0
    unread: int = 0  # received frames whose stamp did not read back
    sizes: set = field(default_factory=set)
    latency_ms: list[float] = field(default_factory=list)  # per stamped frame read back, in order
    latency_at: list[float] = field(default_factory=list)  # when each of those came back (s since the first)
    received_at: list[float] = field(default_factory=list)  # per received frame: seconds since the first
    audio_frames: int = 0
    stats: dict = field(default_factory=dict)  # the relay's last stats message
    states: list = field(default_factory=list)  # (seconds since connecting, connection state) as they changed
    last_frame: np.ndarray | None = None

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latency_ms, q)) if self.latency_ms else float("nan")

    @property
    def fps(self) -> float:
        t = self.received_at
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0

    def summary(self) -> dict:
        return {
            "sent": self.sent, "received": self.received, "unread": self.unread, "fps": round(self.fps, 2),
            "latency_ms_p50": round(self.percentile(50), 1), "latency_ms_p95": round(self.percentile(95), 1),
            "sizes": sorted(self.sizes), "relay_dropped": self.stats.get("dropped"),
            "relay_enhance_ms_p50": self.stats.get("enhance_ms_p50"), "audio_frames": self.audio_frames,
        }


async def run_client(url: str, frames: list[np.ndarray] | None, seconds: float, *, mode: str = "facesr",
                     audio: bool = False, warmup: float = 0.0, camera_stops_after: float | None = None,
                     result: ClientResult | None = None) -> ClientResult:
    """Connect to the relay at `url`, send `frames` as a camera for `seconds`, measure what comes back.

    frames=None connects as a viewer (receive only) of a relay serving a local source.
    mode "bicubic" asks the relay for its bicubic-only path. warmup: seconds of received
    frames left out of the result. camera_stops_after: the camera goes quiet after that many
    seconds while the connection stays open (ClipTrack). result: a ClientResult to fill as
    frames come (for a caller that watches it live); a new one by default.
    """
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    result = result if result is not None else ClientResult()
    t_connect = time.perf_counter()
    if frames is None:  # a viewer of the relay's own source
        track = None
        pc.addTransceiver("video", direction="recvonly")
    else:
        track = ClipTrack(frames, stops_after=camera_stops_after)
        pc.addTrack(track)

    @pc.on("connectionstatechange")
    def on_state() -> None:
        result.states.append((round(time.perf_counter() - t_connect, 2), pc.connectionState))

    if audio:
        pc.addTrack(AudioStreamTrack())
    channel = pc.createDataChannel("facesr")
    channel.on("open", lambda: channel.send(json.dumps({"mode": mode})))
    channel.on("message", lambda m: result.stats.update(json.loads(m)))
    consumers: list[asyncio.Task] = []
    t_start: list[float] = []

    async def consume_video(remote) -> None:
        while True:
            try:
                frame = await remote.recv()
            except MediaStreamError:
                return
            now = time.perf_counter()
            if not t_start:
                t_start.append(now)
            if now - t_start[0] < warmup:
                continue
            result.received += 1
            result.sizes.add((frame.width, frame.height))
            rgb = result.last_frame = i420_to_rgb(frame)
            result.received_at.append(now - t_start[0])
            if track is None:
                continue
            n = read_stamp(rgb, frame.width / frames[0].shape[1])
            if n is None or n not in track.sent_at:
                result.unread += 1
                continue
            result.latency_ms.append((now - track.sent_at[n]) * 1000.0)
            result.latency_at.append(now - t_start[0])

    async def consume_audio(remote) -> None:
        while True:
            try:
                await remote.recv()
            except MediaStreamError:
                return
            result.audio_frames += 1

    @pc.on("track")
    def on_track(remote) -> None:
        consumers.append(asyncio.ensure_future(consume_video(remote) if remote.kind == "video" else consume_audio(remote)))

    try:
        await pc.setLocalDescription(await pc.createOffer())
        async with ClientSession() as session:
            async with session.post(url.rstrip("/") + "/offer",
                                    json={"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}) as resp:
                body = await resp.json()
                if resp.status != 200:
                    raise ConnectionError(f"relay answered {resp.status}: {body.get('error')}")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type=body["type"]))
        await asyncio.sleep(seconds + warmup)
    finally:
        result.sent = track.count if track is not None else 0
        await pc.close()
        for task in consumers:
            task.cancel()
        await asyncio.gather(*consumers, return_exceptions=True)
    return result

