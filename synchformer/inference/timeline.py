"""From per-window results of a whole video to one offset, a drift estimate and a heat map.

Pure functions: numpy arrays in, dataclasses / JSON-ready dicts out; no model, no decoding.

Inputs (``W`` windows, ``K`` offset classes, ``K = 21`` for the released models)

- ``starts`` (W,): start of each window in seconds (in the file's timeline). Windows are ``window_sec``
  (4.8 s) long and usually overlap (a hop of 0.32-2.56 s).
- ``probs`` (W, K): the offset head's class probabilities per window (rows are renormalised; a row with a
  NaN, an infinity or a negative value is *invalid* and is left out of everything).
- ``grid`` (K,): the offset of each class in seconds, ascending (-2.0 ... +2.0 by 0.2).
  **Positive = the audio leads the video.**
- ``sync_probs`` (W,) or None: P(window is synchronizable) from the synchronizability model. A NaN there
  means "unknown" and does not leave the window out.

Pooling the windows (``summarize``)
-----------------------------------
Two pools over the used windows, both weighted by the *overlap weights* ``a_w`` below:

- mean pool (linear opinion pool): ``p(k) = sum_w a_w p_w(k) / sum_w a_w``
- log pool (log-linear / product of experts): ``log p(k) = sum_w a_w log max(p_w(k), 1e-6) + const``

Overlap weights. Suppose the evidence for offset ``k`` arrives at a rate ``l_k(t)`` per second of video,
independent across time, and a window's log-probability is the evidence of its own span,
``log p_w(k) = int_{s_w}^{s_w+L} l_k(t) dt + const``. Summing the windows counts every second of video
``L / hop`` times, so a plain product of overlapping windows is overconfident by that factor. Give each
window the part of its span nearer to its own centre than to any other used window's centre (a Voronoi
cell on the window centres, clipped to the window), divided by ``L``:

    a_w = |cell_w ∩ [s_w, s_w + L]| / L            (= hop / L for a regular hop, away from the ends)

Then ``sum_w a_w log p_w(k) ≈ int l_k(t) dt`` over the covered time: each second counts once, and
``sum_w a_w = |union of used windows| / L`` is the *effective number of independent windows*
(``effective_windows``). The same weights make the mean pool a time average, so a densely sampled stretch
does not outvote a sparsely sampled one, and gaps (left-out windows) are handled.

Which pool is reported: the **mean pool**. Synchformer's windows are not independent likelihoods but
softmax outputs of a network trained with cross-entropy, which is confidently wrong on some content
(off-screen sound, periodic motion, music); such windows come in runs, because neighbouring windows see the
same content. In the log pool one window that puts ~1e-6 on the true class costs that class
``a_w * 13.8`` nats, as much as ~5 correctly but moderately confident windows (p=0.35 vs 0.02) give it: a
few confidently wrong windows decide the result (see ``tests/test_timeline.py``). In the mean pool every
window's influence is bounded by ``a_w / sum a``, and its confidence (the average probability the windows
give the chosen class) stays comparable between a 10 s and a 1 h video, where the log pool's saturates at
1.0. The price: the mean pool can be fooled where many broad-but-correct windows face a group of
moderately confident wrong ones that the correct windows all rule out; the log pool is right there. Both
are computed; ``pools_agree`` is false when their argmaxes are more than one class apart, which is worth
a look.

Drift (``fit_drift``)
---------------------
Per-window offset ``y_w``: the probability-weighted mean of the argmax class and its two neighbours
(renormalised) — a sub-class estimate. Window weight: ``1 - H_w / log K`` (0 for a uniform window,
e.g. silence) times the caller's ``weights`` (e.g. sync_probs). Time ``t_w``: the window centre.
Fit ``y = intercept + slope * t`` robustly: a weighted repeated-median line (50 % breakdown) as the start,
then IRLS with Huber weights and finally Tukey bisquare weights (c=4.685, scale = 1.4826 * weighted MAD,
floored at 10 ms), which gives zero weight to confidently wrong windows. Standard error: a
heteroscedasticity-and-overlap-consistent sandwich: the meat sums the products of the score terms of
every pair of windows weighted by their overlap fraction ``max(0, 1 - |t_i - t_j| / L)`` — the exact
correlation of two windows' errors under the evidence model above (a Bartlett kernel, so the estimate is
never negative) — times ``n_eff / (n_eff - 2)``. Without this, 4.8 s windows at a 0.32 s hop would
understate the error ~4x and claim drift on noise. The CI is 95 % with a Student t of ``n_eff - 2``
degrees of freedom.

Drift is *detected* only when all of these hold (``DRIFT_*`` constants):

1. at least 8 windows with a usable estimate, whose centres span at least 30 s;
2. at least half the fit's weight on inliers (otherwise the estimates are too scattered for a line);
3. ``|slope| / stderr >= max(3, t_{0.999}(n_eff - 2))`` (two-sided p < 0.002, ~3.1 for long videos and more
   for short ones) — this implies that the 95 % CI excludes 0, which is checked as well;
4. the fitted change over the analysed span, ``|slope| * (t_end - t_start)``, is at least 0.1 s (half a
   class): a smaller change is below what the classes can resolve and is not worth a correction.

An abrupt change of offset (an edit) fits a line poorly; it may be reported as drift, with a large
residual scale.

JSON (``Summary.to_dict()``: one object per file of ``synchformer predict --json``)
------------------------------------------------------------------------------------
Seconds are rounded to 1 ms, probabilities to 4 significant digits, other floats sensibly; numbers that
are not finite become ``null``. Schema (``schema`` = "synchformer.timeline/1")::

    {
      "schema": "synchformer.timeline/1",
      "window_sec": 4.8, "grid_sec": [-2.0, ..., 2.0],
      "n_windows": int,            # all windows given
      "n_used": int,               # windows pooled into the overall offset
      "n_invalid": int,            # rows of probs with NaN/inf/negatives
      "left_out": {"min_sync_prob": 0.5, "count": int, "indices": [int, ...]},  # not synchronizable
      "synchronizable": bool,      # false: no window is usable, and the offset fields are null
      "pooling": "mean",           # which pool the fields below come from
      "offset_sec": float|null,    # class with the largest pooled probability; + = audio leads
      "confidence": float|null,    # its pooled probability
      "refined_offset_sec": float|null,  # expectation over that class and its two neighbours
      "agreement": float|null,     # fraction of used windows whose argmax is within one class of offset_sec
      "distribution": [K floats]|null,   # the reported pooled distribution over grid_sec
      "pools": {"mean": POOL|null, "log": POOL|null},  # POOL = {"offset_sec", "confidence", "refined_offset_sec"}
      "pools_agree": bool|null,    # the two pools' offsets within one class
      "effective_windows": float,  # |union of used windows| / window_sec
      "message": str,              # one line for people
      "drift": DRIFT|null,         # Drift.to_dict() over the used windows; null with no used window
      "windows": [                 # one per window, in the order given
        {"index": int, "start_sec": float, "end_sec": float,
         "offset_sec": float|null, "probability": float|null, "refined_offset_sec": float|null,
         "entropy_nats": float|null, "entropy_norm": float|null,   # entropy / log K, 0..1
         "sync_prob": float|null, "used": bool,
         "note": str|null}         # why it is not used: "not synchronizable" | "invalid probabilities"
      ]
    }

    DRIFT = {
      "detected": bool, "reason": str,
      "slope_ms_per_min": float|null, "stderr_ms_per_min": float|null,
      "ci95_ms_per_min": [lo, hi]|null, "t_stat": float|null,    # |slope| / stderr
      "intercept_sec": float|null,                                # fitted offset at t = 0 of the file
      "t_start_sec": float|null, "t_end_sec": float|null,         # first window start, last window end
      "offset_at_start_sec": float|null, "offset_at_end_sec": float|null,   # the line at those times
      "change_sec": float|null,                                   # offset_at_end - offset_at_start
      "n_windows": int, "n_fit": int, "n_inliers": int,
      "effective_windows": float|null, "residual_scale_sec": float|null,
      "rule": {"min_windows": 8, "min_span_sec": 30.0, "min_t": 3.0, "tail": 0.001,
               "min_change_sec": 0.1, "min_inlier_fraction": 0.5}
    }
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field

import numpy as np

from synchformer.constants import WINDOW_SEC
from synchformer.errors import SynchformerError

__all__ = ["WindowRow", "Pool", "Summary", "Drift", "summarize", "fit_drift", "plot_heatmap",
           "window_offsets", "overlap_weights", "SCHEMA"]

SCHEMA = "synchformer.timeline/1"
PROB_FLOOR = 1e-6  # floor before log: one window can cost a class at most 13.8 nats (times its weight)

# the drift rule (see the module docstring)
DRIFT_MIN_WINDOWS = 8
DRIFT_MIN_SPAN_SEC = 30.0
DRIFT_MIN_T = 3.0
DRIFT_TAIL = 0.001  # one-sided tail of Student t: |t| >= t_{1-0.001}(nu), at least DRIFT_MIN_T
DRIFT_MIN_CHANGE_SEC = 0.1
DRIFT_MIN_INLIER_FRACTION = 0.5
_SCALE_FLOOR_SEC = 0.01  # robust scale floor: below 10 ms the 0.2 s classes cannot tell
_BISQUARE_C = 4.685
_START_MAX_POINTS = 150  # the consensus start uses at most this many windows (O(n^3))
_CONSENSUS_BAND_SEC = 0.2  # one class: the start's line must pass within this of the windows it counts


# ----------------------------------------------------------------------------------------------- helpers

def _sec(x) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else round(float(x), 3)


def _prob(x) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(f"{float(x):.4g}")


def _num(x, digits: int = 2) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else round(float(x), digits)


def _check_inputs(starts, probs, grid, window_sec):
    starts = np.asarray(starts, dtype=np.float64).reshape(-1)
    probs = np.asarray(probs, dtype=np.float64)
    grid = np.asarray(grid, dtype=np.float64).reshape(-1)
    if probs.ndim != 2 and not (probs.size == 0 and len(starts) == 0):
        raise ValueError(f"probs must be (windows, classes), got shape {probs.shape}")
    if probs.size == 0 and len(starts) == 0:
        probs = probs.reshape(0, len(grid))
    if probs.shape[0] != len(starts):
        raise ValueError(f"{len(starts)} starts but {probs.shape[0]} rows of probs")
    if probs.shape[1] != len(grid):
        raise ValueError(f"probs has {probs.shape[1]} classes, the grid {len(grid)}")
    if len(grid) < 2 or not np.all(np.isfinite(grid)) or not np.all(np.diff(grid) > 0):
        raise ValueError("grid must be finite, ascending, with at least 2 classes")
    if not (math.isfinite(window_sec) and window_sec > 0):
        raise ValueError(f"window_sec must be positive, got {window_sec}")
    return starts, probs, grid


def _normalise(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows renormalised to sum 1; ``valid`` is False for rows with NaN/inf, negatives or a zero sum."""
    p = np.where(np.abs(probs) < 1e-12, 0.0, probs)  # tiny negative round-off
    s = p.sum(axis=1) if len(p) else np.zeros(0)
    valid = np.isfinite(p).all(axis=1) & (p >= 0).all(axis=1) & (s > 0)
    out = np.full_like(p, np.nan)
    out[valid] = p[valid] / s[valid, None]
    return out, valid


