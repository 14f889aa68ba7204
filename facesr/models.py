"""Face super-resolution networks: the SRGAN generator and discriminator, and a CPU-light variant.

Ledig et al., "Photo-Realistic Single Image Super-Resolution Using a Generative
Adversarial Network", CVPR 2017 (arXiv:1609.04802), figure 4:

    generator:      LR -> conv9x9 + PReLU -> B x [conv3 BN PReLU conv3 BN (+)] -> conv3 BN (+ skip)
                       -> log2(s) x [conv3 -> PixelShuffle x2 -> PReLU] -> conv9x9 -> SR
    discriminator:  HR/SR -> conv3 LReLU -> 7 x [conv3 BN LReLU] (64..512, stride 2 every other)
                       -> dense 1024 -> LReLU -> dense 1 (logit)

`lite` keeps the same shape but is sized for real time on a laptop CPU: 32 channels,
6 residual blocks without batch norm, one late PixelShuffle x s straight to RGB, and it
predicts only the residual over a bicubic upscale, which a small network learns far
more easily than the whole image.

All generators take and return RGB float tensors in [0, 1], shape (B, 3, H, W) -> (B, 3, sH, sW).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class GeneratorConfig:
    scale: int = 4
    channels: int = 64
    blocks: int = 16
    head_kernel: int = 9  # the paper's 9x9 first and last convolutions
    batch_norm: bool = True
    activation: str = "prelu"  # in the residual blocks: "prelu" (the paper's) or "relu"
    upsample: str = "progressive"  # "progressive": log2(scale) PixelShuffle x2 stages; "late": one xscale to RGB
    bicubic_residual: bool = False  # add the network's output to a bicubic upscale of the input
    history: bool = False  # recurrent: the input carries the previous output, aligned (`history_channels`)

    def __post_init__(self) -> None:
        if self.scale not in (2, 4):
            raise ValueError(f"scale must be 2 or 4, not {self.scale}")
        if self.upsample not in ("progressive", "late"):
            raise ValueError(f"upsample must be 'progressive' or 'late', not {self.upsample!r}")
        if self.activation not in ("prelu", "relu"):
            raise ValueError(f"activation must be 'prelu' or 'relu', not {self.activation!r}")

    @property
    def in_channels(self) -> int:
        """The network's input channels: the LR crop's RGB, and with `history` what it remembers."""
        return 3 + (history_channels(self.scale) if self.history else 0)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, fields: dict) -> "GeneratorConfig":
        """The config a weights file records. Files that predate `activation` ran ReLU exactly
        where they had no batch norm."""
        fields = dict(fields)
        fields.setdefault("activation", "prelu" if fields.get("batch_norm", True) else "relu")
        return cls(**fields)


def history_channels(scale: int) -> int:
    """What a recurrent generator remembers, at LR resolution (Sajjadi et al., FRVSR, CVPR 2018):
    its previous output aligned to the current crop and folded by space-to-depth (3 s^2 channels),
    where that output is valid (1 channel) and how far the current LR frame departs from it
    there (1 channel). The layout is `facesr.memory`'s."""
    return 3 * scale * scale + 2


# The two generator architectures; the scale is chosen separately (x2 or x4).
VARIANTS: dict[str, GeneratorConfig] = {
    # the paper's generator; it adds its output to a bicubic upscale, which changes nothing
    # the network can express but lets a short CPU training start from bicubic quality
    "srresnet": GeneratorConfig(bicubic_residual=True),
    "lite": GeneratorConfig(
        channels=32, blocks=6, head_kernel=3, batch_norm=False, activation="relu", upsample="late", bicubic_residual=True
    ),
}
# `lite` with a memory: its previous output for the same face comes back in with each frame
VARIANTS["lite-recurrent"] = dataclasses.replace(VARIANTS["lite"], history=True)

# The shipped models, named as in the paper: each architecture trained with a pixel loss
# ("srresnet", "lite") and then fine-tuned adversarially ("srgan", "lite-gan"); "lite-photo" is
# "lite" trained on what photos go through instead of calls.
MODELS: dict[str, str] = {"srresnet": "srresnet", "srgan": "srresnet", "lite": "lite", "lite-gan": "lite",
                          "lite-photo": "lite",  # lite trained for photos (clean and JPEG), not calls
                          "lite-recurrent": "lite-recurrent",  # lite with a memory of the frame before, on call sequences
                          "lite-call": "lite"}  # lite-recurrent's network without its memory: its first frame, every frame
PIXEL_MODEL: dict[str, str] = {"srgan": "srresnet", "lite-gan": "lite"}  # where each GAN model starts


