"""Whether a result can be trusted: ``reliable`` and the ``reasons`` why not, for a whole file and per window.

A model always puts its probability somewhere, so an offset is only worth acting on when the evidence says
so. The rules below read what the summary already holds (pooled confidence, how many windows agree, the edge
of the range, what the model-free checks and a stage III model left out). The thresholds were chosen on
synthetic clips with known offsets mixed with clips that cannot be synchronized (silent audio, another
clip's sound, a still picture): ``benchmarks/calibrate_verdict.py`` prints the coverage / accuracy table that
README.md quotes.
"""

from __future__ import annotations

import math

import numpy as np

# calibrated with benchmarks/calibrate_verdict.py (see README.md, "Can the answer be trusted?")
MIN_CONFIDENCE = 0.35  # pooled probability of the reported class
MIN_AGREEMENT = 0.40  # fraction of used windows within one class of it (with 3 windows or more)
EDGE_MIN_CONFIDENCE = 0.50  # at +-2.0 s the true offset may lie beyond the range: ask for more
MIN_WINDOW_PROBABILITY = 0.40  # a single window's top probability
# a drift or a jump is a finding only when most windows are individually reliable: a timeline of noise
# has runs and tilts too
MIN_RELIABLE_WINDOW_FRACTION = 0.5


def two_decimals(value: float) -> str:
    """A probability as every message shows it: two decimals rounded down, so that 0.349 below 0.35 reads "0.34",
    not "0.35 below 0.35", and the confidence a result shows is the one its reasons compare."""
    return f"{math.floor(value * 100 + 1e-9) / 100:.2f}"


def _at_edge(offset: float, grid: np.ndarray) -> bool:
    return abs(offset) >= float(np.max(np.abs(grid))) - 1e-6


def window_reasons(row, grid: np.ndarray) -> list[str]:
    """Why one window's estimate cannot be trusted (empty: it can)."""
    if not row.used:
        return [row.note or "left out"]
    out = []
    if row.probability < MIN_WINDOW_PROBABILITY:
        out.append(f"probability {two_decimals(row.probability)} below {MIN_WINDOW_PROBABILITY:.2f}")
    if _at_edge(row.offset_sec, grid) and row.probability < EDGE_MIN_CONFIDENCE:
        out.append(f"at the edge of the ±{np.max(np.abs(grid)):.1f} s range")
    return out


def file_reasons(summary) -> list[str]:
    """Why the file's overall offset cannot be trusted (empty: it can)."""
    grid = summary.grid
    if summary.offset_sec is None:
        from synchformer.inference.pooling import note_reasons

        return list(note_reasons(r.note for r in summary.windows)) or ["no window to measure"]
    out = []
    c = summary.confidence
    if c < MIN_CONFIDENCE:
        out.append(f"confidence {two_decimals(c)} below {MIN_CONFIDENCE:.2f}")
    if _at_edge(summary.offset_sec, grid) and c < EDGE_MIN_CONFIDENCE:
        out.append(f"at the edge of the ±{np.max(np.abs(grid)):.1f} s range (the offset may be larger)")
    drift = summary.drift
    changes = drift is not None and (drift.detected or drift.step_at_sec is not None)
    if changes:
        out.append("the offset changes over the file (see drift): no single offset fits it")
    elif summary.n_used >= 3 and summary.agreement < MIN_AGREEMENT:
        out.append(f"windows disagree ({100 * summary.agreement:.0f}% within one class)")
    if summary.pools_agree is False:
        out.append("the mean and log pools disagree")
    if summary.left_out and len(summary.left_out) >= len(summary.windows) / 2:
        out.append(f"{len(summary.left_out)} of {len(summary.windows)} windows cannot be synchronized")
    return out


def judge(summary, model_caveat: str | None = None) -> None:
    """Set ``reliable``/``reasons`` on the summary and on each of its windows; a drift or a jump found among
    mostly unreliable windows is noise: it is dropped (its reason says so)."""
    grid = summary.grid
    for row in summary.windows:
        row.reasons = window_reasons(row, grid)
        row.reliable = not row.reasons
    used = [r for r in summary.windows if r.used]
    drift = summary.drift
    if drift is not None and (drift.detected or drift.step_at_sec is not None) and used:
        share = sum(r.reliable for r in used) / len(used)
        if share < MIN_RELIABLE_WINDOW_FRACTION:
            drift.detected = False
            drift.step_at_sec = drift.step_from_sec = drift.step_to_sec = None
            drift.reason = (f"not significant: only {100 * share:.0f}% of the windows are reliable, need "
                            f"{100 * MIN_RELIABLE_WINDOW_FRACTION:.0f}% to tell a drift or a jump from noise")
            summary.message = "; ".join(p for p in summary.message.split("; ")
                                        if not p.startswith(("the offset drifts", "the offset jumps")))
    reasons = file_reasons(summary)
    if reasons and model_caveat:
        reasons.append(model_caveat)
    summary.reasons = reasons
    summary.reliable = not reasons


__all__ = ["judge", "file_reasons", "window_reasons", "two_decimals", "MIN_CONFIDENCE", "MIN_AGREEMENT", "EDGE_MIN_CONFIDENCE",
           "MIN_WINDOW_PROBABILITY", "MIN_RELIABLE_WINDOW_FRACTION"]
