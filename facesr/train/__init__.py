"""Training the face generators: degradations, LR/HR pairs and the loop."""

from .loop import TrainConfig, train

__all__ = ["TrainConfig", "train"]
