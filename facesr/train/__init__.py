"""Training the face generators: what a run is (config), its data and degradations (data,
degrade, photos, batches; sequences for a recurrent model), losses, the loops (loop for single
frames, recurrent for sequences) and building a model's int8 file (quantize). `train(cfg)` runs
the loop the model needs."""

from __future__ import annotations

from pathlib import Path

from .config import TrainConfig


def train(cfg: TrainConfig) -> Path:
    """`facesr train`: the single-frame loop (`loop.train`) or, for a recurrent model such as
    `lite-recurrent`, the sequence loop (`recurrent.train_recurrent`)."""
    from ..models import generator_config

    if generator_config(cfg.model, cfg.scale).history:
        from .recurrent import train_recurrent

        return train_recurrent(cfg)
    from .loop import train as train_frames

    return train_frames(cfg)
