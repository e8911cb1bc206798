"""From decoded media and a model to offsets."""

from synchformer._lazy import lazy_attributes

_LAZY = {"WindowPrediction": "synchformer.inference.window", "predict_window": "synchformer.inference.window"}
__all__ = ["WindowPrediction", "predict_window"]

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
