"""Does the audio drift? A robust line through the per-window offsets against time, tested against noise and
against one abrupt change.

The per-window quantities (estimates, confidences, overlap weights) are ``synchformer.inference.pooling``'s;
its ``summarize`` calls ``fit_drift`` on the windows it pools and puts ``Drift.to_dict()`` in the JSON.

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

JSON (``Drift.to_dict()``: the ``drift`` object of a summary's JSON; floats rounded as there)::

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
from dataclasses import dataclass

import numpy as np

from synchformer.constants import WINDOW_SEC
from synchformer.inference.distributions import (check_windows, entropy, json_num, json_sec,
                                                 neighbour_expectation, normalise_rows, overlap_weights, signed)

__all__ = ["Drift", "fit_drift", "t_quantile"]

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


def t_quantile(p: float, nu: float) -> float:
    """The p-quantile (p > 0.5) of Student t with nu (> 0, real) degrees of freedom: scipy's ``stdtrit``,
    which is what ``scipy.stats.t.ppf`` evaluates."""
    if not 0.5 < p < 1.0:
        raise ValueError("p must be in (0.5, 1)")
    # imported here, so that only a drift fit pays for scipy (0.25 s; scipy.stats, which wraps this, 1 s),
    # never `synchformer --help` or the check of a bad input
    from scipy.special import stdtrit

    return float(stdtrit(nu, p))


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
        ci = None if self.ci95_ms_per_min is None else [json_num(self.ci95_ms_per_min[0]),
                                                         json_num(self.ci95_ms_per_min[1])]
        found = bool(self.detected)  # a line that is not a finding has no slope to report: only its test
        return {
            "detected": found, "reason": self.reason,
            "slope_ms_per_min": json_num(self.slope_ms_per_min) if found else None,
            "stderr_ms_per_min": json_num(self.stderr_ms_per_min),
            "ci95_ms_per_min": ci, "t_stat": json_num(self.t_stat),
            "intercept_sec": json_sec(self.intercept_sec) if found else None,
            "t_start_sec": json_sec(self.t_start_sec), "t_end_sec": json_sec(self.t_end_sec),
            "offset_at_start_sec": json_sec(self.offset_at_start_sec) if found else None,
            "offset_at_end_sec": json_sec(self.offset_at_end_sec) if found else None,
            "change_sec": json_sec(self.change_sec) if found else None,
            "n_windows": int(self.n_windows), "n_fit": int(self.n_fit), "n_inliers": int(self.n_inliers),
            "effective_windows": json_num(self.effective_windows), "residual_scale_sec": json_sec(self.residual_scale_sec),
            "step": None if self.step_at_sec is None else {
                "at_sec": json_sec(self.step_at_sec), "from_sec": json_sec(self.step_from_sec),
                "to_sec": json_sec(self.step_to_sec)},
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
    starts, probs, grid = check_windows(starts, probs, grid, window_sec)
    n_windows = len(starts)
    p, valid = normalise_rows(probs)
    conf = np.zeros(n_windows)
    y = np.full(n_windows, np.nan)
    if valid.any():
        conf[valid] = np.clip(1.0 - entropy(p[valid]) / math.log(len(grid)), 0.0, 1.0)
        y[valid] = neighbour_expectation(p[valid], grid)
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
                                                f"{signed(out.step_from_sec)} s to {signed(out.step_to_sec)} s")

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
        out.reason = (f"drift {what}: {signed(out.offset_at_start_sec)} s at {out.t_start_sec:.1f} s to "
                      f"{signed(out.offset_at_end_sec)} s at {out.t_end_sec:.1f} s{jump}")
    return out