def _entropy(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=-1)


def _refine(p: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Expectation of the offset over the argmax class and its two neighbours (renormalised), per row.

    At the first/last class only the one neighbour inside the grid is used, so the estimate is pulled
    inwards there (an offset beyond +-2 s cannot be seen anyway).
    """
    p = np.atleast_2d(p)
    k = np.argmax(p, axis=1)
    idx = np.clip(k[:, None] + np.array([-1, 0, 1])[None, :], 0, len(grid) - 1)
    mask = np.ones(idx.shape, dtype=bool)
    mask[:, 0] &= k > 0
    mask[:, 2] &= k < len(grid) - 1
    q = np.take_along_axis(p, idx, axis=1) * mask
    s = q.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(s > 0, (q * grid[idx]).sum(axis=1) / s, grid[k])


def window_offsets(probs, grid) -> np.ndarray:
    """Sub-class offset estimate per window (NaN for invalid rows): see ``_refine``."""
    p, valid = _normalise(np.atleast_2d(np.asarray(probs, dtype=np.float64)))
    out = np.full(len(p), np.nan)
    if valid.any():
        out[valid] = _refine(p[valid], np.asarray(grid, dtype=np.float64))
    return out


def overlap_weights(starts, window_sec: float = WINDOW_SEC) -> np.ndarray:
    """``a_w``: the part of window w nearer its centre than any other window's centre, / window_sec.

    Sums to |union of the windows| / window_sec (the effective number of independent windows); equals
    hop / window_sec for a regular hop away from the ends; 1 for windows that do not overlap.
    """
    s = np.asarray(starts, dtype=np.float64).reshape(-1)
    if len(s) == 0:
        return np.zeros(0)
    order = np.argsort(s, kind="stable")
    ss = s[order]
    c = ss + window_sec / 2
    mids = (c[1:] + c[:-1]) / 2
    lo = np.maximum(np.concatenate([[-np.inf], mids]), ss)
    hi = np.minimum(np.concatenate([mids, [np.inf]]), ss + window_sec)
    a = np.empty_like(ss)
    a[order] = np.clip(hi - lo, 0.0, None) / window_sec
    return a


def _cells(starts: np.ndarray, window_sec: float) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) of each window's Voronoi cell clipped to the window (for drawing), starts sorted."""
    c = starts + window_sec / 2
    mids = (c[1:] + c[:-1]) / 2
    lo = np.maximum(np.concatenate([[-np.inf], mids]), starts)
    hi = np.minimum(np.concatenate([mids, [np.inf]]), starts + window_sec)
    return lo, np.maximum(hi, lo)


# --------------------------------------------------------------------------------------- Student t

def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-14:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbt = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(lbt) * _betacf(a, b, x) / a
    return 1.0 - math.exp(lbt) * _betacf(b, a, 1.0 - x) / b


def _t_sf(t: float, nu: float) -> float:
    """P(T > t) for Student t with nu degrees of freedom, t >= 0."""
    return 0.5 * _betainc(nu / 2.0, 0.5, nu / (nu + t * t))


def t_quantile(p: float, nu: float) -> float:
    """The p-quantile (p > 0.5) of Student t with nu (> 0, real) degrees of freedom, by bisection."""
    if not 0.5 < p < 1.0:
        raise ValueError("p must be in (0.5, 1)")
    tail = 1.0 - p
    lo, hi = 0.0, 1.0
    while _t_sf(hi, nu) > tail:
        hi *= 2.0
        if hi > 1e12:
            return math.inf
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _t_sf(mid, nu) > tail:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-10 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


# -------------------------------------------------------------------------------------------- drift

@dataclass
class Drift:
    """A line fitted to the per-window offsets against time; see the module docstring for the rule."""

    detected: bool
    reason: str
    slope_ms_per_min: float | None = None
    stderr_ms_per_min: float | None = None
    ci95_ms_per_min: tuple[float, float] | None = None
    t_stat: float | None = None  # |slope| / stderr
    intercept_sec: float | None = None  # fitted offset at t = 0 of the file
    t_start_sec: float | None = None  # first window's start
    t_end_sec: float | None = None  # last window's end
    offset_at_start_sec: float | None = None
    offset_at_end_sec: float | None = None
    change_sec: float | None = None
    n_windows: int = 0
    n_fit: int = 0
    n_inliers: int = 0
    effective_windows: float | None = None
    residual_scale_sec: float | None = None

    def offset_at(self, t_sec) -> np.ndarray | float | None:
        """The fitted offset (s) at time(s) t_sec in the file."""
        if self.slope_ms_per_min is None or self.intercept_sec is None:
            return None
        return self.intercept_sec + self.slope_ms_per_min / 60000.0 * np.asarray(t_sec, dtype=np.float64)

    def to_dict(self) -> dict:
        ci = None if self.ci95_ms_per_min is None else [_num(self.ci95_ms_per_min[0]),
                                                         _num(self.ci95_ms_per_min[1])]
        return {
            "detected": bool(self.detected), "reason": self.reason,
            "slope_ms_per_min": _num(self.slope_ms_per_min), "stderr_ms_per_min": _num(self.stderr_ms_per_min),
            "ci95_ms_per_min": ci, "t_stat": _num(self.t_stat),
            "intercept_sec": _sec(self.intercept_sec),
            "t_start_sec": _sec(self.t_start_sec), "t_end_sec": _sec(self.t_end_sec),
            "offset_at_start_sec": _sec(self.offset_at_start_sec),
            "offset_at_end_sec": _sec(self.offset_at_end_sec), "change_sec": _sec(self.change_sec),
            "n_windows": int(self.n_windows), "n_fit": int(self.n_fit), "n_inliers": int(self.n_inliers),
            "effective_windows": _num(self.effective_windows), "residual_scale_sec": _sec(self.residual_scale_sec),
            "rule": {"min_windows": DRIFT_MIN_WINDOWS, "min_span_sec": DRIFT_MIN_SPAN_SEC, "min_t": DRIFT_MIN_T,
                     "tail": DRIFT_TAIL, "min_change_sec": DRIFT_MIN_CHANGE_SEC,
                     "min_inlier_fraction": DRIFT_MIN_INLIER_FRACTION},
        }


def _wmedian(x: np.ndarray, w: np.ndarray) -> float:
    o = np.argsort(x, kind="stable")
    cw = np.cumsum(w[o])
    return float(x[o][np.searchsorted(cw, 0.5 * cw[-1])])


def _consensus_line(t: np.ndarray, y: np.ndarray, tw: np.ndarray) -> tuple[float, float]:
    """The line through two windows' estimates that the most video supports: the largest
    sum_i tw_i (1 - (r_i / d)^2)_+^2 with d = _CONSENSUS_BAND_SEC (a Hough / RANSAC-style start).

    Unlike a median-based start it is not pulled by a *run* of windows that agree on a wrong offset
    (a confusing stretch of video): those support their own short segment, not the line through the
    rest. ``tw`` are time weights (overlap weights), so densely sampled stretches do not count more.
    """
    n = len(t)
    sel = np.arange(n)
    if n > _START_MAX_POINTS:  # a start only: evenly spaced subsample
        sel = np.unique(np.linspace(0, n - 1, _START_MAX_POINTS).round().astype(int))
    ts, ys, ws = t[sel], y[sel], tw[sel]
    i, j = np.triu_indices(len(ts), k=1)
    ok = np.abs(ts[j] - ts[i]) > 1e-9
    i, j = i[ok], j[ok]
    b = (ys[j] - ys[i]) / (ts[j] - ts[i])
    b = np.concatenate([np.zeros(len(ts)), b])  # flat lines through every point, too
    a = np.concatenate([ys, ys[i] - b[len(ts):] * ts[i]])
    best, best_score = 0, -1.0
    chunk = max(1, 2_000_000 // max(len(ts), 1))
    for c0 in range(0, len(b), chunk):
        r = (ys[None, :] - a[c0:c0 + chunk, None] - b[c0:c0 + chunk, None] * ts[None, :]) / _CONSENSUS_BAND_SEC
        score = ((np.clip(1.0 - r * r, 0.0, None) ** 2) * ws[None, :]).sum(axis=1)
        k = int(np.argmax(score))
        if score[k] > best_score + 1e-12:
            best, best_score = c0 + k, float(score[k])
    return float(b[best]), float(a[best])


def _wls(t, y, w, tc):
    """Weighted least squares of y on [1, t - tc]; returns (a, b, A^-1) or None when singular."""
    X = np.stack([np.ones_like(t), t - tc], axis=1)
    A = X.T @ (w[:, None] * X)
    if not np.all(np.isfinite(A)) or abs(np.linalg.det(A)) < 1e-12 * max(1.0, np.abs(A).max()) ** 2:
        return None
    Ai = np.linalg.inv(A)
    a, b = Ai @ (X.T @ (w * y))
    return float(a), float(b), Ai


def fit_drift(starts, probs, grid, weights=None, window_sec: float = WINDOW_SEC) -> Drift:
    """Fit offset = intercept + slope * t (t = window centre) robustly and decide whether the audio drifts.

    ``weights`` (W,) multiply each window's confidence weight ``1 - H/log K`` (e.g. sync_probs); windows
    with a NaN anywhere (start, probabilities, weight) or a zero weight are left out of the fit.
    """
    starts, probs, grid = _check_inputs(starts, probs, grid, window_sec)
    n_windows = len(starts)
    p, valid = _normalise(probs)
    conf = np.zeros(n_windows)
    y = np.full(n_windows, np.nan)
    if valid.any():
        conf[valid] = np.clip(1.0 - _entropy(p[valid]) / math.log(len(grid)), 0.0, 1.0)
        y[valid] = _refine(p[valid], grid)
    w = conf.copy()
    if weights is not None:
        uw = np.asarray(weights, dtype=np.float64).reshape(-1)
        if len(uw) != n_windows:
            raise ValueError(f"{n_windows} windows but {len(uw)} weights")
        w = w * np.where(np.isfinite(uw), np.clip(uw, 0.0, None), 0.0)
    keep = valid & np.isfinite(starts) & np.isfinite(y) & (w > 0)
    t = starts[keep] + window_sec / 2
    y, w = y[keep], w[keep]
    n_fit = len(t)
    out = Drift(detected=False, reason="", n_windows=n_windows, n_fit=n_fit)
    if n_fit:
        out.t_start_sec = float(starts[keep].min())
        out.t_end_sec = float(starts[keep].max() + window_sec)
    span = float(t.max() - t.min()) if n_fit else 0.0
    if n_fit < 3 or span <= 0:
        out.reason = (f"too few windows: {n_fit} with a usable offset estimate, need {DRIFT_MIN_WINDOWS}"
                      if n_fit < DRIFT_MIN_WINDOWS else "all windows start at the same time")
        return out
    n_eff = float(overlap_weights(t - window_sec / 2, window_sec).sum())
    out.effective_windows = n_eff
    if np.ptp(y) <= 1e-9:  # every estimate the same: a flat line, exactly
        out.slope_ms_per_min, out.stderr_ms_per_min, out.ci95_ms_per_min, out.t_stat = 0.0, 0.0, (0.0, 0.0), 0.0
        out.intercept_sec = float(y[0])
        out.offset_at_start_sec = out.offset_at_end_sec = float(y[0])
        out.change_sec, out.n_inliers, out.residual_scale_sec = 0.0, n_fit, 0.0
        out.reason = f"no drift: all {n_fit} windows give the same offset {y[0]:+.3f} s"
        return out

    tc = float(np.average(t, weights=w))
    # The start and the scale ignore the confidence weights: a confidently wrong window has a large one.
    b, a0 = _consensus_line(t, y, overlap_weights(t - window_sec / 2, window_sec))
    a = a0 + b * tc  # intercept at tc
    r = y - a - b * (t - tc)
    scale = max(1.4826 * float(np.median(np.abs(r))), _SCALE_FLOOR_SEC)
    for phase in ("bisquare", "rescaled"):  # MM-style: a robust scale, then bisquare IRLS from the start
        if phase == "rescaled":  # once more at the bisquare fit's own scale, if that is smaller
            s1 = max(1.4826 * float(np.median(np.abs(r))), _SCALE_FLOOR_SEC)
            if s1 >= scale:
                break
            scale = s1
        for _ in range(50):
            u = np.abs(r) / scale
            rw = np.where(u < _BISQUARE_C, (1.0 - (u / _BISQUARE_C) ** 2) ** 2, 0.0)
            fit = _wls(t, y, w * rw, tc)
            if fit is None:
                break
            moved = abs(fit[0] - a) + abs(fit[1] - b) * span
            a, b = fit[0], fit[1]
            r = y - a - b * (t - tc)
            if moved < 1e-7:
                break
    u = np.abs(r) / scale
    rw = np.where(u < _BISQUARE_C, (1.0 - (u / _BISQUARE_C) ** 2) ** 2, 0.0)
    W = w * rw
    fit = _wls(t, y, W, tc)
    inlier_frac = float(W.sum() / w.sum()) if w.sum() > 0 else 0.0
    n_in = int(np.sum(rw > 0))
    out.n_inliers, out.residual_scale_sec = n_in, scale
    if fit is None:
        out.reason = "the inlying windows do not span enough time to fit a line"
        return out
    a, b, Ai = fit
    r = y - a - b * (t - tc)

    # Standard error. Model: inlier errors with a common variance s^2 and the correlation of two windows
    # = the fraction of video they share, K_ij = max(0, 1 - |t_i - t_j| / L). For the weighted fit
    # b = A^-1 X'W y (A = X'WX): Cov = s^2 A^-1 M A^-1 with M = X'W K W X, and E[r'Wr] = s^2 (sum W - tr(A^-1 M))
    # gives an unbiased s^2. (K is known from the geometry, so nothing noisy is estimated beyond s^2.)
    X = np.stack([np.ones_like(t), t - tc], axis=1)
    order = np.argsort(t, kind="stable")
    ts, gs = t[order], (W[:, None] * X)[order]
    M = gs.T @ gs
    for d in range(1, len(ts)):
        kern = np.clip(1.0 - (ts[d:] - ts[:-d]) / window_sec, 0.0, None)
        if not kern.any():
            break
        cross = (gs[:-d] * kern[:, None]).T @ gs[d:]
        M += cross + cross.T
    dof_w = float(W.sum() - np.trace(Ai @ M))
    s2 = float(np.sum(W * r * r)) / dof_w if dof_w > 0 else math.inf
    cov = s2 * (Ai @ M @ Ai)
    se = math.sqrt(max(float(cov[1, 1]), 0.0))
    n_eff_in = float(overlap_weights(t[W > 0] - window_sec / 2, window_sec).sum())
    nu = max(n_eff_in - 2.0, 1.0)
    slope = b * 60000.0  # s/s -> ms/min
    se_m = se * 60000.0
    t95 = t_quantile(0.975, nu)
    t_needed = max(DRIFT_MIN_T, t_quantile(1.0 - DRIFT_TAIL, nu))
    tstat = abs(b) / se if se > 0 else (math.inf if b != 0 else 0.0)
    intercept = a - b * tc
    out.slope_ms_per_min, out.stderr_ms_per_min = slope, se_m
    out.ci95_ms_per_min = (slope - t95 * se_m, slope + t95 * se_m)
    out.t_stat, out.intercept_sec = tstat, intercept
    out.offset_at_start_sec = intercept + b * out.t_start_sec
    out.offset_at_end_sec = intercept + b * out.t_end_sec
    out.change_sec = out.offset_at_end_sec - out.offset_at_start_sec
    fit_span = float(t[W > 0].max() - t[W > 0].min())
    change = abs(b) * (out.t_end_sec - out.t_start_sec)
    lo, hi = out.ci95_ms_per_min
    what = f"{slope:+.1f} ms/min (95% CI {lo:+.1f}..{hi:+.1f}), |t| = {tstat:.1f}"
    if n_fit < DRIFT_MIN_WINDOWS:
        out.reason = f"too few windows: {n_fit} with a usable offset estimate, need {DRIFT_MIN_WINDOWS}"
    elif span < DRIFT_MIN_SPAN_SEC or fit_span < DRIFT_MIN_SPAN_SEC:
        out.reason = f"too short: the windows span {min(span, fit_span):.1f} s, need {DRIFT_MIN_SPAN_SEC:g} s"
    elif inlier_frac < DRIFT_MIN_INLIER_FRACTION:
        out.reason = (f"estimates too scattered for a line: {100 * inlier_frac:.0f}% of the weight on inliers, "
                      f"need {100 * DRIFT_MIN_INLIER_FRACTION:.0f}%")
    elif not tstat >= t_needed or lo <= 0.0 <= hi:
        out.reason = f"no significant drift: {what} < {t_needed:.2f}"
    elif change < DRIFT_MIN_CHANGE_SEC:
        out.reason = (f"drift too small to matter: {what}, a change of {change:.3f} s over the video "
                      f"< {DRIFT_MIN_CHANGE_SEC:g} s")
    else:
        out.detected = True
        out.reason = (f"drift {what}: {out.offset_at_start_sec:+.2f} s at {out.t_start_sec:.1f} s to "
                      f"{out.offset_at_end_sec:+.2f} s at {out.t_end_sec:.1f} s")
    return out


# ------------------------------------------------------------------------------------------ summary

@dataclass
class WindowRow:
    index: int
    start_sec: float
    end_sec: float
    offset_sec: float | None  # argmax class; + = audio leads
    probability: float | None  # its probability
    refined_offset_sec: float | None  # expectation over argmax and its neighbours
    entropy_nats: float | None
    entropy_norm: float | None  # entropy / log K: 0 = certain, 1 = uniform
    sync_prob: float | None
    used: bool
    note: str | None = None  # why not used

    def to_dict(self) -> dict:
        return {"index": int(self.index), "start_sec": _sec(self.start_sec), "end_sec": _sec(self.end_sec),
                "offset_sec": _sec(self.offset_sec), "probability": _prob(self.probability),
                "refined_offset_sec": _sec(self.refined_offset_sec),
                "entropy_nats": _num(self.entropy_nats, 4), "entropy_norm": _num(self.entropy_norm, 4),
                "sync_prob": _prob(self.sync_prob), "used": bool(self.used), "note": self.note}


@dataclass
class Pool:
    kind: str  # "mean" or "log"
    offset_sec: float
    confidence: float
    refined_offset_sec: float
    distribution: np.ndarray  # (K,), sums to 1
    index: int  # class index of offset_sec

    def to_dict(self) -> dict:
        return {"offset_sec": _sec(self.offset_sec), "confidence": _prob(self.confidence),
                "refined_offset_sec": _sec(self.refined_offset_sec)}


@dataclass
class Summary:
    grid: np.ndarray
    window_sec: float
    min_sync_prob: float
    windows: list[WindowRow]
    n_used: int
    n_invalid: int
    left_out: list[int]  # indices of windows judged not synchronizable
    effective_windows: float
    mean_pool: Pool | None
    log_pool: Pool | None
    pooling: str  # which pool is reported
    agreement: float | None
    drift: Drift | None
    message: str
    has_sync: bool = False  # sync_probs were given

    @property
    def reported(self) -> Pool | None:
        return self.mean_pool if self.pooling == "mean" else self.log_pool

    @property
    def synchronizable(self) -> bool:
        return self.n_used > 0

    @property
    def offset_sec(self) -> float | None:
        return None if self.reported is None else self.reported.offset_sec

    @property
    def confidence(self) -> float | None:
        return None if self.reported is None else self.reported.confidence

    @property
    def refined_offset_sec(self) -> float | None:
        return None if self.reported is None else self.reported.refined_offset_sec

    @property
    def distribution(self) -> np.ndarray | None:
        return None if self.reported is None else self.reported.distribution

    @property
    def pools_agree(self) -> bool | None:
        if self.mean_pool is None or self.log_pool is None:
            return None
        return abs(self.mean_pool.index - self.log_pool.index) <= 1

    def to_dict(self, windows: bool = True) -> dict:
        dist = self.distribution
        out = {
            "schema": SCHEMA, "window_sec": _num(self.window_sec, 4), "grid_sec": [_sec(g) for g in self.grid],
            "n_windows": len(self.windows), "n_used": int(self.n_used), "n_invalid": int(self.n_invalid),
            "left_out": {"min_sync_prob": _num(self.min_sync_prob, 4), "count": len(self.left_out),
                         "indices": [int(i) for i in self.left_out]},
            "synchronizable": self.synchronizable, "pooling": self.pooling,
            "offset_sec": _sec(self.offset_sec), "confidence": _prob(self.confidence),
            "refined_offset_sec": _sec(self.refined_offset_sec), "agreement": _num(self.agreement, 4),
            "distribution": None if dist is None else [_prob(v) for v in dist],
            "pools": {"mean": None if self.mean_pool is None else self.mean_pool.to_dict(),
                      "log": None if self.log_pool is None else self.log_pool.to_dict()},
            "pools_agree": self.pools_agree, "effective_windows": _num(self.effective_windows),
            "message": self.message, "drift": None if self.drift is None else self.drift.to_dict(),
        }
        if windows:
            out["windows"] = [r.to_dict() for r in self.windows]
        return out


def _pool(kind: str, dist: np.ndarray, grid: np.ndarray) -> Pool:
    k = int(np.argmax(dist))
    return Pool(kind=kind, offset_sec=float(grid[k]), confidence=float(dist[k]),
                refined_offset_sec=float(_refine(dist[None], grid)[0]), distribution=dist, index=k)


def _describe(off: float) -> str:
    if abs(off) < 1e-9:
        return "in sync (0.00 s)"
    return f"audio {'leads' if off > 0 else 'lags'} the video by {abs(off):.2f} s"


def summarize(starts, probs, grid, sync_probs=None, window_sec: float = WINDOW_SEC,
              min_sync_prob: float = 0.5) -> Summary:
    """One offset for a whole video from its windows; see the module docstring for the method."""
    starts, probs, grid = _check_inputs(starts, probs, grid, window_sec)
    n = len(starts)
    p, valid = _normalise(probs)
    valid &= np.isfinite(starts)
    sp = None
    if sync_probs is not None:
        sp = np.asarray(sync_probs, dtype=np.float64).reshape(-1)
        if len(sp) != n:
            raise ValueError(f"{n} windows but {len(sp)} sync_probs")
    not_sync = np.zeros(n, dtype=bool) if sp is None else (np.isfinite(sp) & (sp < min_sync_prob))
    used = valid & ~not_sync
    K = len(grid)
    ent = np.full(n, np.nan)
    kmax = np.zeros(n, dtype=int)
    refined = np.full(n, np.nan)
    if valid.any():
        ent[valid] = _entropy(p[valid])
        kmax[valid] = np.argmax(p[valid], axis=1)
        refined[valid] = _refine(p[valid], grid)

    rows = []
    for i in range(n):
        ok = bool(valid[i])
        note = None if used[i] else ("invalid probabilities" if not ok else "not synchronizable")
        s = float(starts[i])
        rows.append(WindowRow(
            index=i, start_sec=s, end_sec=s + window_sec,
            offset_sec=float(grid[kmax[i]]) if ok else None,
            probability=float(p[i, kmax[i]]) if ok else None,
            refined_offset_sec=float(refined[i]) if ok else None,
            entropy_nats=float(ent[i]) if ok else None,
            entropy_norm=float(ent[i] / math.log(K)) if ok else None,
            sync_prob=None if sp is None or not math.isfinite(sp[i]) else float(sp[i]),
            used=bool(used[i]), note=note))
    left_out = [int(i) for i in np.flatnonzero(valid & not_sync)]
    n_invalid = int((~valid).sum())
    n_used = int(used.sum())

    mean_pool = log_pool = None
    agreement = None
    n_eff = 0.0
    drift = None
    if n_used:
        a = overlap_weights(starts[used], window_sec)
        n_eff = float(a.sum())
        if n_eff <= 0:  # cannot happen for positive window_sec; guard anyway
            a = np.ones(n_used)
        pu = p[used]
        mean = (a[:, None] * pu).sum(axis=0) / a.sum()
        score = (a[:, None] * np.log(np.maximum(pu, PROB_FLOOR))).sum(axis=0)
        score -= score.max()
        logp = np.exp(score)
        logp /= logp.sum()
        mean_pool, log_pool = _pool("mean", mean, grid), _pool("log", logp, grid)
        pooled_k = mean_pool.index  # the reported pool (see the module docstring)
        agreement = float(np.mean(np.abs(kmax[used] - pooled_k) <= 1))
        drift = fit_drift(starts[used], p[used], grid, weights=None if sp is None else
                          np.where(np.isfinite(sp[used]), sp[used], 1.0), window_sec=window_sec)

    parts = []
    if n == 0:
        msg = "no windows: no overall offset"
    elif not n_used:
        msg = ("no synchronizable window: no overall offset"
               if left_out else "no window with valid probabilities: no overall offset")
        if left_out:
            msg += f" (all {len(left_out)} valid windows have sync_prob < {min_sync_prob:g})"
    else:
        parts.append(f"{_describe(mean_pool.offset_sec)} (confidence {mean_pool.confidence:.2f}, "
                     f"{100 * agreement:.0f}% of {n_used} windows agree)")
        if not log_pool.index - 1 <= mean_pool.index <= log_pool.index + 1:
            parts.append(f"the log pool says {log_pool.offset_sec:+.2f} s: check the heat map")
        if left_out:
            parts.append(f"{len(left_out)} of {n} windows left out as not synchronizable "
                         f"(sync_prob < {min_sync_prob:g})")
        if n_invalid:
            parts.append(f"{n_invalid} windows with invalid probabilities ignored")
        if drift is not None and drift.detected:
            parts.append(f"the offset drifts {drift.slope_ms_per_min:+.0f} ms/min, "
                         f"{drift.offset_at_start_sec:+.2f} s to {drift.offset_at_end_sec:+.2f} s")
        msg = "; ".join(parts)
    return Summary(grid=grid, window_sec=float(window_sec), min_sync_prob=float(min_sync_prob), windows=rows,
                   n_used=n_used, n_invalid=n_invalid, left_out=left_out, effective_windows=n_eff,
                   mean_pool=mean_pool, log_pool=log_pool, pooling="mean", agreement=agreement, drift=drift,
                   message=msg, has_sync=sp is not None)


# --------------------------------------------------------------------------------------------- plot

class PlotDependencyError(SynchformerError, ImportError):
    """matplotlib is missing (an optional dependency); a SynchformerError, and an ImportError too."""


def plot_heatmap(starts, probs, grid, summary: Summary, path, sync_probs=None, title: str | None = None) -> str:
    """Write a PNG heat map of the windows' offset probabilities over time; returns the path written.

    Each window is drawn as a column centred on its centre, as wide as the part of the video nearer its
    centre than any other's (the hop for overlapping windows, the whole window otherwise). Left-out
    (non-synchronizable) windows are greyed and hatched; the overall offset and a detected drift are lines.
    The file is written atomically (a temporary file in the same folder, then os.replace).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.colors import PowerNorm
        from matplotlib.figure import Figure
        from matplotlib.ticker import FuncFormatter, MultipleLocator
        import matplotlib
    except ImportError:
        raise PlotDependencyError(None, "plotting needs matplotlib: pip install matplotlib "
                                        "(or pip install 'synchformer[plot]')") from None
    starts, probs, grid = _check_inputs(starts, probs, grid, summary.window_sec)
    if len(summary.windows) != len(starts):
        raise ValueError(f"the summary has {len(summary.windows)} windows, {len(starts)} starts given")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise SynchformerError(path, "cannot write the plot: the folder does not exist")
    L = summary.window_sec
    p, valid = _normalise(probs)
    if sync_probs is not None:
        sp = np.asarray(sync_probs, dtype=np.float64).reshape(-1)
        if len(sp) != len(starts):
            raise ValueError(f"{len(starts)} windows but {len(sync_probs)} sync_probs")
    elif summary.has_sync:
        sp = np.array([np.nan if r.sync_prob is None else r.sync_prob for r in summary.windows])
    else:
        sp = None
    used = np.array([r.used for r in summary.windows], dtype=bool)
    fin = np.isfinite(starts)
    order = np.flatnonzero(fin)[np.argsort(starts[fin], kind="stable")]
    step = float(np.median(np.diff(grid)))

    fig = Figure(figsize=(11, 6), dpi=110)
    FigureCanvasAgg(fig)
    gs = fig.add_gridspec(2, 2, height_ratios=[1, 4], width_ratios=[40, 1], hspace=0.08, wspace=0.03,
                          left=0.08, right=0.93, top=0.92, bottom=0.1)
    ax = fig.add_subplot(gs[1, 0])
    top = fig.add_subplot(gs[0, 0], sharex=ax)
    cax = fig.add_subplot(gs[1, 1])
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad=(0.93, 0.93, 0.93))
    norm = PowerNorm(gamma=0.5, vmin=0.0, vmax=1.0)
    y_edges = np.concatenate([grid - np.diff(grid, prepend=grid[0] - step) / 2, [grid[-1] + step / 2]])

    if len(order):
        s = starts[order]
        lo, hi = _cells(s, L)
        xe, cols, col_win = [lo[0]], [], []
        for j in range(len(order)):
            if lo[j] > xe[-1] + 1e-9:  # a gap between windows: an empty column
                xe.append(lo[j])
                cols.append(np.full(len(grid), np.nan))
                col_win.append(-1)
            xe.append(hi[j])
            cols.append(p[order[j]] if valid[order[j]] else np.full(len(grid), np.nan))
            col_win.append(order[j])
        C = np.ma.masked_invalid(np.array(cols).T)
        mesh = ax.pcolormesh(np.array(xe), y_edges, C, cmap=cmap, norm=norm, shading="flat", rasterized=True)
        # left-out windows: grey hatch over merged runs
        first = True
        j = 0
        while j < len(order):
            if not used[order[j]] and valid[order[j]]:
                k = j
                while k + 1 < len(order) and not used[order[k + 1]] and valid[order[k + 1]]:
                    k += 1
                ax.axvspan(lo[j], hi[k], facecolor=(0.5, 0.5, 0.5, 0.75), edgecolor=(1, 1, 1, 0.8),
                           hatch="///", linewidth=0, label="left out (not synchronizable)" if first else None)
                first = False
                j = k + 1
            else:
                j += 1
        x0, x1 = float(lo[0]), float(hi[-1])
        # top strip: the window's top probability, and P(synchronizable)
        c = s + L / 2
        pm = np.array([p[i].max() if valid[i] else np.nan for i in order])
        top.plot(c, pm, ".", ms=3, color="tab:blue", label="max P(offset)")
        if sp is not None:
            top.plot(c, sp[order], "-", lw=1.2, color="tab:orange", label="P(synchronizable)")
            top.axhline(summary.min_sync_prob, color="tab:orange", lw=0.8, ls=":")
        top.set_ylim(-0.05, 1.05)
        top.set_ylabel("P")
        top.legend(loc="upper right", fontsize=7, ncol=2, framealpha=0.7)
    else:
        mesh = ax.pcolormesh(np.array([0.0, L]), y_edges, np.ma.masked_all((len(grid), 1)), cmap=cmap, norm=norm)
        x0, x1 = 0.0, L
        ax.text(0.5, 0.5, "no windows", transform=ax.transAxes, ha="center")
    top.tick_params(labelbottom=False)
    top.grid(alpha=0.3)

    if summary.offset_sec is not None:
        ax.axhline(summary.offset_sec, color="red", lw=1.4, ls="--",
                   label=f"overall {summary.offset_sec:+.2f} s (refined {summary.refined_offset_sec:+.3f} s, "
                         f"conf {summary.confidence:.2f}, agree {100 * summary.agreement:.0f}%)")
    else:
        ax.text(0.5, 0.93, "no synchronizable window: no overall offset", transform=ax.transAxes,
                ha="center", va="top", color="red", fontsize=10,
                bbox=dict(facecolor="white", alpha=0.8, edgecolor="none"))
    d = summary.drift
    if d is not None and d.detected:
        tt = np.array([d.t_start_sec, d.t_end_sec])
        ax.plot(tt, d.offset_at(tt), color="white", lw=2.2)
        ax.plot(tt, d.offset_at(tt), color="magenta", lw=1.3,
                label=f"drift {d.slope_ms_per_min:+.0f} ± {d.stderr_ms_per_min:.0f} ms/min")
    ax.set_xlim(x0, x1)
    ax.set_ylim(y_edges[0], y_edges[-1])
    ax.yaxis.set_major_locator(MultipleLocator(2 * step))
    ax.yaxis.set_minor_locator(MultipleLocator(step))
    ax.set_ylabel("offset (s)    + = audio leads video")
    if x1 - x0 > 180:
        fmt = FuncFormatter(lambda v, _: f"{'-' if v < 0 else ''}{int(abs(v) // 60)}:{int(abs(v) % 60):02d}")
        ax.xaxis.set_major_formatter(fmt)
        ax.set_xlabel("time in the video (min:s; columns at window centres, one hop wide)")
    else:
        ax.set_xlabel("time in the video (s; columns at window centres, one hop wide)")
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(loc="lower right", fontsize=7.5, framealpha=0.8)
    cb = fig.colorbar(mesh, cax=cax)
    cb.set_label("P(offset) of the window")
    head = title if title is not None else "audio-visual offset per window"
    fig.suptitle(f"{head}\n{summary.message}", fontsize=9.5)

    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png")
        os.replace(tmp, path)
        tmp = None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path
