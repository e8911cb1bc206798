"""The explain figure: which segments and tokens of one window the offset decision rests on, under the
window's frames and waveform (``synchformer.inference.explain`` computes the scores)."""

from __future__ import annotations

import os

import numpy as np

from synchformer import plots
from synchformer.constants import AUDIO_SR, HOP_LENGTH, SEGMENT_STRIDE_SEC, VIDEO_FPS
from synchformer.inference.distributions import describe_offset
from synchformer.inference.explain import SEG_SEC, Explanation


_SUPPORT, _AGAINST = "#c0392b", "#2e6db4"  # the ends of RdBu_r: red supports the target, blue speaks against it


def _strip(ex: Explanation, modality: int, res: float = 0.01) -> np.ndarray:
    """Token scores on a ``res``-second grid over the window: each token fills its hop (80 ms visual,
    100 ms audio) around its centre; where the two overlapping segments see the same moment, their tokens add."""
    n = round((ex.end_sec - ex.start_sec) / res)
    grid = np.zeros(n)
    centres = ex.token_centres()[modality] - ex.start_sec
    scores = (ex.visual_token, ex.audio_token)[modality].numpy()
    half = (2 / VIDEO_FPS if modality == 0 else 10 * HOP_LENGTH / AUDIO_SR) / 2
    for c, sc in zip(centres.ravel(), scores.ravel()):
        grid[max(0, round((c - half) / res)):round((c + half) / res)] += sc
    return grid


