"""Where pooling, drift and the heat map lived before they got rooms of their own; kept so that code written
against ``synchformer.inference.timeline`` still imports. New code: ``inference.pooling`` (windows -> one
offset), ``inference.drift`` (the drift fit), ``plots.heatmap`` (the figure)."""

from synchformer._lazy import lazy_attributes

_LAZY = {"Summary": "synchformer.inference.pooling", "summarize": "synchformer.inference.pooling",
         "window_offsets": "synchformer.inference.pooling", "overlap_weights": "synchformer.inference.pooling",
         "describe_offset": "synchformer.inference.pooling", "Drift": "synchformer.inference.drift",
         "fit_drift": "synchformer.inference.drift", "plot_heatmap": "synchformer.plots.heatmap",
         "PlotDependencyError": "synchformer.plots"}
__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
