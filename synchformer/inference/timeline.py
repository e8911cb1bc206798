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
(renormalised), a sub-class estimate. Window weight: the confidence ``1 - H_w / log K`` (windows below
0.05, i.e. (nearly) uniform ones such as silence, are left out) times the caller's ``weights`` (e.g.
sync_probs). Time ``t_w``: the window centre. The fit of ``y = intercept + slope * t``:

- start: the line through two windows' estimates that the most video supports (Hough / RANSAC-like, a
  bisquare kernel of 0.2 s = one class, windows counted by their overlap weights, not by confidence). A
  median-based start (Theil-Sen, repeated median) is pulled by a *run* of confidently wrong windows (a
  confusing stretch of video: neighbouring windows see the same content, so errors come in runs); this is not.
- scale: from the windows within 0.2 s of that line (their mean square, corrected for the truncation of a
  normal; floor 10 ms). The MAD of all residuals is inflated by the wrong windows and lets the fit bend
  towards a wrong run.
- IRLS with Tukey bisquare weights (c = 4.685) times the confidence weights, twice (scale re-estimated):
  windows far from the line get weight 0.
- standard error: the windows' errors are correlated, two windows share the fraction
  ``K_ij = max(0, 1 - |t_i - t_j| / L)`` of their video, which is exactly the correlation of their errors
  under the evidence model above. With a common error variance s^2, ``Cov = s^2 A^-1 X'W K W X A^-1`` and an
  unbiased s^2 (see ``_kernel_cov``). Treating windows at a 0.32 s hop as independent would understate the
  error ~4x and claim drift on noise; an estimated (Newey-West) autocovariance is too noisy with a dozen
  effective windows. Degrees of freedom: ``n_eff - 2`` (n_eff = effective windows of the inliers); the CI
  is 95 % Student t.

Drift is *detected* only when all of these hold (the ``DRIFT_*`` constants):

1. at least 8 windows with a usable estimate, whose centres span at least 30 s;
2. at least half the fit's weight on inliers (otherwise the estimates are too scattered for a line);
3. ``|slope| / stderr >= max(3, t_{0.999}(n_eff - 2))`` (two-sided p < 0.002: 3.1 for long videos, more for
   short ones) and the 95 % CI excludes 0 (implied; checked too);
4. the fitted change over the analysed span (first window start to last window end) is at least 0.1 s,
   half a class: less cannot be resolved by the classes and is not worth a correction;
5. it is not one abrupt change. Fit a line plus one step (at the best of up to 60 candidate times, by
   the same bisquare loss); when that lowers the loss by more than half an effective window's worth and
   the jump is significant (same t threshold) and at least 0.15 s, the slope must pass 3. and 4. again
   next to the jump. A jump at one end of the video (an edit; a run of windows agreeing on a wrong class)
   tilts a line; a real drift keeps its slope next to one.

