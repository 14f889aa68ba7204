"""Training losses: pixel, the SRGAN paper's VGG54 content loss, adversarial, feature matching.

SRGAN (Ledig et al. 2017, section 2.2) trains the generator on a perceptual loss

    l_SR = l_X (content) + 1e-3 * l_Gen (adversarial)

with l_X the MSE between VGG19 feature maps phi_5,4 (the 4th conv of block 5, after its
ReLU) of the output and of the original, rescaled by 1/12.75. That needs ImageNet VGG19
weights, which a user can pass as a torchvision `vgg19` state-dict file (`--vgg-weights`).
Without them the content loss is the pixel L1 loss plus discriminator feature matching
(Salimans et al. 2016; pix2pixHD): L1 between the discriminator's own feature maps of the
output and of the original, a perceptual distance the discriminator learns as it trains.

A third content term, off by default (`--energy-weight`), matches the amount of fine detail
rather than the detail itself: the local RMS of the luma's band above the LR's Nyquist
frequency, output against original (`detail_energy`). It ignores where each ripple lies, so
unlike L1 or feature matching it has no minimum at the blurred mean of the textures the LR
allows; it says only how strong they should be.

The adversarial loss is relativistic average (ESRGAN, Wang et al. 2018): the discriminator
judges whether an original looks more real than the average output and vice versa, which
trains more stably than the paper's plain GAN loss on small batches; `hinge` is the other
choice.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..metrics import LUMA_WEIGHTS
from .data import detail_blur_sigma

# torchvision's vgg19().features up to and including relu5_4 (index 35): "M" is a max-pool
_VGG19_LAYERS = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512]
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg19_features_54() -> nn.Sequential:
    """VGG19's convolutional layers up to phi_5,4, indexed as torchvision's `features`."""
    layers: list[nn.Module] = []
    cin = 3
    for v in _VGG19_LAYERS:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=True)]
            cin = v
    return nn.Sequential(*layers)


class VGG54Loss(nn.Module):
    """MSE between VGG19 phi_5,4 feature maps of output and original, rescaled as in the paper."""

    def __init__(self, weights_path: str | os.PathLike):
        super().__init__()
        self.features = vgg19_features_54()
        try:
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise UserError(f"--vgg-weights {weights_path}: no such file") from None
        except Exception as e:
            raise UserError(f"--vgg-weights {weights_path}: not a torch state-dict file ({e.__class__.__name__})") from None
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        wanted = self.features.state_dict().keys()
        picked = {k: state.get(f"features.{k}", state.get(k)) for k in wanted}
        missing = [k for k, v in picked.items() if v is None]
        if missing:
            raise UserError(f"--vgg-weights {weights_path}: not a torchvision vgg19 state dict (no features.{missing[0]})")
        try:
            self.features.load_state_dict(picked)
        except RuntimeError:
            raise UserError(f"--vgg-weights {weights_path}: tensor shapes are not vgg19's") from None
        self.features.requires_grad_(False).eval()
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))

    def train(self, mode: bool = True) -> "VGG54Loss":
        super().train(mode)
        self.features.eval()  # a fixed feature extractor, always
        return self

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        f_sr = self.features((sr - self.mean) / self.std)
        f_hr = self.features((hr - self.mean) / self.std)
        return F.mse_loss(f_sr / 12.75, f_hr / 12.75)


def discriminator_features(disc: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The discriminator's logit and the output of each of its LeakyReLUs (its feature maps)."""
    feats = []
    h = x
    for layer in disc.features:
        h = layer(h)
        if isinstance(layer, nn.LeakyReLU):
            feats.append(h)
    return disc.classifier(disc.pool(h)).squeeze(1), feats


def feature_matching(fake_feats: list[torch.Tensor], real_feats: list[torch.Tensor]) -> torch.Tensor:
    """Mean L1 between the discriminator's feature maps of the output and of the original."""
    return sum(F.l1_loss(f, r.detach()) for f, r in zip(fake_feats, real_feats)) / len(fake_feats)


def discriminator_loss(real: torch.Tensor, fake: torch.Tensor, kind: str) -> torch.Tensor:
    """Loss of the discriminator given its logits on originals and (detached) outputs."""
    if kind == "ragan":
        return 0.5 * (F.binary_cross_entropy_with_logits(real - fake.mean(), torch.ones_like(real))
                      + F.binary_cross_entropy_with_logits(fake - real.mean(), torch.zeros_like(fake)))
    if kind == "hinge":
        return F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
    raise ValueError(f"unknown GAN loss {kind!r}")


def generator_adversarial_loss(real: torch.Tensor, fake: torch.Tensor, kind: str) -> torch.Tensor:
    """The generator's adversarial loss given the discriminator's logits (`real` detached)."""
    if kind == "ragan":
        return 0.5 * (F.binary_cross_entropy_with_logits(real - fake.mean(), torch.zeros_like(real))
                      + F.binary_cross_entropy_with_logits(fake - real.mean(), torch.ones_like(fake)))
    if kind == "hinge":
        return -fake.mean()
    raise ValueError(f"unknown GAN loss {kind!r}")


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of each channel of (B, C, H, W), reflecting at the borders."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def local_detail_rms(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Local RMS (B, 1, H, W) of the luma's detail above the LR's Nyquist frequency.

    The detail is the luma minus a Gaussian blur whose response is one half at 1 / (2 scale)
    cycles per pixel (the band `train.data.boost_detail` scales and `facesr eval`'s detail ratio
    measures); its energy is averaged over a Gaussian window of sigma 2 scale, a few of the band's
    periods, so where each ripple lies does not matter, only how strong they are there.
    """
    y = (x * x.new_tensor(LUMA_WEIGHTS).view(1, 3, 1, 1)).sum(1, keepdim=True)
    fine = y - _gaussian_blur(y, detail_blur_sigma(scale))
    return torch.sqrt(_gaussian_blur(fine * fine, 2.0 * scale) + 1e-8)


def detail_energy(sr: torch.Tensor, hr: torch.Tensor, scale: int) -> torch.Tensor:
    """L1 between the local detail RMS of output and original: too flat and too busy cost alike."""
    return F.l1_loss(local_detail_rms(sr, scale), local_detail_rms(hr, scale).detach())
