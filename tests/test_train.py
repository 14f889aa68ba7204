import contextlib
import copy
import json

import cv2
import numpy as np
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from facesr.errors import UserError
from facesr.images import list_images, read_rgb
from facesr.metrics import high_frequency_energy
from facesr.models import Discriminator, Generator, generator_config
from facesr.protocol import downscale
from facesr.train.config import TrainConfig
from facesr.train.data import FacePairs, boost_detail, to_tensor
from facesr.train.degrade import CLEAN, Degradation, degrade
from facesr.train.loop import WeightAverage, train
from facesr.train.photos import photo_crops
from facesr.weights import load_generator, read_metadata


def test_degradations_make_the_lr_size_and_vary(astronaut):
    rng = np.random.default_rng(0)
    hr = astronaut[:256, :256]
    clean = degrade(hr, 4, rng, CLEAN)
    assert clean.shape == (64, 64, 3) and clean.dtype == np.uint8
    heavy = Degradation(p_clean=0.0, p_blur=1.0, p_noise=1.0, p_jpeg=1.0)
    outs = [degrade(hr, 4, rng, heavy) for _ in range(3)]
    assert all(o.shape == (64, 64, 3) for o in outs)
    assert all(np.abs(o.astype(int) - clean).mean() > 1 for o in outs)


def test_pairs_are_aligned_patches(faces):
    data = FacePairs(faces, 4, 64, CLEAN, seed=1)
    lr, hr = data.batch(5)
    assert lr.shape == (5, 3, 16, 16) and hr.shape == (5, 3, 64, 64)
    down = torch.nn.functional.avg_pool2d(hr, 4)
    assert (down - lr).abs().mean() < 0.01  # LR is the area downscale of HR


def test_contrast_gain_stretches_the_hr_and_its_lr_alike(faces):
    plain = FacePairs(faces, 4, 64, CLEAN, seed=3)
    stretched = FacePairs(faces, 4, 64, CLEAN, seed=3, contrast=(1.5, 1.5))
    _, hr0 = plain.sample()
    lr1, hr1 = stretched.sample()  # the same crop of the same face: the gain is drawn after it
    assert hr1.std() > 1.3 * hr0.std()
    down = torch.nn.functional.avg_pool2d(to_tensor(hr1[None]), 4)
    assert (down - to_tensor(lr1[None])).abs().mean() < 0.01  # the LR is made from the stretched HR
    with pytest.raises(UserError, match="contrast"):
        FacePairs(faces, 4, 64, CLEAN, contrast=(1.2, 1.0))


def test_detail_gain_raises_the_band_the_lr_loses_and_leaves_the_lr(astronaut, faces):
    hr = astronaut[:256, 128:384]
    boosted = boost_detail(hr, 1.5, 4)
    ratio = high_frequency_energy(boosted, 4) / high_frequency_energy(hr, 4)
    assert 1.6 < ratio < 2.3  # energy: up to the gain squared, less near the Nyquist where the blur keeps half
    assert np.abs(boost_detail(hr, 1.0, 4).astype(int) - hr).max() == 0
    change_hr = np.abs(boosted.astype(int) - hr).mean()
    change_lr = np.abs(downscale(boosted, 4).astype(int) - downscale(hr, 4)).mean()
    assert change_lr < 0.6 * change_hr  # the LR, made from the boosted HR, moves less
    plain = FacePairs(faces, 4, 64, CLEAN, seed=3)
    sharper = FacePairs(faces, 4, 64, CLEAN, seed=3, detail=(1.5, 1.5))
    (_, hr0), (lr1, hr1) = plain.sample(), sharper.sample()  # the same crop: the gain is drawn after it
    assert high_frequency_energy(hr1, 4) > 1.5 * high_frequency_energy(hr0, 4)
    assert np.abs(downscale(hr1, 4).astype(int) - lr1).max() <= 1  # the LR is made from the boosted HR
    with pytest.raises(UserError, match="detail"):
        FacePairs(faces, 4, 64, CLEAN, detail=(1.5, 1.2))


