"""Training a recurrent generator (`lite-recurrent`) on sequences, by backpropagation through time.

Each step draws `batch` runs of `frames` consecutive frames (`sequences.SequenceBank`) and runs
them as the Enhancer does: the first frame with no history, each later one with the model's own
previous output aligned by the measured flow (`memory.model_input_torch`). The L1 loss of every
frame is averaged and backpropagated through the whole run (truncated at `frames`).

The network starts as the shipped `lite` (or `init`): its head gets the history channels with
zero weights, so step 0 is `lite` exactly, frame after frame, and training adds what the history
is worth.

The face photos are evaluated once at the end, as single frames (no history): the first frame
of every track, recorded in the weights' header as the other models' evaluation is.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..errors import UserError
from ..memory import model_input_torch
from ..models import Generator, generator_config
from ..paths import cache_dir, data_dir
from ..protocol import eval_pairs
from ..runtime import resolve_device
from ..weights import load_generator, save_generator, weights_path
from .config import TrainConfig
from .loop import _hardware, _learning_rate, _progress, after_step, append_log, evaluate, load_checkpoint
from .sequences import CRF, SequenceBank


def widened(base: Generator, config) -> Generator:
    """A recurrent generator that computes what `base` does: `base`'s weights, zero weights on the history."""
    model = Generator(config)
    state = base.state_dict()
    head = model.head_conv.weight.detach().clone().zero_()
    head[:, : base.head_conv.in_channels] = state["head.0.weight"]
    state["head.0.weight"] = head
    model.load_state_dict(state)
    return model


def single_frame(model: Generator) -> Generator:
    """The single-frame generator inside a recurrent one: its weights less those on the history
    channels. It computes what `model` computes with no history (a track's first frame), at the
    single-frame network's cost. The inverse of `widened`."""
    import dataclasses

    config = dataclasses.replace(model.config, history=False)
    single = Generator(config)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    state["head.0.weight"] = state["head.0.weight"][:, : config.in_channels]
    single.load_state_dict(state)
    return single.eval()


def _initial(cfg: TrainConfig) -> tuple[Generator, str]:
    init = cfg.init or str(weights_path("lite", cfg.scale))
    if not os.path.isfile(init):
        raise UserError(f"{cfg.model} starts from {init}, which does not exist: pass --init WEIGHTS")
    base = load_generator(init, cfg.scale)
    config = generator_config(cfg.model, cfg.scale)
    if base.config == config:
        return base.train(), init
    import dataclasses

    if dataclasses.replace(base.config, history=True) != config:
        raise UserError(f"--init {init} is neither a {cfg.model} nor the single-frame network it widens")
    return widened(base, config).train(), init


def unroll(model: Generator, lr: torch.Tensor, motion: torch.Tensor, scale: int) -> list[torch.Tensor]:
    """The model over a run, frame by frame, each frame fed the previous output:
    lr (B, T, 3, h, w) in 0..1, motion (B, T, 2, h, w) -> T x (B, 3, sh, sw)."""
    outs, prev = [], None
    for t in range(lr.shape[1]):
        out = model(model_input_torch(lr[:, t], prev, motion[:, t], scale))
        outs.append(out)
        prev = out.clamp(0.0, 1.0)
    return outs


def temporal_loss(outs: list[torch.Tensor], hr: torch.Tensor) -> torch.Tensor:
    """L1 between the output's frame-to-frame change and the original's, over a run in one place:
    what `facesr eval` measures as flicker (metrics.flicker), here on RGB."""
    changes = [(outs[t] - outs[t - 1]) - (hr[:, t] - hr[:, t - 1]) for t in range(1, len(outs))]
    return torch.stack([c.abs().mean() for c in changes]).mean()


