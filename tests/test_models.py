import json
import re

import numpy as np
import pytest
import torch

from facesr.models import Discriminator, Generator, ResidualBlock, generator_config
from facesr.train.data import eval_pairs
from facesr.train.loop import evaluate
from facesr.weights import load_generator, read_metadata, save_generator
from conftest import ROOT, WEIGHTS, shared_path


@pytest.mark.parametrize("variant", ["lite", "srgan"])
@pytest.mark.parametrize("scale", [2, 4])
def test_generator_upscales_by_its_scale(variant, scale):
    net = Generator(generator_config(variant, scale)).eval()
    with torch.no_grad():
        assert net(torch.rand(2, 3, 20, 24)).shape == (2, 3, 20 * scale, 24 * scale)


def test_srgan_generator_is_the_papers():
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


def _card_table() -> dict[str, float]:
    """The numbers the model card states for lite-x4."""
    text = (ROOT / "weights" / "MODEL_CARD.md").read_text()
    row = re.search(r"^\|\s*`?lite-x4`?\s*\|(.+)$", text, re.M)
    assert row, "MODEL_CARD.md has no lite-x4 row"
    cells = [c.strip() for c in row.group(1).split("|")]
    return {"steps": int(cells[0].replace(",", "")), "psnr": float(cells[1]), "bicubic_psnr": float(cells[2])}


def test_shipped_weights_load_and_match_the_model_card():
    meta = read_metadata(WEIGHTS)
    card = _card_table()
    assert int(meta["steps"]) == card["steps"]
    ev = json.loads(meta["eval"])
    assert ev["psnr"] == pytest.approx(card["psnr"], abs=0.01)
    assert ev["bicubic_psnr"] == pytest.approx(card["bicubic_psnr"], abs=0.01)
    assert load_generator("lite", 4).config == generator_config("lite", 4)


def test_shipped_weights_beat_bicubic_by_1db_on_the_eval_faces_as_the_card_says():
    pairs = eval_pairs(shared_path("data", "faces", "eval"), 4)
    ev = evaluate(load_generator("lite", 4), pairs)
    card = _card_table()
    assert ev["psnr"] - ev["bicubic_psnr"] >= 1.0
    assert ev["psnr"] == pytest.approx(card["psnr"], abs=0.02)
    assert ev["bicubic_psnr"] == pytest.approx(card["bicubic_psnr"], abs=0.02)