def test_photo_crops_are_cached_real_photos_drawn_beside_the_faces(faces, tmp_path):
    folder = photo_crops(7, cache=tmp_path / "photos")
    crops = [read_rgb(p) for p in list_images(folder)]
    assert len(crops) == 7 and all(c.shape == (256, 256, 3) for c in crops)
    assert len({c.tobytes() for c in crops}) == 7  # seven different crops
    assert min(c.std() for c in crops) > 10  # photos, not blank
    before = sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir())
    assert photo_crops(7, cache=tmp_path / "photos") == folder
    assert sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir()) == before  # made once
    both = FacePairs([faces, folder], 4, 64, CLEAN, seed=0)
    assert len(both) == 3 + 7
    lr, hr = both.sample()
    assert hr.shape == (64, 64, 3) and lr.shape == (16, 16, 3)
    with pytest.raises(UserError, match="--photos"):
        photo_crops(0, cache=tmp_path / "photos")
    with pytest.raises(UserError, match="no training images"):
        FacePairs([faces, tmp_path / "empty"], 4, 64, CLEAN)


def test_missing_training_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError):
        FacePairs(tmp_path / "nope", 4, 64, CLEAN)


@contextlib.contextmanager
def first_steps():
    """What each optimiser holds when it first steps: {optimiser: (its parameters, its state)}, copied
    by torch's global optimiser step pre-hook, so before that step changes either."""
    seen: dict = {}

    def hook(opt, args, kwargs):
        if opt not in seen:
            params = [p.detach().clone() for group in opt.param_groups for p in group["params"]]
            seen[opt] = (params, copy.deepcopy(opt.state_dict()["state"]))

    handle = register_optimizer_step_pre_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def assert_resumed(seen: dict, ckpt: dict, net: torch.nn.Module, weights: str, opt_state: str) -> None:
    """The run's first step of `net` (a fresh instance, for its parameter names) started from the checkpoint's
    weights ckpt[weights] and its optimiser from ckpt[opt_state], exactly."""
    saved = [ckpt[weights][name] for name, _ in net.named_parameters()]
    matching = [v for v in seen.values() if [p.shape for p in v[0]] == [t.shape for t in saved]]
    assert len(matching) == 1, "no optimiser stepped the network"
    params, state = matching[0]
    assert all(torch.equal(a, b) for a, b in zip(params, saved)), f"the resumed run did not start from ckpt[{weights!r}]"
    expected = ckpt[opt_state]["state"]
    assert expected and state.keys() == expected.keys(), f"the optimiser's state was not restored from ckpt[{opt_state!r}]"
    for index, values in expected.items():
        for key, value in values.items():
            assert torch.equal(torch.as_tensor(state[index][key]), torch.as_tensor(value)), (opt_state, index, key)


@pytest.mark.slow
def test_training_runs_checkpoints_and_resumes(faces, tmp_path):
    out = tmp_path / "run"
    cfg = TrainConfig(data=str(faces), eval_dir=str(faces), out=str(out), steps=6, batch=2, patch=64,
                      eval_every=3, checkpoint_every=3, warmup=2)
    cfg.steps = 3
    first = train(cfg)
    meta = read_metadata(first)  # the first run finished at its 3 steps: its last step's weights
    assert first.name == "final.safetensors" and int(meta["steps"]) == 3 and "bicubic_psnr" in json.loads(meta["eval"])
    saved = torch.load(out / "last.pt", weights_only=False)
    assert saved["step"] == 3
    cfg.steps = 6
    with first_steps() as seen:
        train(cfg)  # resumes at step 3
    # from the saved weights and optimiser state, not from a fresh start
    assert_resumed(seen, saved, Generator(generator_config("lite", 4)), "model", "opt")
    state = torch.load(out / "last.pt", weights_only=False)
    assert state["step"] == 6
    assert all(v["step"] == 6 for v in state["opt"]["state"].values())  # Adam counted on from 3
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "psnr" in r] == [3, 6]
    assert load_generator(str(first), 4).config.channels == 32
    final = read_metadata(out / "final.safetensors")
    assert int(final["steps"]) == 6 and "psnr" in json.loads(final["eval"])


