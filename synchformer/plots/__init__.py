"""What every figure of the package shares: matplotlib (an optional dependency: the ``plot`` extra) imported
only when a figure is drawn, one error when it is missing, an Agg figure without pyplot, an atomic save with
the permissions of an ordinary file, and the bundled model's warning line.

The figures: the heat map of a whole file (``heatmap.plot_heatmap``: ``predict --plot``), the explain figure
(``explain.save_figure``), the training confusion matrix and ROC (``synchformer.training.metrics``).
"""

from __future__ import annotations

import os
import textwrap

from synchformer._lazy import lazy_attributes
from synchformer.errors import SynchformerError
from synchformer.io.outputs import check_output, protect_inputs, write_atomic

_LAZY = {"plot_heatmap": "synchformer.plots.heatmap", "plot_explanation": "synchformer.plots.explain"}
__all__ = ["PlotDependencyError", "check_figure_output", "new_figure", "plot_explanation", "plot_heatmap",
           "require_matplotlib",
           "warning_line", "write_figure"]

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)


class PlotDependencyError(SynchformerError, ImportError):
    """matplotlib is missing (an optional dependency); a SynchformerError, and an ImportError too."""


def require_matplotlib(what: str = "plotting") -> None:
    """Raise a one-line PlotDependencyError when matplotlib (optional: the ``plot`` extra) cannot be imported."""
    try:
        import importlib

        importlib.import_module("matplotlib.figure")
    except ImportError:
        raise PlotDependencyError(None, f"{what} needs matplotlib: pip install matplotlib "
                                        "(or pip install 'synchformer[plot]')") from None


def check_figure_output(out: str | os.PathLike, inputs, what: str, formats=(".png", ".pdf", ".svg")) -> None:
    """Before any work: not one of the inputs, matplotlib importable, a figure format it writes (``formats``;
    None: any name), and a folder that exists and can be written (io.outputs.check_output). One line each."""
    protect_inputs(out, inputs)
    require_matplotlib(what)
    if formats is not None and os.path.splitext(os.fspath(out))[1].lower() not in formats:
        raise SynchformerError(out, f"the figure must be a {', '.join(formats[:-1])} or {formats[-1]} file"
                               if len(formats) > 1 else f"the figure must be a {formats[0]} file")
    check_output(out, inputs)


def new_figure(what: str = "plotting", **kwargs):
    """A matplotlib ``Figure(**kwargs)`` on an Agg canvas: pyplot's global state and the caller's backend are
    left alone (and no GUI opens). PlotDependencyError when matplotlib is missing."""
    require_matplotlib(what)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def write_figure(fig, path: str | os.PathLike, **savefig_kwargs) -> str:
    """``fig.savefig`` into ``path`` atomically (synchformer.io.outputs.write_atomic: a temporary file beside it,
    then renamed; the umask's permissions, not mkstemp's 0600). Without ``format`` the suffix picks it."""
    write_atomic(path, lambda tmp: fig.savefig(tmp, **savefig_kwargs))
    return os.fspath(path)


def warning_line(fig, warning: str, y: float = 0.004, clear=None):
    """``warning`` in red across ``fig`` at height ``y`` (a figure must not look more trustworthy than the
    text and JSON it goes with); returns the text. ``clear``: a gridspec whose plots, with the tick labels and
    axis label under them, are moved up above the warning, however many lines it takes."""
    size = 8.5
    width = int(fig.get_figwidth() * 72 / (0.6 * size))  # characters that fit across the figure
    text = fig.text(0.5, y, textwrap.fill(f"warning: {warning}", width), ha="center", va="bottom", fontsize=size,
                    color="#b00000")
    if clear is not None:
        renderer = fig.canvas.get_renderer()
        line_top = text.get_window_extent(renderer).y1 / fig.bbox.height
        labels_bottom = min(a.get_tightbbox(renderer).y0 for a in fig.axes) / fig.bbox.height
        if labels_bottom < line_top + 0.01:
            clear.update(bottom=clear.bottom + line_top + 0.01 - labels_bottom)
            for ax in fig.axes:  # (update alone does not move the plots already made from it)
                spec = ax.get_subplotspec()
                if spec is not None and spec.get_gridspec() is clear:
                    ax.set_position(spec.get_position(fig))
    return text