The jump is reported (``step``, in ``reason`` and in the summary's message) when it vetoes a drift, or
when the windows agreeing with it cover at least 10 s of video on each side and it beats chance over all
the change points tried (the t threshold at tail ``0.001 / k``, k = the effective windows, at most 60:
without that, 32 windows sampled from a film found a 0.16 s "jump" on noise), whether or not there is
drift (two chance outliers agreeing at the end of a video are not a jump).

Measured on synthetic windows (a peak at the truth 0.08-0.2 s wide with 60 ms jitter and logit noise,
20 % confidently wrong windows, 5-10 % silence; optionally jitter correlated across overlapping windows,
and wrong windows in runs of 5-20 s at one class): constant offsets, 40 s - 10 min, hop 0.32-2.56 s:
no false drift in 1000 videos of the tests' mix nor in 800 more with correlated errors; 3 in 800 with
wrong runs one or two classes off the truth (a run at one end looks like drift). A 0.5 s drift over 3 min
is detected in 100 % of 50 videos per noise type (94-96 % with all of them at once), slope median error
< 2 %, worst 15 % (independent errors) to 42 % (all); -60 ms/min over 10 min: 100 %, worst error 13 %.
Short videos have little power: 0.3 s over 60 s is found in 6-28 %.

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
      "left_out": {"min_sync_prob": 0.5, "count": int, "indices": [int, ...],  # not synchronizable
                   "why": str},    # "audio is digital silence: 5 windows; picture is static: 1 window"
      "synchronizable": bool,      # false: no window is usable, and the offset fields are null
      "reliable": bool,            # whether the offset can be acted on (synchformer.inference.verdict)
      "reasons": [str, ...],       # why not, e.g. "confidence 0.17 below 0.40", "audio is digital silence"
      "pooling": "mean",           # which pool the fields below come from
      "offset_sec": float|null,    # class with the largest pooled probability; + = audio leads
      "confidence": float|null,    # its pooled probability
      "refined_offset_sec": float|null,  # expectation over that class and its two neighbours
      "refined_interval_sec": [lo, hi]|null,  # its 90 % interval (REFINED_INTERVAL_SCALE)
      "agreement": float|null,     # fraction of used windows whose argmax is within one class of offset_sec
      "distribution": [K floats]|null,   # the reported pooled distribution over grid_sec
      "pools": {"mean": POOL|null, "log": POOL|null},
      #   POOL = {"offset_sec", "confidence", "refined_offset_sec", "refined_interval_sec"}
      "pools_agree": bool|null,    # the two pools' offsets within one class
      "effective_windows": float,  # |union of used windows| / window_sec
      "message": str,              # one line for people
      "drift": DRIFT|null,         # Drift.to_dict() over the used windows; null with no used window
      "windows": [                 # one per window, in the order given
        {"index": int, "start_sec": float, "end_sec": float,
         "offset_sec": float|null, "probability": float|null, "refined_offset_sec": float|null,
         "entropy_nats": float|null, "entropy_norm": float|null,   # entropy / log K, 0..1
         "sync_prob": float|null, "used": bool,
         "note": str|null,         # why it is not used: what the checks found ("audio is digital silence",
                                   # "picture is static"), "P(synchronizable) 0.21 below 0.5", "invalid probabilities"
         "reliable": bool, "reasons": [str, ...]}   # the window's own verdict
      ]
    }

    DRIFT = {
      "detected": bool, "reason": str,
      "slope_ms_per_min": float|null, "stderr_ms_per_min": float|null,   # slope, intercept, offset_at_*,
                                                                 # change: null unless detected
      "ci95_ms_per_min": [lo, hi]|null, "t_stat": float|null,    # |slope| / stderr
      "intercept_sec": float|null,                                # fitted offset at t = 0 of the file
      "t_start_sec": float|null, "t_end_sec": float|null,         # first window start, last window end
      "offset_at_start_sec": float|null, "offset_at_end_sec": float|null,   # the line at those times
      "change_sec": float|null,                                   # offset_at_end - offset_at_start
      "n_windows": int, "n_fit": int, "n_inliers": int,
      "effective_windows": float|null, "residual_scale_sec": float|null,
      "step": {"at_sec", "from_sec", "to_sec"}|null,  # one abrupt change, when it explains the windows
      "rule": {"min_windows": 8, "min_span_sec": 30.0, "min_t": 3.0, "tail": 0.001,
               "min_change_sec": 0.1, "min_inlier_fraction": 0.5, "min_window_confidence": 0.05,
               "step_margin": 0.5, "step_min_jump_sec": 0.15, "step_min_side_sec": 10.0}
    }
