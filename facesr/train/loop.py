"""The training loop, with checkpoints, resume and evaluation.

Two stages, as in the SRGAN paper: a pixel model ("srresnet", "lite") trained with an L1
loss, then its adversarial fine-tune ("srgan", "lite-gan"), which starts from the pixel
model's weights and trains the generator against the paper's discriminator with
content + adversarial losses (see `losses`).
"""

from __future__ import annotations

import collections
import contextlib
import copy
import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..errors import UserError
from ..metrics import hf_energy_ratio, psnr
from ..models import PIXEL_MODEL, Discriminator, Generator, generator_config
from ..protocol import eval_pairs
from ..runtime import resolve_device
from ..superres import SuperResolver, bicubic_upscale
from ..weights import load_generator, read_metadata, save_generator, weights_path
from .config import TrainConfig
from .data import FacePairs
from .degrade import DEGRADATIONS
from .losses import (
    VGG54Loss,
    detail_energy,
    discriminator_features,
    discriminator_loss,
    feature_matching,
    generator_adversarial_loss,
)
from .photos import photo_crops


def evaluate(model: Generator, pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Mean PSNR of the model and of bicubic on the evaluation pairs."""
    was_training = model.training
    sr = SuperResolver(model, next(model.parameters()).device, "float32")
    out = sr([lr for lr, _ in pairs])
    model.train(was_training)
    scale = model.config.scale
    bic = [bicubic_upscale(lr, scale) for lr, _ in pairs]
    hrs = [hr for _, hr in pairs]
    return {
        "psnr": float(np.mean([psnr(o, hr) for o, hr in zip(out, hrs)])),
        "bicubic_psnr": float(np.mean([psnr(b, hr) for b, hr in zip(bic, hrs)])),
        "hf_ratio": hf_energy_ratio(out, hrs, scale),
    }


def _progress(cfg: TrainConfig, step: int, wall_s: float) -> float:
    """How far through training we are, 0..1: by steps, or by the time budget if that runs out first."""
    p = step / cfg.steps
    if cfg.time_budget_min:
        p = max(p, wall_s / (cfg.time_budget_min * 60))
    return min(1.0, p)


def _learning_rate(cfg: TrainConfig, step: int, progress: float) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to 2% of the peak."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    return cfg.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress)))


def _initial_generator(cfg: TrainConfig) -> tuple[Generator, str | None]:
    """A fresh generator for a pixel model (or `init`'s weights); the pixel model's weights
    (or `init`'s) for an adversarial one."""
    if not cfg.adversarial and not cfg.init:
        return Generator(generator_config(cfg.model, cfg.scale)), None
    base = PIXEL_MODEL.get(cfg.model, cfg.model)
    init = cfg.init or str(weights_path(base, cfg.scale))
    if not os.path.isfile(init):
        raise UserError(f"{cfg.model} fine-tunes {base}, but {init} does not exist: train {base} first or pass --init WEIGHTS")
    model = load_generator(init, cfg.scale)
    if model.config != generator_config(cfg.model, cfg.scale):
        raise UserError(f"--init {init} is not a {base} x{cfg.scale} generator")
    return model.train(), init


class WeightAverage:
    """An exponential moving average of a generator's weights (buffers, e.g. BN statistics, copied).

    The decay ramps up as (1 + n) / (10 + n) over the first updates (as TensorFlow's
    ExponentialMovingAverage with num_updates), so a short run is not dominated by its start.
    """

    def __init__(self, model: Generator, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, model: Generator) -> None:
        self.updates += 1
        keep = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for avg, now in zip(self.model.parameters(), model.parameters()):
            avg.lerp_(now, 1.0 - keep)
        for avg, now in zip(self.model.buffers(), model.buffers()):
            avg.copy_(now)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = state["updates"]


class _Adversary:
    """The discriminator, its optimiser and the generator's content + adversarial loss."""

    def __init__(self, cfg: TrainConfig, device: torch.device):
        self.cfg = cfg
        self.disc = Discriminator().to(device, memory_format=_memory_format(device))
        self.opt = torch.optim.Adam(self.disc.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
        self.vgg = VGG54Loss(cfg.vgg_weights).to(device) if cfg.vgg_weights else None

    def describe(self) -> str:
        content = "VGG54 (the paper's content loss)" if self.vgg else (
            f"{self.cfg.pixel_weight:g} x L1 + {self.cfg.fm_weight:g} x discriminator feature matching")
        if self.cfg.energy_weight:
            content += f" + {self.cfg.energy_weight:g} x local detail energy"
        return f"{content} + {self.cfg.adversarial_weight:g} x {self.cfg.gan_loss} adversarial"

    def generator_loss(self, sr: torch.Tensor, hr: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.cfg
        self.disc.requires_grad_(False)
        fake_logit, fake_feats = discriminator_features(self.disc, sr)
        with torch.no_grad():
            real_logit, real_feats = discriminator_features(self.disc, hr)
        self.disc.requires_grad_(True)
        adv = generator_adversarial_loss(real_logit, fake_logit, cfg.gan_loss)
        if self.vgg is not None:
            content = self.vgg(sr, hr)
            parts = {"vgg": content.item()}
        else:
            pix, fm = F.l1_loss(sr, hr), feature_matching(fake_feats, real_feats)
            content = cfg.pixel_weight * pix + cfg.fm_weight * fm
            parts = {"l1": pix.item(), "fm": fm.item()}
        if cfg.energy_weight:
            energy = detail_energy(sr, hr, cfg.scale)
            content = content + cfg.energy_weight * energy
            parts["energy"] = energy.item()
        return content + cfg.adversarial_weight * adv, {**parts, "adv": adv.item()}

    def step(self, sr: torch.Tensor, hr: torch.Tensor, lr: float) -> float:
        """One discriminator update on originals against (detached) outputs; returns its loss."""
        for group in self.opt.param_groups:
            group["lr"] = lr
        loss = discriminator_loss(self.disc(hr), self.disc(sr.detach()), self.cfg.gan_loss)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.item()


def _warm_up_discriminator(cfg: TrainConfig, adversary: _Adversary, model: Generator, data: Batches) -> None:
    """Train the fresh discriminator alone for `cfg.d_warmup` steps against the starting generator.

    For a run that starts from a GAN model already fine-tuned (`--init weights/srgan-x4.safetensors`):
    against a random discriminator the feature-matching loss (weight 10 in srgan's recipe) pulls the
    generator toward the mean, and the detail it had learned goes (srgan's detail ratio 0.78 -> 0.37
    in its first 200 steps from the shipped weights). The generator runs in eval mode, unchanged.
    """
    model.eval()
    for _ in tqdm(range(cfg.d_warmup), desc="discriminator warm-up", dynamic_ncols=True):
        lr_img, hr_img = data.batch(cfg.batch)
        with torch.no_grad(), data.autocast():
            sr_img = model(lr_img)
        with data.autocast():
            adversary.step(sr_img, hr_img, cfg.lr)
    model.train()


def _hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"


def _memory_format(device: torch.device) -> torch.memory_format:
    """channels-last on CUDA, where cuDNN's convolutions are fastest in it (and under autocast)."""
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


class Batches:
    """The training batches on `device`: made whole as tensors there (`batches.TensorBatches`, the
    default on CUDA) or sample by sample with numpy and OpenCV (`data.FacePairs`, the default on a
    CPU), and the autocast the steps run under (bfloat16 on CUDA where it has it)."""

    def __init__(self, cfg: TrainConfig, folders: list[str], spec, device: torch.device, seed: int):
        self.device = device
        tensors = cfg.batches == "tensor" or (cfg.batches == "auto" and device.type == "cuda")
        contrast, detail = tuple(cfg.contrast), tuple(cfg.detail)
        if tensors:
            from .batches import TensorBatches

            self.source = TensorBatches(folders, cfg.scale, cfg.patch, spec, device, seed=seed, contrast=contrast,
                                        detail=detail, variants=cfg.bank_variants, workers=cfg.bank_workers)
        else:
            self.source = FacePairs(folders, cfg.scale, cfg.patch, spec, seed=seed, contrast=contrast, detail=detail)
        self.kind = "tensor" if tensors else "numpy"
        bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        self.amp = "bfloat16" if bf16 else None

    def __len__(self) -> int:
        return len(self.source)

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        lr, hr = self.source.batch(n)
        fmt = _memory_format(self.device)
        return (lr.to(self.device, non_blocking=True).contiguous(memory_format=fmt),
                hr.to(self.device, non_blocking=True).contiguous(memory_format=fmt))

    def autocast(self):
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)


class _Speed:
    """Steps per second over the last 50 steps."""

    def __init__(self) -> None:
        self.times: collections.deque[float] = collections.deque(maxlen=51)

    def tick(self) -> None:
        self.times.append(time.perf_counter())

    @property
    def steps_per_s(self) -> float:
        if len(self.times) < 2:
            return 0.0
        return (len(self.times) - 1) / max(self.times[-1] - self.times[0], 1e-9)

    def rates(self, batch: int) -> dict[str, float]:
        return {"steps_per_s": round(self.steps_per_s, 2), "samples_per_s": round(self.steps_per_s * batch, 1)}


def load_checkpoint(path: Path, cfg: TrainConfig, device: torch.device, model: Generator, opt) -> dict:
    """A run's checkpoint, its generator and optimiser restored; refused if it holds another model or scale."""
    ckpt = torch.load(path, map_location=device, weights_only=False)
    if (ckpt["config"]["model"], ckpt["config"]["scale"]) != (cfg.model, cfg.scale):
        raise UserError(f"{path} holds a {ckpt['config']['model']} x{ckpt['config']['scale']} run; use another --out")
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["opt"])
    return ckpt


def append_log(path: Path, record: dict) -> None:
    """One line of the run's log.jsonl."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def after_step(cfg: TrainConfig, step: int, finished: bool, session_start: float, save_checkpoint, bar) -> bool:
    """Checkpoint where due (every `checkpoint_every` steps, at the end, at `time_limit_min`);
    True where this run stops now, at its time limit."""
    out_of_time = bool(cfg.time_limit_min) and time.perf_counter() - session_start > cfg.time_limit_min * 60
    if step % cfg.checkpoint_every == 0 or finished or out_of_time:
        save_checkpoint()
    if out_of_time:
        bar.write(f"time limit reached at step {step}; run again with the same --out to resume")
    return out_of_time


def train(cfg: TrainConfig) -> Path:
    """Train (or resume); return the weights to ship once finished (the last step's,
    final.safetensors, evaluated on the eval set but never picked by it), or the checkpoint to
    resume from (last.pt) when a time limit stopped the run first. With a weight average
    (`ema_decay` > 0), the averaged weights are the ones evaluated and exported.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.degradations not in DEGRADATIONS:
        raise UserError(f"--degradations {cfg.degradations}: choose {', '.join(DEGRADATIONS)}")
    out = cfg.out_folder()
    data_folder, eval_folder = cfg.data_folder(), cfg.eval_folder()
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path, log_path = out / "last.pt", out / "log.jsonl"

    device = resolve_device(cfg.device)
    model, init = _initial_generator(cfg)
    model.to(device, memory_format=_memory_format(device))
    adversary = _Adversary(cfg, device) if cfg.adversarial else None
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise UserError(f"--ema {cfg.ema_decay}: the decay must be at least 0 and below 1")
    average = WeightAverage(model, cfg.ema_decay) if cfg.ema_decay else None
    step, wall, best = 0, 0.0, -math.inf
    if ckpt_path.is_file():
        ckpt = load_checkpoint(ckpt_path, cfg, device, model, opt)
        if adversary is not None:
            adversary.disc.load_state_dict(ckpt["disc"])
            adversary.opt.load_state_dict(ckpt["disc_opt"])
        if average is not None:
            if "ema" in ckpt:
                average.load_state_dict(ckpt["ema"])
            else:  # a checkpoint from before the average: start it here
                average = WeightAverage(model, cfg.ema_decay)
        step, wall, best = ckpt["step"], ckpt["wall_s"], ckpt["best_psnr"]
        print(f"resuming {ckpt_path} at step {step} ({wall / 60:.1f} min trained)")

    spec = DEGRADATIONS[cfg.degradations]
    contrast, detail = tuple(cfg.contrast), tuple(cfg.detail)
    folders = [str(data_folder)] + ([str(photo_crops(cfg.photos))] if cfg.photos else [])
    data = Batches(cfg, folders, spec, device, seed=cfg.seed + step)
    pairs = eval_pairs(eval_folder, cfg.scale) if eval_folder else None
    described = f"{data_folder} ({len(data) - cfg.photos} images)"
    if cfg.photos:
        described += (f" + {cfg.photos} crops of scikit-image's photos (chelsea, coffee, rocket,"
                      " stereo_motorcycle; facesr.train.photos)")
    meta = {"data": described, "degradations": json.dumps(asdict(spec)),
            "loss": adversary.describe() if adversary else "L1", "patch": cfg.patch, "batch": cfg.batch,
            "hardware": _hardware(device) + f", {data.kind} batches" + (f", {data.amp} autocast" if data.amp else "")}
    if contrast != (1.0, 1.0):
        meta["augment"] = f"random contrast gain {contrast[0]:g}-{contrast[1]:g} on the HR patches"
    if detail != (1.0, 1.0):
        meta["augment_detail"] = f"random gain {detail[0]:g}-{detail[1]:g} on the HR patches' detail above the LR Nyquist"
    if average is not None:
        meta["weight_average"] = f"exponential moving average of the generator's weights, decay {cfg.ema_decay:g}"
    if init:
        meta["init"] = f"{init} ({read_metadata(init).get('steps', '?')} steps)"

    def save_checkpoint() -> None:
        state = {"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                 "wall_s": wall, "best_psnr": best, "config": asdict(cfg)}
        if adversary is not None:
            state.update(disc=adversary.disc.state_dict(), disc_opt=adversary.opt.state_dict())
        if average is not None:
            state["ema"] = average.state_dict()
        torch.save(state, out / "last.pt.part")
        os.replace(out / "last.pt.part", ckpt_path)

    if adversary is not None and cfg.d_warmup:
        meta["d_warmup"] = f"{cfg.d_warmup} discriminator steps alone before the first generator step"
        if step == 0:  # a fresh run; a resumed one has its warmed-up discriminator in the checkpoint
            _warm_up_discriminator(cfg, adversary, model, data)
    model.train()
    shipped = average.model if average is not None else model  # what is evaluated and exported
    last_eval: dict[str, float] = {}
    started = time.perf_counter() - wall
    session_start = time.perf_counter()
    bar = tqdm(total=cfg.steps, initial=step, desc=f"train {cfg.model} x{cfg.scale} on {device}", dynamic_ncols=True)
    speed = _Speed()
    while (progress := _progress(cfg, step, wall)) < 1.0:
        rate = _learning_rate(cfg, step, progress)
        for group in opt.param_groups:
            group["lr"] = rate
        lr_img, hr_img = data.batch(cfg.batch)
        with data.autocast():
            sr_img = model(lr_img)
            if adversary is None:
                loss, parts = F.l1_loss(sr_img.float(), hr_img), {}
            else:
                loss, parts = adversary.generator_loss(sr_img, hr_img)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if average is not None:
            average.update(model)
        if adversary is not None:
            with data.autocast():
                parts["d"] = adversary.step(sr_img, hr_img, rate)
        speed.tick()
        step += 1
        wall = time.perf_counter() - started
        finished = _progress(cfg, step, wall) >= 1.0
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}", best=f"{best:.2f}dB", steps_s=f"{speed.steps_per_s:.1f}")
        record = None
        if pairs and (step % cfg.eval_every == 0 or finished):
            ev = last_eval = evaluate(shipped, pairs)
            record = {"step": step, "wall_s": round(wall, 1), "loss": loss.item(), **speed.rates(cfg.batch), **parts, **ev}
            best = max(best, ev["psnr"])  # shown in the progress bar only: nothing is picked by it
            bar.write(f"step {step}: eval {ev['psnr']:.2f} dB (bicubic {ev['bicubic_psnr']:.2f}, "
                      f"gain {ev['psnr'] - ev['bicubic_psnr']:+.2f}), detail {ev['hf_ratio']:.2f}")
        elif step % 100 == 0:
            record = {"step": step, "wall_s": round(wall, 1), "loss": loss.item(), **speed.rates(cfg.batch), **parts}
        if record:
            append_log(log_path, record)
        if after_step(cfg, step, finished, session_start, save_checkpoint, bar):
            break
    bar.close()
    if _progress(cfg, step, wall) < 1.0:
        return ckpt_path
    if pairs and not last_eval:  # resumed at the very end: nothing evaluated in this run
        last_eval = evaluate(shipped, pairs)
    extra = {"eval": last_eval} if pairs else {}
    save_generator(out / "final.safetensors", shipped, steps=step, train_wall_s=round(wall), **meta, **extra)
    return out / "final.safetensors"

