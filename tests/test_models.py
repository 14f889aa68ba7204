import json

import pytest
import torch

from facesr.models import Discriminator, Generator, ResidualBlock, generator_config
from facesr.protocol import eval_pairs
from facesr.train.loop import evaluate
from facesr.weights import load_generator, read_metadata, save_generator
from helpers import ROOT, shared_path


@pytest.mark.parametrize("variant", ["lite", "srresnet"])
@pytest.mark.parametrize("scale", [2, 4])
def test_generator_upscales_by_its_scale(variant, scale):
    net = Generator(generator_config(variant, scale)).eval()
    with torch.no_grad():
        assert net(torch.rand(2, 3, 20, 24)).shape == (2, 3, 20 * scale, 24 * scale)


def test_srgan_and_srresnet_are_the_papers_generator():
    assert generator_config("srgan", 4) == generator_config("srresnet", 4)
    net = Generator(generator_config("srgan", 4))
    assert net.head[0].kernel_size == (9, 9) and net.head[0].out_channels == 64
    blocks = [m for m in net.blocks if isinstance(m, ResidualBlock)]
    assert len(blocks) == 16
    kinds = [type(m).__name__ for m in blocks[0].body]
    assert kinds == ["Conv2d", "BatchNorm2d", "PReLU", "Conv2d", "BatchNorm2d"]
    assert len(net.upsample) == 2 and all(isinstance(u.shuffle, torch.nn.PixelShuffle) for u in net.upsample)
    assert net.tail.kernel_size == (9, 9)


def test_lite_is_small_and_predicts_a_residual_over_bicubic():
    net = Generator(generator_config("lite", 4))
    assert sum(p.numel() for p in net.parameters()) < 200_000
    torch.nn.init.zeros_(net.tail[0].weight)
    torch.nn.init.zeros_(net.tail[0].bias)
    x = torch.rand(1, 3, 16, 16)
    expected = torch.nn.functional.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)
    assert torch.allclose(net(x), expected)


def test_discriminator_gives_one_logit_per_image():
    d = Discriminator()
    assert d(torch.rand(3, 3, 96, 96)).shape == (3,)
    assert d(torch.rand(2, 3, 128, 128)).shape == (2,)
    convs = [m for m in d.features if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 8 and convs[-1].out_channels == 512


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError):
        generator_config("huge")


def test_save_and_load_round_trip(tmp_path):
    net = Generator(generator_config("lite", 2))
    save_generator(tmp_path / "m.safetensors", net, steps=12)
    back = load_generator(str(tmp_path / "m.safetensors"), 2)
    assert back.config == net.config
    for (k, a), (_, b) in zip(net.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), k
    assert read_metadata(tmp_path / "m.safetensors")["steps"] == "12"


SHIPPED = ["lite", "lite-call", "lite-recurrent", "lite-photo", "lite-gan", "srresnet", "srgan"]


def _card_rows() -> dict[str, dict[str, str]]:
    """The model card's evaluation table: model file stem -> column -> cell."""
    text = (ROOT / "weights" / "MODEL_CARD.md").read_text()
    lines = [ln for ln in text.splitlines() if ln.startswith("| ")]
    header = next(ln for ln in lines if ln.startswith("| model |"))
    names = [c.strip() for c in header.strip("|").split("|")]
    rows = {}
    for ln in lines:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        if len(cells) == len(names) and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = dict(zip(names, cells))
    return rows


@pytest.mark.parametrize("model", SHIPPED)
def test_every_shipped_model_loads_and_matches_its_card_row(model):
    row = _card_rows()[f"{model}-x4"]
    path = ROOT / "weights" / f"{model}-x4.safetensors"
    meta = read_metadata(path)
    assert int(meta["steps"]) == int(row["steps"].replace(",", ""))
    assert json.loads(meta["eval"])["psnr"] == pytest.approx(float(row["PSNR"]), abs=0.01)
    assert load_generator(model, 4).config == generator_config(model, 4)


@pytest.mark.shared_data
@pytest.mark.parametrize("model", ["lite", "lite-call", "lite-photo", "lite-gan"])
def test_the_card_numbers_reproduce(model):
    """Re-run the standard evaluation for the CPU models (the paper-sized ones take longer)."""
    pairs = eval_pairs(shared_path("data", "faces", "eval"), 4)
    ev = evaluate(load_generator(model, 4), pairs)
    row = _card_rows()[f"{model}-x4"]
    assert ev["psnr"] == pytest.approx(float(row["PSNR"]), abs=0.02)
    assert ev["hf_ratio"] == pytest.approx(float(row["detail"]), abs=0.02)
    assert ev["psnr"] - ev["bicubic_psnr"] == pytest.approx(float(row["gain"]), abs=0.02)


def test_gan_models_restore_detail_and_pixel_models_win_psnr():
    rows = _card_rows()
    for pixel, gan in (("lite-x4", "lite-gan-x4"), ("srresnet-x4", "srgan-x4")):
        assert float(rows[pixel]["PSNR"]) > float(rows[gan]["PSNR"])
        assert float(rows[gan]["detail"]) > 2 * float(rows[pixel]["detail"])


def test_gan_strength_blends_each_weight_between_the_pixel_and_the_gan_model():
    pixel, gan = load_generator("lite", 4).state_dict(), load_generator("lite-gan", 4).state_dict()
    half = load_generator("lite-gan@0.5", 4)
    assert half.config == generator_config("lite-gan", 4)
    assert half.weights_file is None  # a blend has no int8 twin
    for k, v in half.state_dict().items():
        assert torch.allclose(v, (pixel[k] + gan[k]) / 2, atol=1e-7), k
    past = load_generator("lite-gan@1.2", 4).state_dict()
    k = "head.0.weight"
    assert torch.allclose(past[k], pixel[k] + 1.2 * (gan[k] - pixel[k]), atol=1e-6)
    # the ends are the shipped models themselves, int8 twin and all
    assert load_generator("lite-gan@0", 4).weights_file == load_generator("lite", 4).weights_file
    assert all(torch.equal(v, gan[k]) for k, v in load_generator("lite-gan@1", 4).state_dict().items())
    assert load_generator("srgan@0.3", 4).config == generator_config("srgan", 4)


@pytest.mark.shared_data
def test_gan_strength_trades_psnr_for_detail():
    """The knob does what it says on the evaluation faces: more strength, more detail, less PSNR."""
    pairs = eval_pairs(shared_path("data", "faces", "eval"), 4)
    evs = [evaluate(load_generator(f"lite-gan@{s}", 4), pairs) for s in (0, 0.5, 1)]
    details = [ev["hf_ratio"] for ev in evs]
    psnrs = [ev["psnr"] for ev in evs]
    assert details[0] + 0.05 < details[1] < details[2] - 0.05, details
    assert psnrs[0] > psnrs[1] > psnrs[2], psnrs
