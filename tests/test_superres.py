"""SuperResolver: the generator on uint8 crops, its precisions and its OpenCV bicubic skip."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from facesr.errors import UserError
from facesr.metrics import psnr
from facesr.models import Generator, generator_config
from facesr.runtime import cpu_has_native_bfloat16, plan
from facesr.superres import SuperResolver, _TorchDevice
from facesr.weights import load_generator
from helpers import ASTRONAUT_FACE


def face_crop_of(astronaut: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = ASTRONAUT_FACE
    return np.ascontiguousarray(astronaut[y0 - 40 : y1 + 40, x0 - 40 : x1 + 40][::4, ::4])


@pytest.mark.parametrize("variant", ["lite", "srresnet"])
def test_float32_output_is_the_generators_forward_rounded(variant, astronaut):
    """On a CPU the bicubic skip is OpenCV's INTER_CUBIC on the crop, not torch's: the result must not change."""
    torch.manual_seed(0)
    net = Generator(generator_config(variant, 4)).eval()
    resolver = SuperResolver(net, "cpu", "float32")
    for crop in (face_crop_of(astronaut), face_crop_of(astronaut)[5:, 3:]):
        got = resolver([crop])[0]
        with torch.inference_mode():
            x = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255
            want = net(x).clamp(0, 1).mul(255).round()[0].permute(1, 2, 0).to(torch.uint8).numpy()
        assert got.shape == want.shape == (crop.shape[0] * 4, crop.shape[1] * 4, 3)
        assert np.abs(got.astype(int) - want).max() <= 1  # rounding of values within float error of .5


@pytest.mark.parametrize("variant,residual_model", [("lite", True), ("lite", False), ("srresnet", True)])
def test_residuals_are_what_the_generator_adds_to_the_bicubic_upscale(variant, residual_model, astronaut):
    """The Enhancer pastes `residuals` over the frame's bicubic upscale: that must be the SR crop."""
    import dataclasses

    torch.manual_seed(0)
    net = Generator(dataclasses.replace(generator_config(variant, 4), bicubic_residual=residual_model)).eval()
    resolver = SuperResolver(net, "cpu", "float32")
    for crop in (face_crop_of(astronaut), face_crop_of(astronaut)[5:, 3:]):
        res, sr = resolver.residuals([crop])[0], resolver([crop])[0]
        bicubic = cv2.resize(crop.astype(np.float32), (crop.shape[1] * 4, crop.shape[0] * 4), interpolation=cv2.INTER_CUBIC)
        assert res.dtype == np.float32 and res.shape == sr.shape
        assert np.abs(np.clip(bicubic + res, 0, 255) - sr).max() <= 0.51  # sr rounds the same sum
        assert np.abs(res).max() > 1  # not nothing


def test_bfloat16_matches_float32_closely(astronaut):
    crop = face_crop_of(astronaut)
    fp32 = SuperResolver(load_generator("lite", 4), "cpu", "float32")([crop])[0]
    bf16 = SuperResolver(load_generator("lite", 4), "cpu", "bfloat16")([crop])[0]
    assert bf16.dtype == np.uint8 and bf16.shape == fp32.shape
    assert psnr(bf16, fp32) > 45  # the network's residual only; the bicubic skip stays float32


def test_auto_precision_follows_the_hardware():
    cpu = torch.device("cpu")
    net = Generator(generator_config("lite", 4))  # no weights file, so no int8 file: torch's precisions
    assert plan(net, cpu, "auto").dtype == (torch.bfloat16 if cpu_has_native_bfloat16() else torch.float32)
    assert plan(net, torch.device("cuda"), "auto").dtype == torch.float16
    assert plan(net, cpu, "float32").dtype == torch.float32
    with pytest.raises(UserError, match="CUDA only"):
        plan(net, cpu, "float16")
    with pytest.raises(UserError, match="--precision"):
        plan(net, cpu, "double")


@pytest.mark.parametrize("residual_model", [True, False])
def test_the_cuda_paths_arithmetic_matches_the_cpu_paths(residual_model, astronaut):
    """The torch backend is what runs on CUDA; run on the CPU it must give what the CPU backend gives."""
    import dataclasses

    torch.manual_seed(0)
    net = Generator(dataclasses.replace(generator_config("lite", 4), bicubic_residual=residual_model)).eval()
    resolver = SuperResolver(net, "cpu", "float32")
    crop = face_crop_of(astronaut)
    batch = crop[None]
    with torch.inference_mode():
        torch_backend = _TorchDevice(resolver.model)
        sr, res = torch_backend.images(batch)[0], torch_backend.residuals(batch)[0]
    assert sr.dtype == np.uint8 and res.dtype == np.float32
    assert np.abs(sr.astype(int) - resolver([crop])[0]).max() <= 1
    assert np.abs(res - resolver.residuals([crop])[0]).max() < 0.01
