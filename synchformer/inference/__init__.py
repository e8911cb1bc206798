"""From decoded media and a model to offsets."""

from .window import WindowPrediction, predict_window

__all__ = ["WindowPrediction", "predict_window"]