def train_recurrent(cfg: TrainConfig) -> Path:
    """`facesr train --model lite-recurrent`: train (or resume); the last step's weights, or the
    checkpoint. Beside final.safetensors, final-single-frame.safetensors: the same network without
    its memory (`single_frame`), what ships as `lite-call`."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = cfg.out_folder()
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path, log_path = out / "last.pt", out / "log.jsonl"
    device = resolve_device(cfg.device)
    clips = Path(cfg.clips) if cfg.clips else data_dir("videos_train")
    stills = cfg.data_folder()
    if cfg.patch % cfg.scale:
        raise UserError(f"--patch {cfg.patch}: must be a multiple of the scale {cfg.scale}")
    model, init = _initial(cfg)
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
    step, wall = 0, 0.0
    if ckpt_path.is_file():
        ckpt = load_checkpoint(ckpt_path, cfg, device, model, opt)
        step, wall = ckpt["step"], ckpt["wall_s"]
        print(f"resuming {ckpt_path} at step {step} ({wall / 60:.1f} min trained)")

    bank = SequenceBank.build(clips, stills, cfg.scale, cache_dir() / "train", stills_count=cfg.sequence_stills,
                              seed=cfg.seed)
    bank.rng = np.random.default_rng([cfg.seed, step])  # a resumed run draws on, not the same batches again
    meta = {"data": f"{len(bank)} sequences: {clips} (each clip twice, at call face sizes) and "
                    f"{cfg.sequence_stills} still faces of {stills} in smooth random motion",
            "degradations": f"area downscaling, H.264 CRF {CRF[0]}-{CRF[1]} (libx264 medium) across each sequence; "
                            "the stills also through the camera's blur and noise",
            "loss": f"L1 over runs of {cfg.frames} frames, backpropagated through time"
                    + (f", + {cfg.temporal_weight:g} x L1 of the frame-to-frame change against the original's"
                       if cfg.temporal_weight else ""),
            "patch": cfg.patch, "batch": cfg.batch, "frames": cfg.frames, "init": init,
            "hardware": _hardware(device)}

    def save_checkpoint() -> None:
        state = {"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "wall_s": wall, "config": asdict(cfg)}
        torch.save(state, out / "last.pt.part")
        os.replace(out / "last.pt.part", ckpt_path)

    # on CUDA, bfloat16 autocast as the single-frame loop has it (the batches are made on the CPU)
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    if bf16:
        meta["hardware"] += ", bfloat16 autocast"
    model.train()
    started = time.perf_counter() - wall
    session_start = time.perf_counter()
    bar = tqdm(total=cfg.steps, initial=step, desc=f"train {cfg.model} x{cfg.scale} on {device}", dynamic_ncols=True)
    per_frame = np.zeros(cfg.frames)
    seen = 0
    while (progress := _progress(cfg, step, wall)) < 1.0:
        rate = _learning_rate(cfg, step, progress)
        for group in opt.param_groups:
            group["lr"] = rate
        lr_u8, hr_u8, motion = bank.batch(cfg.batch, cfg.frames, cfg.patch // cfg.scale)
        lr = torch.from_numpy(lr_u8).to(device).permute(0, 1, 4, 2, 3).float().div_(255.0)
        hr = torch.from_numpy(hr_u8).to(device).permute(0, 1, 4, 2, 3).float().div_(255.0)
        mo = torch.from_numpy(motion).to(device).permute(0, 1, 4, 2, 3)
        with amp:
            outs = unroll(model, lr, mo, cfg.scale)
        outs = [o.float() for o in outs]
        losses = [F.l1_loss(o, hr[:, t]) for t, o in enumerate(outs)]
        loss = torch.stack(losses).mean()
        if cfg.temporal_weight:
            loss = loss + cfg.temporal_weight * temporal_loss(outs, hr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        per_frame += [x.item() for x in losses]
        seen += 1
        step += 1
        wall = time.perf_counter() - started
        finished = _progress(cfg, step, wall) >= 1.0
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if step % 100 == 0 or finished:
            # the L1 of each frame of the runs: frame 0 has no history, so the fall along the run is what it adds
            record = {"step": step, "wall_s": round(wall, 1), "loss": float(per_frame.mean() / seen),
                      "loss_per_frame": [round(x / seen, 5) for x in per_frame], "lr": rate}
            append_log(log_path, record)
            per_frame[:], seen = 0.0, 0
        if after_step(cfg, step, finished, session_start, save_checkpoint, bar):
            break
    bar.close()
    if _progress(cfg, step, wall) < 1.0:
        return ckpt_path
    eval_folder = cfg.eval_folder()
    extra = {"eval": evaluate(model, eval_pairs(eval_folder, cfg.scale))} if eval_folder else {}  # a first frame each
    save_generator(out / "final.safetensors", model.eval(), steps=step, train_wall_s=round(wall), **meta, **extra)
    save_generator(out / "final-single-frame.safetensors", single_frame(model), steps=step, train_wall_s=round(wall),
                   **meta, **extra, derived="the recurrent network's weights without those on its memory channels: "
                   "what it computes on a track's first frame, on every frame")
    return out / "final.safetensors"