"""

from __future__ import annotations

import math
import os
import tempfile
import textwrap
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
DRIFT_MIN_WINDOW_CONFIDENCE = 0.05  # 1 - H/log K below this: (nearly) uniform, e.g. silence; not fitted
DRIFT_STEP_MARGIN = 0.5  # a step must lower the robust loss by this many effective windows' worth
DRIFT_STEP_MIN_JUMP_SEC = 0.15  # a smaller step is within the per-window estimates' quantisation bias
DRIFT_STEP_MIN_SIDE_SEC = 10.0  # a step is reported when windows agreeing with it cover this much on each side
_STEP_CANDIDATES = 60  # change points tried by the step-versus-line check
_CONSENSUS_BAND_SEC = 0.2  # one class: the start's line must pass within this of the windows it counts


# ----------------------------------------------------------------------------------------------- helpers

def _pm(x, nd: int = 2) -> str:
    """Signed, without a negative zero: -0.001 -> '+0.00'."""
    v = round(float(x), nd) + 0.0
    return f"{v:+.{nd}f}"


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


# The refined offset's 90 % interval: +- this many times the pooled distribution's spread over the three
# classes the refined offset is read from. 90 % of 64 continuous-offset synthetic clips (the bundled model)
# had their error inside it (benchmarks/refine_offsets.py); for other models it is a guide, not a measurement.
REFINED_INTERVAL_SCALE = 0.55


def _refine_interval(dist: np.ndarray, grid: np.ndarray, k: int, refined: float) -> tuple[float, float]:
    """The 90 % interval of ``refined`` (``_refine`` of ``dist``, whose argmax is class ``k``)."""
    lo, hi = max(0, k - 1), min(len(grid), k + 2)
    q = dist[lo:hi] / dist[lo:hi].sum()
    half = REFINED_INTERVAL_SCALE * float(np.sqrt((q * (grid[lo:hi] - refined) ** 2).sum()))
    return refined - half, refined + half


def _interval_json(interval: tuple[float, float] | None) -> list | None:
    return None if interval is None else [_sec(x) for x in interval]


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
    step_at_sec: float | None = None  # set when one abrupt change explains the estimates better than a line
    step_from_sec: float | None = None  # the offsets before and after that change
    step_to_sec: float | None = None

    def offset_at(self, t_sec) -> np.ndarray | float | None:
        """The fitted offset (s) at time(s) t_sec in the file."""
        if self.slope_ms_per_min is None or self.intercept_sec is None:
            return None
        return self.intercept_sec + self.slope_ms_per_min / 60000.0 * np.asarray(t_sec, dtype=np.float64)

    def to_dict(self) -> dict:
        ci = None if self.ci95_ms_per_min is None else [_num(self.ci95_ms_per_min[0]),
                                                         _num(self.ci95_ms_per_min[1])]
        found = bool(self.detected)  # a line that is not a finding has no slope to report: only its test
        return {
            "detected": found, "reason": self.reason,
            "slope_ms_per_min": _num(self.slope_ms_per_min) if found else None,
            "stderr_ms_per_min": _num(self.stderr_ms_per_min),
            "ci95_ms_per_min": ci, "t_stat": _num(self.t_stat),
            "intercept_sec": _sec(self.intercept_sec) if found else None,
            "t_start_sec": _sec(self.t_start_sec), "t_end_sec": _sec(self.t_end_sec),
            "offset_at_start_sec": _sec(self.offset_at_start_sec) if found else None,
            "offset_at_end_sec": _sec(self.offset_at_end_sec) if found else None,
            "change_sec": _sec(self.change_sec) if found else None,
            "n_windows": int(self.n_windows), "n_fit": int(self.n_fit), "n_inliers": int(self.n_inliers),
            "effective_windows": _num(self.effective_windows), "residual_scale_sec": _sec(self.residual_scale_sec),
            "step": None if self.step_at_sec is None else {
                "at_sec": _sec(self.step_at_sec), "from_sec": _sec(self.step_from_sec),
                "to_sec": _sec(self.step_to_sec)},
            "rule": {"min_windows": DRIFT_MIN_WINDOWS, "min_span_sec": DRIFT_MIN_SPAN_SEC, "min_t": DRIFT_MIN_T,
                     "tail": DRIFT_TAIL, "min_change_sec": DRIFT_MIN_CHANGE_SEC,
                     "min_inlier_fraction": DRIFT_MIN_INLIER_FRACTION,
                     "min_window_confidence": DRIFT_MIN_WINDOW_CONFIDENCE, "step_margin": DRIFT_STEP_MARGIN,
                     "step_min_jump_sec": DRIFT_STEP_MIN_JUMP_SEC, "step_min_side_sec": DRIFT_STEP_MIN_SIDE_SEC},
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


def _band_scale(r: np.ndarray, tw: np.ndarray) -> float:
    """Noise scale of the windows within _CONSENSUS_BAND_SEC of the line: their weighted mean square,
    corrected for the truncation of a normal at the band, floored at _SCALE_FLOOR_SEC.

    Unlike the MAD of all residuals, windows far from the line (a run agreeing on a wrong class, silence)
    do not inflate it, so the bisquare step that follows rejects them instead of bending towards them."""
    d = _CONSENSUS_BAND_SEC
    inb = np.abs(r) < d
    if tw[inb].sum() <= 0:
        return max(1.4826 * float(np.median(np.abs(r))), _SCALE_FLOOR_SEC)
    ratio = float(np.average((r[inb] / d) ** 2, weights=tw[inb]))  # in [0, 1/3) for a normal

    def g(x):  # E[(r/d)^2 | |r| < d] for r ~ N(0, (d/x)^2)
        mass = math.erf(x / math.sqrt(2.0))
        return (1.0 - 2.0 * x * math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi) / mass) / (x * x)

    if ratio >= g(0.5):  # nearly uniform in the band: the noise is as wide as the band or wider
        return max(d / 0.5, _SCALE_FLOOR_SEC)
    lo, hi = 0.5, 1e4
    for _ in range(100):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if g(mid) > ratio else (lo, mid)
    return max(d / math.sqrt(lo * hi), _SCALE_FLOOR_SEC)


def _rho(r: np.ndarray, scale: float) -> np.ndarray:
    """Tukey's bisquare loss, 0 at r = 0 and 1 beyond _BISQUARE_C * scale."""
    u = np.minimum(np.abs(r) / (_BISQUARE_C * scale), 1.0)
    return 1.0 - (1.0 - u * u) ** 3


def _bisquare(r: np.ndarray, scale: float) -> np.ndarray:
    u = np.abs(r) / scale
    return np.where(u < _BISQUARE_C, (1.0 - (u / _BISQUARE_C) ** 2) ** 2, 0.0)


