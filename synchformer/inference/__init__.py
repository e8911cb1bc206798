"""From decoded media and a model to offsets."""

from synchformer._lazy import lazy_attributes

_LAZY = {"WindowPrediction": "synchformer.inference.window", "predict_window": "synchformer.inference.window",
         "Summary": "synchformer.inference.pooling", "summarize": "synchformer.inference.pooling",
         "Drift": "synchformer.inference.drift", "fit_drift": "synchformer.inference.drift"}
__all__ = ["Drift", "Summary", "WindowPrediction", "fit_drift", "predict_window", "summarize"]

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