def generator_config(model: str, scale: int = 4) -> GeneratorConfig:
    """The architecture of a model name ("srgan", "lite-gan", ...) or architecture name, at `scale`."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
    return dataclasses.replace(VARIANTS[MODELS[model]], scale=scale)


class ResidualBlock(nn.Module):
    """conv3x3 - BN - PReLU - conv3x3 - BN, plus the block's input (the paper's B residual blocks)."""

    def __init__(self, channels: int, batch_norm: bool, activation: str = "prelu"):
        super().__init__()
        norm = (lambda: nn.BatchNorm2d(channels)) if batch_norm else nn.Identity
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=not batch_norm),
            norm(),
            nn.PReLU(channels) if activation == "prelu" else nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=not batch_norm),
            norm(),
        )

    # the layers by name (the weights files key them by their place in `body`)
    conv1 = property(lambda self: self.body[0])
    act = property(lambda self: self.body[2])
    conv2 = property(lambda self: self.body[3])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class UpsampleX2(nn.Module):
    """conv3x3 to 4C channels, then PixelShuffle x2 and PReLU."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels * 4, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.act = nn.PReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)  # (B, C, H, W) -> (B, 4C, H, W)
        x = self.shuffle(x)  # (B, 4C, H, W) -> (B, C, 2H, 2W)
        return self.act(x)


class Generator(nn.Module):
    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = c = config
        self.weights_file = None  # the safetensors file it was loaded from, if any (weights.load_generator)
        k = c.head_kernel
        self.head = nn.Sequential(nn.Conv2d(c.in_channels, c.channels, k, padding=k // 2), nn.PReLU(c.channels))
        self.blocks = nn.Sequential(*[ResidualBlock(c.channels, c.batch_norm, c.activation) for _ in range(c.blocks)])
        self.body_tail = nn.Sequential(
            nn.Conv2d(c.channels, c.channels, 3, padding=1, bias=not c.batch_norm),
            nn.BatchNorm2d(c.channels) if c.batch_norm else nn.Identity(),
        )
        if c.upsample == "progressive":
            stages = int(math.log2(c.scale))
            self.upsample = nn.Sequential(*[UpsampleX2(c.channels) for _ in range(stages)])
            self.tail = nn.Conv2d(c.channels, 3, k, padding=k // 2)
        else:
            # one conv to 3*s*s channels, then a single PixelShuffle straight to RGB: the
            # expensive convolutions all run at LR resolution.
            self.upsample = nn.Identity()
            self.tail = nn.Sequential(
                nn.Conv2d(c.channels, 3 * c.scale**2, 3, padding=1),
                nn.PixelShuffle(c.scale),  # (B, 3s^2, H, W) -> (B, 3, sH, sW)
            )
        if c.bicubic_residual:  # start near the bicubic upscale: a small residual
            with torch.no_grad():
                self.tail_conv.weight.mul_(0.1)
                self.tail_conv.bias.zero_()

    # the layers by name (the weights files key them by their place in each Sequential)
    head_conv = property(lambda self: self.head[0])
    head_act = property(lambda self: self.head[1])
    body_tail_conv = property(lambda self: self.body_tail[0])
    tail_conv = property(lambda self: self.tail if isinstance(self.tail, nn.Conv2d) else self.tail[0])

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> (B, 3, sH, sW): the first three input channels are the LR RGB."""
        sr = self.network(lr)
        if self.config.bicubic_residual:
            sr = sr + bicubic(lr[:, :3], self.config.scale)
        return sr

    def network(self, lr: torch.Tensor) -> torch.Tensor:
        """The learned part: the SR image, or with `bicubic_residual` what is added to the bicubic upscale."""
        feat = self.head(lr)  # (B, in_channels, H, W) -> (B, C, H, W)
        feat = feat + self.body_tail(self.blocks(feat))  # the long skip over all residual blocks
        return self.tail(self.upsample(feat))  # (B, C, H, W) -> (B, 3, sH, sW)


def bicubic(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """The bicubic upscale the residual generators add to (a = -0.75, half-pixel centres, as OpenCV's INTER_CUBIC)."""
    return F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False)


class Discriminator(nn.Module):
    """The SRGAN discriminator: eight 3x3 conv blocks 64 -> 512, dense 1024, one logit per image."""

    def __init__(self, channels: int = 64):
        super().__init__()
        widths = [channels, channels, 2 * channels, 2 * channels, 4 * channels, 4 * channels, 8 * channels, 8 * channels]
        layers: list[nn.Module] = [nn.Conv2d(3, widths[0], 3, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        for i in range(1, len(widths)):
            stride = 2 if i % 2 == 1 else 1  # k3n64s2, k3n128s1, k3n128s2, ... as in the paper
            layers += [
                nn.Conv2d(widths[i - 1], widths[i], 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(widths[i]),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(6)  # any input size -> (B, 512, 6, 6), as for the paper's 96x96 crops
        self.classifier = nn.Sequential(
            nn.Flatten(),  # (B, 512, 6, 6) -> (B, 18432)
            nn.Linear(widths[-1] * 36, 1024),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(1024, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x))).squeeze(1)  # (B, 3, H, W) -> (B,)
