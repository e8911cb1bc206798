"""One call that does what ``synchformer predict`` does, and the decision ``synchformer fix`` acts on.

    import synchformer

    p = synchformer.predict("clip.mp4", weights="audioset")       # Prediction
    p.refined_offset_sec, p.reliable, p.reasons                    # the numbers predict prints
    p.to_dict()                                                    # exactly what `predict --json` prints
    d = synchformer.decide_fix(p)                                  # FixDecision: shift, leave alone, or refuse
    if d.action == "shift":
        synchformer.shift_audio("clip.mp4", "fixed.mp4", d.offset_sec, audio_stream=d.audio_stream)

``load_models`` gives the offset model with its companions (the bundled offset model brings its synchronizability
and fine-offset models, as the command line does), so that a notebook and the shell get the same number. The
command line parses, calls these, and prints.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from synchformer.constants import MAX_WINDOWS, SEGMENT_STRIDE_SEC
from synchformer.errors import SynchformerError
from synchformer.inference.analysis import Analysis
from synchformer.inference.pooling import Summary
from synchformer.inference.search import DEFAULT_MAX_OFFSET_SEC, Search, keep_margin_sec, search, searches
from synchformer.inference.tolerance import Tolerance, tolerance_of
from synchformer.model import Synchformer

DEFAULT_WEIGHTS = "audioset"  # the released model used where no weights are named (downloaded once)
DEFAULT_HOP_SEC = 0.64
# what a gap or an overlap in the audio's timestamps means for the people who watch the file
TIMELINE_MEANING = ("players that honour timestamps (as this measurement does) stay in sync across a gap or an "
                    "overlap; those that join the audio end to end (some editors and converters) are off by its "
                    "length after it")


# ------------------------------------------------------------------------------------------------ models

@dataclass(frozen=True)
class Models:
    """The models a prediction runs, and how its output names each."""

    offset: Synchformer
    syncability: Synchformer | None = None  # a stage III gate: windows it finds unsynchronizable are left out
    fine: Synchformer | None = None  # a fine-offset model: the refined offset to the frame (inference.fine)
    weights: str = ""
    syncability_weights: str | None = None
    fine_weights: str | None = None
    warnings: tuple[str, ...] = ()  # said with every result (e.g. that the bundled model stood in)


def load_models(weights: str | os.PathLike | None = None, *, syncability: str | None = "auto",
                fine: str | None = "auto", device: str = "cpu", precision: str = "auto",
                options: dict[str, str] | None = None, any_head: bool = False) -> Models:
    """The offset model ``weights`` (a released or bundled model's name, or a file; None: the released
    ``audioset``, or where it cannot be had, the bundled model, with a warning that says why), with its companions:
    ``syncability`` and ``fine`` name a synchronizability and a fine-offset model ("none" or None: none; "auto":
    the bundled ones with the bundled offset model, none with others; "bundled": the bundled one). ``device``:
    "cpu", "cuda", "cuda:1", ... or "auto". ``precision``: fp32, bf16, fp16 or auto (``model.precision``); the
    companions run at the offset model's. ``options``: the command-line options that name each ({"weights":
    "--weights", ...}), for what a failed download tells the user to do. ``any_head``: ``weights`` may be a
    synchronizability model too (one window's P(synchronizable)); it then comes alone."""
    dev = resolve_device(device)
    offset, label, warnings = load_weights(weights, device=dev, precision=precision, options=options)
    if offset.cfg.head != "offset":
        if any_head:
            return Models(offset=offset, weights=label, warnings=tuple(warnings))
        raise SynchformerError(weights, "is a synchronizability model: pass it as the synchronizability model and "
                                        "an offset model (stage II) as the weights")
    gate = load_companion(syncability, offset, dev, "syncability", options)
    finer = load_companion(fine, offset, dev, "fine", options)
    return Models(offset=offset, syncability=gate, fine=finer, weights=label,
                  syncability_weights=companion_label(syncability, gate), fine_weights=companion_label(fine, finer),
                  warnings=tuple(warnings))


def load_weights(weights: str | os.PathLike | None = None, *, device="cpu", precision: str = "auto",
                 options: dict[str, str] | None = None, head: str | None = None,
                 sync_head: bool = True) -> tuple[Synchformer, str, list[str]]:
    """(model, how outputs name it, its warnings): ``weights`` as ``load_models`` takes it (None: the released
    ``audioset``, or the bundled model with a warning that says why). ``sync_head``: the sync transformer is
    needed (not only the encoders of a stage I file); ``head``: the head needed, if one."""
    from synchformer.model.precision import resolve

    dev = resolve_device(device) if isinstance(device, str) else device
    resolve(precision, dev)  # fp16 on a CPU: refused before the weights load
    warnings = []
    if weights is None:
        model, label, warning = _default_model(dev, options)
        warnings += [warning] if warning else []
        model.precision = resolve(precision, dev, model.cfg)
    else:
        model, label = _load(weights, dev, precision, "weights", options), str(weights)
    if model.bundled == "synthetic_tiny" and not warnings:  # named explicitly: still said with every result
        from synchformer.model.assets import NOTE

        warnings.append(NOTE.removeprefix("note: "))
    model.weights_label, model.load_warning = label, (warnings[0] if warnings else None)
    if sync_head and not model.has_sync_head:
        raise SynchformerError(weights, "holds only the encoders (a stage I checkpoint): it cannot tell offsets; "
                                        "use a stage II/III checkpoint, or the features of its encoders")
    if head is not None and model.cfg.head != head:
        raise SynchformerError(weights, f"has a {model.cfg.head} head; this needs a model with the {head} head")
    return model, label, warnings


def resolve_device(name: str, option: str = "device"):
    """``name`` as a torch device ("auto": CUDA where there is a GPU), or a one-line SynchformerError that names
    ``option`` (the command line's "--device")."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cpu = "cpu" if option == "device" else f"{option} cpu"
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise SynchformerError(None, f"{option} {name}: not a device name (cpu, cuda, cuda:1, ...)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no GPU is visible"
            raise SynchformerError(None, f"{option} {name}: CUDA is not available ({why}); use {cpu}")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise SynchformerError(None, f"{option} {name}: there are only {torch.cuda.device_count()} GPU(s)")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise SynchformerError(None, f"{option} {name}: MPS is not available on this machine; use {cpu}")
    return dev


def _load(source, dev, precision: str, role: str, options: dict | None):
    from synchformer.model import load_model
    from synchformer.model.released import DownloadError, cli_hint

    try:
        return load_model(source, device=dev, precision=precision)
    except DownloadError as e:  # said as the command line says it, where it named the weights
        if options and role in options:
            raise e.with_hint(cli_hint(options[role])) from None
        raise


def _default_model(dev, options: dict | None):
    """(model, its label, the warning where the bundled model stood in)."""
    from synchformer.model import load_model, released
    from synchformer.model.bundled import synthetic_tiny

    try:
        path = released.fetch(DEFAULT_WEIGHTS, timeout=10)
    except SynchformerError as e:  # the reason (md5 mismatch, HTTP 404, refused connection) goes into the warning
        why = e.reason if isinstance(e, released.DownloadError) else str(e)
        way = (f"pass {options['weights']} FILE, or {options['weights']} bundled to use the bundled model without "
               "this warning" if options and "weights" in options else
               'pass weights=FILE, or weights="bundled" to use the bundled model without this warning')
        warning = (f"using the bundled model, trained on synthetic clips only: the released {DEFAULT_WEIGHTS} model "
                   f"is not in {released.cache_dir()} and could not be downloaded from "
                   f"{released.url_of(DEFAULT_WEIGHTS)} ({why}); set SYNCHFORMER_MIRROR to a server that has it, "
                   f"{way}")
        return synthetic_tiny(dev), "bundled", warning  # "bundled": a name every weights option takes
    return load_model(path, device=dev), DEFAULT_WEIGHTS, None


def load_companion(choice, offset: Synchformer, device, role: str, options: dict | None = None):
    """The model that works beside ``offset`` in ``role`` ("syncability": a synchronizability gate; "fine": a
    fine-offset model), as ``choice`` names it (see load_models); None for none. It runs at ``offset``'s
    precision."""
    head, bundled = {"syncability": ("synchronizability", "synthetic_tiny_syncability"),
                     "fine": ("offset", "synthetic_tiny_fine")}[role]
    if choice in (None, "none"):
        return None
    if choice == "auto":
        if getattr(offset, "bundled", None) != "synthetic_tiny":
            return None
        from synchformer.model.assets import path_of

        source = path_of(bundled)
    else:
        from synchformer.model.assets import is_name

        source = bundled if choice == "bundled" and is_name(choice) else choice  # its own bundled companion
    dev = resolve_device(device) if isinstance(device, str) else device
    model = _load(source, dev, "fp32", role, options)
    if model.cfg.head != head:
        raise SynchformerError(choice, f"has a {model.cfg.head} head; this needs a model with the {head} head")
    if role == "fine" and choice != "auto":
        from synchformer.inference.fine import is_fine_model

        if not is_fine_model(model):
            what = options.get("weights", "weights") if options else "weights"
            raise SynchformerError(choice, f"is not a fine-offset model: its classes reach "
                                           f"+-{model.cfg.max_offset_sec:g} s (a fine one reaches at most +-0.5 s); "
                                           f"pass a coarse model as {what}")
    model.precision = getattr(offset, "precision", "fp32")
    return model


def companion_label(choice, model) -> str | None:
    """How the output names a companion: the file or name asked for, or the bundled model's name; null: none."""
    if model is None:
        return None
    return model.bundled if choice == "auto" else str(choice)


# ------------------------------------------------------------------------------------------------ a prediction

@dataclass(frozen=True)
class Prediction:
    """What predict finds in one file (one audio track): its analysis, its Summary (built once, the fine pass and
    the verdict included), and what made them."""

    path: str
    analysis: Analysis = field(repr=False)
    summary: Summary = field(repr=False)
    weights: str
    syncability_weights: str | None
    fine_weights: str | None
    precision: str
    warnings: tuple[str, ...] = ()
    tolerance: Tolerance = field(default_factory=lambda: tolerance_of(None))  # what in_tolerance is judged by
    max_offset_sec: float = DEFAULT_MAX_OFFSET_SEC  # the half-width searched
    search: Search | None = field(default=None, repr=False)  # where a wide search looked (None: the model's grid)
    audio_file: dict | None = None  # a separate sound file measured against the picture: its path and duration

    @property
    def offset_sec(self) -> float | None:
        return self.summary.offset_sec

    @property
    def refined_offset_sec(self) -> float | None:
        return self.summary.refined_offset_sec

    @property
    def refined_interval_sec(self) -> tuple[float, float] | None:
        return self.summary.refined_interval_sec

    @property
    def confidence(self) -> float | None:
        return self.summary.confidence

    @property
    def reliable(self) -> bool:
        return self.summary.reliable

    @property
    def reasons(self) -> list[str]:
        return self.summary.reasons

    @property
    def in_tolerance(self) -> bool | None:
        """Whether the refined offset (the number ``fix`` would move the audio by) is inside ``tolerance``; None:
        no offset. Not whether it is reliable: a QC check wants both (``predict --check``)."""
        r = self.refined_offset_sec
        return None if r is None else self.tolerance.contains(r)

    def to_dict(self) -> dict:
        """The JSON object ``synchformer predict --json`` prints: the Summary's keys (``pooling.py``'s schema) and the
        file, ``status`` ("ok"), the models, ``timing``, ``audio_track`` (``AudioTrack.to_dict``) and
        ``audio_timeline`` ({"events": [AudioEvent.to_dict], "checked": "the whole file" | "the sampled windows
        only", "meaning": what a gap or an overlap means, or null}), ``tolerance`` (``Tolerance.to_dict``) and
        ``in_tolerance`` (of the refined offset; null: no offset)."""
        a = self.analysis
        segments = a.file_segments if a.sampled else a.segments_total
        return {"file": self.path, "status": "ok", "weights": self.weights,
                "syncability_weights": self.syncability_weights, "fine_weights": self.fine_weights,
                "precision": self.precision, "timing": a.timing, "audio_lead_sec": a.audio_lead_sec,
                "hop_sec": round(a.hop_sec, 3) if math.isfinite(a.hop_sec) else None, "segments": segments,
                "analysed_sec": round(segments * SEGMENT_STRIDE_SEC + SEGMENT_STRIDE_SEC, 3),
                "sampled": _sampled(a), "warnings": list(self.warnings),
                "audio_track": a.audio_track.to_dict() if a.audio_track else None,
                "audio_timeline": _timeline(a), "max_offset_sec": self.max_offset_sec,
                "search": self.search.to_dict() if self.search is not None else None,
                **({"audio_file": self._audio_file()} if self.audio_file is not None else {}),
                **self.summary.to_dict(),
                "tolerance": self.tolerance.to_dict(), "in_tolerance": self.in_tolerance}

    def _audio_file(self) -> dict:
        """The separate sound file, and where it lies on the picture's timeline: placed at the first frame and
        found ``refined_offset_sec`` ahead of its picture, its first sample belongs at that time of the video."""
        at = self.summary.refined_offset_sec
        return {**self.audio_file, "starts_at_sec": None if at is None else round(float(at), 3)}


def predict(path: str | os.PathLike, weights: str | os.PathLike | None = None, *, models: Models | None = None,
            audio_track: int | str | None = None, hop_sec: float = DEFAULT_HOP_SEC, max_windows: int = MAX_WINDOWS,
            start_sec: float | None = None, syncability: str | None = "auto", fine: str | None = "auto",
            min_sync_prob: float = 0.5, timing: str | None = None, precision: str = "auto", device: str = "cpu",
            progress: bool = False, tolerance: Tolerance | str | None = None,
            max_offset_sec: float = DEFAULT_MAX_OFFSET_SEC, audio: str | os.PathLike | None = None) -> Prediction:
    """The offset of ``path`` as ``synchformer predict`` measures it, with the same defaults: every window of
    4.8 s one ``hop_sec`` apart (a file longer than ``max_windows`` windows: that many spread over it), pooled,
    the synchronizability gate and the fine pass of ``load_models(weights, syncability=, fine=)`` (or the loaded
    ``models``), the verdict. ``audio_track``: a number from 1 or a language code (default: the player's
    choice); ``start_sec``: only the window that starts there; ``timing``: of the audio (default: the weights');
    ``tolerance``: what ``in_tolerance`` is judged by (a ``Tolerance``, a standard's name or "LEAD,LAG" in ms;
    default: BT.1359). ``max_offset_sec``: the half-width of the search; beyond the model's own +-2 s the windows
    are read again with their sound at coarse shifts (``inference.search``); 2: the model's grid alone.
    ``audio``: a separate sound file (its track ``audio_track``) measured against the picture instead of the
    file's own sound, placed at the first frame before the search. ``to_dict()`` of the result is what
    ``predict --json`` prints."""
    tolerance = tolerance_of(tolerance)  # a bad one is refused before the models load
    check_max_offset(max_offset_sec)
    models = models or load_models(weights, syncability=syncability, fine=fine, device=device, precision=precision)
    path = os.fspath(path)
    sound = separate_sound(audio, audio_track) if audio is not None else None
    analysis = _analyze(models, path, None if sound else audio_track, hop_sec, max_windows, start_sec, timing,
                        progress, max_offset_sec, sound)
    return _prediction(models, path, analysis, min_sync_prob, tolerance, max_offset_sec, sound)


def check_max_offset(max_offset_sec: float) -> None:
    if not (max_offset_sec > 0 and math.isfinite(max_offset_sec)):
        raise ValueError(f"max_offset_sec must be positive and finite, got {max_offset_sec}")


def separate_sound(audio: str | os.PathLike, track: int | str | None = None) -> dict:
    """A separate sound file as predict measures it: {"path", "duration_sec", "samples" (16 kHz mono)}."""
    from synchformer.io.decode import load_audio

    samples = load_audio(audio, track)
    if not len(samples):
        raise SynchformerError(audio, "holds no sound")
    return {"path": os.fspath(audio), "duration_sec": round(len(samples) / 16000, 3), "samples": samples}


def predict_files(jobs: Iterable, models: Models, *, hop_sec: float = DEFAULT_HOP_SEC,
                  max_windows: int = MAX_WINDOWS, start_sec: float | None = None, min_sync_prob: float = 0.5,
                  timing: str | None = None, workers: int = 0, batch_size: int | None = None,
                  progress: bool = False, tolerance: Tolerance | str | None = None,
                  max_offset_sec: float = DEFAULT_MAX_OFFSET_SEC) -> Iterator[Prediction | SynchformerError]:
    """``predict`` of many files, in the order given: a Prediction, or the SynchformerError of a file that cannot
    be measured (the others go on). ``jobs``: paths, or (path, audio track) pairs. ``workers`` > 0 (several files,
    one track choice, no ``start_sec``): decoding processes read ahead and, on a GPU, the segments of several files
    share encoder calls of ``batch_size`` (``inference.batching``); each result equals ``predict``'s."""
    jobs = [(os.fspath(j), None) if isinstance(j, (str, os.PathLike)) else (os.fspath(j[0]), j[1]) for j in jobs]
    tracks = {t for _, t in jobs}
    wide = searches(models.offset, max_offset_sec)  # (the decoding processes keep no sound to search with)
    if workers > 0 and len(jobs) > 1 and len(tracks) == 1 and start_sec is None and not wide:
        from synchformer.inference.batching import analyze_files

        kw = {"hop_sec": hop_sec, "sync_model": models.syncability, "timing": timing, "max_windows": max_windows,
              "workers": workers, "batch_size": batch_size, "keep_visual": models.fine is not None,
              "audio_track": tracks.pop()}
        for (path, _), (_, result) in zip(jobs, analyze_files(models.offset, [p for p, _ in jobs], **kw)):
            yield _or_error(lambda: _prediction(models, path, result, min_sync_prob, tolerance, max_offset_sec),
                            result)
        return
    for path, track in jobs:
        yield _or_error(lambda: _prediction(models, path, _analyze(models, path, track, hop_sec, max_windows,
                                                                   start_sec, timing, progress, max_offset_sec),
                                            min_sync_prob, tolerance, max_offset_sec))


def _or_error(make, result=None):
    if isinstance(result, SynchformerError):
        return result
    try:
        return make()
    except SynchformerError as e:
        return e


def _analyze(models: Models, path: str, audio_track, hop_sec, max_windows, start_sec, timing, progress,
             max_offset_sec: float = DEFAULT_MAX_OFFSET_SEC, sound: dict | None = None) -> Analysis:
    from synchformer.inference.analyze import analyze

    wide = searches(models.offset, max_offset_sec) and start_sec is None  # one window alone is not searched
    margin = keep_margin_sec(models.offset, max_offset_sec) if wide else None
    return analyze(models.offset, path, hop_sec=hop_sec, sync_model=models.syncability, timing=timing,
                   max_windows=max_windows, keep_visual=models.fine is not None or wide, audio_track=audio_track,
                   start_sec=start_sec, progress=progress, keep_margin_sec=margin,
                   audio=None if sound is None else sound["samples"], pad_audio=sound is not None)


def _prediction(models: Models, path: str, analysis: Analysis, min_sync_prob: float,
                tolerance: Tolerance | str | None = None, max_offset_sec: float = DEFAULT_MAX_OFFSET_SEC,
                sound: dict | None = None) -> Prediction:
    found, pooled = None, analysis.pool(min_sync_prob)
    if searches(models.offset, max_offset_sec) and analysis.first_segments is not None and analysis.visual_features:
        found = search(models.offset, analysis, max_offset_sec, models.syncability, min_sync_prob=min_sync_prob,
                       pooled=pooled)
        if found.chosen.shift_sec != 0.0:  # other windows, other numbers: pooled again
            analysis, pooled = found.analysis(analysis), None
    summary = analysis.summarize(min_sync_prob=min_sync_prob, fine_model=models.fine,
                                 search_reasons=tuple(found.reasons()) if found else (), pooled=pooled)
    return Prediction(path=path, analysis=analysis, summary=summary, weights=models.weights,
                      syncability_weights=models.syncability_weights, fine_weights=models.fine_weights,
                      precision=getattr(models.offset, "precision", "fp32"),
                      warnings=tuple(models.warnings) + tuple(analysis.warnings), tolerance=tolerance_of(tolerance),
                      max_offset_sec=max_offset_sec, search=found,
                      audio_file=None if sound is None else {k: v for k, v in sound.items() if k != "samples"})


def _timeline(analysis: Analysis) -> dict:
    """The audio's gaps, overlaps and format changes found, where they were looked for, and what they mean."""
    jumps = [e for e in analysis.audio_events if e.kind in ("gap", "overlap")]
    return {"events": [e.to_dict() for e in analysis.audio_events],
            "checked": "the sampled windows only" if analysis.sampled else "the whole file",
            "meaning": TIMELINE_MEANING if jumps else None}


def _sampled(analysis: Analysis) -> dict | None:
    """What a sampled analysis saw (None: every window): the windows, the seconds seen and their spans."""
    if not analysis.sampled:
        return None
    spans = analysis.seen
    return {"windows": len(analysis.window_starts), "seen_sec": round(sum(b - a for a, b in spans), 3),
            "spans_sec": [list(s) for s in spans]}


# ------------------------------------------------------------------------------------------------ fixing

@dataclass(frozen=True)
class FixDecision:
    """What ``fix`` does with a prediction: ``action`` "shift" (move the audio by ``offset_sec``, positive: delay
    it), "leave" (in sync: inside the tolerance, by default ITU-R BT.1359's: nobody would notice), or "refuse"
    (``why``); ``warnings``: what one shift cannot mend (a drift, a gap in the audio's timestamps).
    ``audio_stream``: the container stream to move."""

    action: str
    offset_sec: float | None
    why: str
    warnings: tuple[str, ...] = ()
    audio_stream: int | None = None
    interval_sec: tuple[float, float] | None = None


def decide_fix(prediction: Prediction, *, force: bool = False, min_confidence: float = 0.0,
               tolerance: Tolerance | str | None = None) -> FixDecision:
    """Whether and by how much to move ``prediction``'s audio: by the refined offset, to the ms (a fix that leaves
    100 ms is a failed fix); refused when the offset is not reliable (unless ``force``) or its confidence is below
    ``min_confidence``; left alone when its whole 90 % interval is inside ``tolerance`` (a ``Tolerance``, a
    standard's name or "LEAD,LAG" in ms; default: BT.1359's -125..+45 ms) (unless ``force``)."""
    from synchformer.inference.distributions import two_decimals

    tolerance = tolerance_of(tolerance)
    s = prediction.summary
    track = prediction.analysis.audio_track
    stream = None if track is None else track.stream_index
    if s.offset_sec is None:
        return FixDecision("refuse", None, f"no offset to fix: {s.message}", audio_stream=stream)
    warnings = []
    if s.drift is not None and s.drift.detected:  # one constant shift cannot undo a drift: the average is moved
        warnings.append(f"{s.drift.reason}; a constant shift corrects only the average offset")
    jumps = [e for e in prediction.analysis.audio_events if e.kind in ("gap", "overlap")]
    if jumps:  # measured as a player that honours timestamps plays it; one shift cannot mend the hole
        warnings.append(f"its audio timestamps jump ({'; '.join(e.describe() for e in jumps[:3])}"
                        f"{'; ...' if len(jumps) > 3 else ''}); one constant shift cannot repair a gap: players that "
                        "join the audio end to end stay off by its length after it")
    offset = round(float(s.refined_offset_sec), 3)
    lo, hi = s.refined_interval_sec
    if not s.reliable and not force:  # shifting a file by noise is the worst this tool can do
        return FixDecision("refuse", offset, f"the measured offset {s.offset_sec:+.2f} s is not reliable "
                                             f"({'; '.join(s.reasons)})", tuple(warnings), stream, (lo, hi))
    if s.confidence < min_confidence:
        return FixDecision("refuse", offset, f"the measured offset {s.offset_sec:+.2f} s has confidence "
                                             f"{two_decimals(s.confidence)} < the minimum {min_confidence}",
                           tuple(warnings), stream, (lo, hi))
    # left alone only when the whole 90 % interval is inside the window: a -100 ms reading whose truth may be
    # -140 ms is not "in sync"
    if tolerance.contains_interval(lo, hi) and not force:
        return FixDecision("leave", offset, f"in sync (measured {offset * 1000:+.0f} ms, 90% interval "
                                            f"{lo * 1000:+.0f} to {hi * 1000:+.0f} ms, inside {tolerance.describe()}; "
                                            f"confidence {two_decimals(s.confidence)})", tuple(warnings), stream,
                           (lo, hi))
    return FixDecision("shift", offset, f"offset {offset:+.3f} s", tuple(warnings), stream, (lo, hi))


__all__ = ["DEFAULT_WEIGHTS", "FixDecision", "Models", "Prediction", "companion_label", "decide_fix",
           "load_companion", "load_models", "load_weights", "predict", "predict_files", "resolve_device"]
