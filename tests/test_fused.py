"""FusedNetwork: lite's network as oneDNN's fused convolutions must compute what the network does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facesr.fused import FusedNetwork, runs_here
from facesr.models import Generator, generator_config
from facesr.superres import SuperResolver
from facesr.weights import load_generator

needs_mkldnn = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch has no oneDNN")
needs_fused_bfloat16 = pytest.mark.skipif(not runs_here(torch.bfloat16),
                                          reason="this CPU has no bfloat16 conversion instructions (AVX-512 or AVX-NE-CONVERT)")


def lr_batch(b: int, h: int, w: int, dtype: torch.dtype) -> torch.Tensor:
    """A channels-last batch, as SuperResolver makes it from its HWC crops."""
    x = torch.rand(b, h, w, 3, generator=torch.Generator().manual_seed(h * w + b))
    return x.permute(0, 3, 1, 2).to(dtype)


@needs_mkldnn
@pytest.mark.parametrize("shape", [(1, 92, 92), (1, 37, 61), (3, 64, 48)])
def test_float32_is_the_network_exactly(shape):
    net = load_generator("lite", 4).eval()
    fused = FusedNetwork.of(net)
    assert fused is not None
    x = lr_batch(*shape, torch.float32)
    with torch.inference_mode():
        got, want = fused(x), net.network(x)
    assert got.shape == want.shape == (shape[0], 3, 4 * shape[1], 4 * shape[2])
    assert (got - want).abs().max().item() < 1e-5


@needs_mkldnn
@needs_fused_bfloat16
def test_bfloat16_is_as_close_to_float32_as_the_op_by_op_network():
    """bfloat16 rounds once per layer fused, once per op unfused: no further from float32 than that."""
    reference = load_generator("lite", 4).eval()
    net = load_generator("lite", 4).eval().to(torch.bfloat16)
    fused = FusedNetwork.of(net)
    assert fused is not None
    x = lr_batch(2, 80, 72, torch.float32)
    with torch.inference_mode():
        want = reference.network(x)
        fused_err = (fused(x.to(torch.bfloat16)).float() - want).pow(2).mean().sqrt().item()
        unfused_err = (net.network(x.to(torch.bfloat16)).float() - want).pow(2).mean().sqrt().item()
    assert fused_err < 1.0 / 255  # under a level RMS
    assert fused_err <= unfused_err * 1.2


@needs_mkldnn
def test_superresolver_runs_lite_fused_and_the_paper_model_unfused(astronaut):
    assert runs_here(torch.float32)  # every x86 oneDNN CPU
    assert SuperResolver(load_generator("lite", 4), "cpu", "float32").backend.fused is not None
    bf16 = SuperResolver(load_generator("lite", 4), "cpu", "bfloat16")
    assert (bf16.backend.fused is not None) == runs_here(torch.bfloat16)  # else op by op, emulated
    torch.manual_seed(0)
    srresnet = SuperResolver(Generator(generator_config("srresnet", 4)), "cpu", "float32")
    assert srresnet.backend.fused is None  # batch norm, PReLU in the blocks, progressive upsampling
    assert FusedNetwork.of(Generator(generator_config("srresnet", 4))) is None


@needs_mkldnn
def test_the_packed_weights_are_a_copy_made_at_build():
    """Built from the weights of its time: training after it does not reach a built FusedNetwork."""
    net = load_generator("lite", 4).eval()
    fused = FusedNetwork.of(net)
    x = lr_batch(1, 24, 24, torch.float32)
    with torch.inference_mode():
        before = fused(x).clone()
        net.tail_conv.bias.add_(0.5)
        assert torch.equal(fused(x), before)
        assert (FusedNetwork.of(net)(x) - net.network(x)).abs().max().item() < 1e-5


def test_superresolver_output_does_not_depend_on_the_fused_path(astronaut):
    """The uint8 SR crops from the fused network and from the op-by-op one agree to a level."""
    from helpers import ASTRONAUT_FACE

    x0, y0, x1, y1 = ASTRONAUT_FACE
    crop = np.ascontiguousarray(astronaut[y0 - 20 : y1 + 20, x0 - 20 : x1 + 20][::4, ::4])
    resolver = SuperResolver(load_generator("lite", 4), "cpu", "float32")
    fused_out = resolver([crop])[0]
    resolver.backend.run = resolver.model.network
    plain_out = resolver([crop])[0]
    assert np.abs(fused_out.astype(int) - plain_out).max() <= 1
