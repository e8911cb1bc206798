"""Offset distributions over a class grid, and how their numbers are shown: what pooling, the drift fit, the fine
pass, the verdict and the figures share. Pure numpy; no model, no decoding.

Positive offset = the audio leads the video; a grid is ascending (-2.0 ... +2.0 s by 0.2 s for the released
models).
"""

from __future__ import annotations

import math

import numpy as np

from synchformer.constants import WINDOW_SEC

PROB_FLOOR = 1e-6  # floor before a log: one window can cost a class at most 13.8 nats (times its weight)

# The 90 % interval of the neighbour expectation: +- this many times the distribution's spread over the three
# classes it is read from. 90 % of 64 continuous-offset synthetic clips (the bundled model) had their error inside
# it (benchmarks/refine_offsets.py); for other models it is a guide, not a measurement.
REFINED_INTERVAL_SCALE = 0.55


# ------------------------------------------------------------------------------------------------ checks

def check_windows(starts, probs, grid, window_sec: float):
    """``starts`` (W,), ``probs`` (W, K) and ``grid`` (K,) as float arrays, or a ValueError saying what does not
    fit (shapes, a grid that is not ascending, a window length that is not positive)."""
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


def normalise_rows(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows renormalised to sum 1; ``valid`` is False for rows with NaN/inf, negatives or a zero sum."""
    p = np.where(np.abs(probs) < 1e-12, 0.0, probs)  # tiny negative round-off
    s = p.sum(axis=1) if len(p) else np.zeros(0)
    valid = np.isfinite(p).all(axis=1) & (p >= 0).all(axis=1) & (s > 0)
    out = np.full_like(p, np.nan)
    out[valid] = p[valid] / s[valid, None]
    return out, valid


# ---------------------------------------------------------------------------------------------- statistics

def entropy(p: np.ndarray) -> np.ndarray:
    """Entropy (nats) of each row."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=-1)


def neighbour_expectation(p: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Per row, the expected offset over the argmax class and its two neighbours (renormalised): an offset
    below the class grid. At the first/last class only the one neighbour inside the grid is used, so the
    estimate is pulled inwards there (an offset beyond the grid cannot be seen anyway)."""
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


def neighbour_interval(dist: np.ndarray, grid: np.ndarray, k: int, estimate: float) -> tuple[float, float]:
    """The 90 % interval of ``estimate`` (the neighbour expectation of ``dist``, whose argmax is class ``k``)."""
    lo, hi = max(0, k - 1), min(len(grid), k + 2)
    q = dist[lo:hi] / dist[lo:hi].sum()
    half = REFINED_INTERVAL_SCALE * float(np.sqrt((q * (grid[lo:hi] - estimate) ** 2).sum()))
    return estimate - half, estimate + half


def window_offsets(probs, grid) -> np.ndarray:
    """The neighbour expectation of each window (NaN for invalid rows)."""
    p, valid = normalise_rows(np.atleast_2d(np.asarray(probs, dtype=np.float64)))
    out = np.full(len(p), np.nan)
    if valid.any():
        out[valid] = neighbour_expectation(p[valid], np.asarray(grid, dtype=np.float64))
    return out


def log_pooled(probs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Windows' distributions (W, K) pooled as independent evidence: the ``weights``-weighted sum of their logs
    (each floored at PROB_FLOOR), renormalised."""
    score = (weights[:, None] * np.log(np.maximum(probs, PROB_FLOOR))).sum(axis=0)
    q = np.exp(score - score.max())
    return q / q.sum()


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


# ------------------------------------------------------------------------------------------------ display

def signed(x, nd: int = 2) -> str:
    """Signed, without a negative zero: -0.001 -> '+0.00'."""
    v = round(float(x), nd) + 0.0
    return f"{v:+.{nd}f}"


def json_sec(x) -> float | None:
    """Seconds for JSON: to the ms; None where not finite."""
    return None if x is None or not math.isfinite(float(x)) else round(float(x), 3)


def json_prob(x) -> float | None:
    """A probability for JSON: 4 significant digits; None where not finite."""
    return None if x is None or not math.isfinite(float(x)) else float(f"{float(x):.4g}")


def json_num(x, digits: int = 2) -> float | None:
    """Any other number for JSON: ``digits`` decimals; None where not finite."""
    return None if x is None or not math.isfinite(float(x)) else round(float(x), digits)


def json_interval(interval: tuple[float, float] | None) -> list | None:
    return None if interval is None else [json_sec(x) for x in interval]


def two_decimals(value: float) -> str:
    """A probability as every message shows it: two decimals rounded down, so that 0.349 below 0.35 reads "0.34",
    not "0.35 below 0.35", and the confidence a result shows is the one its reasons compare."""
    return f"{math.floor(value * 100 + 1e-9) / 100:.2f}"


def describe_offset(off: float) -> str:
    """An offset in words, with the sign convention spelled out."""
    if abs(off) < 1e-9:
        return "in sync"
    return f"audio {'leads' if off > 0 else 'lags'} the video by {abs(off):.2f} s"


__all__ = ["PROB_FLOOR", "REFINED_INTERVAL_SCALE", "check_windows", "normalise_rows", "entropy",
           "neighbour_expectation", "neighbour_interval", "window_offsets", "log_pooled", "overlap_weights",
           "signed", "json_sec", "json_prob", "json_num", "json_interval", "two_decimals", "describe_offset"]
