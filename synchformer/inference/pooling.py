"""From per-window results of a whole video to one offset: the pooled distribution, the per-window rows, and
the Summary the JSON is written from, built once with its verdict (``synchformer.inference.verdict``).

Two steps, so that a fine pass can run between them: ``pool_windows`` pools the windows (``Pooled``: no verdict
yet), and ``conclude`` judges the final numbers (the fine pass's included) and writes the message; ``summarize``
does both. Pure functions: numpy arrays in, frozen dataclasses / JSON-ready dicts out; no model, no decoding.
The drift over the file is fitted in ``synchformer.inference.drift``; the heat map is drawn by
``synchformer.plots.heatmap``.

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
      "fine": FINE|null,           # a fine-offset model's pass (synchformer.inference.fine); null where none ran
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

import numpy as np

from synchformer.constants import WINDOW_SEC
from synchformer.inference.distributions import (check_windows, describe_offset, entropy, json_interval, json_num,
                                                 json_prob, json_sec, log_pooled, neighbour_expectation,
                                                 neighbour_interval, normalise_rows, overlap_weights, signed,
                                                 two_decimals)
from synchformer.inference.drift import Drift, fit_drift
from synchformer.inference.verdict import credible_drift, file_reasons, note_reasons, window_reasons

__all__ = ["WindowRow", "Pool", "FineOffset", "Pooled", "Summary", "pool_windows", "conclude", "summarize",
           "SCHEMA"]

SCHEMA = "synchformer.timeline/1"


@dataclass(frozen=True)
class WindowRow:
    index: int
    start_sec: float
    end_sec: float
    offset_sec: float | None  # argmax class; + = audio leads
    probability: float | None  # its probability
    refined_offset_sec: float | None  # the neighbour expectation (distributions.neighbour_expectation)
    entropy_nats: float | None
    entropy_norm: float | None  # entropy / log K: 0 = certain, 1 = uniform
    sync_prob: float | None
    used: bool
    note: str | None = None  # why not used
    reasons: list[str] = field(default_factory=list)  # why its estimate is not reliable (inference.verdict)
    audio_events: list[dict] = field(default_factory=list)  # gaps / overlaps of the audio's timestamps in it

    @property
    def reliable(self) -> bool:
        return not self.reasons

    def to_dict(self) -> dict:
        return {"index": int(self.index), "start_sec": json_sec(self.start_sec), "end_sec": json_sec(self.end_sec),
                "offset_sec": json_sec(self.offset_sec), "probability": json_prob(self.probability),
                "refined_offset_sec": json_sec(self.refined_offset_sec),
                "entropy_nats": json_num(self.entropy_nats, 4), "entropy_norm": json_num(self.entropy_norm, 4),
                "sync_prob": json_prob(self.sync_prob), "used": bool(self.used), "note": self.note,
                "reliable": self.reliable, "reasons": list(self.reasons),
                "audio_events": list(self.audio_events)}


@dataclass(frozen=True)
class Pool:
    kind: str  # "mean" or "log"
    offset_sec: float
    confidence: float
    refined_offset_sec: float
    distribution: np.ndarray  # (K,), sums to 1
    index: int  # class index of offset_sec
    refined_interval_sec: tuple[float, float] | None = None  # 90 % (distributions.REFINED_INTERVAL_SCALE)

    def to_dict(self) -> dict:
        return {"offset_sec": json_sec(self.offset_sec), "confidence": json_prob(self.confidence),
                "refined_offset_sec": json_sec(self.refined_offset_sec),
                "refined_interval_sec": json_interval(self.refined_interval_sec)}


@dataclass(frozen=True)
class FineOffset:
    """What a fine pass found (``synchformer.inference.fine``): the offset is ``coarse_sec + residual_sec``."""

    coarse_sec: float  # the coarse refined offset the sound was delayed by
    residual_sec: float  # what the fine model read after that
    offset_sec: float
    interval_sec: tuple[float, float]  # 90 %
    distribution: np.ndarray  # pooled (distributions.log_pooled), over the fine model's grid
    grid: np.ndarray
    windows: int  # windows scored
    segments_encoded: int  # audio segments through the fine model's encoder (visual too if not shared)
    window_probs: np.ndarray | None = None  # (windows, classes), before pooling
    window_weights: np.ndarray | None = None  # their overlap weights (distributions.overlap_weights)

    def to_dict(self) -> dict:
        return {"coarse_sec": round(self.coarse_sec, 4), "residual_sec": round(self.residual_sec, 4),
                "offset_sec": round(self.offset_sec, 4),
                "interval_sec": [round(float(x), 4) for x in self.interval_sec], "windows": self.windows}


@dataclass(frozen=True)
class Pooled:
    """The windows pooled, before any verdict on the whole (``pool_windows``): what a fine pass needs (``used``,
    ``coarse_offset_sec``) and what ``conclude`` judges."""

    grid: np.ndarray
    window_sec: float
    min_sync_prob: float
    windows: list[WindowRow]
    used: np.ndarray  # (W,) bool: pooled into the overall offset
    n_invalid: int
    left_out: list[int]  # indices of windows judged not synchronizable
    left_out_why: str  # "audio is digital silence: 5 windows; ..."
    effective_windows: float
    mean_pool: Pool | None
    log_pool: Pool | None
    agreement: float | None
    drift: Drift | None  # as fitted; ``conclude`` keeps it only where most windows are reliable
    has_sync: bool

    @property
    def n_used(self) -> int:
        return int(self.used.sum())

    @property
    def pools_agree(self) -> bool | None:
        if self.mean_pool is None or self.log_pool is None:
            return None
        return abs(self.mean_pool.index - self.log_pool.index) <= 1

    @property
    def coarse_offset_sec(self) -> float | None:
        """The offset a fine pass starts from: the reported pool's refined offset."""
        return None if self.mean_pool is None else self.mean_pool.refined_offset_sec


