"""Whether a result can be trusted: the ``reasons`` why not (none: ``reliable``), for a whole file and per window.

A model always puts its probability somewhere, so an offset is only worth acting on when the evidence says
so. The rules below read the pooled numbers (confidence, how many windows agree, the edge of the range, what
the model-free checks and a stage III model left out, the fine pass) and return reasons; they change nothing.
``pooling`` builds each result once, with its verdict. The thresholds were chosen on synthetic clips with known
offsets mixed with clips that cannot be synchronized (silent audio, another clip's sound, a still picture):
``benchmarks/calibrate_verdict.py`` prints the coverage / accuracy table that docs/reliability.md quotes.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from synchformer.inference.distributions import two_decimals

# calibrated with benchmarks/calibrate_verdict.py (docs/reliability.md, "Can the answer be trusted?")
MIN_CONFIDENCE = 0.35  # pooled probability of the reported class
MIN_AGREEMENT = 0.40  # fraction of used windows within one class of it (with 3 windows or more)
EDGE_MIN_CONFIDENCE = 0.50  # at +-2.0 s the true offset may lie beyond the range: ask for more
MIN_WINDOW_PROBABILITY = 0.40  # a single window's top probability
# a drift or a jump is a finding only when most windows are individually reliable: a timeline of noise
# has runs and tilts too
MIN_RELIABLE_WINDOW_FRACTION = 0.5
# the fine pass reads +-0.2 s around the coarse offset: an answer this near its edge says the coarse one was off
# by more than it can see
FINE_EDGE_FRACTION = 0.95


def _at_edge(offset: float, grid: np.ndarray) -> bool:
    # a grid moved by a wide search (inference.search) is not centred on 0: its edges are its ends
    return offset >= float(np.max(grid)) - 1e-6 or offset <= float(np.min(grid)) + 1e-6


def _range(grid: np.ndarray) -> str:
    lo, hi = float(np.min(grid)), float(np.max(grid))
    return f"±{hi:.1f} s" if abs(lo + hi) < 1e-6 else f"{lo:+.1f}..{hi:+.1f} s"


def window_reasons(used: bool, note: str | None, probability: float | None, offset_sec: float | None,
                   grid: np.ndarray) -> list[str]:
    """Why one window's estimate cannot be trusted (empty: it can)."""
    if not used:
        return [note or "left out"]
    out = []
    if probability < MIN_WINDOW_PROBABILITY:
        out.append(f"probability {two_decimals(probability)} below {MIN_WINDOW_PROBABILITY:.2f}")
    if _at_edge(offset_sec, grid) and probability < EDGE_MIN_CONFIDENCE:
        out.append(f"at the edge of the {_range(grid)} range")
    return out


def credible_drift(drift, reliable_windows: list[bool]):
    """``drift`` as it stands, or, when it found a drift or a jump among mostly unreliable windows (noise has
    runs and tilts too), a copy that found none and says why."""
    if drift is None or not (drift.detected or drift.step_at_sec is not None) or not reliable_windows:
        return drift
    share = sum(reliable_windows) / len(reliable_windows)
    if share >= MIN_RELIABLE_WINDOW_FRACTION:
        return drift
    return dataclasses.replace(
        drift, detected=False, step_at_sec=None, step_from_sec=None, step_to_sec=None,
        reason=(f"not significant: only {100 * share:.0f}% of the windows are reliable, need "
                f"{100 * MIN_RELIABLE_WINDOW_FRACTION:.0f}% to tell a drift or a jump from noise"))


def file_reasons(pooled, drift, fine=None, model_caveat: str | None = None, search_reasons=()) -> list[str]:
    """Why the file's overall offset cannot be trusted (empty: it can): from the pooled windows (``pooling.Pooled``),
    the drift as it stands (``credible_drift``), the fine pass, if one ran (``pooling.FineOffset``), and a wide
    search's own (an ambiguous choice of shift, ``inference.search``)."""
    out = _reasons(pooled, drift, fine) + list(search_reasons)
    if out and model_caveat:
        out.append(model_caveat)
    return out


def _reasons(pooled, drift, fine) -> list[str]:
    grid = pooled.grid
    if pooled.mean_pool is None:
        return list(note_reasons(r.note for r in pooled.windows)) or ["no window to measure"]
    out = []
    c = pooled.mean_pool.confidence
    if c < MIN_CONFIDENCE:
        out.append(f"confidence {two_decimals(c)} below {MIN_CONFIDENCE:.2f}")
    if _at_edge(pooled.mean_pool.offset_sec, grid) and c < EDGE_MIN_CONFIDENCE:
        out.append(f"at the edge of the {_range(grid)} range (the offset may be larger)")
    changes = drift is not None and (drift.detected or drift.step_at_sec is not None)
    if changes:
        out.append("the offset changes over the file (see drift): no single offset fits it")
    elif pooled.n_used >= 3 and pooled.agreement < MIN_AGREEMENT:
        out.append(f"windows disagree ({100 * pooled.agreement:.0f}% within one class)")
    if pooled.pools_agree is False:
        out.append("the mean and log pools disagree")
    if pooled.left_out and len(pooled.left_out) >= len(pooled.windows) / 2:
        out.append(f"{len(pooled.left_out)} of {len(pooled.windows)} windows cannot be synchronized")
    edge = fine_edge_reason(fine) if fine is not None else None
    if edge:
        out.append(edge)
    return out


def fine_edge_reason(fine) -> str | None:
    """The reason a fine pass's reading (``fine.FineOffset``) gives, where it reads at the edge of its range."""
    reach = float(np.max(np.abs(fine.grid)))
    if abs(fine.residual_sec) >= FINE_EDGE_FRACTION * reach:
        return (f"the fine pass read {1000 * fine.residual_sec:+.0f} ms, at the edge of its ±{reach:g} s range: "
                "the coarse offset may be off by more")
    return None


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


__all__ = ["window_reasons", "credible_drift", "file_reasons", "fine_edge_reason", "note_reasons", "MIN_CONFIDENCE", "MIN_AGREEMENT",
           "EDGE_MIN_CONFIDENCE", "MIN_WINDOW_PROBABILITY", "MIN_RELIABLE_WINDOW_FRACTION", "FINE_EDGE_FRACTION"]
