"""From per-window results of a whole video to one offset: the pooled distribution, the per-window rows and
the summary that the verdict (``synchformer.inference.verdict``) and the JSON read.

Pure functions: numpy arrays in, dataclasses / JSON-ready dicts out; no model, no decoding. The drift over
the file is fitted in ``synchformer.inference.drift``; the heat map is drawn by ``synchformer.plots.heatmap``.

Inputs (``W`` windows, ``K`` offset classes, ``K = 21`` for the released models)

- ``starts`` (W,): start of each window in seconds (from the file's first video frame). Windows are ``window_sec``
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
      "refined_offset_sec": float|null,  # the offset below the class grid: the fine pass's (below) where one
                                   # ran, else the expectation over that class and its two neighbours
      "refined_interval_sec": [lo, hi]|null,  # its 90 % interval (REFINED_INTERVAL_SCALE / FINE_INTERVAL_SCALE)
      "fine": FINE|null,           # a fine-offset model's pass (synchformer.inference.refine); null where none ran
                                   #   FINE = {"coarse_sec", "residual_sec", "offset_sec", "interval_sec", "windows"}
      "agreement": float|null,     # fraction of used windows whose argmax is within one class of offset_sec
      "distribution": [K floats]|null,   # the reported pooled distribution over grid_sec
      "pools": {"mean": POOL|null, "log": POOL|null},
      #   POOL = {"offset_sec", "confidence", "refined_offset_sec", "refined_interval_sec"}
      "pools_agree": bool|null,    # the two pools' offsets within one class
      "effective_windows": float,  # |union of used windows| / window_sec
      "message": str,              # one line for people
      "drift": DRIFT|null,         # Drift.to_dict() over the used windows; null with no used window
                                   # (DRIFT: see synchformer.inference.drift)
      "windows": [                 # one per window, in the order given
        {"index": int, "start_sec": float, "end_sec": float,
         "offset_sec": float|null, "probability": float|null, "refined_offset_sec": float|null,
         "entropy_nats": float|null, "entropy_norm": float|null,   # entropy / log K, 0..1
         "sync_prob": float|null, "used": bool,
         "note": str|null,         # why it is not used: what the checks found ("audio is digital silence",
                                   # "picture is static"), "P(synchronizable) 0.21 below 0.5", "invalid probabilities"
         "reliable": bool, "reasons": [str, ...],   # the window's own verdict
         "audio_events": [{"kind": "gap"|"overlap"|"format", "at_sec", "duration_sec"}, ...]}
                                   # where the audio's timestamps jump inside it (io.decode.AudioEvent)
      ]
    }
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from synchformer.constants import WINDOW_SEC
from synchformer.inference.verdict import two_decimals

if TYPE_CHECKING:
    from synchformer.inference.drift import Drift
    from synchformer.inference.refine import FineOffset

__all__ = ["WindowRow", "Pool", "Summary", "summarize", "window_offsets", "overlap_weights", "log_pooled",
           "describe_offset",
           "note_reasons", "SCHEMA", "REFINED_INTERVAL_SCALE"]

SCHEMA = "synchformer.timeline/1"
PROB_FLOOR = 1e-6  # floor before log: one window can cost a class at most 13.8 nats (times its weight)


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
    audio_events: list[dict] = field(default_factory=list)  # gaps / overlaps of the audio's timestamps in it

    def to_dict(self) -> dict:
        return {"index": int(self.index), "start_sec": _sec(self.start_sec), "end_sec": _sec(self.end_sec),
                "offset_sec": _sec(self.offset_sec), "probability": _prob(self.probability),
                "refined_offset_sec": _sec(self.refined_offset_sec),
                "entropy_nats": _num(self.entropy_nats, 4), "entropy_norm": _num(self.entropy_norm, 4),
                "sync_prob": _prob(self.sync_prob), "used": bool(self.used), "note": self.note,
                "reliable": bool(self.reliable), "reasons": list(self.reasons),
                "audio_events": list(self.audio_events)}


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
    fine: "FineOffset | None" = None  # a fine-offset model's pass (inference.refine): the refined offset

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
        if self.reported is None:
            return None
        return self.fine.offset_sec if self.fine is not None else self.reported.refined_offset_sec

    @property
    def refined_interval_sec(self) -> tuple[float, float] | None:
        if self.reported is None:
            return None
        return self.fine.interval_sec if self.fine is not None else self.reported.refined_interval_sec

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
            "refined_interval_sec": _interval_json(self.refined_interval_sec),
            "fine": None if self.fine is None else self.fine.to_dict(), "agreement": _num(self.agreement, 4),
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
              min_sync_prob: float = 0.5, problems=None, model_caveat: str | None = None,
              audio_events=None) -> Summary:
    """One offset for a whole video from its windows; see the module docstring for the method.

    ``problems``: per window, what the model-free checks found (``Analysis.problems``: silence, a still
    picture); such windows are left out as not synchronizable. ``model_caveat``: a reason added to an
    unreliable verdict about the model itself (e.g. the bundled model: "model trained on synthetic clips only").
    ``audio_events``: per window, the gaps, overlaps and format changes of the audio's timestamps inside it
    (``Analysis.window_audio_events``): reported on its row; the window stays in (its audio is placed as a
    player that honours timestamps plays it).
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
            used=bool(used[i]), note=note,
            audio_events=[e.to_dict() for e in audio_events[i]] if audio_events is not None else []))
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
        mean_pool, log_pool = _pool("mean", mean, grid), _pool("log", log_pooled(pu, a), grid)
        pooled_k = mean_pool.index  # the reported pool (see the module docstring)
        agreement = float(np.mean(np.abs(kmax[used] - pooled_k) <= 1))
        from synchformer.inference.drift import fit_drift  # drift builds on this module's helpers

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
        parts.append(f"{_describe(mean_pool.offset_sec)} (confidence {two_decimals(mean_pool.confidence)}, "
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