@dataclass(frozen=True)
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
    reasons: list[str]  # why not reliable (synchformer.inference.verdict); none: reliable
    has_sync: bool = False  # sync_probs were given
    left_out_why: str = ""  # "audio is digital silence: 5 windows; ..."
    fine: FineOffset | None = None  # a fine-offset model's pass (inference.fine): the refined offset

    @property
    def reliable(self) -> bool:
        return not self.reasons

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
            "schema": SCHEMA, "window_sec": json_num(self.window_sec, 4), "grid_sec": [json_sec(g) for g in self.grid],
            "n_windows": len(self.windows), "n_used": int(self.n_used), "n_invalid": int(self.n_invalid),
            "left_out": {"min_sync_prob": json_num(self.min_sync_prob, 4), "count": len(self.left_out),
                         "indices": [int(i) for i in self.left_out], "why": self.left_out_why},
            "synchronizable": self.synchronizable, "reliable": self.reliable, "reasons": list(self.reasons),
            "pooling": self.pooling,
            "offset_sec": json_sec(self.offset_sec), "confidence": json_prob(self.confidence),
            "refined_offset_sec": json_sec(self.refined_offset_sec),
            "refined_interval_sec": json_interval(self.refined_interval_sec),
            "fine": None if self.fine is None else self.fine.to_dict(), "agreement": json_num(self.agreement, 4),
            "distribution": None if dist is None else [json_prob(v) for v in dist],
            "pools": {"mean": None if self.mean_pool is None else self.mean_pool.to_dict(),
                      "log": None if self.log_pool is None else self.log_pool.to_dict()},
            "pools_agree": self.pools_agree, "effective_windows": json_num(self.effective_windows),
            "message": self.message, "drift": None if self.drift is None else self.drift.to_dict(),
        }
        if windows:
            out["windows"] = [r.to_dict() for r in self.windows]
        return out