def _wls(X: np.ndarray, y: np.ndarray, w: np.ndarray):
    """Weighted least squares: (beta, A^-1) with A = X'WX, or None when A is singular."""
    A = X.T @ (w[:, None] * X)
    if not np.all(np.isfinite(A)):
        return None
    ev = np.linalg.eigvalsh(A)
    if ev[0] <= 1e-10 * max(ev[-1], 1e-300):
        return None
    Ai = np.linalg.inv(A)
    return Ai @ (X.T @ (w * y)), Ai


def _irls(X: np.ndarray, y: np.ndarray, w: np.ndarray, beta: np.ndarray, scale: float, iters: int = 50):
    """Bisquare IRLS at a fixed scale from ``beta``: (beta, robustness weights), beta None if singular."""
    for _ in range(iters):
        fit = _wls(X, y, w * _bisquare(y - X @ beta, scale))
        if fit is None:
            return None, _bisquare(y - X @ beta, scale)
        moved = float(np.max(np.abs(X @ (fit[0] - beta))))
        beta = fit[0]
        if moved < 1e-7:
            break
    return beta, _bisquare(y - X @ beta, scale)


def _kernel_cov(X: np.ndarray, W: np.ndarray, r: np.ndarray, t: np.ndarray, window_sec: float):
    """Covariance of the weighted LS coefficients when the errors share a variance s^2 and two windows'
    errors correlate by the fraction of video they share, K_ij = max(0, 1 - |t_i - t_j| / L).

    beta = A^-1 X'W y (A = X'WX) has Cov = s^2 A^-1 M A^-1, M = X'W K W X, and E[r'Wr] = s^2 (sum W - tr(A^-1 M))
    gives an unbiased s^2. K is known from the geometry, so nothing noisy is estimated beyond s^2 (an
    estimated autocovariance, as in Newey-West, is badly biased with a dozen effective windows)."""
    fit = _wls(X, np.zeros(len(X)), W)
    if fit is None:
        return None
    Ai = fit[1]
    order = np.argsort(t, kind="stable")
    ts, gs = t[order], (W[:, None] * X)[order]
    M = gs.T @ gs
    for d in range(1, len(ts)):
        kern = np.clip(1.0 - (ts[d:] - ts[:-d]) / window_sec, 0.0, None)
        if not kern.any():
            break
        cross = (gs[:-d] * kern[:, None]).T @ gs[d:]
        M += cross + cross.T
    dof = float(W.sum() - np.trace(Ai @ M))
    s2 = float(np.sum(W * r * r)) / dof if dof > 0 else math.inf
    return s2 * (Ai @ M @ Ai)


def _best_step(t, y, w, X, beta, scale, margin):
    """Does one abrupt change explain the windows better than the line? Fit y = a + b t + c [t > tau]
    for each candidate tau (starting c at the jump of the residuals' medians, so that a run the line
    rejected can be picked up), keep the tau with the smallest robust loss; return it (or None) when that
    loss is below the line's by more than ``margin``: (tau, beta3, robustness weights, loss)."""
    r = y - X @ beta
    line_loss = float(np.sum(w * _rho(r, scale)))
    order = np.argsort(t, kind="stable")
    ts = t[order]
    n = len(ts)
    ks = np.arange(2, n - 1)  # at least 2 windows on each side
    if len(ks) > _STEP_CANDIDATES:
        ks = np.unique(np.linspace(2, n - 2, _STEP_CANDIDATES).round().astype(int))
    best = None
    for k in ks:
        tau = 0.5 * (ts[k - 1] + ts[k])
        after = t > tau
        if w[after].sum() <= 0 or w[~after].sum() <= 0:
            continue
        m0, m1 = _wmedian(r[~after], w[~after]), _wmedian(r[after], w[after])
        X3 = np.column_stack([X, after.astype(np.float64)])
        b3, _ = _irls(X3, y, w, np.array([beta[0] + m0, beta[1], m1 - m0]), scale, iters=8)
        if b3 is None:
            continue
        loss = float(np.sum(w * _rho(y - X3 @ b3, scale)))
        if best is None or loss < best[3]:
            best = (tau, b3, None, loss)
    if best is None or best[3] >= line_loss - margin:
        return None
    tau, b3, _, _ = best
    X3 = np.column_stack([X, (t > tau).astype(np.float64)])
    b3, rw3 = _irls(X3, y, w, b3, scale)
    if b3 is None:
        return None
    return tau, b3, rw3, float(np.sum(w * _rho(y - X3 @ b3, scale)))


