"""What every figure of the package shares: matplotlib (an optional dependency: the ``plot`` extra) imported
only when a figure is drawn, one error when it is missing, an Agg figure without pyplot, an atomic save with
the permissions of an ordinary file, and the bundled model's warning line.

The figures: the heat map of a whole file (``heatmap.plot_heatmap``: ``predict --plot``), the explain figure
(``synchformer.inference.explain``), the training confusion matrix and ROC (``synchformer.training.metrics``).
"""

from __future__ import annotations

import os
import textwrap

from synchformer._lazy import lazy_attributes
from synchformer.errors import SynchformerError
from synchformer.io.outputs import protect_inputs, write_atomic

_LAZY = {"plot_heatmap": "synchformer.plots.heatmap"}
__all__ = ["PlotDependencyError", "check_figure_output", "new_figure", "plot_heatmap", "require_matplotlib",
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


def check_figure_output(out: str | os.PathLike, inputs, what: str) -> None:
    """Before any work: a figure format matplotlib writes, in a folder that exists, and not one of the inputs."""
    protect_inputs(out, inputs)
    require_matplotlib(what)
    if os.path.splitext(os.fspath(out))[1].lower() not in (".png", ".pdf", ".svg"):
        raise SynchformerError(out, "the figure must be a .png, .pdf or .svg file")
    if not os.path.isdir(os.path.dirname(os.path.abspath(out))):
        raise SynchformerError(out, "cannot write: the folder does not exist")


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


def warning_line(fig, warning: str, y: float = 0.004) -> None:
    """``warning`` in red across ``fig`` at height ``y`` (a figure must not look more trustworthy than the
    text and JSON it goes with)."""
    fig.text(0.5, y, textwrap.fill(f"warning: {warning}", 190), ha="center", va="bottom", fontsize=8.5,
             color="#b00000")
