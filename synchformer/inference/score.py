"""Scoring many files: av-benchmark's DeSync, or whole-video offsets; one row per (video, audio) pair.

Files are decoded in worker processes and several are in flight at once on a GPU (``batching``); rows come in
input order whatever finishes first, and do not depend on what else was in a batch beyond float rounding. Every
user-caused failure (missing, unreadable, no sound, too short: a SynchformerError) becomes a row with
``status: "error"`` and the run goes on.

    model = synchformer.load_model("24-01-04T16-39-21.pt", device="cuda")
    items = read_inputs(["gen/videos"], audio_dir="gen/audio")       # (video, generated audio) pairs
    rows = list(score_files(model, items, workers=8))                # metric="desync"
    summarize_rows(rows)["desync_mean"]                              # av-benchmark's DeSync
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from synchformer.constants import MAX_WINDOWS, METRICS, VIDEO_FPS
from synchformer.errors import SynchformerError
from synchformer.features.segments import decode_size, span_frames
from synchformer.inference.analysis import Analysis
from synchformer.inference.batch_io import (AUDIO_EXTENSIONS, COMMON, METRIC_COLUMNS, VIDEO_EXTENSIONS, Item, as_item,
                                           assign_ids, columns, read_inputs, row_key)
from synchformer.inference.batching import analyze_files, note_read_args, schedule
from synchformer.inference.distributions import json_num
from synchformer.inference.search import DEFAULT_MAX_OFFSET_SEC, keep_margin_sec, search, searches
from synchformer.inference.tolerance import tolerance_of
from synchformer.inference.workers import open_item
from synchformer.io.decode import load_audio
from synchformer.model.precision import using

def desync_of(analysis: Analysis) -> dict:
    """av-benchmark's DeSync of one clip from an analysis with ``first_frame=0`` and ``size=224`` (e.g.
    ``analyze(model, path, ends_only=True, size=224)``): the argmax class of the first window (segments 0-13)
    and of the last (the last 14 segments), their |offset| averaged. A clip of exactly 14 segments has one
    window, counted twice as av-benchmark does. Also gives both signed offsets and their probabilities."""
    k = analysis.logits.argmax(-1)
    probs = analysis.probs
    out = {}
    for name, w in (("first", 0), ("last", len(k) - 1)):
        out[f"{name}_start_sec"] = json_num(analysis.window_starts[w], 3)
        out[f"{name}_offset_sec"] = json_num(analysis.grid[k[w]], 3)
        out[f"{name}_probability"] = json_num(probs[w, k[w]], 6)
    out["desync_sec"] = json_num((abs(out["first_offset_sec"]) + abs(out["last_offset_sec"])) / 2, 6)
    return {c: out[c] for c in METRIC_COLUMNS["desync"]}


def offset_of(analysis: Analysis, summary=None) -> dict:
    """The whole video's offset from all its windows (pooling.summarize's pooled offset; windows that the
    model-free checks reject are left out)."""
    out = dict.fromkeys(METRIC_COLUMNS["offset"])
    d = (summary or analysis.summarize()).to_dict(windows=False)
    drift = d.get("drift") or {}
    out.update(offset_sec=d["offset_sec"], confidence=d["confidence"], refined_offset_sec=d["refined_offset_sec"],
               agreement=d["agreement"], drift_detected=drift.get("detected"),
               drift_ms_per_min=drift.get("slope_ms_per_min"))
    out["abs_offset_sec"] = None if out["offset_sec"] is None else abs(out["offset_sec"])
    return out


def run_settings(model, metric: str = "desync", *, hop_sec: float = 2.4, duration: float | None = None,
                 max_windows: int = MAX_WINDOWS, timing: str | None = None, size: int | None = None,
                 precision: str | None = None, fine_model=None, audio_track: int | str | None = None,
                 tolerance=None, max_offset_sec: float = DEFAULT_MAX_OFFSET_SEC) -> dict:
    """What ``score_files`` with these arguments records in each row besides the file (batch_io.SETTINGS and
    METRIC_SETTINGS, with metric and timing): the model's identity (``weights_identity``), its precision, the
    frame size, the options that change the numbers, and the fine model's identity where one runs; for the offset
    metric the tolerance ``in_tolerance`` is judged by (its name, or "LEAD,LAG" in ms; default: bt1359)."""
    from synchformer.model.load import weights_identity
    from synchformer.model.precision import resolve

    crop = int(model.cfg.image_size)
    ident = weights_identity(model)
    precision = resolve(precision, model.device, model.cfg) if precision else getattr(model, "precision", "fp32")
    out = {"metric": metric, "timing": timing or ("true" if metric == "desync" else model.cfg.timing),
           "weights": ident["weights"], "weights_sha256": ident["sha256"], "precision": precision,
           "frame_size": int(size or (crop if metric == "desync" else decode_size(crop))),
           "cut_sec": None if duration is None else float(duration), "audio_track": audio_track}
    if metric == "offset":
        fine = weights_identity(fine_model) if fine_model is not None else {}
        # a cut is read whole: the budget does not apply
        out.update(hop_sec=float(hop_sec), max_windows=int(max_windows) if duration is None else 0,
                   fine_weights=fine.get("weights"), fine_sha256=fine.get("sha256"),
                   tolerance=tolerance_of(tolerance).name, max_offset_sec=float(max_offset_sec))
    return out


def _row(item: Item, metric: str, settings: dict | None = None) -> dict:
    row = dict.fromkeys(columns(metric))
    row.update(settings or {})
    row.update(id=item.id, video=item.video, audio=item.audio, status="ok", metric=metric)
    return row


def _fill(row: dict, analysis: Analysis, metric: str, fine_model=None, model=None) -> dict:
    s = analysis.file_segments if analysis.sampled else analysis.segments_total
    row["timing"] = analysis.timing  # "true" for a separate audio track, taken as it is
    # the audio's gaps and overlaps in its timestamps (placed as players that honour them play them) are news for
    # a row too: players that join the audio end to end hear that file differently
    jumps = [f"audio {e.describe()}" for e in analysis.audio_events if e.kind in ("gap", "overlap")]
    row.update(duration_sec=json_num(span_frames(s) / VIDEO_FPS, 3), n_segments=s,
               n_windows=len(analysis.window_starts), warnings="; ".join(analysis.warnings + jumps) or None)
    found, pooled = None, analysis.pool()
    if (metric == "offset" and model is not None and searches(model, row["max_offset_sec"])
            and analysis.visual_features):
        found = search(model, analysis, row["max_offset_sec"], pooled=pooled)  # beyond the model's +-2 s
        if found.chosen.shift_sec != 0.0:
            analysis, pooled = found.analysis(analysis), None
    summary = analysis.summarize(fine_model=fine_model if metric == "offset" else None,
                                 search_reasons=tuple(found.reasons()) if found else (), pooled=pooled)
    row.update(reliable=bool(summary.reliable), reasons="; ".join(summary.reasons) or None)
    row.update(desync_of(analysis) if metric == "desync" else offset_of(analysis, summary))
    if metric == "offset":
        row["sampled"] = analysis.sampled
        refined = row["refined_offset_sec"]  # as predict judges it (settings put the tolerance in the row)
        row["in_tolerance"] = None if refined is None else tolerance_of(row["tolerance"]).contains(refined)
    return row


def score_files(model, items: Iterable, *, metric: str = "desync", hop_sec: float = 2.4,
                duration: float | None = None, workers: int = 0, batch_size: int | None = None,
                size: int | None = None, timing: str | None = None, max_windows: int = MAX_WINDOWS,
                precision: str | None = None, files_in_flight: int | None = None,
                fine_model=None, audio_track: int | str | None = None, tolerance=None,
                max_offset_sec: float = DEFAULT_MAX_OFFSET_SEC) -> Iterator[dict]:
    """One row (a dict with the keys of :func:`columns`) per item, in the order given, as each is done. Each row
    names the model and the settings that made it (:func:`run_settings`); ids are unique (``assign_ids``).

    ``metric="desync"``: av-benchmark's recipe (frames scaled to short side 224, segments from frame 0, first
    and last window). ``metric="offset"``: every window at ``hop_sec`` (short side 256, as the models were
    trained), pooled into one offset; a file longer than ``max_windows`` windows (the analysis budget, see
    ``analyze``) in that many windows spread over it (0: every window). ``duration``: cut video and audio to
    this many seconds first.
    ``workers``: decoding processes (0: decode in this process). ``batch_size``: segments per encoder call
    (default 128 on CUDA, halved on an out-of-memory error; 4 on a CPU). ``files_in_flight``: files whose
    segments share encoder calls (default: one per decoding worker on CUDA, 1 on a CPU; at most ``workers``).
    ``timing`` of the audio (``load_av``): default "true" for desync (av-benchmark decodes so, and published
    DeSync numbers are of that), the model's own (``ModelConfig.timing``) for offset. ``precision``: fp32, bf16,
    fp16 or auto (default: ``model.precision``). ``fine_model``: offset metric, a fine-offset model for
    ``refined_offset_sec`` (``inference.fine``). ``audio_track``: which audio track of each file (or of its
    separate audio file) is measured: a number from 1 or a language code (default: the one a player picks).
    ``tolerance``: offset metric, what each row's ``in_tolerance`` is judged by (a ``Tolerance``, a standard's name
    or "LEAD,LAG" in ms; default: BT.1359). ``max_offset_sec``: offset metric, the half-width of the search
    (``inference.search``; beyond the model's +-2 s the files are decoded in this process, which keeps their sound).
    Items: :class:`Item`, video paths, (video, audio) pairs or dicts (see :func:`as_item`).
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    with using(precision, model, fine_model):
        yield from _score_files(model, items, metric, hop_sec, duration, workers, batch_size, size, timing,
                                max_windows, files_in_flight, fine_model if metric == "offset" else None,
                                audio_track, tolerance, max_offset_sec)


def _score_files(model, items, metric, hop_sec, duration, workers, batch_size, size, timing, max_windows,
                 files_in_flight, fine_model=None, audio_track=None, tolerance=None,
                 max_offset_sec: float = DEFAULT_MAX_OFFSET_SEC):
    items = [as_item(x) for x in items]
    if any(it.id is None for it in items):
        items = assign_ids(items)
    # frames at the model's own input size (224 for the released models; the bundled tiny one takes 32): desync
    # decodes at short side = crop (av-benchmark: 224), offset at the reference's 256/224 proportion
    crop = int(model.cfg.image_size)
    # under using(): model.precision is the one this run computes in
    settings = run_settings(model, metric, hop_sec=hop_sec, duration=duration, max_windows=max_windows,
                            timing=timing, size=size, fine_model=fine_model, audio_track=audio_track,
                            tolerance=tolerance, max_offset_sec=max_offset_sec)
    timing = settings["timing"]
    opts = {"size": settings["frame_size"], "duration": duration, "crop": crop,
            "timing": timing, "max_windows": max_windows if metric == "offset" else 0,
            "window_segments": model.cfg.n_segments, "audio_track": audio_track}
    wide = metric == "offset" and searches(model, max_offset_sec)
    kw = {"ends_only": metric == "desync", "hop_sec": hop_sec, "keep_visual": fine_model is not None or wide}
    if wide:  # the search takes the sound the pass kept, so the files are read here, not in decoding processes
        opts["keep_margin_sec"] = keep_margin_sec(model, max_offset_sec)
        workers = 0
    for i, analysis, error in schedule(model, items, opts, kw, workers, batch_size, files_in_flight):
        row = _row(items[i], metric, settings)
        try:
            if error is None:
                note_read_args(analysis, items[i], opts)
                _fill(row, analysis, metric, fine_model, model)
        except SynchformerError as e:
            error = str(e)
        if error is not None:
            row.update(status="error", error=error)
        yield row


def summarize_rows(rows: Iterable[dict], metric: str = "desync") -> dict:
    """Counts and the dataset-level number: DeSync (mean and std over clips, seconds) or the mean |offset|.
    Accepts rows as written (JSONL) or read back from a CSV (strings)."""
    rows = list(rows)
    ok = [r for r in rows if r.get("status") == "ok"]

    def values(col):
        v = [float(r[col]) for r in ok if r.get(col) not in (None, "")]
        return np.asarray(v, dtype=np.float64)

    out = {"metric": metric, "clips": len(rows), "scored": len(ok), "failed": len(rows) - len(ok)}
    if metric == "desync":
        v = values("desync_sec")  # = the mean over all windows, 2 per clip, as av-benchmark averages
        out.update(desync_mean=float(v.mean()) if len(v) else None, desync_std=float(v.std()) if len(v) else None)
    else:
        v, s = values("abs_offset_sec"), values("offset_sec")
        out.update(mean_abs_offset_sec=float(v.mean()) if len(v) else None,
                   mean_offset_sec=float(s.mean()) if len(s) else None)
    return out


__all__ = ["AUDIO_EXTENSIONS", "COMMON", "Item", "METRICS", "METRIC_COLUMNS", "VIDEO_EXTENSIONS", "analyze_files",
           "as_item", "assign_ids", "columns", "desync_of", "load_audio", "offset_of", "open_item", "read_inputs",
           "row_key", "run_settings", "score_files", "summarize_rows"]