def fit_drift(starts, probs, grid, weights=None, window_sec: float = WINDOW_SEC) -> Drift:
    """Fit offset = intercept + slope * t (t = window centre) robustly and decide whether the audio drifts.

    ``weights`` (W,) multiply each window's confidence weight ``1 - H/log K`` (e.g. sync_probs). Windows
    with a NaN anywhere (start, probabilities, weight) or a confidence below
    DRIFT_MIN_WINDOW_CONFIDENCE (silence: nearly uniform probabilities) are left out of the fit.
    """
    starts, probs, grid = _check_inputs(starts, probs, grid, window_sec)
    n_windows = len(starts)
    p, valid = _normalise(probs)
    conf = np.zeros(n_windows)
    y = np.full(n_windows, np.nan)
    if valid.any():
        conf[valid] = np.clip(1.0 - _entropy(p[valid]) / math.log(len(grid)), 0.0, 1.0)
        y[valid] = _refine(p[valid], grid)
    w = np.where(conf >= DRIFT_MIN_WINDOW_CONFIDENCE, conf, 0.0)
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
    few = f"too few windows: {n_fit} with a usable offset estimate, need {DRIFT_MIN_WINDOWS}"
    if n_fit:
        out.t_start_sec = float(starts[keep].min())
        out.t_end_sec = float(starts[keep].max() + window_sec)
    span = float(t.max() - t.min()) if n_fit else 0.0
    if n_fit < 3 or span <= 0:
        out.reason = few if n_fit < DRIFT_MIN_WINDOWS else "all windows start at the same time"
        return out
    tw = overlap_weights(t - window_sec / 2, window_sec)
    out.effective_windows = float(tw.sum())
    if np.ptp(y) <= 1e-9:  # every estimate the same: a flat line, exactly
        out.slope_ms_per_min, out.stderr_ms_per_min, out.ci95_ms_per_min, out.t_stat = 0.0, 0.0, (0.0, 0.0), 0.0
        out.intercept_sec = out.offset_at_start_sec = out.offset_at_end_sec = float(y[0])
        out.change_sec, out.n_inliers, out.residual_scale_sec = 0.0, n_fit, 0.0
        out.reason = f"no drift: all {n_fit} windows give the same offset {y[0]:+.3f} s"
        return out

    tc = float(np.average(t, weights=w))
    X = np.column_stack([np.ones_like(t), t - tc])
    # The start and the scale ignore the confidence weights: a confidently wrong window has a large one.
    b0, a0 = _consensus_line(t, y, tw)
    beta = np.array([a0 + b0 * tc, b0])
    rw = np.ones_like(w)
    for _round in range(2):  # scale from the windows near the line, bisquare IRLS; then once more
        scale = _band_scale(y - X @ beta, tw)
        new, rw = _irls(X, y, w, beta, scale)
        if new is None:
            break
        beta = new
    W = w * rw
    out.n_inliers, out.residual_scale_sec = int(np.sum(rw > 0)), scale
    cov = _kernel_cov(X, W, y - X @ beta, t, window_sec)
    if new is None or cov is None:
        out.reason = few if n_fit < DRIFT_MIN_WINDOWS else "the inlying windows do not span enough time for a line"
        return out
    inlier_frac = float(W.sum() / w.sum())
    n_eff_in = float(overlap_weights(t[W > 0] - window_sec / 2, window_sec).sum())
    nu = max(n_eff_in - 2.0, 1.0)
    t95 = t_quantile(0.975, nu)
    t_needed = max(DRIFT_MIN_T, t_quantile(1.0 - DRIFT_TAIL, nu))

    def describe(b, c):
        se = math.sqrt(max(float(c[1, 1]), 0.0))
        z = abs(b) / se if se > 0 else (math.inf if b != 0 else 0.0)
        return b * 60000.0, se * 60000.0, z

    slope, se_m, tstat = describe(float(beta[1]), cov)
    intercept = float(beta[0] - beta[1] * tc)
    out.slope_ms_per_min, out.stderr_ms_per_min, out.t_stat = slope, se_m, tstat
    out.ci95_ms_per_min = (slope - t95 * se_m, slope + t95 * se_m)
    out.intercept_sec = intercept
    out.offset_at_start_sec = intercept + beta[1] * out.t_start_sec
    out.offset_at_end_sec = intercept + beta[1] * out.t_end_sec
    out.change_sec = out.offset_at_end_sec - out.offset_at_start_sec
    fit_span = float(t[W > 0].max() - t[W > 0].min()) if (W > 0).any() else 0.0
    change = abs(out.change_sec)
    lo, hi = out.ci95_ms_per_min
    what = f"{slope:+.1f} ms/min (95% CI {lo:+.1f}..{hi:+.1f}), |t| = {tstat:.1f}"
    significant = tstat >= t_needed and not lo <= 0.0 <= hi
    duration = out.t_end_sec - out.t_start_sec

    # One abrupt change (an edit; or a run of windows agreeing on a wrong class) at one end tilts a line,
    # and is worth reporting in its own right. Fit line + step at the best time; keep the step when it
    # lowers the robust loss by more than DRIFT_STEP_MARGIN effective windows' worth and is significant
    # and at least DRIFT_MIN_CHANGE_SEC. A real drift keeps a significant slope next to such a step.
    step_ok, step_found, slope_survives, s3, z3 = False, False, True, 0.0, 0.0
    if n_fit >= DRIFT_MIN_WINDOWS and span >= DRIFT_MIN_SPAN_SEC:
        margin = DRIFT_STEP_MARGIN * float(w.sum()) / max(out.effective_windows, 1.0)
        step = _best_step(t, y, w, X, beta, scale, margin)
        if step is not None:
            tau, b3, rw3, _ = step
            X3 = np.column_stack([X, (t > tau).astype(np.float64)])
            c3 = _kernel_cov(X3, w * rw3, y - X3 @ b3, t, window_sec)
            if c3 is not None:
                s3, _, z3 = describe(float(b3[1]), c3)
                se_c = math.sqrt(max(float(c3[2, 2]), 0.0))
                zc = abs(b3[2]) / se_c if se_c > 0 else math.inf
                step_ok = zc >= t_needed and abs(b3[2]) >= DRIFT_STEP_MIN_JUMP_SEC
                # reported as a finding, the best of many change points must beat chance over all of them:
                # Bonferroni over the independent candidates (about one per effective window)
                k_eff = max(1.0, min(float(_STEP_CANDIDATES), n_eff_in))
                step_found = step_ok and zc >= max(DRIFT_MIN_T, t_quantile(1.0 - DRIFT_TAIL / k_eff, nu))
                slope_survives = z3 >= t_needed and abs(b3[1]) * duration >= DRIFT_MIN_CHANGE_SEC
            vetoes = step_ok and not slope_survives and significant and change >= DRIFT_MIN_CHANGE_SEC
            inl = rw3 > 0  # the windows that agree with the step model must cover enough video on each side

            def covered(side):
                return float(overlap_weights(t[side & inl] - window_sec / 2, window_sec).sum()) * window_sec

            long_sides = min(covered(t <= tau), covered(t > tau)) >= DRIFT_STEP_MIN_SIDE_SEC
            if (step_found and long_sides) or vetoes:  # two chance outliers at an end are not worth a word
                before = float(b3[0] + b3[1] * (tau - tc))
                out.step_at_sec, out.step_from_sec, out.step_to_sec = float(tau), before, before + float(b3[2])
    jump = ("" if out.step_at_sec is None else f"; the offset jumps at {out.step_at_sec:.1f} s from "
                                                f"{_pm(out.step_from_sec)} s to {_pm(out.step_to_sec)} s")

    if n_fit < DRIFT_MIN_WINDOWS:
        out.reason = few
    elif span < DRIFT_MIN_SPAN_SEC or fit_span < DRIFT_MIN_SPAN_SEC:
        out.reason = (f"too short: the window centres span {min(span, fit_span):.1f} s, "
                      f"need {DRIFT_MIN_SPAN_SEC:g} s")
    elif inlier_frac < DRIFT_MIN_INLIER_FRACTION:
        out.reason = (f"estimates too scattered for a line: {100 * inlier_frac:.0f}% of the weight on inliers, "
                      f"need {100 * DRIFT_MIN_INLIER_FRACTION:.0f}%{jump}")
    elif not significant:
        out.reason = f"no significant drift: {what} < {t_needed:.2f}{jump}"
    elif change < DRIFT_MIN_CHANGE_SEC:
        out.reason = (f"drift too small to matter: {what}, a change of {change:.3f} s over the video "
                      f"< {DRIFT_MIN_CHANGE_SEC:g} s{jump}")
    elif step_ok and not slope_survives:  # (the step is reported whenever it vetoes)
        out.reason = (f"not a steady drift{jump}, and next to that jump the slope is {s3:+.1f} ms/min, "
                      f"|t| = {z3:.1f} (the line alone: {what})")
    else:
        out.detected = True
        out.reason = (f"drift {what}: {_pm(out.offset_at_start_sec)} s at {out.t_start_sec:.1f} s to "
                      f"{_pm(out.offset_at_end_sec)} s at {out.t_end_sec:.1f} s{jump}")
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
    reliable: bool = True  # see synchformer.inference.verdict
    reasons: list[str] = field(default_factory=list)  # why not reliable

    def to_dict(self) -> dict:
        return {"index": int(self.index), "start_sec": _sec(self.start_sec), "end_sec": _sec(self.end_sec),
                "offset_sec": _sec(self.offset_sec), "probability": _prob(self.probability),
                "refined_offset_sec": _sec(self.refined_offset_sec),
                "entropy_nats": _num(self.entropy_nats, 4), "entropy_norm": _num(self.entropy_norm, 4),
                "sync_prob": _prob(self.sync_prob), "used": bool(self.used), "note": self.note,
                "reliable": bool(self.reliable), "reasons": list(self.reasons)}


