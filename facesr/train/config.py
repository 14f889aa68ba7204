"""What a training run is: every option of `facesr train`, with its default, in one place.

Light to import (no torch), so the command line takes its defaults and help from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class TrainConfig:
    data: str | None = None  # folder of HR face images; None: the data folder's faces/train (paths.data_dir)
    eval_dir: str | None = None  # folder of evaluation faces; None: the data folder's faces/eval; "": none
    out: str | None = None  # checkpoint folder; None: <cache>/train/MODEL-xSCALE
    model: str = "lite"
    scale: int = 4
    steps: int = 30000
    batch: int = 16
    patch: int = 192  # HR patch side; the LR patch is patch / scale
    lr: float = 5e-4
    warmup: int = 500
    eval_every: int = 1000
    checkpoint_every: int = 250
    seed: int = 0
    threads: int = 0  # 0: torch's default
    device: str = "auto"  # "auto" (CUDA where there is one), "cpu" or "cuda"
    batches: str = "auto"  # "numpy" (data.FacePairs) or "tensor" (batches.TensorBatches); auto: tensor on CUDA
    bank_variants: int = 4  # tensor batches: compressed LRs per image and kind in the bank (data.LRBank)
    bank_workers: int = 0  # processes building the bank; 0: one per CPU
    time_budget_min: float = 0.0  # 0: none; else total training wall time (across resumes): the LR
    # schedule follows whichever of steps and time runs out first, and training ends there
    time_limit_min: float = 0.0  # 0: none; else stop this run (checkpointed, resumable) after this many minutes
    degradations: str = "call"  # degrade.DEGRADATIONS: "call" (blur, noise, JPEG, H.264), "photo" (JPEG), "clean"
    contrast: tuple[float, float] = (1.0, 1.0)  # range of a random contrast gain on the HR patches (1, 1: off)
    detail: tuple[float, float] = (1.0, 1.0)  # range of a random gain on the HR patches' fine detail (1, 1: off)
    # recurrent models ("lite-recurrent"): sequences of faces (`sequences.SequenceBank`)
    frames: int = 6  # frames per run, backpropagated through time
    clips: str | None = None  # folder of training clips; None: the data folder's videos_train
    sequence_stills: int = 300  # still faces (from `data`) set in motion beside the clips
    temporal_weight: float = 0.0  # weight of the loss on frame-to-frame change (`recurrent.temporal_loss`)
    photos: int = 0  # crops of scikit-image's real photos to train on beside `data` (`photos.photo_crops`)
    # adversarial fine-tuning (models "srgan", "lite-gan"):
    init: str | None = None  # pixel-model weights to start from (default: the shipped pixel model)
    gan_loss: str = "ragan"  # "ragan" (relativistic average) or "hinge"
    adv_weight: float | None = None  # default: the paper's 1e-3 with VGG54; 1e-2 with feature matching
    pixel_weight: float = 0.01  # L1 content loss (without --vgg-weights): anchors colour and layout
    fm_weight: float = 1.0  # discriminator feature-matching content loss (without --vgg-weights)
    energy_weight: float = 0.0  # the local detail-energy content loss (`losses.detail_energy`; 0: off)
    vgg_weights: str | None = None  # a torchvision vgg19 state dict: the paper's VGG54 content loss instead
    ema: float | None = None  # decay of the generator's weight average (evaluated and exported); None:
    # 0.999 for the adversarial models, off (0) for the pixel ones
    d_warmup: int = 0  # discriminator steps alone, against the starting generator's output, before
    # the first generator step (a fresh run only; see _warm_up_discriminator)

    @property
    def ema_decay(self) -> float:
        # A GAN generator's weights swing from step to step as the discriminator moves (srgan's
        # detail ratio jumped between 0.20 and 0.60 from one eval to the next); their running
        # average is what Real-ESRGAN and StyleGAN ship. A pixel model's converge on their own.
        if self.ema is not None:
            return self.ema
        return 0.999 if self.adversarial else 0.0

    @property
    def adversarial_weight(self) -> float:
        # 1e-2 beside L1 and feature matching restores the detail at bicubic's PSNR where 1e-3 barely
        # moves it, and 5e-2 is unstable (docs/experiments.md)
        if self.adv_weight is not None:
            return self.adv_weight
        return 1e-3 if self.vgg_weights else 1e-2

    @property
    def adversarial(self) -> bool:
        from ..models import PIXEL_MODEL

        return self.model in PIXEL_MODEL

    def data_folder(self) -> Path:
        from ..paths import data_dir

        return Path(self.data) if self.data else data_dir("faces/train")

    def eval_folder(self) -> Path | None:
        from ..paths import data_dir

        if self.eval_dir == "":
            return None
        return Path(self.eval_dir) if self.eval_dir else data_dir("faces/eval")

    def out_folder(self) -> Path:
        from ..paths import cache_dir

        return Path(self.out) if self.out else cache_dir() / "train" / f"{self.model}-x{self.scale}"