def plot_explanation(ex: Explanation, warning: str | None = None):
    """A matplotlib ``Figure`` (Agg canvas, pyplot untouched): thumbnails, attribution and waveform on one time axis."""
    fig = plots.new_figure("the explain figure", figsize=(15, 9.2), dpi=100)
    from matplotlib.colors import Normalize

    t0, t1 = ex.start_sec, ex.end_sec
    has_tokens = ex.visual_token is not None
    rows = [("thumbs", 1.25), ("vbars", 1.0)] + ([("vstrip", 0.32), ("astrip", 0.32)] if has_tokens else []) \
        + [("abars", 1.0), ("wave", 1.0)]
    gs = fig.add_gridspec(len(rows), 2, height_ratios=[h for _, h in rows], width_ratios=[60, 1],
                          left=0.1, right=0.93, top=0.87, bottom=0.17, hspace=0.18, wspace=0.02)
    axes = {}
    for i, (name, _) in enumerate(rows):
        axes[name] = fig.add_subplot(gs[i, 0], sharex=axes.get("thumbs"))
        axes[name].set_xlim(t0, t1)
        if name != "wave":
            axes[name].tick_params(labelbottom=False)

    # pictures: the middle frame of each 0.32 s slot, drawn over that slot
    ax = axes["thumbs"]
    for j, img in enumerate(ex.thumbnails if ex.thumbnails is not None else []):
        a = t0 + j * SEGMENT_STRIDE_SEC
        ax.imshow(img, extent=(a, a + SEGMENT_STRIDE_SEC, 0, 1), aspect="auto", interpolation="bilinear")
    ax.set_xlim(t0, t1)
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.set_ylabel("picture", rotation=0, ha="right", va="center")

    # segment bars, one shared y-scale so that the two modalities compare
    starts = ex.segment_starts()
    centres = starts + SEG_SEC / 2
    seg = np.concatenate([ex.visual_segment.numpy(), ex.audio_segment.numpy()])
    lo, hi = min(0.0, seg.min()), max(0.0, seg.max())
    pad = 0.12 * ((hi - lo) or 1.0)
    best = int(np.argmax(seg))
    for name, vals, label, off in (("vbars", ex.visual_segment, "picture\nsegments", 0),
                                   ("abars", ex.audio_segment, "sound\nsegments", len(starts))):
        ax = axes[name]
        vals = vals.numpy()
        ax.bar(centres, vals, width=SEGMENT_STRIDE_SEC * 0.85, color=np.where(vals >= 0, _SUPPORT, _AGAINST))
        ax.axhline(0, color="0.3", lw=0.8)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="x", color="0.85", lw=0.6)
        if off <= best < off + len(vals) and seg[best] > 0:  # name the strongest support of both rows
            s = best - off
            ax.bar(centres[s], vals[s], width=SEGMENT_STRIDE_SEC * 0.85, fill=False, edgecolor="black", lw=1.2)
            left = centres[s] > (t0 + t1) / 2  # the label on the side away from the bar
            ax.text(0.005 if left else 0.995, 0.93, f"strongest support: {starts[s]:.2f}-{starts[s] + SEG_SEC:.2f} s, "
                    f"{vals[s]:+.3g}", transform=ax.transAxes, fontsize=8, va="top", ha="left" if left else "right")

    # token strips: one colour scale for both modalities
    if has_tokens:
        strips = {name: _strip(ex, m) for m, name in enumerate(("vstrip", "astrip"))}
        lim = max(1e-12, max(np.abs(s).max() for s in strips.values()))
        norm = Normalize(-lim, lim)
        for name, label in (("vstrip", "picture, 80 ms"), ("astrip", "sound, 100 ms")):
            ax = axes[name]
            im = ax.imshow(strips[name][None], extent=(t0, t1, 0, 1), aspect="auto", cmap="RdBu_r", norm=norm,
                           interpolation="nearest")
            ax.set_yticks([])
            ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
        cax = fig.add_subplot(gs[rows.index(("vstrip", 0.32)):rows.index(("astrip", 0.32)) + 1, 1])
        cb = fig.colorbar(im, cax=cax)
        cb.ax.tick_params(labelsize=7)
        cb.set_label("nats", fontsize=8)

    # sound: min/max envelope per 5 ms column
    ax = axes["wave"]
    if ex.waveform is not None and len(ex.waveform):
        w = ex.waveform
        col = 80
        w = w[:len(w) // col * col].reshape(-1, col)
        t = t0 + (np.arange(len(w)) + 0.5) * col / AUDIO_SR
        ax.fill_between(t, w.min(1), w.max(1), color="0.35", lw=0)
        peak = float(np.abs(w).max()) or 1.0
        ax.set_ylim(-1.05 * peak, 1.05 * peak)
    ax.set_yticks([])
    ax.set_ylabel("sound", rotation=0, ha="right", va="center")
    ax.set_xlabel(f"time in the file (s)   -   {len(starts)} segments of 0.64 s every 0.32 s, bars at their centres")

    name = os.path.basename(ex.path) if ex.path else "window"
    top3 = "   ".join(f"{d['offset_sec']:+.1f} s: {d['probability']:.2f}" for d in ex.top(3))
    why = "the predicted offset" if not ex.target_given else \
        f"asked for; p = {float(ex.probs[ex.target]):.3f}"
    how = ("occlusion: score = drop in log P when the part is replaced by the mean of the window's other segments"
           if ex.method == "occlusion" else
           "gradient: score = gradient . (token - mean of the other segments), a first-order estimate of the "
           "occlusion drop (one backward pass)")
    fig.suptitle(f"{name}   window {t0:.2f}-{t1:.2f} s\n"
                 f"offset {ex.offset_sec:+.2f} s ({describe_offset(ex.offset_sec)}), p = {ex.probability:.3f}"
                 f"      top-3:  {top3}\n"
                 f"explaining P({ex.target_sec:+.1f} s) ({why})  -  method: {ex.method}", fontsize=12, y=0.985)
    fig.text(0.1, 0.085, (
        f"Method - {how}.\n"
        f"Red / up: the model relies on this moment for {ex.target_sec:+.1f} s (hiding it lowers P).   "
        "Blue / down: it speaks against that offset (hiding it raises P).   Scores in nats.\n"
        "Bars: one per 0.64 s segment.   Strips: one cell per token (80 ms of picture, 100 ms of sound); where two "
        "overlapping segments see the same moment, their tokens' scores add.\n"
        "Sign convention: a positive offset means the audio leads the video (a sound is heard before the "
        "picture that makes it)."), fontsize=9, va="top", ha="left", color="0.15")
    if warning:
        plots.warning_line(fig, warning, y=0.885)  # between the title and the plots
    return fig


def save_figure(ex: Explanation, out: str | os.PathLike, inputs=(), warning: str | None = None) -> str:
    """Write the figure to ``out`` (.png, .pdf or .svg) atomically; never over ``ex.path`` or ``inputs``.
    ``warning``: printed in red at the bottom (e.g. that the bundled model stood in)."""
    plots.check_figure_output(out, [p for p in (ex.path, *inputs) if p], "the explain figure")
    fig = plot_explanation(ex, warning)
    return plots.write_figure(fig, out, format=os.path.splitext(os.fspath(out))[1].lower().lstrip("."))


__all__ = ["plot_explanation", "save_figure"]
