""""Does it work on my footage?": in-sync clips shifted by known offsets, each read as ``predict`` reads a file.

Each clip is written again with its sound moved by its offset (``io.fix.shift_audio``: a remux, the pictures
untouched), and that file goes through ``predict`` with the model's companions: every window, pooled, the
synchronizability gate, the fine pass, the verdict. What a user of ``predict`` would see is then counted against
the truth: the refined offset's |error|, how often the answer is marked reliable, and how often a reliable answer
is wrong (more than ``WRONG_SEC`` off). The non-learned baseline (``inference.baseline.OnsetCorrelation``) reads
the same files the same way, without companions. ``verdict`` turns the numbers into one line.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from synchformer.errors import SynchformerError

WRONG_SEC = 0.2  # an answer more than one offset class (0.2 s) from the truth is wrong (as benchmarks count)
MAX_WRONG = 0.1  # the share of clips that may be wrong for the model to "work" on the footage
MAX_RELIABLE_WRONG = 0.05  # the share of reliable answers that may be wrong
MIN_RELIABLE = 0.5  # the share of answers that should be marked reliable


def footage_report(models, clips: list[tuple[str, float]], *, baseline=None, work_dir=None,
                   progress: bool = False) -> dict:
    """``clips``: (path of an in-sync video, offset to give it in seconds, + = audio leads). ``models``: the
    ``inference.predict.Models`` to measure; ``baseline``: a model-like baseline read the same way (or None).
    Returns ``{"clips": per-clip rows, "model": summary, "baseline": summary or None, "unusable": [{path, why}]}``."""
    from synchformer.inference.predict import Models, predict
    from synchformer.io.fix import shift_audio

    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="synchformer-footage-"))
    work.mkdir(parents=True, exist_ok=True)
    base_models = None if baseline is None else Models(offset=baseline, weights="baseline")
    rows, unusable = [], []
    items = clips
    if progress:
        from tqdm import tqdm

        items = tqdm(clips, desc="reading as predict", unit="clip", leave=False)
    for i, (path, offset) in enumerate(items):
        shifted = work / f"{i:05d}{Path(path).suffix or '.mp4'}"
        try:
            if not shifted.exists():
                shift_audio(path, shifted, -offset)  # moved so that the sound leads by ``offset``
            p = predict(shifted, models=models)
            b = None if base_models is None else predict(shifted, models=base_models)
        except SynchformerError as e:
            unusable.append({"path": path, "why": e.problem})
            continue
        finally:
            if shifted.exists():
                os.unlink(shifted)
        row = {"path": path, "offset_sec": round(offset, 4), "refined_sec": _r(p.refined_offset_sec),
               "error_sec": None if p.refined_offset_sec is None else round(p.refined_offset_sec - offset, 4),
               "reliable": bool(p.reliable), "reasons": list(p.reasons)}
        if b is not None:
            row["baseline_sec"] = _r(b.refined_offset_sec)
            row["baseline_error_sec"] = (None if b.refined_offset_sec is None
                                         else round(b.refined_offset_sec - offset, 4))
        rows.append(row)
    if not rows:
        raise SynchformerError(None, "no clip could be read as predict reads a file")
    return {"clips": rows, "model": summarize(rows, "error_sec", "reliable"),
            "baseline": summarize(rows, "baseline_error_sec", None) if baseline is not None else None,
            "unusable": unusable, "wrong_sec": WRONG_SEC}


def summarize(rows: list[dict], error_key: str, reliable_key: str | None) -> dict:
    """Median and p90 |error| (s) over the clips with an answer, the share of clips wrong (no answer counts as
    wrong), the share marked reliable, and how often a reliable answer is wrong."""
    err = np.array([abs(r[error_key]) if r.get(error_key) is not None else np.inf for r in rows])
    answered = err[np.isfinite(err)]
    wrong = err > WRONG_SEC
    out = {"clips": len(rows), "answered": int(len(answered)),
           "median_abs_error_sec": round(float(np.median(answered)), 4) if len(answered) else None,
           "p90_abs_error_sec": round(float(np.percentile(answered, 90)), 4) if len(answered) else None,
           "wrong": round(float(wrong.mean()), 4)}
    if reliable_key is not None:
        rel = np.array([bool(r[reliable_key]) for r in rows])
        out["reliable"] = round(float(rel.mean()), 4)
        out["reliable_and_wrong"] = int((rel & wrong).sum())
        out["reliable_wrong_share"] = round(float((rel & wrong).sum() / max(rel.sum(), 1)), 4)
    return out


def verdict(report: dict) -> tuple[bool, str]:
    """(works, one line): "works on this footage", or "tune it: " and why."""
    m, b = report["model"], report.get("baseline")
    why = []
    if m["wrong"] > MAX_WRONG:
        why.append(f"the offset is more than {WRONG_SEC:g} s off on {_pct(m['wrong'])} of clips")
    if m["reliable_wrong_share"] > MAX_RELIABLE_WRONG:
        k = m["reliable_and_wrong"]
        why.append(f"{k} answer{'s' if k != 1 else ''} marked reliable {'are' if k != 1 else 'is'} wrong")
    if m["reliable"] < MIN_RELIABLE:
        why.append(f"only {_pct(m['reliable'])} of answers are marked reliable")
    if b is not None and b["wrong"] < m["wrong"]:
        why.append(f"the non-learned baseline does better ({_pct(b['wrong'])} off against {_pct(m['wrong'])})")
    if not why:
        return True, (f"works on this footage: {_pct(1 - m['wrong'])} of clips within {WRONG_SEC:g} s, median "
                      f"|error| {1000 * m['median_abs_error_sec']:.0f} ms, {_pct(m['reliable'])} reliable")
    return False, "tune it: " + "; ".join(why)


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _r(x):
    return None if x is None else round(float(x), 4)