@dataclass
class Pool:
    kind: str  # "mean" or "log"
    offset_sec: float
    confidence: float
    refined_offset_sec: float
    distribution: np.ndarray  # (K,), sums to 1
    index: int  # class index of offset_sec
    refined_interval_sec: tuple[float, float] | None = None  # 90 % (see REFINED_INTERVAL_SCALE)

    def to_dict(self) -> dict:
        return {"offset_sec": _sec(self.offset_sec), "confidence": _prob(self.confidence),
                "refined_offset_sec": _sec(self.refined_offset_sec),
                "refined_interval_sec": _interval_json(self.refined_interval_sec)}


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
    left_out_why: str = ""  # "audio is digital silence: 5 windows; ..."
    reliable: bool = False  # see synchformer.inference.verdict (set by summarize)
    reasons: list[str] = field(default_factory=list)  # why not reliable

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
    def refined_interval_sec(self) -> tuple[float, float] | None:
        return None if self.reported is None else self.reported.refined_interval_sec

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
                         "indices": [int(i) for i in self.left_out], "why": self.left_out_why},
            "synchronizable": self.synchronizable, "reliable": bool(self.reliable), "reasons": list(self.reasons),
            "pooling": self.pooling,
            "offset_sec": _sec(self.offset_sec), "confidence": _prob(self.confidence),
            "refined_offset_sec": _sec(self.refined_offset_sec),
            "refined_interval_sec": _interval_json(self.refined_interval_sec), "agreement": _num(self.agreement, 4),
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
    refined = float(_refine(dist[None], grid)[0])
    return Pool(kind=kind, offset_sec=float(grid[k]), confidence=float(dist[k]), refined_offset_sec=refined,
                distribution=dist, index=k, refined_interval_sec=_refine_interval(dist, grid, k, refined))


