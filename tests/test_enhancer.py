import cv2
import numpy as np
import pytest
import torch

from facesr.enhancer import STAGES, Enhancer
from facesr.metrics import psnr
from facesr.models import Generator, generator_config
from helpers import ASTRONAUT_FACE, GRACE_HOPPER_FACE, WEIGHTS, downscale, on_canvas, shared_path


def bicubic(img, s):
    return cv2.resize(img, (img.shape[1] * s, img.shape[0] * s), interpolation=cv2.INTER_CUBIC)


@pytest.fixture(scope="module")
def enhancer():
    e = Enhancer("lite", 4, device="cpu")
    yield e
    e.close()


@pytest.mark.parametrize("shape", [(180, 320), (90, 160), (77, 101)])
def test_output_is_scale_times_the_input(enhancer, shape):
    enhancer.reset()
    frame = np.full((*shape, 3), 128, np.uint8)
    assert enhancer(frame).shape == (shape[0] * 4, shape[1] * 4, 3)


def test_a_frame_without_faces_is_plain_bicubic(enhancer):
    enhancer.reset()
    rng = np.random.default_rng(0)
    frame = cv2.GaussianBlur(rng.integers(0, 255, (90, 160, 3), dtype=np.uint8), (0, 0), 2)
    assert np.array_equal(enhancer(frame), bicubic(frame, 4))


def test_background_only_is_the_bicubic_pipeline(astronaut):
    lr = downscale(astronaut, 4)
    assert np.array_equal(Enhancer(background_only=True)(lr), bicubic(lr, 4))


