"""The heat map of a whole file's windows (``synchformer predict --plot``): P(offset) per window over time,
with the pooled offset, a drift or a jump, and what was left out; the numbers come from
``synchformer.inference.pooling.summarize``."""

from __future__ import annotations

import os
import textwrap

import numpy as np

from synchformer import plots
from synchformer.errors import SynchformerError
from synchformer.inference.distributions import check_windows, normalise_rows, signed, two_decimals
from synchformer.inference.pooling import Summary

__all__ = ["plot_heatmap"]


def plot_heatmap(starts, probs, grid, summary: Summary, path, sync_probs=None, title: str | None = None,
                 warning: str | None = None) -> str:
    """Write a PNG heat map of the windows' offset probabilities over time; returns the path written.

    x: time in the video; y: offset (+ = audio leads); colour: the window's P(offset). Each window is a
    column centred on its centre, one hop wide (half the distance to each neighbour, at most half a
    window); where windows do not cover the video the background shows. Left-out (non-synchronizable)
    windows are greyed and hatched; the overall offset is a dashed line, a detected drift a solid one. A
    strip above shows each window's top probability and, when known, P(synchronizable). ``warning`` (e.g.
    that the bundled model stood in) is printed in red under the plot.
    The file is written atomically (a temporary file in the same folder, then os.replace).
    Needs matplotlib (imported here; it is an optional dependency) and uses the Agg canvas directly, so
    pyplot's global state and the caller's backend are left alone.
    """
    plots.require_matplotlib()
    import matplotlib
    from matplotlib.colors import PowerNorm
    from matplotlib.ticker import FuncFormatter, MultipleLocator
    starts, probs, grid = check_windows(starts, probs, grid, summary.window_sec)
    if len(summary.windows) != len(starts):
        raise ValueError(f"the summary has {len(summary.windows)} windows, {len(starts)} starts given")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise SynchformerError(path, "cannot write the plot: the folder does not exist")
    L = summary.window_sec
    p, valid = normalise_rows(probs)
    if sync_probs is not None:
        sp = np.asarray(sync_probs, dtype=np.float64).reshape(-1)
        if len(sp) != len(starts):
            raise ValueError(f"{len(starts)} windows but {len(sp)} sync_probs")
    elif summary.has_sync:
        sp = np.array([np.nan if r.sync_prob is None else r.sync_prob for r in summary.windows])
    else:
        sp = None
    used = np.array([r.used for r in summary.windows], dtype=bool)
    fin = np.isfinite(starts)
    order = np.flatnonzero(fin)[np.argsort(starts[fin], kind="stable")]
    step = float(np.median(np.diff(grid)))
    bad = (0.88, 0.88, 0.88)

    fig = plots.new_figure(figsize=(11, 6.2), dpi=110)
    gs = fig.add_gridspec(2, 2, height_ratios=[1, 4], width_ratios=[40, 1], hspace=0.08, wspace=0.03,
                          left=0.08, right=0.93, top=0.88, bottom=0.09)
    ax = fig.add_subplot(gs[1, 0])
    top = fig.add_subplot(gs[0, 0], sharex=ax)
    cax = fig.add_subplot(gs[1, 1])
    ax.set_facecolor(bad)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad=bad)
    norm = PowerNorm(gamma=0.5, vmin=0.0, vmax=1.0)  # sqrt scale: weak secondary peaks stay visible
    y_edges = np.concatenate([[grid[0] - (grid[1] - grid[0]) / 2], (grid[1:] + grid[:-1]) / 2,
                              [grid[-1] + (grid[-1] - grid[-2]) / 2]])
    mesh = None
    x0, x1 = 0.0, L
    spread = False  # windows far apart (a sampled film): each column spans its window, the gaps stay empty
    if len(order):
        s = starts[order]
        c = s + L / 2
        gaps = np.diff(c)
        half_r = np.minimum(np.concatenate([gaps, [np.inf]]) / 2, L / 2)
        half_l = np.minimum(np.concatenate([[np.inf], gaps]) / 2, L / 2)
        if len(c) > 1:  # the first and last columns mirror their one neighbour
            half_l[0], half_r[-1] = half_r[0], half_l[-1]
        lo, hi = c - half_l, c + half_r
        spread = len(c) > 1 and bool(np.any(gaps > L + 1e-9))
        xe, cols = [lo[0]], []
        for j in range(len(order)):
            if lo[j] > xe[-1] + 1e-9:  # windows do not meet: an empty column
                xe.append(lo[j])
                cols.append(np.full(len(grid), np.nan))
            xe.append(max(hi[j], xe[-1]))
            cols.append(p[order[j]] if valid[order[j]] else np.full(len(grid), np.nan))
        C = np.ma.masked_invalid(np.array(cols).T)
        mesh = ax.pcolormesh(np.array(xe), y_edges, C, cmap=cmap, norm=norm, shading="flat", rasterized=True)
        first, j = True, 0
        while j < len(order):  # left-out windows: one hatched span per run
            if used[order[j]] or not valid[order[j]]:
                j += 1
                continue
            k = j
            while k + 1 < len(order) and not used[order[k + 1]] and valid[order[k + 1]]:
                k += 1
            ax.axvspan(lo[j], hi[k], facecolor=(0.5, 0.5, 0.5, 0.75), edgecolor=(1, 1, 1, 0.8), hatch="///",
                       linewidth=0, label="left out: not synchronizable" if first else None)
            first, j = False, k + 1
        x0, x1 = float(s[0]), float(s[-1] + L)
        pm = np.array([p[i].max() if valid[i] else np.nan for i in order])
        top.plot(c, pm, ".", ms=3, color="tab:blue", label="top P(offset)")
        if sp is not None:
            top.plot(c, sp[order], "-", lw=1.2, color="tab:orange", label="P(synchronizable)")
            top.axhline(summary.min_sync_prob, color="tab:orange", lw=0.8, ls=":")
        top.legend(loc="lower left", fontsize=7, ncol=2, framealpha=0.85)
    else:
        ax.text(0.5, 0.5, "no windows", transform=ax.transAxes, ha="center")
    top.set_ylim(-0.05, 1.05)
    top.set_ylabel("window P")
    top.tick_params(labelbottom=False)
    top.grid(alpha=0.3)

    if summary.offset_sec is not None:
        ax.axhline(summary.offset_sec, color="red", lw=1.4, ls="--",
                   label=f"overall {summary.offset_sec:+.2f} s (refined {summary.refined_offset_sec:+.3f} s, "
                         f"confidence {two_decimals(summary.confidence)}, {100 * summary.agreement:.0f}% agree)")
    else:
        ax.text(0.5, 0.93, "no synchronizable window: no overall offset", transform=ax.transAxes,
                ha="center", va="top", color="red", fontsize=10,
                bbox=dict(facecolor="white", alpha=0.85, edgecolor="none"))
    d = summary.drift
    if d is not None and d.detected:
        tt = np.array([d.t_start_sec, d.t_end_sec])
        ax.plot(tt, d.offset_at(tt), color="white", lw=2.4)
        ax.plot(tt, d.offset_at(tt), color="magenta", lw=1.3,
                label=f"drift {d.slope_ms_per_min:+.0f} ± {d.stderr_ms_per_min:.0f} ms/min")
    if d is not None and d.step_at_sec is not None:
        for a_, b_, v in ((d.t_start_sec, d.step_at_sec, d.step_from_sec), (d.step_at_sec, d.t_end_sec, d.step_to_sec)):
            ax.plot([a_, b_], [v, v], color="white", lw=2.2, ls=":")
        ax.plot([d.t_start_sec, d.step_at_sec, d.step_at_sec, d.t_end_sec],
                [d.step_from_sec, d.step_from_sec, d.step_to_sec, d.step_to_sec], color="orange", lw=1.3, ls=":",
                label=f"jump at {d.step_at_sec:.1f} s: {signed(d.step_from_sec)} s to {signed(d.step_to_sec)} s")
    ax.set_xlim(x0, x1)
    ax.set_ylim(y_edges[0], y_edges[-1])
    ax.yaxis.set_major_locator(MultipleLocator(2 * step))
    ax.yaxis.set_minor_locator(MultipleLocator(step))
    ax.set_ylabel("offset (s)    + = audio leads video")
    if x1 - x0 > 180:
        tick = next((v for v in (30, 60, 120, 300, 600, 900, 1800, 3600) if (x1 - x0) / v <= 10), 7200)
        ax.xaxis.set_major_locator(MultipleLocator(tick))
        ax.xaxis.set_major_formatter(FuncFormatter(
            lambda v, _: f"{'-' if v < 0 else ''}{int(abs(v) // 3600)}:{int(abs(v) % 3600 // 60):02d}:"
                         f"{int(abs(v) % 60):02d}" if abs(v) >= 3600 else
                         f"{'-' if v < 0 else ''}{int(abs(v) // 60)}:{int(abs(v) % 60):02d}"))
    width = ("each as wide as its window; between them the video was not analysed" if spread else "one hop wide")
    unit = "min:s" if x1 - x0 > 180 else "s"
    ax.set_xlabel(f"time in the video ({unit}), windows drawn at their centres, {width}")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=7.5, framealpha=0.85)
    if mesh is None:
        from matplotlib.cm import ScalarMappable
        mesh = ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(mesh, cax=cax).set_label("P(offset) of the window")
    head = title if title is not None else "audio-visual offset per window"
    fig.suptitle(head + "\n" + textwrap.fill(summary.message, 150), fontsize=9.5)
    if warning:
        plots.warning_line(fig, warning, clear=gs)  # (the module's, looked up when drawn: a test counts them)

    return plots.write_figure(fig, path, format="png")