def test_h264_call_is_compressed_and_aligned(astronaut):
    from facesr.train.degrade import h264_call, h264_roundtrip

    hr = astronaut[:256, 128:384]
    clean = degrade(hr, 4, np.random.default_rng(0), CLEAN)
    lr = h264_call(hr, 4, np.random.default_rng(1), Degradation(p_blur=0.0, p_noise=0.0, h264_crf=(36, 36)))
    assert lr.shape == (64, 64, 3) and lr.dtype == np.uint8
    diff = np.abs(lr.astype(int) - clean)
    assert 1.0 < diff.mean() < 12.0  # compressed, but the same face in the same place
    # lower CRF, closer to the input; the round trip keeps frame count and size
    frames = [clean] * 3
    fine, coarse = h264_roundtrip(frames, 18), h264_roundtrip(frames, 45)
    assert len(fine) == 3 and fine[-1].shape == clean.shape
    assert np.abs(fine[-1].astype(int) - clean).mean() < np.abs(coarse[-1].astype(int) - clean).mean()


def test_h264_bank_is_cached_and_pairs_stay_aligned(faces, tmp_path):
    spec = Degradation(p_clean=0.0, p_h264=1.0, p_blur=0.0, p_noise=0.0)
    data = FacePairs(faces, 4, 64, spec, seed=2, cache=tmp_path / "cache")
    files = list((tmp_path / "cache").glob("bank-*.npz"))
    assert len(files) == 1 and len(data.h264) == len(data)
    again = FacePairs(faces, 4, 64, spec, seed=2, cache=tmp_path / "cache")  # read back, not re-encoded
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(data.h264, again.h264))
    lr, hr = data.batch(6)
    assert lr.shape == (6, 3, 16, 16) and hr.shape == (6, 3, 64, 64)
    down = torch.nn.functional.avg_pool2d(hr, 4)
    err = (down - lr)[..., 2:-2, 2:-2].abs().mean()
    shifted = (torch.roll(down, 1, dims=3) - lr)[..., 2:-2, 2:-2].abs().mean()
    assert 0.001 < err < shifted  # compressed, and aligned: a one-pixel shift matches worse


@pytest.mark.slow
def test_gan_fine_tuning_trains_both_networks_and_resumes(faces, tmp_path):
    pixel = TrainConfig(data=str(faces), eval_dir="", out=str(tmp_path / "pixel"), steps=2, batch=2, patch=64,
                        degradations="clean", warmup=1)
    init = train(pixel)
    out = tmp_path / "gan"
    cfg = TrainConfig(data=str(faces), eval_dir=str(faces), out=str(out), model="lite-gan", init=str(init),
                      steps=2, batch=2, patch=64, eval_every=2, checkpoint_every=1, warmup=1, degradations="clean",
                      energy_weight=1.0)
    train(cfg)
    first = torch.load(out / "last.pt", weights_only=False)
    assert first["step"] == 2 and "disc" in first and "disc_opt" in first
    cfg.steps = 3
    with first_steps() as seen:
        weights = train(cfg)
    # the generator, the discriminator and both optimisers went on from where they were saved
    assert_resumed(seen, first, Generator(generator_config("lite-gan", 4)), "model", "opt")
    assert_resumed(seen, first, Discriminator(), "disc", "disc_opt")
    state = torch.load(out / "last.pt", weights_only=False)
    assert state["step"] == 3
    moved = [not torch.equal(a, state["disc"][k]) for k, a in first["disc"].items() if a.is_floating_point()]
    assert any(moved)  # the discriminator trained too
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert {"l1", "fm", "energy", "adv", "d", "hf_ratio"} <= set(log[-1])
    meta = read_metadata(weights)
    assert "adversarial" in meta["loss"] and "detail energy" in meta["loss"] and "init" in meta
    # the GAN stage exports its weight average, which is kept across the resume
    assert state["ema"]["updates"] == 3 and "weight_average" in meta
    shipped = load_generator(str(weights), 4).state_dict()
    assert all(torch.equal(shipped[k], v) for k, v in state["ema"]["model"].items())
    assert any(not torch.equal(shipped[k], v) for k, v in state["model"].items() if v.is_floating_point())


