"""Training: data, losses, loops (stages I-III), evaluation and the synthetic sparse-cue benchmark."""

from .config import TrainConfig, load_config
from .loop import train

__all__ = ["TrainConfig", "load_config", "train"]
