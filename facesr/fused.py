"""`lite`'s network on a CPU as oneDNN's fused convolutions: every ReLU and every residual add
done inside the convolution that feeds it.

Run op by op (`Generator.network`), `lite` spends a good part of its CPU time outside its
convolutions: each ReLU, each residual add and the layout changes between them is one more
pass over the activations. oneDNN applies them as the convolution writes its output (post-ops).
These are the calls torch.compile's CPU freezing pass makes of the network
(`torch.ops.mkldnn._convolution_pointwise`), made here without compiling, so they run at any
crop size at once, where torch.compile compiles anew for each size, and crop sizes change as
faces move. The same arithmetic: float32 gives the same numbers; bfloat16 rounds once per
layer instead of once per op. Timings: docs/performance.md.

`FusedNetwork.of(generator)` is None where it does not apply: another architecture (batch
norm, PReLU in the blocks, progressive upsampling: the paper-sized model), a torch without
these oneDNN ops, a CPU that cannot run them in the generator's dtype (bfloat16 needs AVX-512
or AVX-NE-CONVERT), or ops that give other numbers than the network (checked once at build).
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from .models import Generator

# The prepacked weights' blocked layout is chosen for this input shape; other shapes run from
# the same packing (oneDNN reorders what it must), at the same speed in the sizes faces come in.
_PACK_SHAPE = (1, 64, 64)
_CHECK_TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 0.05}  # in the network's 0..1 units


def _ops():
    """torch's oneDNN pointwise-fused convolution ops, or None where this torch lacks them."""
    try:
        if not torch.backends.mkldnn.is_available():
            return None
        mkldnn = torch.ops.mkldnn
        return (mkldnn._convolution_pointwise.default, mkldnn._convolution_pointwise_.binary,
                mkldnn._reorder_convolution_weight.default)
    except (AttributeError, RuntimeError):
        return None


@functools.cache
def runs_here(dtype: torch.dtype) -> bool:
    """Whether this CPU runs the fused convolutions in `dtype`: packs a tiny weight to find out
    (oneDNN refuses bfloat16 weights on a CPU without bfloat16 conversion instructions)."""
    ops = _ops()
    if ops is None:
        return False
    try:
        ops[2](torch.zeros(4, 3, 3, 3, dtype=dtype), [1, 1], [1, 1], [1, 1], 1, [1, 3, 8, 8])
    except RuntimeError:
        return False
    return True


class _Conv:
    """One convolution's prepacked weight, bias and geometry."""

    def __init__(self, conv: nn.Conv2d, channels_in: int, reorder):
        if conv.groups != 1 or conv.padding_mode != "zeros":
            raise ValueError("only plain zero-padded convolutions are fused")
        self.padding, self.stride, self.dilation = list(conv.padding), list(conv.stride), list(conv.dilation)
        shape = [_PACK_SHAPE[0], channels_in, *_PACK_SHAPE[1:]]
        self.weight = reorder(conv.weight.detach().clone(), self.padding, self.stride, self.dilation, 1, shape)
        self.bias = None if conv.bias is None else conv.bias.detach().clone()


class FusedNetwork:
    """Callable: what `generator.network(x)` returns, for CPU tensors of the generator's dtype.

    Holds its own packed copy of the weights, made when it is built: rebuild it after the
    generator's weights or dtype change.
    """

    @classmethod
    def of(cls, generator: Generator) -> "FusedNetwork | None":
        """The fused network for `generator` on the CPU, or None where it does not apply (module docstring)."""
        c = generator.config
        weight = generator.head_conv.weight
        if c.batch_norm or c.activation != "relu" or c.upsample != "late":
            return None
        if weight.device.type != "cpu" or weight.dtype not in _CHECK_TOLERANCE:
            return None
        if not runs_here(weight.dtype):
            return None
        try:
            fused = cls(generator, _ops())
            with torch.inference_mode():
                x = torch.rand(1, c.in_channels, 12, 12, generator=torch.Generator().manual_seed(0)).to(weight.dtype)
                agree = (fused(x).float() - generator.network(x).float()).abs().max().item() <= _CHECK_TOLERANCE[weight.dtype]
        except (RuntimeError, ValueError, TypeError):
            return None
        return fused if agree else None

    def __init__(self, generator: Generator, ops):
        self._conv, self._conv_add_, reorder = ops
        c = generator.config
        self.head = _Conv(generator.head_conv, c.in_channels, reorder)
        self.head_slope = generator.head_act.weight.detach().clone()
        self.blocks = [(_Conv(b.conv1, c.channels, reorder), _Conv(b.conv2, c.channels, reorder)) for b in generator.blocks]
        self.body_tail = _Conv(generator.body_tail_conv, c.channels, reorder)
        self.tail = _Conv(generator.tail_conv, c.channels, reorder)
        self.scale = c.scale

    def _apply(self, conv: _Conv, x: torch.Tensor, post: str = "none") -> torch.Tensor:
        """conv(x), then `post` ("relu" or "none") inside it."""
        return self._conv(x, conv.weight, conv.bias, conv.padding, conv.stride, conv.dilation, 1, post, [None], "")

    def _add_into(self, acc: torch.Tensor, conv: _Conv, x: torch.Tensor) -> None:
        """acc += conv(x), the add inside the convolution, in place."""
        self._conv_add_(acc, x, conv.weight, conv.bias, conv.padding, conv.stride, conv.dilation, 1,
                        "add", 1.0, None, [None], None)

    def __call__(self, lr: torch.Tensor) -> torch.Tensor:
        feat = torch.prelu(self._apply(self.head, lr), self.head_slope)  # (B, in_channels, H, W) -> (B, C, H, W)
        x = feat.clone()
        for first, second in self.blocks:  # x += conv(relu(conv(x))), each block's skip in its second conv
            self._add_into(x, second, self._apply(first, x, "relu"))
        self._add_into(feat, self.body_tail, x)  # the long skip over all residual blocks
        out = self._apply(self.tail, feat)  # (B, C, H, W) -> (B, 3s^2, H, W)
        return torch.pixel_shuffle(out, self.scale)  # (B, 3s^2, H, W) -> (B, 3, sH, sW)