def describe_offset(off: float) -> str:
    """An offset in words, with the sign convention spelled out."""
    if abs(off) < 1e-9:
        return "in sync"
    return f"audio {'leads' if off > 0 else 'lags'} the video by {abs(off):.2f} s"


def _describe(off: float) -> str:
    text = describe_offset(off)
    return f"{text} (0.00 s)" if abs(off) < 1e-9 else text


def summarize(starts, probs, grid, sync_probs=None, window_sec: float = WINDOW_SEC,
              min_sync_prob: float = 0.5, problems=None, model_caveat: str | None = None) -> Summary:
    """One offset for a whole video from its windows; see the module docstring for the method.

    ``problems``: per window, what the model-free checks found (``Analysis.problems``: silence, a still
    picture); such windows are left out as not synchronizable. ``model_caveat``: a reason added to an
    unreliable verdict about the model itself (e.g. the bundled model: "model trained on synthetic clips only").
    """
    starts, probs, grid = _check_inputs(starts, probs, grid, window_sec)
    n = len(starts)
    p, valid = _normalise(probs)
    valid &= np.isfinite(starts)
    sp = None
    if sync_probs is not None:
        sp = np.asarray(sync_probs, dtype=np.float64).reshape(-1)
        if len(sp) != n:
            raise ValueError(f"{n} windows but {len(sp)} sync_probs")
    problems = [list(x) for x in problems] if problems is not None else [[] for _ in range(n)]
    if len(problems) != n:
        raise ValueError(f"{n} windows but {len(problems)} lists of problems")
    low_sync = np.zeros(n, dtype=bool) if sp is None else (np.isfinite(sp) & (sp < min_sync_prob))
    found = np.array([bool(x) for x in problems], dtype=bool)
    not_sync = low_sync | found
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
        if used[i]:
            note = None
        elif not ok:
            note = "invalid probabilities"
        else:
            why = list(problems[i]) + ([f"P(synchronizable) {sp[i]:.2f} below {min_sync_prob:g}"] if low_sync[i] else [])
            note = "; ".join(why)
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
    why_left_out = _left_out_reasons([rows[i].note for i in left_out])
    if n == 0:
        msg = "no windows: no overall offset"
    elif not n_used:
        msg = ("no synchronizable window: no overall offset"
               if left_out else "no window with valid probabilities: no overall offset")
        if left_out:
            msg += f" ({why_left_out})"
    else:
        parts.append(f"{_describe(mean_pool.offset_sec)} (confidence {mean_pool.confidence:.2f}, "
                     f"{100 * agreement:.0f}% of {n_used} windows agree)")
        if not log_pool.index - 1 <= mean_pool.index <= log_pool.index + 1:
            parts.append(f"the log pool says {_pm(log_pool.offset_sec)} s: check the heat map")
        if left_out:
            parts.append(f"{len(left_out)} of {n} windows left out as not synchronizable ({why_left_out})")
        if n_invalid:
            parts.append(f"{n_invalid} windows with invalid probabilities ignored")
        if drift is not None and drift.detected:
            parts.append(f"the offset drifts {drift.slope_ms_per_min:+.0f} ms/min, "
                         f"{_pm(drift.offset_at_start_sec)} s to {_pm(drift.offset_at_end_sec)} s")
        if drift is not None and drift.step_at_sec is not None:
            parts.append(f"the offset jumps at {drift.step_at_sec:.1f} s from {_pm(drift.step_from_sec)} s to "
                         f"{_pm(drift.step_to_sec)} s")
        msg = "; ".join(parts)
    summary = Summary(grid=grid, window_sec=float(window_sec), min_sync_prob=float(min_sync_prob), windows=rows,
                   n_used=n_used, n_invalid=n_invalid, left_out=left_out, effective_windows=n_eff,
                   mean_pool=mean_pool, log_pool=log_pool, pooling="mean", agreement=agreement, drift=drift,
                   message=msg, has_sync=sp is not None, left_out_why=why_left_out)
    from synchformer.inference.verdict import judge

    judge(summary, model_caveat=model_caveat)
    return summary


