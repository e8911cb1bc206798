"""Training: data, losses, loops (stages I-III), evaluation and the synthetic sparse-cue benchmark."""

from synchformer._lazy import lazy_attributes

_LAZY = {"TrainConfig": "synchformer.training.config", "load_config": "synchformer.training.config",
         "train": "synchformer.training.loop"}
__all__ = ["TrainConfig", "load_config", "train"]

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