@pytest.mark.slow
def test_weight_average_follows_the_weights_with_a_ramped_decay():
    model = Generator(generator_config("srresnet", 4))  # has BN buffers
    first = model.head[0].weight.detach().clone()
    average = WeightAverage(model, decay=0.999)
    with torch.no_grad():
        model.head[0].weight.add_(1.0)
        model.blocks[0].body[1].running_mean.add_(3.0)
    average.update(model)  # decay ramp: keeps 2/11 of the old weights on the first update
    np.testing.assert_allclose(average.model.head[0].weight, first + 9 / 11, rtol=0, atol=1e-6)
    assert torch.equal(average.model.blocks[0].body[1].running_mean, model.blocks[0].body[1].running_mean)
    for _ in range(5000):
        average.update(model)
    np.testing.assert_allclose(average.model.head[0].weight, first + 1, rtol=0, atol=1e-4)
    assert not average.model.training and not any(p.requires_grad for p in average.model.parameters())
    restored = WeightAverage(Generator(generator_config("srresnet", 4)), decay=0.999)
    restored.load_state_dict(average.state_dict())
    assert restored.updates == 5001 and torch.equal(restored.model.head[0].weight, average.model.head[0].weight)


def test_bad_weight_average_decay_is_a_user_error(faces, tmp_path):
    cfg = TrainConfig(data=str(faces), eval_dir="", out=str(tmp_path / "x"), steps=1, batch=2, patch=64, ema=1.0)
    with pytest.raises(UserError, match="--ema"):
        train(cfg)


def test_gan_model_without_its_pixel_model_is_a_user_error(faces, tmp_path):
    cfg = TrainConfig(data=str(faces), eval_dir="", out=str(tmp_path / "x"), model="lite-gan",
                      init=str(tmp_path / "missing.safetensors"), steps=1, batch=2, patch=64)
    with pytest.raises(UserError, match="does not exist"):
        train(cfg)


def test_vgg54_loads_a_torchvision_state_dict_and_rejects_others(tmp_path):
    from facesr.train.losses import VGG54Loss, vgg19_features_54

    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in vgg19_features_54().state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # a full vgg19 file has more; it is ignored
    torch.save(state, tmp_path / "vgg19.pth")
    loss = VGG54Loss(tmp_path / "vgg19.pth")
    x = torch.rand(1, 3, 64, 64)
    assert loss(x, x).item() == 0.0
    y = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    assert loss(y, x).item() > 0.0
    y.requires_grad_(True)
    loss(y, x).backward()
    assert y.grad is not None and all(p.grad is None for p in loss.parameters())  # VGG itself stays fixed
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(UserError, match="not a torchvision vgg19"):
        VGG54Loss(tmp_path / "other.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="not a torch state-dict"):
        VGG54Loss(tmp_path / "junk.pth")


def test_detail_energy_asks_how_strong_the_detail_is_not_where(astronaut):
    from facesr.train.losses import detail_energy

    hr = astronaut[:256, 128:384]
    bicubic = cv2.resize(downscale(hr, 4), (256, 256), interpolation=cv2.INTER_CUBIC)  # too flat
    shifted = np.roll(hr, (2, 2), (0, 1))  # the same detail, every ripple moved
    sharpened = boost_detail(hr, 2.0, 4)  # too busy
    target = to_tensor(hr[None])

    def losses(img):
        x = to_tensor(img[None])
        return detail_energy(x, target, 4).item(), torch.nn.functional.l1_loss(x, target).item()

    assert losses(hr) == (0.0, 0.0)
    (e_bic, l1_bic), (e_shift, l1_shift), (e_sharp, _) = losses(bicubic), losses(shifted), losses(sharpened)
    assert l1_shift > l1_bic  # L1 would rather have the blur than the moved detail
    assert e_shift < 0.4 * e_bic and e_shift < 0.4 * e_sharp  # the energy loss would not
    x = to_tensor(bicubic[None]).requires_grad_()
    detail_energy(x, target, 4).backward()
    assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["ragan", "hinge"])