def _pool(kind: str, dist: np.ndarray, grid: np.ndarray) -> Pool:
    k = int(np.argmax(dist))
    refined = float(neighbour_expectation(dist[None], grid)[0])
    return Pool(kind=kind, offset_sec=float(grid[k]), confidence=float(dist[k]), refined_offset_sec=refined,
                distribution=dist, index=k, refined_interval_sec=neighbour_interval(dist, grid, k, refined))


def _describe(off: float) -> str:
    text = describe_offset(off)
    return f"{text} (0.00 s)" if abs(off) < 1e-9 else text


def pool_windows(starts, probs, grid, sync_probs=None, window_sec: float = WINDOW_SEC, min_sync_prob: float = 0.5,
                 problems=None, audio_events=None) -> Pooled:
    """The windows pooled into one distribution (see the module docstring), each window with its own verdict,
    the drift fitted; no verdict on the whole yet (``conclude``).

    ``problems``: per window, what the model-free checks found (``Analysis.problems``: silence, a still
    picture); such windows are left out as not synchronizable. ``audio_events``: per window, the gaps,
    overlaps and format changes of the audio's timestamps inside it (``Analysis.window_audio_events``):
    reported on its row; the window stays in (its audio is placed as a player that honours timestamps plays it).
    """
    starts, probs, grid = check_windows(starts, probs, grid, window_sec)
    n = len(starts)
    p, valid = normalise_rows(probs)
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
        ent[valid] = entropy(p[valid])
        kmax[valid] = np.argmax(p[valid], axis=1)
        refined[valid] = neighbour_expectation(p[valid], grid)

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
        offset = float(grid[kmax[i]]) if ok else None
        prob = float(p[i, kmax[i]]) if ok else None
        rows.append(WindowRow(
            index=i, start_sec=s, end_sec=s + window_sec, offset_sec=offset, probability=prob,
            refined_offset_sec=float(refined[i]) if ok else None,
            entropy_nats=float(ent[i]) if ok else None,
            entropy_norm=float(ent[i] / math.log(K)) if ok else None,
            sync_prob=None if sp is None or not math.isfinite(sp[i]) else float(sp[i]),
            used=bool(used[i]), note=note,
            reasons=window_reasons(bool(used[i]), note, prob, offset, grid),
            audio_events=[e.to_dict() for e in audio_events[i]] if audio_events is not None else []))
    left_out = [int(i) for i in np.flatnonzero(valid & not_sync)]

    mean_pool = log_pool = agreement = drift = None
    n_eff = 0.0
    n_used = int(used.sum())
    if n_used:
        a = overlap_weights(starts[used], window_sec)
        n_eff = float(a.sum())
        if n_eff <= 0:  # cannot happen for positive window_sec; guard anyway
            a = np.ones(n_used)
        pu = p[used]
        mean = (a[:, None] * pu).sum(axis=0) / a.sum()
        mean_pool, log_pool = _pool("mean", mean, grid), _pool("log", log_pooled(pu, a), grid)
        agreement = float(np.mean(np.abs(kmax[used] - mean_pool.index) <= 1))  # (the reported pool's class)
        drift = fit_drift(starts[used], p[used], grid, weights=None if sp is None else
                          np.where(np.isfinite(sp[used]), sp[used], 1.0), window_sec=window_sec)
    return Pooled(grid=grid, window_sec=float(window_sec), min_sync_prob=float(min_sync_prob), windows=rows,
                  used=used, n_invalid=int((~valid).sum()), left_out=left_out,
                  left_out_why=_left_out_reasons([rows[i].note for i in left_out]), effective_windows=n_eff,
                  mean_pool=mean_pool, log_pool=log_pool, agreement=agreement, drift=drift, has_sync=sp is not None)


