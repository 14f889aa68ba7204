import json

import numpy as np
import pytest
import torch

from facesr.errors import UserError
from facesr.images import write_rgb
from facesr.train import TrainConfig, train
from facesr.train.data import FacePairs
from facesr.train.degrade import CLEAN, Degradation, degrade
from facesr.weights import load_generator, read_metadata


@pytest.fixture
def faces(tmp_path, astronaut, grace_hopper):
    folder = tmp_path / "faces"
    folder.mkdir()
    write_rgb(folder / "a.png", astronaut[:256, 128:384])
    write_rgb(folder / "b.jpg", grace_hopper[100:356, 128:384])
    write_rgb(folder / "c.png", astronaut[256:, 256:])
    return folder


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


def test_missing_training_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError):
        FacePairs(tmp_path / "nope", 4, 64, CLEAN)


def test_training_runs_checkpoints_and_resumes(faces, tmp_path):
    out = tmp_path / "run"
    cfg = TrainConfig(data=str(faces), eval_dir=str(faces), out=str(out), steps=6, batch=2, patch=64,
                      eval_every=3, checkpoint_every=3, warmup=2)
    cfg.steps = 3
    best = train(cfg)
    assert torch.load(out / "last.pt", weights_only=False)["step"] == 3
    cfg.steps = 6
    train(cfg)  # resumes at step 3
    state = torch.load(out / "last.pt", weights_only=False)
    assert state["step"] == 6
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "psnr" in r] == [3, 6]
    meta = read_metadata(best)
    assert int(meta["steps"]) in (3, 6) and "bicubic_psnr" in json.loads(meta["eval"])
    assert load_generator(str(best), 4).config.channels == 32
    final = read_metadata(out / "final.safetensors")
    assert int(final["steps"]) == 6 and "psnr" in json.loads(final["eval"])