def test_gan_losses_point_the_right_way(kind):
    from facesr.train.losses import discriminator_loss, generator_adversarial_loss

    real, fake = torch.full((8,), 3.0), torch.full((8,), -3.0)  # a discriminator that tells them apart
    assert discriminator_loss(real, fake, kind) < discriminator_loss(fake, real, kind)
    assert generator_adversarial_loss(real, fake, kind) > generator_adversarial_loss(fake, real, kind)


@pytest.mark.slow
def test_discriminator_warm_up_trains_the_discriminator_alone_on_a_fresh_run_only(faces, tmp_path, monkeypatch):
    from facesr.train import loop

    pixel = TrainConfig(data=str(faces), eval_dir="", out=str(tmp_path / "pixel"), steps=2, batch=2, patch=64,
                        degradations="clean", warmup=1)
    init = train(pixel)
    start = load_generator(str(init), 4).state_dict()
    cfg = TrainConfig(data=str(faces), eval_dir="", out=str(tmp_path / "gan"), model="lite-gan", init=str(init),
                      steps=1, batch=2, patch=64, warmup=1, degradations="clean", d_warmup=3, ema=0.0)
    calls = []
    real_step = loop._Adversary.step
    monkeypatch.setattr(loop._Adversary, "step", lambda self, sr, hr, lr: calls.append(1) or real_step(self, sr, hr, lr))
    weights = train(cfg)
    assert len(calls) == 4  # three discriminator steps alone, then one beside the generator's step
    assert "d_warmup" in read_metadata(weights)
    trained = load_generator(str(weights), 4).state_dict()
    assert any(not torch.equal(trained[k], v) for k, v in start.items() if v.is_floating_point())
    cfg.steps = 2  # resumed: no second warm-up
    calls.clear()
    train(cfg)
    assert len(calls) == 1


# The validation these check is the lead's (issue 26, section 3): before it, each ended in an internal
# error (exit 3) or trained with a nonsensical setting.
@pytest.mark.parametrize("option, value", [("--steps", "0"), ("--eval-every", "0"), ("--batch", "0"), ("--lr", "-1")])
def test_train_rejects_a_nonsensical_option_in_one_line(faces, tmp_path, capsys, option, value):
    from facesr.cli import main

    settings = {"--data": str(faces), "--eval-dir": str(faces), "--out": str(tmp_path / "run"), "--steps": "2",
                "--batch": "2", "--patch": "64", "--eval-every": "1", "--lr": "1e-4", "--degradations": "clean"}
    settings[option] = value
    try:
        rc = main(["train", *(item for pair in settings.items() for item in pair)])
    except SystemExit as exc:  # argparse's own check
        rc = exc.code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert rc in (1, 2), f"exit {rc}: {err}"
    assert "Traceback" not in err and "internal error" not in err
    assert lines and option in lines[-1], err
    assert len(lines) == 1 or (rc == 2 and lines[0].startswith("usage:")), err  # argparse puts its usage first
    assert not (tmp_path / "run" / "last.pt").exists()  # nothing trained


# --- tensor batches: the GPU's training path, run here on the CPU -----------------------------


def test_per_image_gaussian_blur_matches_opencv():
    from facesr.train.batches import gaussian_blur

    rng = np.random.default_rng(0)
    imgs = rng.uniform(0, 255, (3, 40, 40, 3)).astype(np.float32)
    sigmas = [0.0, 0.6, 1.5]
    got = gaussian_blur(torch.from_numpy(imgs).permute(0, 3, 1, 2), torch.tensor(sigmas)).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(got[0], imgs[0])  # sigma 0: unchanged
    for img, out, sigma in zip(imgs[1:], got[1:], sigmas[1:]):
        k = 2 * int(np.ceil(3 * max(sigmas))) + 1  # one kernel width for the batch, as wide as the largest sigma needs
        want = cv2.GaussianBlur(img, (k, k), sigma, borderType=cv2.BORDER_REFLECT_101)
        assert np.abs(out - want).max() < 1e-3


