"""The recurrent generator's memory: alignment, the gate on history that no longer fits, the
Enhancer carrying it per track, and the training sequences it learns from."""

import cv2
import numpy as np
import pytest
import torch

from facesr.enhancer import Enhancer
from facesr.memory import CUT_ERROR, align, flow, memory_channels, model_input_torch, remembered
from facesr.metrics import psnr
from facesr.models import Generator, generator_config, history_channels
from facesr.superres import SuperResolver
from facesr.train.config import TrainConfig
from facesr.train.recurrent import temporal_loss, train_recurrent, widened
from facesr.train.sequences import SequenceBank
from facesr.weights import load_generator, read_metadata
from helpers import ROOT, downscale, on_canvas

S = 4


def shifted(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


@pytest.fixture(scope="module")
def face(astronaut):
    return np.ascontiguousarray(astronaut[40:296, 100:356])  # 256 x 256 around her face


def test_history_is_aligned_by_the_measured_motion(face):
    now = shifted(face, 5.0, -3.0)  # the face moved by 1.25, -0.75 LR pixels
    before = remembered(face.astype(np.float32) / 255, 0, 0)  # as if the model had given the original
    motion = flow(downscale(now, S), downscale(face, S))
    aligned = align(before, 0, 0, motion, S)
    valid = aligned[..., 3]
    inner = np.s_[16:-16, 16:-16]
    moved = np.abs(aligned[..., :3] * 255 - now)[inner].mean()
    unmoved = np.abs(face.astype(np.float32) - now)[inner].mean()
    assert moved < 0.4 * unmoved, (moved, unmoved)
    assert (valid[inner] == 1).all()


def test_the_crop_moving_is_followed_and_what_it_did_not_cover_is_invalid(face):
    before = remembered(face.astype(np.float32) / 255, 10, 20)
    h, w = 64, 64
    aligned = align(before, 10 + 32, 20, np.zeros((h, w, 2), np.float32), S)  # the crop moved half its width right
    valid = aligned[..., 3]
    assert (valid[:, : w * S // 2 - S] == 1).all() and not valid[:, w * S // 2 + S :].any()
    assert np.allclose(aligned[:, :100, :3], face[:, 128:228].astype(np.float32) / 255)
    assert not aligned[:, w * S // 2 + S :].any()


def test_numpy_and_torch_make_the_same_input(face):
    now = shifted(face, 2.5, 1.0)
    lr = downscale(now, S)
    prev = face.astype(np.float32) / 255
    motion = flow(lr, downscale(face, S))
    channels, kept = memory_channels(lr, align(remembered(prev, 0, 0), 0, 0, motion, S), S)
    assert kept and channels.shape == (history_channels(S), 64, 64)
    as_torch = model_input_torch(torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255,
                                 torch.from_numpy(prev).permute(2, 0, 1)[None],
                                 torch.from_numpy(motion).permute(2, 0, 1)[None], S)[0].permute(1, 2, 0).numpy()
    assert np.abs(as_torch - np.concatenate([lr / 255.0, channels.transpose(1, 2, 0)], 2)).max() < 1e-5


def test_a_cut_to_another_person_drops_the_history(face, grace_hopper):
    other = np.ascontiguousarray(cv2.resize(grace_hopper[100:420, 110:430], (256, 256), interpolation=cv2.INTER_AREA))
    lr = downscale(other, S)
    prev = remembered(face.astype(np.float32) / 255, 0, 0)
    channels, kept = memory_channels(lr, align(prev, 0, 0, flow(lr, downscale(face, S)), S), S)
    assert not kept and not channels.any()
    # the same face a moment later keeps it, well inside the gate
    lr_same = downscale(shifted(face, 1.0, 0.0), S)
    channels, kept = memory_channels(lr_same, align(prev, 0, 0, flow(lr_same, downscale(face, S)), S), S)
    assert kept and channels[-1].mean() < CUT_ERROR / 2
    # torch's gate agrees, sample by sample
    x = model_input_torch(torch.from_numpy(np.stack([lr, lr_same])).permute(0, 3, 1, 2).float() / 255,
                          torch.from_numpy(np.stack([face, face])).permute(0, 3, 1, 2).float() / 255,
                          torch.from_numpy(np.stack([flow(lr, downscale(face, S)), flow(lr_same, downscale(face, S))]))
                          .permute(0, 3, 1, 2), S)
    assert not x[0, 3:].any() and x[1, 3:].any()


def test_a_widened_generator_computes_the_single_frame_one():
    torch.manual_seed(0)
    base = Generator(generator_config("lite", S))
    rec = widened(base, generator_config("lite-recurrent", S))
    x = torch.rand(2, rec.config.in_channels, 16, 16)
    with torch.no_grad():
        assert torch.allclose(rec(x), base(x[:, :3]), atol=1e-6)


def test_no_memory_is_a_first_frame():
    torch.manual_seed(0)
    resolver = SuperResolver(Generator(generator_config("lite-recurrent", S)), "cpu", "float32")
    crops = [np.random.default_rng(0).integers(0, 255, (20, 24, 3), dtype=np.uint8)]
    none = resolver(crops)
    zeros = resolver(crops, [np.zeros((history_channels(S), 20, 24), np.float32)])
    assert np.array_equal(none[0], zeros[0])


def _two_people(astronaut, grace_hopper):
    """LR call frames: one person at a place, then (a cut) another at the same place."""
    a = on_canvas(astronaut[:400, 80:480], at=(400, 100))
    b = on_canvas(cv2.resize(grace_hopper[60:460, 80:480], (400, 400), interpolation=cv2.INTER_AREA), at=(400, 100))
    return downscale(a, S), downscale(b, S)


def test_a_cut_between_two_people_never_carries_one_face_onto_the_other(astronaut, grace_hopper):
    first, second = _two_people(astronaut, grace_hopper)
    e = Enhancer("lite-recurrent", S, device="cpu", detect_every=1)
    for _ in range(4):
        e(first)
    ids = [t.id for t in e.tracker.tracks]
    assert e.history_counts == {"faces": 4, "remembered": 3}
    e(second)
    assert [t.id for t in e.tracker.tracks] == ids  # the tracker followed the place: the same track
    assert e.history_counts == {"faces": 5, "remembered": 3}  # its history was dropped at the cut
    e(second)
    e(second)
    assert e.history_counts == {"faces": 7, "remembered": 5}  # and it remembers the new face
    e.close()


def test_frames_worked_on_at_once_come_out_as_one_at_a_time(astronaut, grace_hopper):
    first, second = _two_people(astronaut, grace_hopper)
    frames = [shifted(first, dx, 0) for dx in (0, 0.5, 1.0, 1.5)] + [second, second]
    outs = {}
    for workers in (1, 3):
        e = Enhancer("lite-recurrent", S, device="cpu", precision="float32", workers=workers)
        outs[workers] = [f.result() for f in [e.submit(f) for f in frames]]
        e.close()
    assert all(np.array_equal(a, b) for a, b in zip(outs[1], outs[3]))


def test_lite_call_is_lite_recurrent_without_its_memory(grace_hopper):
    """The shipped single-frame `lite-call` computes what `lite-recurrent` computes with no history
    (a track's first frame), at `lite`'s cost."""
    lr = np.ascontiguousarray(cv2.resize(grace_hopper[60:460, 80:480], (96, 96), interpolation=cv2.INTER_AREA))
    call, recurrent = load_generator("lite-call", S), load_generator("lite-recurrent", S)
    assert call.config == generator_config("lite", S)
    single = SuperResolver(call, "cpu", "float32").residuals([lr])[0]
    first = SuperResolver(recurrent, "cpu", "float32").residuals([lr])[0]
    assert np.abs(single - first).max() < 1e-3  # levels


# --- training --------------------------------------------------------------------------------


@pytest.fixture
def clips(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    (folder / "demo.mp4").symlink_to(ROOT / "examples" / "demo_call_reference.mp4")
    return folder


def test_sequences_are_aligned_runs_with_their_motion(faces, clips, tmp_path):
    bank = SequenceBank.build(clips, faces, S, tmp_path / "cache", stills_count=2, variants=1, progress=False)
    assert len(bank) == 3
    assert len(bank.sequences[0]) > 100  # the clip first, then the two faces
    again = SequenceBank.build(clips, faces, S, tmp_path / "cache", stills_count=2, variants=1, progress=False)
    assert all(np.array_equal(a.lr, b.lr) for a, b in zip(bank.sequences, again.sequences))  # cached
    lr, hr, motion = bank.batch(4, 5, 24, p_cut=0.0)
    assert lr.shape == (4, 5, 24, 24, 3) and hr.shape == (4, 5, 96, 96, 3) and motion.shape == (4, 5, 24, 24, 2)
    assert not motion[:, 0].any()
    for i in range(4):
        for t in range(5):  # each LR is its HR through the call: close to its area downscaling
            assert psnr(lr[i, t], downscale(hr[i, t], S)) > 24
        assert np.allclose(motion[i, 2], flow(lr[i, 2], lr[i, 1]))


def test_recurrent_training_starts_from_lite_and_resumes(faces, clips, tmp_path):
    out = tmp_path / "run"
    cfg = TrainConfig(model="lite-recurrent", data=str(faces), eval_dir=str(faces), clips=str(clips), sequence_stills=2,
                      out=str(out), steps=2, batch=2, patch=64, frames=3, checkpoint_every=1, warmup=1)
    first = train_recurrent(cfg)
    model = load_generator(str(first), S)
    meta = read_metadata(first)
    assert model.config.history and int(meta["steps"]) == 2 and "bicubic_psnr" in meta["eval"]
    single = load_generator(str(out / "final-single-frame.safetensors"), S)  # the same network without its memory
    assert single.config == generator_config("lite", S)
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        assert torch.allclose(single(x), model(torch.cat([x, torch.zeros(1, history_channels(S), 12, 12)], 1)), atol=1e-6)
    lite = load_generator("lite", S)
    for (name, a), b in zip(model.state_dict().items(), lite.state_dict().values()):
        if name != "head.0.weight":  # two small steps from lite: near it, not it
            assert a.shape == b.shape and (a - b).abs().max() < 0.05 and not torch.equal(a, b)
    saved = torch.load(out / "last.pt", weights_only=False)
    cfg.steps = 3
    train_recurrent(cfg)
    state = torch.load(out / "last.pt", weights_only=False)
    assert state["step"] == 3 and all(v["step"] == 3 for v in state["opt"]["state"].values())
    assert saved["step"] == 2


def test_the_temporal_loss_is_the_flicker_of_the_run():
    hr = torch.rand(2, 4, 3, 8, 8)
    same = [hr[:, t] + 0.1 for t in range(4)]  # off by a constant: changes exactly as the original
    assert temporal_loss(same, hr) < 1e-6
    still = [hr[:, 0]] * 4  # frozen: misses every change
    expected = np.mean([(hr[:, t] - hr[:, t - 1]).abs().mean().item() for t in range(1, 4)])
    assert temporal_loss(still, hr).item() == pytest.approx(expected, rel=1e-5)


def test_recurrent_training_on_cuda_runs_in_bfloat16(faces, clips, tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine")
    cfg = TrainConfig(model="lite-recurrent", data=str(faces), eval_dir="", clips=str(clips), sequence_stills=2,
                      out=str(tmp_path / "run"), steps=2, batch=2, patch=64, frames=3, device="cuda")
    meta = read_metadata(train_recurrent(cfg))
    assert "bfloat16 autocast" in meta["hardware"]