def note_reasons(notes) -> dict[str, int]:
    """The reasons that windows' notes name, without their numbers ("audio is near silence (-71 dBFS)" ->
    "audio is near silence", "P(synchronizable) 0.21 below 0.5" -> "P(synchronizable)"), each with how many
    windows name it, in the order first named."""
    counts: dict[str, int] = {}
    for note in notes:
        for part in (note or "").split("; "):
            if part:
                key = part.split(" (")[0].split(" 0.")[0]
                counts[key] = counts.get(key, 0) + 1
    return counts


def _left_out_reasons(notes: list[str]) -> str:
    """'audio is digital silence: 5 windows; picture is static: 2 windows' (each reason once, by count)."""
    counts = note_reasons(notes)
    return "; ".join(f"{k}: {v} window{'s' if v > 1 else ''}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


# --------------------------------------------------------------------------------------------- plot

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
    from synchformer.io.outputs import protect_inputs

    protect_inputs(out, inputs)
    require_matplotlib(what)
    if os.path.splitext(os.fspath(out))[1].lower() not in (".png", ".pdf", ".svg"):
        raise SynchformerError(out, "the figure must be a .png, .pdf or .svg file")
    if not os.path.isdir(os.path.dirname(os.path.abspath(out))):
        raise SynchformerError(out, "cannot write: the folder does not exist")


def _umask() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def warning_line(fig, warning: str, y: float = 0.004) -> None:
    """``warning`` in red across ``fig`` at height ``y`` (a figure must not look more trustworthy than the
    text and JSON it goes with)."""
    fig.text(0.5, y, textwrap.fill(f"warning: {warning}", 190), ha="center", va="bottom", fontsize=8.5,
             color="#b00000")


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
    require_matplotlib()
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import PowerNorm
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MultipleLocator
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

    fig = Figure(figsize=(11, 6.2), dpi=110)
    FigureCanvasAgg(fig)
    gs = fig.add_gridspec(2, 2, height_ratios=[1, 4], width_ratios=[40, 1], hspace=0.08, wspace=0.03,
                          left=0.08, right=0.93, top=0.88, bottom=0.11 if warning else 0.09)
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
    if len(order):
        s = starts[order]
        c = s + L / 2
        gaps = np.diff(c)
        half_r = np.minimum(np.concatenate([gaps, [np.inf]]) / 2, L / 2)
        half_l = np.minimum(np.concatenate([[np.inf], gaps]) / 2, L / 2)
        if len(c) > 1:  # the first and last columns mirror their one neighbour
            half_l[0], half_r[-1] = half_r[0], half_l[-1]
        lo, hi = c - half_l, c + half_r
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
                         f"confidence {summary.confidence:.2f}, {100 * summary.agreement:.0f}% agree)")
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
                label=f"jump at {d.step_at_sec:.1f} s: {_pm(d.step_from_sec)} s to {_pm(d.step_to_sec)} s")
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
        ax.set_xlabel("time in the video (min:s), windows drawn at their centres, one hop wide")
    else:
        ax.set_xlabel("time in the video (s), windows drawn at their centres, one hop wide")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=7.5, framealpha=0.85)
    if mesh is None:
        from matplotlib.cm import ScalarMappable
        mesh = ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(mesh, cax=cax).set_label("P(offset) of the window")
    head = title if title is not None else "audio-visual offset per window"
    fig.suptitle(head + "\n" + textwrap.fill(summary.message, 150), fontsize=9.5)
    if warning:
        warning_line(fig, warning)

    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format="png")
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; a plot is an ordinary file
        os.replace(tmp, path)
        tmp = None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path