@pytest.mark.parametrize("photo_name,face", [("astronaut", ASTRONAUT_FACE), ("grace_hopper", GRACE_HOPPER_FACE)])
def test_beats_bicubic_in_the_face_region_of_a_real_face(enhancer, request, photo_name, face):
    hr = request.getfixturevalue(photo_name)
    hr = hr[: hr.shape[0] // 4 * 4, : hr.shape[1] // 4 * 4]
    lr = downscale(hr, 4)
    enhancer.reset()
    out = enhancer(lr)
    x0, y0, x1, y1 = face
    region = (slice(y0, y1), slice(x0, x1))
    gain = psnr(out[region], hr[region]) - psnr(bicubic(lr, 4)[region], hr[region])
    assert gain > 0.5, f"face-region gain over bicubic {gain:+.2f} dB"
    # outside the face crop the frame is untouched bicubic
    assert np.array_equal(out[-8:], bicubic(lr, 4)[-8:])


def test_all_faces_of_a_frame_go_through_the_generator_in_one_batch(astronaut, grace_hopper):
    frame = downscale(on_canvas(grace_hopper[:512], at=(700, 100), canvas=on_canvas(astronaut, at=(80, 150))), 4)
    net = Generator(generator_config("lite", 4))
    e = Enhancer(net, 4, detector="full")
    batches = []
    network = e.resolver.backend.run  # what runs the batch: on a CPU lite's fused network
    e.resolver.backend.run = lambda x: batches.append(x.shape[0]) or network(x)
    out = e(frame)
    assert out.shape == (720, 1280, 3)
    assert batches == [2]
    timings = e.timer.summary()
    assert set(STAGES) <= set(timings) and timings["sr"]["p50"] > 0
    e.close()


def test_several_workers_give_the_frames_one_worker_gives_in_order(astronaut):
    """submit() with two render threads: the same frames as enhance() frame by frame, and one
    timing sample per frame."""
    lr = downscale(astronaut, 4)
    # a face drifting right a pixel per frame, so the tracker's state matters from frame to frame
    frames = [np.ascontiguousarray(np.roll(lr, i, axis=1)) for i in range(8)]
    one = Enhancer("lite", 4, device="cpu", precision="float32")
    expected = [one.enhance(f) for f in frames]
    one.close()
    two = Enhancer("lite", 4, device="cpu", precision="float32", workers=2)
    futures = [two.submit(f) for f in frames]
    got = [f.result() for f in futures]
    two.close()
    assert all(np.array_equal(a, b) for a, b in zip(got, expected))
    assert not np.array_equal(got[0], bicubic(frames[0], 4))  # the face was super-resolved
    assert len(two.timer.samples["sr"]) == len(two.timer.samples["total"]) == len(frames)
    assert all(ms > 0 for ms in two.timer.samples["sr"])


def test_workers_must_be_positive():
    with pytest.raises(ValueError):
        Enhancer(background_only=True, workers=0)


def test_a_generator_brings_its_own_scale(astronaut):
    lr = downscale(astronaut, 4)
    e = Enhancer(Generator(generator_config("lite", 2)), 4, device="cpu", precision="float32")
    assert e.scale == 2 and e(lr).shape == (lr.shape[0] * 2, lr.shape[1] * 2, 3)
    e.close()


def test_rejects_frames_that_are_not_rgb_uint8(enhancer):
    with pytest.raises(ValueError):
        enhancer(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError):
        enhancer(np.zeros((10, 10, 3), np.float32))


def test_shipped_weights_are_present():
    assert WEIGHTS.is_file(), "weights/lite-x4.safetensors is the default model and must ship"


def test_the_srgan_path_runs(astronaut):
    """The paper-sized generator runs through the same pipeline."""
    e = Enhancer("srgan", 4, device="cpu")
    out = e(downscale(astronaut, 4))
    assert out.shape == (512, 512, 3)
    e.close()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_runs_in_half_precision_and_matches_cpu(astronaut):
    lr = downscale(astronaut, 4)
    gpu = Enhancer("lite", 4, device="cuda")
    assert gpu.resolver.dtype == torch.float16
    cpu = Enhancer("lite", 4, device="cpu")
    assert psnr(gpu(lr), cpu(lr)) > 40
    assert Enhancer("lite", 4, device="cuda", precision="float32").resolver.dtype == torch.float32


@pytest.mark.shared_data
def test_beats_bicubic_on_the_faces_of_a_real_talking_clip(enhancer):
    """A real talking-head clip, downscaled 4x: the faces come back closer to the original than bicubic."""
    import av


    clip = shared_path("data", "videos", "talking_d18.mp4")
    enhancer.reset()
    gains = []
    with av.open(str(clip)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i == 40:
                break
            hr = frame.to_ndarray(format="rgb24")
            hr = hr[: hr.shape[0] // 4 * 4, : hr.shape[1] // 4 * 4]
            lr = downscale(hr, 4)
            out = enhancer(lr)
            tracks = enhancer.tracker.tracks
            assert len(tracks) == 1, f"frame {i}: {len(tracks)} faces"
            x0, y0, x1, y1 = (4 * int(v) for v in tracks[0].box)
            face = (slice(max(y0, 0), y1), slice(max(x0, 0), x1))
            gains.append(psnr(out[face], hr[face]) - psnr(bicubic(lr, 4)[face], hr[face]))
    assert min(gains) > 0.0 and np.mean(gains) > 0.5, f"face-region gains {np.round(gains, 2)}"


def test_a_still_face_does_not_flicker(enhancer, grace_hopper):
    """Sensor noise changes every frame; the enhanced face must not change much more than bicubic's."""
    base = downscale(on_canvas(grace_hopper, at=(400, 60)), 4)
    rng = np.random.default_rng(5)
    enhancer.reset()
    outs, bics = [], []
    for _ in range(30):
        noisy = np.clip(base + rng.normal(0, 2, base.shape), 0, 255).astype(np.uint8)
        outs.append(enhancer(noisy).astype(np.int16))
        bics.append(bicubic(noisy, 4).astype(np.int16))
    x0, y0, x1, y1 = (4 * int(v) for v in enhancer.tracker.tracks[0].box)
    face = (slice(y0, y1), slice(x0, x1))
    change = np.mean([np.abs(a[face] - b[face]).mean() for a, b in zip(outs[5:], outs[6:])])
    change_bicubic = np.mean([np.abs(a[face] - b[face]).mean() for a, b in zip(bics[5:], bics[6:])])
    assert change < 1.5 * change_bicubic, f"frame-to-frame change {change:.2f} vs bicubic {change_bicubic:.2f}"


def test_the_hold_steadies_a_still_face_by_at_most_one_level(grace_hopper):
    """Against the same Enhancer without the hold: less frame-to-frame change in the face, and
    no output pixel more than one level from what the frame alone gives."""
    base = downscale(on_canvas(grace_hopper, at=(400, 60)), 4)
    rng = np.random.default_rng(7)
    frames = [np.clip(base + rng.normal(0, 2, base.shape), 0, 255).astype(np.uint8) for _ in range(12)]
    held, free = (Enhancer("lite", 4, device="cpu", hold_levels=n) for n in (2, 0))
    a = [held(f).astype(np.int16) for f in frames]
    b = [free(f).astype(np.int16) for f in frames]
    x0, y0, x1, y1 = (4 * int(v) for v in held.tracker.tracks[0].box)
    held.close(), free.close()
    face = (slice(y0, y1), slice(x0, x1))
    change = [np.mean([np.abs(u[face] - v[face]).mean() for u, v in zip(o[4:], o[5:])]) for o in (a, b)]
    assert change[0] < 0.92 * change[1], change
    assert max(np.abs(u - v).max() for u, v in zip(a, b)) <= 1
