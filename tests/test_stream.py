"""`facesr stream`: the WebRTC relay, driven by real aiortc peers sending a real call, and the local source.

Every test that opens a socket runs inside the private network namespace `bash setup.sh test`
makes (see conftest.private_network): signalling on 127.0.0.1, media on 10.213.0.1, both loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import aiohttp
import av
import cv2
import numpy as np
import pytest

from facesr.enhancer import Enhancer, enhancer_factory
from facesr.options import EnhancerOptions
from facesr.protocol import make_call_clip
from facesr.stream import source as source_module
from facesr.stream.client import load_clip, read_stamp, run_client, stamp
from facesr.stream.options import StreamOptions
from facesr.stream.run import start_site
from facesr.stream.server import BadOffer, Relay, parse_offer
from facesr.stream.source import LocalSource
from helpers import ROOT, Likeness, assert_clean_failure, bicubic, facesr, likeness, shared_path

CALL = (320, 180)
STAMP_AREA = (20, 140)  # rows, columns of the LR frame's top-left corner that client.stamp draws over


@pytest.fixture(scope="module")
def make_enhancer():
    """The relay's Enhancers, with the single-frame `lite`: a test can then tell what the relay
    should have sent for a frame from that frame alone. (`lite-recurrent` remembers each
    face's previous output, so its frame depends on which frames the relay enhanced before it;
    test_recurrent_model_streams runs it.)"""
    make, _ = enhancer_factory(EnhancerOptions(model="lite"))
    return make


@pytest.fixture(scope="module")
def reference(make_enhancer):
    """An Enhancer of the relay's kind, to tell what the relay should have sent for a frame."""
    enhancer = make_enhancer()
    yield enhancer
    enhancer.close()


@pytest.fixture(scope="module")
def call_frames() -> list[np.ndarray]:
    """A real webcam-like clip (a person in a room, 1280x720), downscaled to a 320x180 call."""
    return load_clip(str(shared_path("data", "videos", "talking_s18.mp4")), CALL, frames=150)


@pytest.fixture(scope="module")
def call_file(tmp_path_factory) -> Path:
    dst = tmp_path_factory.mktemp("call") / "call_320x180.mp4"
    make_call_clip(shared_path("data", "videos", "talking_s18.mp4"), dst, scale=4, crf=23)
    return dst


@contextlib.asynccontextmanager
async def serving(make_enhancer, source=None, **options):
    relay = Relay(make_enhancer, StreamOptions(**options), source=source)
    runner, port = await start_site(relay.app, "127.0.0.1", 0)
    try:
        yield relay, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def decoded_frames(path: Path) -> list[np.ndarray]:
    """A clip's frames, decoded as LocalSource decodes them."""
    with av.open(str(path)) as c:
        return [source_module.i420_to_rgb(f) for f in c.decode(video=0)]


def picture(received: np.ndarray, sent: list[np.ndarray], reference: Enhancer) -> Likeness:
    """How the face region of a received 4x frame compares with the Enhancer's output for the frame
    it came from and with a plain bicubic upscale of that frame (helpers.likeness).

    The frame it came from is the one of `sent` nearest to it at the input size (WebRTC's codec
    blurs both ways, so nothing matches exactly; the stamp corner is left out).
    """
    small = cv2.resize(received, CALL, interpolation=cv2.INTER_AREA).astype(np.float32)
    keep = np.ones(small.shape[:2], bool)
    keep[: STAMP_AREA[0], : STAMP_AREA[1]] = False
    k = int(np.argmin([np.abs(small - f)[keep].mean() for f in sent]))
    reference.reset()  # a fresh stream: a face in the first frame is blended in fully at once
    return likeness(received, reference.enhance(sent[k]), bicubic(sent[k], 4))


@pytest.fixture
def received(monkeypatch) -> list[np.ndarray]:
    """Every 8th frame the clients decode, as RGB (a ClientResult keeps only the last one)."""
    from facesr.stream import client

    frames: list[np.ndarray] = []
    count = itertools.count()
    decode = client.i420_to_rgb

    def keeping(frame):
        rgb = decode(frame)
        if next(count) % 8 == 0:
            frames.append(rgb)
        return rgb

    monkeypatch.setattr(client, "i420_to_rgb", keeping)
    return frames