def test_tensor_batches_are_aligned_follow_the_mix_and_build_the_same_bank_in_any_number_of_processes(faces, tmp_path):
    from facesr.train.batches import TensorBatches

    cpu = torch.device("cpu")
    spec = Degradation()
    one = TensorBatches([faces], 4, 64, spec, cpu, cache=tmp_path / "a", variants=2, workers=1, contrast=(1.0, 1.6))
    two = TensorBatches([faces], 4, 64, spec, cpu, cache=tmp_path / "b", variants=2, workers=2)
    for kind in ("h264", "jpeg"):
        assert one.banks[kind].shape == (3, 2, 64, 64, 3) and torch.equal(one.banks[kind], two.banks[kind])
    assert not torch.equal(one.banks["h264"][:, 0], one.banks["h264"][:, 1])  # the variants differ
    lr, hr = one.batch(200)
    assert lr.shape == (200, 3, 16, 16) and hr.shape == (200, 3, 64, 64)
    assert 0 <= float(lr.min()) and float(lr.max()) <= 1 and 0 <= float(hr.min()) and float(hr.max()) <= 1
    # every LR is aligned with its HR: nearer its area downscale than to the downscale one LR pixel over
    pooled = torch.nn.functional.avg_pool2d(hr, 4)
    err = (pooled - lr)[..., 2:-2, 2:-2].abs().mean(dim=(1, 2, 3)) * 255
    shifted = (pooled.roll(1, dims=-1) - lr)[..., 2:-2, 2:-2].abs().mean(dim=(1, 2, 3)) * 255
    assert float(err.mean()) < 0.6 * float(shifted.mean()) and float((err <= shifted + 0.5).float().mean()) > 0.9
    clean = float((err < 0.5).float().mean())  # the clean share is the downscale exactly
    assert abs(clean - (1 - spec.p_h264) * spec.p_clean) < 0.12
    # the same seed gives the same batches
    again = TensorBatches([faces], 4, 64, spec, cpu, cache=tmp_path / "a", variants=2, contrast=(1.0, 1.6))
    assert torch.equal(again.batch(8)[1], TensorBatches([faces], 4, 64, spec, cpu, cache=tmp_path / "a", variants=2,
                                                        contrast=(1.0, 1.6)).batch(8)[1])


@pytest.mark.slow
def test_training_on_tensor_batches_resumes_and_records_the_hardware(faces, tmp_path):
    out = tmp_path / "run"
    cfg = TrainConfig(data=str(faces), eval_dir=str(faces), out=str(out), steps=2, batch=4, patch=64, warmup=1,
                      eval_every=1, checkpoint_every=1, batches="tensor", device="cpu", bank_variants=1, bank_workers=1)
    train(cfg)
    saved = torch.load(out / "last.pt", weights_only=False)
    cfg.steps = 3
    with first_steps() as seen:
        weights = train(cfg)
    assert_resumed(seen, saved, Generator(generator_config("lite", 4)), "model", "opt")
    meta = read_metadata(weights)
    assert int(meta["steps"]) == 3 and "tensor batches" in meta["hardware"]
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert all(r["samples_per_s"] == pytest.approx(4 * r["steps_per_s"], rel=0.05) for r in log)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_training_on_cuda_runs_in_bfloat16_on_tensor_batches(faces, tmp_path):
    cfg = TrainConfig(data=str(faces), eval_dir=str(faces), out=str(tmp_path / "gpu"), steps=20, batch=16, patch=64,
                      eval_every=20, warmup=1, device="cuda", bank_variants=1)
    weights = train(cfg)
    meta = read_metadata(weights)
    assert torch.cuda.get_device_name() in meta["hardware"] and "tensor batches" in meta["hardware"]
    assert "bfloat16" in meta["hardware"] or not torch.cuda.is_bf16_supported()
    assert json.loads(meta["eval"])["psnr"] > 0