def conclude(pooled: Pooled, fine: FineOffset | None = None, model_caveat: str | None = None,
             search_reasons: tuple[str, ...] = ()) -> Summary:
    """The Summary of ``pooled``, built once: the drift kept only where most windows are reliable, the verdict on
    the final numbers (``fine``: a fine pass's result, whose offset is then the refined one), then the message.
    ``model_caveat``: a reason added to an unreliable verdict about the model itself (e.g. the bundled model:
    "model trained on synthetic clips only"). ``search_reasons``: a wide search's (inference.search)."""
    drift = credible_drift(pooled.drift, [r.reliable for r in pooled.windows if r.used])
    reasons = file_reasons(pooled, drift, fine, model_caveat, search_reasons)
    return Summary(grid=pooled.grid, window_sec=pooled.window_sec, min_sync_prob=pooled.min_sync_prob,
                   windows=pooled.windows, n_used=pooled.n_used, n_invalid=pooled.n_invalid,
                   left_out=pooled.left_out, effective_windows=pooled.effective_windows,
                   mean_pool=pooled.mean_pool, log_pool=pooled.log_pool, pooling="mean", agreement=pooled.agreement,
                   drift=drift, message=_message(pooled, drift), reasons=reasons, has_sync=pooled.has_sync,
                   left_out_why=pooled.left_out_why, fine=fine)


def summarize(starts, probs, grid, sync_probs=None, window_sec: float = WINDOW_SEC, min_sync_prob: float = 0.5,
              problems=None, model_caveat: str | None = None, audio_events=None,
              fine: FineOffset | None = None) -> Summary:
    """One offset for a whole video from its windows (``pool_windows``, then ``conclude``); see the module
    docstring for the method."""
    return conclude(pool_windows(starts, probs, grid, sync_probs=sync_probs, window_sec=window_sec,
                                 min_sync_prob=min_sync_prob, problems=problems, audio_events=audio_events),
                    fine=fine, model_caveat=model_caveat)


def _message(pooled: Pooled, drift: Drift | None) -> str:
    """One line for people, written from the final numbers."""
    n, n_used, left_out = len(pooled.windows), pooled.n_used, pooled.left_out
    if n == 0:
        return "no windows: no overall offset"
    if not n_used:
        msg = ("no synchronizable window: no overall offset"
               if left_out else "no window with valid probabilities: no overall offset")
        return msg + (f" ({pooled.left_out_why})" if left_out else "")
    mean_pool, log_pool = pooled.mean_pool, pooled.log_pool
    parts = [f"{_describe(mean_pool.offset_sec)} (confidence {two_decimals(mean_pool.confidence)}, "
             f"{100 * pooled.agreement:.0f}% of {n_used} windows agree)"]
    if not log_pool.index - 1 <= mean_pool.index <= log_pool.index + 1:
        parts.append(f"the log pool says {signed(log_pool.offset_sec)} s: check the heat map")
    if left_out:
        parts.append(f"{len(left_out)} of {n} windows left out as not synchronizable ({pooled.left_out_why})")
    if pooled.n_invalid:
        parts.append(f"{pooled.n_invalid} windows with invalid probabilities ignored")
    if drift is not None and drift.detected:
        parts.append(f"the offset drifts {drift.slope_ms_per_min:+.0f} ms/min, "
                     f"{signed(drift.offset_at_start_sec)} s to {signed(drift.offset_at_end_sec)} s")
    if drift is not None and drift.step_at_sec is not None:
        parts.append(f"the offset jumps at {drift.step_at_sec:.1f} s from {signed(drift.step_from_sec)} s to "
                     f"{signed(drift.step_to_sec)} s")
    return "; ".join(parts)


def _left_out_reasons(notes: list[str]) -> str:
    """'audio is digital silence: 5 windows; picture is static: 2 windows' (each reason once, by count)."""
    counts = note_reasons(notes)
    return "; ".join(f"{k}: {v} window{'s' if v > 1 else ''}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