def halves(result):
    """Median latency of the first and the last third of the received frames."""
    t, ms = np.array(result.latency_at), np.array(result.latency_ms)
    span = t[-1]
    return float(np.median(ms[t < span / 3])), float(np.median(ms[t > 2 * span / 3]))


@pytest.mark.shared_data
def test_stamps_read_back_after_upscaling(call_frames):
    for n in (0, 1, 777, 4095):
        img = stamp(call_frames[0], n)
        assert read_stamp(img, 1.0) == n
        big = cv2.resize(img, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
        assert read_stamp(big, 4.0) == n
    assert read_stamp(call_frames[0], 1.0) is None  # an unstamped frame does not read as one


def test_parse_offer_rejects_what_is_not_an_offer():
    for body in ([], "x", {"type": "answer", "sdp": "v=0\r\nm=video"}, {"type": "offer"},
                 {"type": "offer", "sdp": "hello"}, {"type": "offer", "sdp": 42}):
        with pytest.raises(BadOffer):
            parse_offer(body)
    assert parse_offer({"type": "offer", "sdp": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"}).type == "offer"


# --- the relay with real peers ---------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.network
@pytest.mark.shared_data
def test_relay_sends_back_enhanced_4x_frames_and_latency_does_not_build_up(private_network, make_enhancer, call_frames,
                                                                            reference, received):
    async def main():
        async with serving(make_enhancer) as (relay, url):
            faces = await run_client(url, call_frames, seconds=6, audio=True, warmup=1.5)
            faces_frames = received[len(received) // 2 :]
            received.clear()
            compare = await run_client(url, call_frames, seconds=3, mode="bicubic", warmup=1.0)
            return faces, compare, faces_frames, received[len(received) // 2 :]

    faces, compare, faces_frames, compare_frames = asyncio.run(main())
    print("facesr", faces.summary())
    print("bicubic", compare.summary())
    assert faces.sizes == {(1280, 720)}
    assert faces.received >= 10  # speed is for benchmarks/stream_latency.py; here: frames flow
    assert len(faces.latency_ms) >= 0.9 * faces.received  # the frames are the ones sent, read back by stamp
    lo, hi = halves(faces)
    assert hi < lo + 1000, f"latency grew from {lo:.0f} to {hi:.0f} ms: frames are queueing"
    assert faces.audio_frames > 50  # audio came back too (20 ms frames)
    assert faces.stats["in_size"] == [320, 180] and faces.stats["out_size"] == [1280, 720]
    assert faces.stats["mode"] == "facesr" and faces.stats["enhance_ms_p50"] > 0
    assert compare.stats["mode"] == "bicubic" and compare.sizes == {(1280, 720)}
    # the picture: the faces in what came back are the Enhancer's, not a bicubic upscale (and the
    # compare switch's are bicubic), through two legs of VP8
    enhanced = [picture(f, call_frames, reference) for f in faces_frames]
    plain = [picture(f, call_frames, reference) for f in compare_frames]
    print("facesr", enhanced, "bicubic", plain)
    assert len(enhanced) >= 3 and len(plain) >= 3
    assert np.median([p.gain for p in enhanced]) > 0.3, f"the faces came back as a plain upscale: {enhanced}"
    assert np.median([abs(p.gain) for p in plain]) < 0.15, plain


@pytest.mark.network
@pytest.mark.shared_data
def test_recurrent_model_streams(private_network, call_frames, received):
    """`lite-recurrent` through the relay: each peer's Enhancer carries its faces' history
    from frame to frame, and what comes back is its faces, not bicubic."""
    make, _ = enhancer_factory(EnhancerOptions(model="lite-recurrent"))
    made: list[Enhancer] = []

    def keeping():
        made.append(make())
        return made[-1]

    async def main():
        async with serving(keeping) as (relay, url):
            return await run_client(url, call_frames, seconds=4, warmup=1.0)

    result = asyncio.run(main())
    assert result.sizes == {(1280, 720)} and result.received >= 8
    counts = made[-1].history_counts
    assert counts["faces"] >= 8 and counts["remembered"] >= 0.8 * counts["faces"], counts
    reference = make()
    enhanced = [picture(f, call_frames, reference) for f in received[len(received) // 2 :]]
    reference.close()
    assert np.median([p.gain for p in enhanced]) > 0.3, f"the faces came back as a plain upscale: {enhanced}"


class SlowEnhancer:
    """The real Enhancer behind a deliberate 250 ms stall per frame: 4 fps at best, against 30 coming in."""

    def __init__(self, inner: Enhancer) -> None:
        self.inner = inner
        self.scale = inner.scale

    def enhance(self, frame):
        time.sleep(0.25)
        return self.inner.enhance(frame)

    def close(self) -> None:
        self.inner.close()


@pytest.mark.slow
@pytest.mark.network
@pytest.mark.shared_data
def test_slow_enhancer_drops_frames_instead_of_queueing(private_network, make_enhancer, call_frames):
    async def main():
        async with serving(lambda: SlowEnhancer(make_enhancer())) as (relay, url):
            return await run_client(url, call_frames, seconds=10, warmup=1.0)

    result = asyncio.run(main())
    print(result.summary(), result.stats)
    lo, hi = halves(result)
    print(f"latency median: first third {lo:.0f} ms, last third {hi:.0f} ms")
    stats = result.stats
    assert result.sizes == {(1280, 720)} and result.received >= 5
    assert stats["enhance_ms_p50"] >= 250  # the stall was in the path
    # every frame that came in was sent or dropped, but for those that came during the last stall:
    # none waits in a queue (a queue would hold 26 of every 30 by now)
    waiting = stats["frames_in"] - stats["frames_out"] - stats["dropped"]
    assert 0 <= waiting < 0.2 * stats["frames_in"], stats
    assert stats["dropped"] > stats["frames_out"]  # 30 frames a second in, at most 4 out
    # a queue would add the stall's share of every second to the latency: 8 s over these 10 s
    assert hi < lo + 1000, f"latency grew from {lo:.0f} to {hi:.0f} ms: frames are queueing"


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate()}


def _pool_thread(name: str) -> bool:
    return name.startswith(("facesr-enhance", "asyncio_", "ThreadPoolExecutor")) or name == "MainThread"


VANISHING_CLIENT = """
import asyncio, sys
from facesr.stream.client import load_clip, run_client
frames = load_clip(sys.argv[2], (320, 180), frames=60)
print("streaming", flush=True)
asyncio.run(run_client(sys.argv[1], frames, seconds=60))
"""


@pytest.mark.slow
@pytest.mark.network
@pytest.mark.shared_data
def test_bad_peers_get_4xx_and_the_others_keep_streaming(private_network, make_enhancer, call_frames):
    clip = str(shared_path("data", "videos", "talking_s18.mp4"))

    async def main():
        async with serving(make_enhancer, max_peers=2, max_offer_bytes=16 * 1024, peer_timeout=3.0) as (relay, url):
            good = asyncio.ensure_future(run_client(url, call_frames, seconds=14, warmup=1.0))
            await asyncio.sleep(2.0)
            statuses = {}
            async with aiohttp.ClientSession() as http:
                async def post(name, **kw):
                    async with http.post(url + "/offer", **kw) as resp:
                        statuses[name] = (resp.status, (await resp.json()).get("error", ""))

                await post("malformed json", data=b'{"sdp": "v=0', headers={"Content-Type": "application/json"})
                await post("not an object", json=["offer"])
                await post("not sdp", json={"sdp": "hello there", "type": "offer"})
                await post("broken sdp", json={"sdp": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=garbage", "type": "offer"})
                await post("oversized", json={"sdp": "v=0\r\nm=" + "x" * 100_000, "type": "offer"})
                # a peer that vanishes mid-stream: a client process killed without a goodbye
                vanisher = subprocess.Popen([sys.executable, "-c", VANISHING_CLIENT, url, clip], stdout=subprocess.PIPE,
                                            env=os.environ | {"PYTHONPATH": str(ROOT)})
                await asyncio.get_running_loop().run_in_executor(None, vanisher.stdout.readline)
                for _ in range(100):
                    if len(relay.peers) == 2:
                        break
                    await asyncio.sleep(0.1)
                peers_with_vanisher = len(relay.peers)
                await post("one too many", json={"sdp": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n", "type": "offer"})
                await asyncio.sleep(1.5)
                vanisher.kill()
                vanisher.wait()
                killed_at = time.monotonic()
                while len(relay.peers) > 1 and time.monotonic() - killed_at < 15:
                    await asyncio.sleep(0.2)
                noticed_after = time.monotonic() - killed_at
            result = await good
            for _ in range(50):  # the good peer said goodbye: the relay closes it
                if not relay.peers:
                    break
                await asyncio.sleep(0.1)
            return statuses, peers_with_vanisher, noticed_after, result, len(relay.peers)

    statuses, peers_with_vanisher, noticed_after, good, left = asyncio.run(main())
    print(statuses, f"vanished peer closed after {noticed_after:.1f} s", good.summary())
    assert statuses["malformed json"][0] == 400
    assert statuses["not an object"][0] == 400
    assert statuses["not sdp"][0] == 400 and "session description" in statuses["not sdp"][1]
    assert statuses["broken sdp"][0] == 400
    assert statuses["oversized"][0] == 413
    assert peers_with_vanisher == 2
    assert statuses["one too many"][0] == 503
    assert noticed_after < 12.0  # the peer timeout (3 s) and a watchdog tick: not left for ICE to find out
    # the good peer streamed through all of it
    assert good.sizes == {(1280, 720)} and good.received >= 10
    gaps = np.diff(good.received_at)
    assert gaps.max() < 5.0, f"the good peer stalled for {gaps.max():.1f} s"
    assert left == 0


@pytest.mark.slow
@pytest.mark.network
@pytest.mark.shared_data
def test_four_peers_at_once_and_nothing_left_behind(private_network, make_enhancer, call_frames):
    async def main():
        async with serving(make_enhancer, max_peers=4) as (relay, url):
            await run_client(url, call_frames, seconds=1.0)  # warm the worker pools
            await asyncio.sleep(0.5)
            threads_before, tasks_before = _threads(), len(asyncio.all_tasks())
            results = await asyncio.gather(*(run_client(url, call_frames, seconds=6, warmup=2.0) for _ in range(4)))
            for _ in range(50):
                if not relay.peers and len(asyncio.all_tasks()) <= tasks_before:
                    break
                await asyncio.sleep(0.1)
            return results, threads_before, _threads(), tasks_before, len(asyncio.all_tasks()), len(relay.peers)

    results, threads_before, threads_after, tasks_before, tasks_after, peers = asyncio.run(main())
    for r in results:
        print(r.summary())
        assert r.sizes == {(1280, 720)}
        assert r.received >= 6 and r.latency_ms  # frames flow back to each, and they are that peer's own
    assert len({r.stats["peer"] for r in results}) == 4  # four peers, each its own stream
    assert peers == 0
    assert tasks_after <= tasks_before, "asyncio tasks left behind"
    leaked = {n for n in threads_after - threads_before if not _pool_thread(n)}
    assert not leaked, f"threads left behind: {leaked}"


@pytest.mark.slow
@pytest.mark.network
@pytest.mark.shared_data
def test_viewers_watch_a_local_source_enhanced(private_network, make_enhancer, call_file, reference):
    source = LocalSource(str(call_file), make_enhancer(), loop=True)

    async def main():
        async with serving(make_enhancer, source=source) as (relay, url):
            return await asyncio.gather(run_client(url, None, seconds=4, warmup=1.0),
                                        run_client(url, None, seconds=4, warmup=1.0, mode="bicubic"))

    with source:
        enhanced, bicubic = asyncio.run(main())
    print(enhanced.summary(), bicubic.summary())
    for r in (enhanced, bicubic):
        assert r.sizes == {(1280, 720)} and r.received >= 8
    assert enhanced.stats["mode"] == "facesr" and bicubic.stats["mode"] == "bicubic"
    assert source.frames_read > 60
    sent = decoded_frames(call_file)
    faces, plain = picture(enhanced.last_frame, sent, reference), picture(bicubic.last_frame, sent, reference)
    print("facesr", faces, "bicubic", plain)
    assert faces.enhanced, f"the viewer got the faces as a plain upscale: {faces}"
    assert plain.plain_bicubic, plain


# --- the command ---------------------------------------------------------------------------


@pytest.mark.shared_data
def test_stream_argument_errors(call_file):
    assert_clean_failure(facesr("stream"), "--webrtc")
    assert_clean_failure(facesr("stream", "--input", call_file), "--virtual-camera")
    assert_clean_failure(facesr("stream", "--input", "/no/such/clip.mp4", "--virtual-camera"), "no such file")
    assert_clean_failure(facesr("stream", "--input", "/dev/video7", "--virtual-camera"), "no such camera")
    assert_clean_failure(facesr("stream", "--webrtc", "--model", "nope"), "nope")


@pytest.mark.shared_data
def test_virtual_camera_without_a_device_fails_in_one_line(call_file):
    if any(Path("/dev").glob("video*")):
        pytest.skip("this machine has video devices")
    assert_clean_failure(facesr("stream", "--input", call_file, "--virtual-camera"), "--virtual-camera", "v4l2loopback")


@pytest.mark.slow
@pytest.mark.shared_data
def test_virtual_camera_gets_the_enhanced_frames(make_enhancer, call_file, reference):
    """pyvirtualcam with a substituted backend: the frames it would send to v4l2loopback."""
    import pyvirtualcam

    from facesr.stream.virtualcam import VirtualCameraSink

    class RecordingBackend:
        frames: list[np.ndarray] = []

        def __init__(self, width, height, fps, fourcc, device=None, **kw):
            self.size, self.fps = (width, height), fps

        def device(self):
            return "recording"

        def native_fourcc(self):
            return None

        def send(self, frame):  # pyvirtualcam hands backends the frame flattened
            w, h = self.size
            RecordingBackend.frames.append(np.array(frame).reshape(h, w, 3).copy())

        def close(self):
            pass

    pyvirtualcam.register_backend("facesr-recording", RecordingBackend)
    source = LocalSource(str(call_file), make_enhancer(), realtime=False)  # as fast as it decodes: no clock here
    sink = VirtualCameraSink(source, backend="facesr-recording")
    with source:
        sink.start()
        deadline = time.monotonic() + 30
        while not source.finished and time.monotonic() < deadline:
            time.sleep(0.2)
        sink.stop()
    frames = RecordingBackend.frames
    assert sink.frames_sent == len(frames) >= 3
    assert {f.shape for f in frames} == {(720, 1280, 3)}
    # played faster than real time, the camera may skip frames the Enhancer made while it sent one
    assert source.frames_read == 282 and source.frames_enhanced >= len(frames)
    assert source.frames_enhanced + source.dropped == source.frames_read
    assert np.abs(frames[-1].astype(int) - frames[0].astype(int)).mean() > 1  # a moving picture, not one frame
    # the picture: each frame sent is the Enhancer's output for a frame of the clip, no codec in between
    sent = decoded_frames(call_file)
    for frame in (frames[0], frames[len(frames) // 2], frames[-1]):
        faces = picture(frame, sent, reference)
        assert faces.enhanced and faces.to_enhanced < 1.0, f"the camera got the faces as a plain upscale: {faces}"


@pytest.mark.slow
@pytest.mark.network
@pytest.mark.shared_data
def test_cli_relay_stops_promptly_with_a_peer_connected(private_network, call_frames):
    proc = subprocess.Popen([sys.executable, "-m", "facesr", "stream", "--webrtc", "--port", "0", "-v"], cwd=ROOT,
                            stderr=subprocess.PIPE, text=True)
    try:
        url = None
        for line in proc.stderr:
            if m := re.search(r"open (http://\S+/)", line):
                url = m.group(1)
                break
        assert url, "the relay never said where it listens"

        async def main():
            client = asyncio.ensure_future(run_client(url, call_frames, seconds=30))
            t0 = time.monotonic()
            while time.monotonic() - t0 < 20:
                await asyncio.sleep(0.2)
                async with aiohttp.ClientSession() as http, http.get(url + "config") as resp:
                    if (await resp.json())["peers"] == 1:
                        break
            await asyncio.sleep(2.0)
            proc.send_signal(signal.SIGTERM)
            t_stop = time.monotonic()
            rc = await asyncio.get_running_loop().run_in_executor(None, proc.wait, 15)
            stopped_in = time.monotonic() - t_stop
            client.cancel()
            with contextlib.suppress(BaseException):
                await client
            return rc, stopped_in

        rc, stopped_in = asyncio.run(main())
        print(f"stopped in {stopped_in:.2f} s")
        assert rc == 0 and stopped_in < 10.0  # not the 15 s wait's timeout: it stops when told
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()


@pytest.mark.slow
@pytest.mark.network
def test_non_loopback_host_warns(private_network):
    proc = subprocess.Popen([sys.executable, "-m", "facesr", "stream", "--webrtc", "--host", "0.0.0.0", "--port", "0"],
                            cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if "open http" in line:
                break
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert any("warning" in line and "not loopback" in line for line in lines), lines
