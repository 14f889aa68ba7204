"""The training loop: pixel-loss (SRResNet-style) training with checkpoints, resume and eval PSNR."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..errors import UserError
from ..metrics import psnr
from ..models import Generator, generator_config
from ..superres import SuperResolver
from ..weights import save_generator
from .data import FacePairs, eval_pairs
from .degrade import Degradation


@dataclass
class TrainConfig:
    data: str
    eval_dir: str | None
    out: str
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
    time_budget_min: float = 0.0  # 0: none; else total training wall time (across resumes): the LR
    # schedule follows whichever of steps and time runs out first, and training ends there
    time_limit_min: float = 0.0  # 0: none; else stop this run (checkpointed, resumable) after this many minutes


def evaluate(model: Generator, pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """Mean PSNR of the model and of bicubic on the evaluation pairs."""
    was_training = model.training
    sr = SuperResolver(model, next(model.parameters()).device, half=False)
    out = sr([lr for lr, _ in pairs])
    model.train(was_training)
    scale = model.config.scale
    bic = [cv2.resize(lr, (lr.shape[1] * scale, lr.shape[0] * scale), interpolation=cv2.INTER_CUBIC) for lr, _ in pairs]
    return {
        "psnr": float(np.mean([psnr(o, hr) for o, (_, hr) in zip(out, pairs)])),
        "bicubic_psnr": float(np.mean([psnr(b, hr) for b, (_, hr) in zip(bic, pairs)])),
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


def train(cfg: TrainConfig) -> Path:
    """Train (or resume); return the best-eval weights (the final ones where there is no eval set).

    Exports to `out`: best.safetensors (best eval PSNR so far) and, once finished,
    final.safetensors (the last step's weights, with their eval numbers).
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path, log_path = out / "last.pt", out / "log.jsonl"

    model = Generator(generator_config(cfg.model, cfg.scale))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
    step, wall, best = 0, 0.0, -math.inf
    if ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if (ckpt["config"]["model"], ckpt["config"]["scale"]) != (cfg.model, cfg.scale):
            raise UserError(f"{ckpt_path} holds a {ckpt['config']['model']} x{ckpt['config']['scale']} run; use another --out")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        step, wall, best = ckpt["step"], ckpt["wall_s"], ckpt["best_psnr"]
        print(f"resuming {ckpt_path} at step {step} ({wall / 60:.1f} min trained)")

    data = FacePairs(cfg.data, cfg.scale, cfg.patch, Degradation(), seed=cfg.seed + step)
    pairs = eval_pairs(cfg.eval_dir, cfg.scale) if cfg.eval_dir else None
    meta = {"data": f"{cfg.data} ({len(data)} images)", "degradations": json.dumps(asdict(Degradation())), "loss": "L1"}

    def save_checkpoint() -> None:
        state = {"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                 "wall_s": wall, "best_psnr": best, "config": asdict(cfg)}
        torch.save(state, out / "last.pt.part")
        os.replace(out / "last.pt.part", ckpt_path)

    model.train()
    last_eval: dict[str, float] = {}
    started = time.perf_counter() - wall
    session_start = time.perf_counter()
    bar = tqdm(total=cfg.steps, initial=step, desc=f"train {cfg.model} x{cfg.scale}", dynamic_ncols=True)
    while (progress := _progress(cfg, step, wall)) < 1.0:
        for group in opt.param_groups:
            group["lr"] = _learning_rate(cfg, step, progress)
        lr_img, hr_img = data.batch(cfg.batch)
        loss = F.l1_loss(model(lr_img), hr_img)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        wall = time.perf_counter() - started
        finished = _progress(cfg, step, wall) >= 1.0
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}", best=f"{best:.2f}dB")
        record = None
        if pairs and (step % cfg.eval_every == 0 or finished):
            ev = last_eval = evaluate(model, pairs)
            record = {"step": step, "wall_s": round(wall, 1), "loss": loss.item(), **ev}
            if ev["psnr"] > best:
                best = ev["psnr"]
                save_generator(out / "best.safetensors", model, steps=step, train_wall_s=round(wall), eval=ev, **meta)
            bar.write(f"step {step}: eval {ev['psnr']:.2f} dB (bicubic {ev['bicubic_psnr']:.2f}, gain {ev['psnr'] - ev['bicubic_psnr']:+.2f})")
        elif step % 100 == 0:
            record = {"step": step, "wall_s": round(wall, 1), "loss": loss.item()}
        if record:
            with open(log_path, "a") as f:
                f.write(json.dumps(record) + "\n")
        out_of_time = cfg.time_limit_min and time.perf_counter() - session_start > cfg.time_limit_min * 60
        if step % cfg.checkpoint_every == 0 or finished or out_of_time:
            save_checkpoint()
        if out_of_time:
            bar.write(f"time limit reached at step {step}; run again with the same --out to resume")
            break
    bar.close()
    if _progress(cfg, step, wall) >= 1.0:  # finished: the final weights, evaluated, beside the best
        if pairs and not last_eval:  # resumed at the very end: nothing evaluated in this run
            last_eval = evaluate(model, pairs)
        extra = {"eval": last_eval} if pairs else {}
        save_generator(out / "final.safetensors", model, steps=step, train_wall_s=round(wall), **meta, **extra)
        if not pairs:
            return out / "final.safetensors"
    return out / "best.safetensors"
