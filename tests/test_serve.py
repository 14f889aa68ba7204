"""`facesr serve`'s HTTP API in-process (aiohttp's test client), in the private network namespace.

Real uploads through the real pipeline: the results are compared with the same model run directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from facesr.serve.app import ServeApp
from facesr.serve.options import ServeOptions
from helpers import decode_rgb

pytestmark = [pytest.mark.network]


@contextlib.asynccontextmanager
async def serving(**options):
    from aiohttp.test_utils import TestClient, TestServer

    app = ServeApp(ServeOptions(**options))
    client = TestClient(TestServer(app.app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield client, app
    finally:
        await client.close()  # runs ServeApp.shutdown: workers stopped, files deleted


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


async def post(client, data: bytes, filename: str = "photo.jpg", content_type: str = "application/octet-stream", **fields):
    from aiohttp import FormData

    form = FormData()
    for k, v in fields.items():
        form.add_field(k, str(v))
    form.add_field("file", data, filename=filename, content_type=content_type)
    return await client.post("/api/jobs", data=form)


async def finished(client, job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = await client.get(f"/api/jobs/{job_id}")
        assert r.status == 200
        s = await r.json()
        assert 0.0 <= s["progress"] <= 1.0
        if s["state"] in ("done", "failed"):
            return s
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} not finished after {timeout} s")


def jpeg(rgb: np.ndarray, quality: int = 95) -> bytes:
    return cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()


def png_rgb(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]


@pytest.fixture(scope="module")
def photo256(astronaut) -> bytes:
    return jpeg(cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA))


def face_clip(path: Path, astronaut: np.ndarray, frames: int = 12, rate: int = 12, faststart: bool = False) -> Path:
    """A short 128x96 call: the astronaut's face drifting a little, and an AAC tone."""
    face = cv2.resize(astronaut[40:232, 130:322], (72, 72), interpolation=cv2.INTER_AREA)
    sample_rate, tone_hz = 44100, 440
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as out:
        vs = out.add_stream("libx264", rate=rate, options={"preset": "veryfast"})
        vs.width, vs.height, vs.pix_fmt = 128, 96, "yuv420p"
        aus = out.add_stream("aac", rate=sample_rate)
        aus.codec_context.layout = "mono"
        total = sample_rate * frames // rate
        t = np.arange(total) / sample_rate
        tone = (0.3 * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32)
        sent = 0
        for i in range(frames):
            img = np.full((96, 128, 3), 110, np.uint8)
            x = 20 + i % 4
            img[12:84, x : x + 72] = face
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, rate)
            out.mux(vs.encode(frame))
            while sent < min(total, sample_rate * (i + 1) // rate):
                chunk = tone[sent : sent + 1024][None, :]
                af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                af.sample_rate, af.pts, af.time_base = sample_rate, sent, Fraction(1, sample_rate)
                out.mux(aus.encode(af))
                sent += chunk.shape[1]
        out.mux(vs.encode(None))
        out.mux(aus.encode(None))
    return path


# --- the results are facesr's -----------------------------------------------------------------


def test_photo_faces_mode_gives_the_enhancers_output(private_network, photo256, tmp_path):
    from facesr import Enhancer
    from facesr.images import read_rgb

    async def go():
        async with serving() as (client, app):
            r = await post(client, photo256, filename="../../etc/My Photo é.jpg", content_type="image/jpeg")
            assert r.status == 202, await r.text()
            job_id = (await r.json())["id"]
            assert r.headers["Location"] == f"/api/jobs/{job_id}"
            s = await finished(client, job_id)
            assert s["state"] == "done" and s["progress"] == 1.0 and s["error"] is None, s
            assert s["input"] == {"format": "JPEG", "width": 256, "height": 256, "seconds": None, "audio": False}
            assert s["output"] == {"width": 1024, "height": 1024} and s["faces"], s
            res = await client.get(s["result"])
            assert res.status == 200 and res.content_type == "image/png"
            assert res.headers["Content-Disposition"] == 'attachment; filename="My_Photo_e_facesr_x4.png"'
            result = await res.read()
            halves = [png_rgb(await (await client.get(s["compare"][k])).read()) for k in ("bicubic", "facesr")]
            # the uploaded name never reached the filesystem: one folder per job, fixed names inside
            names = sorted(p.name for p in (app.queue.root / job_id).iterdir())
            assert names == ["bicubic.png", "result.png", "upload"]
            return result, halves

    result, (bicubic, facesr_half) = run(go())
    (tmp_path / "in.jpg").write_bytes(photo256)
    enhancer = Enhancer("lite-call", scale=4)  # the app's default, as for calls
    try:
        direct = enhancer(read_rgb(tmp_path / "in.jpg"))
    finally:
        enhancer.close()
    got = png_rgb(result)
    assert got.shape == direct.shape == bicubic.shape == facesr_half.shape == (1024, 1024, 3)
    assert np.array_equal(got, direct)
    assert np.array_equal(facesr_half, got)
    assert np.abs(got.astype(int) - bicubic).mean() > 0.1  # the faces were super-resolved, not only upscaled


def test_photo_whole_mode_with_a_gan_strength_gives_the_tiled_generator(private_network, astronaut):
    from facesr.superres import SuperResolver, upscale_tiled
    from facesr.weights import load_generator

    img = np.ascontiguousarray(astronaut[100:220, 60:260])  # 200x120: two tiles of 192

    async def go():
        async with serving() as (client, _):
            png = cv2.imencode(".png", img[..., ::-1])[1].tobytes()
            r = await post(client, png, filename="crop.png", mode="whole", model="lite-gan", strength="0.5")
            assert r.status == 202, await r.text()
            s = await finished(client, (await r.json())["id"])
            assert s["state"] == "done" and s["unit"] == "tiles" and s["done"] == s["total"] == 2, s
            assert s["model"] == "lite-gan@0.5"
            return await (await client.get(s["result"])).read()

    got = png_rgb(run(go()))
    direct = upscale_tiled(img, SuperResolver(load_generator("lite-gan@0.5", 4)), tile=192)
    assert got.shape == direct.shape == (480, 800, 3)
    assert np.array_equal(got, direct)


def test_video_keeps_its_audio_and_frames(private_network, astronaut, tmp_path):
    clip = face_clip(tmp_path / "call.mov", astronaut)

    async def go():
        async with serving() as (client, _):
            r = await post(client, clip.read_bytes(), filename="call.mov")
            assert r.status == 202, await r.text()
            s = await finished(client, (await r.json())["id"])
            assert s["state"] == "done", s
            assert s["kind"] == "video" and s["input"]["audio"] and s["done"] == s["total"] == 12
            res = await client.get(s["result"])
            assert res.content_type == "video/mp4" and 'filename="call_facesr_x4.mp4"' in res.headers["Content-Disposition"]
            halves = [png_rgb(await (await client.get(s["compare"][k])).read()) for k in ("bicubic", "facesr")]
            return await res.read(), halves

    data, (bicubic, facesr_half) = run(go())
    out = tmp_path / "out.mp4"
    out.write_bytes(data)
    frames = decode_rgb(out)
    assert len(frames) == 12 and frames[0].shape == (384, 512, 3)
    assert bicubic.shape == facesr_half.shape == (384, 512, 3)
    assert np.array_equal(facesr_half, frames[6])  # the compare view shows the middle frame as encoded
    with av.open(str(out)) as c:
        assert c.streams.audio and c.streams.audio[0].codec_context.name == "aac"
        assert abs(float(c.streams.video[0].duration * c.streams.video[0].time_base) - 1.0) < 0.1
        assert sum(f.samples for f in c.decode(audio=0)) > 40000  # about a second of the tone


# --- bad input and misuse ---------------------------------------------------------------------


def test_oversized_uploads_get_413_before_the_body_is_read(private_network):
    async def go():
        async with serving(max_upload_mb=0.1) as (client, app):
            never = asyncio.Event()

            async def body():  # declares 10 MB, sends 64 KB, then stalls: only the header can be judged
                yield b"x" * 65536
                await never.wait()

            headers = {"Content-Type": "multipart/form-data; boundary=b", "Content-Length": str(10 * 1024 * 1024)}
            r = await asyncio.wait_for(client.post("/api/jobs", data=body(), headers=headers), 10)
            assert r.status == 413 and "0.1 MB" in (await r.json())["error"]
            r.close()
            # a Content-Length within the form's slack: refused as soon as the file's count passes the limit
            r = await post(client, b"\xff\xd8" + bytes(150_000))
            assert r.status == 413, await r.text()
            assert not app.queue.jobs and not list(app.queue.root.iterdir())  # nothing kept

    run(go())


def test_what_is_not_a_photo_or_video_gets_415_with_a_reason(private_network, photo256):
    async def go():
        async with serving() as (client, _):
            cases = {
                "photo.jpg": b"Just some text, named like a photo.\n" * 20,
                "anim.mp4": cv2.imencode(".bmp", np.zeros((8, 8, 3), np.uint8))[1].tobytes(),
                "audio.webm": bytes(1000),
            }
            for name, data in cases.items():
                r = await post(client, data, filename=name, content_type="image/jpeg")
                error = (await r.json())["error"]
                assert r.status == 415, (name, error)
                assert "\n" not in error and ("photo" in error or "video" in error), error
            r = await post(client, b"", filename="empty.png")
            assert r.status == 400

    run(go())


def test_cut_off_files_fail_their_job_with_a_reason(private_network, photo256, astronaut, tmp_path):
    clip = face_clip(tmp_path / "call.mp4", astronaut, frames=24, faststart=True)
    cut_clip = clip.read_bytes()[: clip.stat().st_size * 2 // 3]

    async def go():
        async with serving() as (client, app):
            for data, name, word in ((photo256[: len(photo256) // 2], "half.jpg", "cut off"),
                                     (cut_clip, "half.mp4", "cut off")):
                r = await post(client, data, filename=name)
                assert r.status == 202, await r.text()
                s = await finished(client, (await r.json())["id"])
                assert s["state"] == "failed" and word in s["error"] and "\n" not in s["error"], s
                assert str(app.queue.root) not in s["error"]
                assert (await client.get(f"/api/jobs/{s['id']}/result")).status == 410
                assert not (app.queue.root / s["id"]).exists()  # a failed job's files go at once
            r = await client.get("/api/health")
            assert r.status == 200  # still up

    run(go())


def test_long_videos_bad_fields_and_unknown_jobs_are_refused(private_network, photo256, astronaut, tmp_path):
    clip = face_clip(tmp_path / "call.mp4", astronaut)

    async def go():
        async with serving(max_video_seconds=0.5) as (client, _):
            r = await post(client, clip.read_bytes(), filename="call.mp4")
            assert r.status == 413 and "the limit is 0.5 s" in (await r.json())["error"]
            for fields, word in (({"mode": "all"}, "mode"), ({"model": "../../weights/x.safetensors"}, "model"),
                                 ({"model": "lite", "strength": "0.5"}, "strength"),
                                 ({"model": "srgan", "strength": "2"}, "strength")):
                r = await post(client, photo256, **fields)
                assert r.status == 400 and word in (await r.json())["error"], fields
            for path in ("/api/jobs/0123456789abcdef0123456789abcdef", "/api/jobs/..%2F..%2Fetc",
                         "/api/jobs/0123456789abcdef0123456789abcdef/result"):
                r = await client.get(path)
                assert r.status == 404 and "error" in await r.json(), path

    run(go())


# --- the queue and cleanup --------------------------------------------------------------------


def test_concurrent_jobs_queue_in_order(private_network, astronaut):
    small = jpeg(cv2.resize(astronaut, (128, 128), interpolation=cv2.INTER_AREA))

    async def go(jobs: int, count: int):
        async with serving(jobs=jobs, max_queue=count) as (client, app):
            responses = await asyncio.gather(*(post(client, small, filename=f"p{i}.jpg") for i in range(count)))
            assert [r.status for r in responses] == [202] * count
            ids = [(await r.json())["id"] for r in responses]
            late = await post(client, small)  # the queue is full while those wait
            assert late.status == 503 and late.headers["Retry-After"]
            states = [await finished(client, i) for i in ids]
            assert all(s["state"] == "done" for s in states), states
            order = sorted(app.queue.jobs.values(), key=lambda j: j.seq)
            return app.queue.peak_running, order

    peak, order = run(go(jobs=1, count=4))
    assert peak == 1
    for before, after in zip(order, order[1:]):  # one at a time, in the order they were queued
        assert before.finished <= after.started
    peak, order = run(go(jobs=2, count=4))
    assert peak == 2
    assert [j.started for j in order] == sorted(j.started for j in order)


def test_results_are_deleted_after_their_time_and_on_stop(private_network, photo256):
    async def go():
        async with serving(keep_seconds=0.4) as (client, app):
            r = await post(client, photo256)
            job_id = (await r.json())["id"]
            assert (await finished(client, job_id))["state"] == "done"
            folder = app.queue.root / job_id
            assert (folder / "result.png").is_file()
            deadline = time.monotonic() + 5
            while folder.exists() and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert not folder.exists()
            assert (await client.get(f"/api/jobs/{job_id}")).status == 404
            r = await post(client, photo256)  # left running or queued when the server stops
            assert r.status == 202
            return app.queue.root

    root = run(go())
    assert not root.exists()


def test_delete_removes_a_job_now(private_network, photo256):
    async def go():
        async with serving() as (client, app):
            job_id = (await (await post(client, photo256)).json())["id"]
            await finished(client, job_id)
            assert (await client.delete(f"/api/jobs/{job_id}")).status == 200
            assert not (app.queue.root / job_id).exists()
            assert (await client.get(f"/api/jobs/{job_id}/result")).status == 404

    run(go())


def test_page_and_config(private_network):
    async def go():
        async with serving(model="srgan@0.5") as (client, _):
            page = await client.get("/")
            assert page.status == 200 and "Content-Security-Policy" in page.headers
            assert 'id="drop"' in await page.text() and (await client.get("/app.js")).status == 200
            c = await (await client.get("/api/config")).json()
            assert c["default_model"] == "srgan" and c["default_strength"] == 0.5
            assert set(c["models"]) == {"lite", "lite-call", "lite-recurrent", "lite-photo", "lite-gan", "srresnet", "srgan"}
            assert c["gan_models"] == {"srgan": "srresnet", "lite-gan": "lite"} and c["max_upload_mb"] == 50

    run(go())


def test_cli_serve_refuses_a_bad_model_in_one_line():
    from helpers import facesr

    ran = facesr("serve", "--model", "nope", "--port", "0")
    assert ran.returncode == 1 and ran.stderr.count("\n") == 1 and "nope" in ran.stderr, ran.stderr

