"""Offsets beyond a model's +-2 s: the same windows, their sound taken at several shifts.

An offset model classifies a window's offset within its grid (+-2 s for the released models). To read a file whose
sound is further out, the windows the first pass used are scored again with their sound taken ``s`` later for a
set of coarse shifts ``s``: each shift's model reads the offset that is left, ``s`` + its class. The shifts are
multiples of six segments (1.92 s), so that neighbouring shifts' ranges overlap by half (every offset lies within
0.96 s of a shift, away from the grid's weak edge classes) and a shifted segment's sound is the sound of another
segment of the same grid: its audio features are computed once for all shifts, and the visual features are the
first pass's (``analyze(keep_visual=True)``). A shift costs the sync transformer over its windows, and the audio
encoder over the segments no other shift used.

Which shift holds the offset is decided by evidence that tells "in range" from "far away" (measured in
benchmarks/bench_long_range.py, docs/reliability.md): the synchronizability model's P(synchronizable) where one is
loaded (stage III was trained with sound from another part of the clip as its negatives), else how sharply and
how consistently the windows' distributions agree. A shift that explains the evidence about as well as the best
at another offset makes the result ambiguous: not reliable, with both offsets named.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from synchformer.constants import DEFAULT_MAX_OFFSET_SEC, SEGMENT_STRIDE_SEC
from synchformer.features import audio_to_model
from synchformer.inference.analysis import Analysis
from synchformer.inference.checks import window_problems
from synchformer.inference.pooling import Pooled, conclude
from synchformer.inference.distributions import PROB_FLOOR, normalise_rows, overlap_weights, signed
from synchformer.model import Synchformer, same_encoders
from synchformer.model.precision import using

STEP_SEGMENTS = 6  # 1.92 s between shifts: half the +-2 s grid
MIN_SOUND = 0.9  # a window counts at a shift only where the track holds this much of its shifted sound
# How a shift is chosen and when the choice is ambiguous (measured: benchmarks/bench_long_range.py): a rival is a
# shift whose offset is more than RIVAL_SEC from the best one's; it makes the answer ambiguous when its evidence is
# within AMBIGUOUS_NATS of the best's (or AMBIGUOUS_RATIO of it for the evidence that is not a log-likelihood)
RIVAL_SEC = 0.5
AMBIGUOUS_NATS = 3.0
AMBIGUOUS_RATIO = 0.8
PRIOR_NATS = 1.0  # the shift 0's head start
MIN_WINDOWS = 6  # a shift with fewer windows is not a candidate
# a shift other than 0 needs this much evidence to be a candidate: shifts the offset is not at reached up to 6 nats
# on 12 s clips, and mostly under 3; the right ones 4 to 23 (llr+sync, the bundled models)
MIN_EVIDENCE_NATS = 4.0
# the model's own range settles a file whose pooled reading is reliable and not in the outer EDGE_CLASSES classes
# of either side (there, it may be the edge of a larger offset), or whose offset drifts: no wider search runs
EDGE_CLASSES = 2
EVIDENCE = ("llr", "llr+sync", "sync", "agreement")


def shift_segments(max_offset_sec: float, model_range_sec: float) -> list[int]:
    """The shifts (in segments) whose ranges together cover +-``max_offset_sec``: [0] when the model's own grid
    does."""
    if not max_offset_sec > 0:
        raise ValueError(f"max_offset_sec must be positive, got {max_offset_sec}")
    if max_offset_sec <= model_range_sec + 1e-9:
        return [0]
    m = math.ceil((max_offset_sec - model_range_sec) / (STEP_SEGMENTS * SEGMENT_STRIDE_SEC) - 1e-9)
    return [STEP_SEGMENTS * i for i in range(-m, m + 1)]


def searches(model: Synchformer, max_offset_sec: float) -> bool:
    """Whether ``max_offset_sec`` reaches beyond ``model``'s own grid, so that a search may run."""
    return shift_segments(max_offset_sec, model.cfg.max_offset_sec) != [0]


def keep_margin_sec(model: Synchformer, max_offset_sec: float) -> float:
    """How much sound around each window a pass keeps for a search to ``max_offset_sec`` and its fine pass."""
    shifts = shift_segments(max_offset_sec, model.cfg.max_offset_sec)
    return max(abs(s) for s in shifts) * SEGMENT_STRIDE_SEC + model.cfg.max_offset_sec + 0.5


@dataclass(frozen=True)
class Shift:
    """The windows read with their sound ``shift_sec`` later, and what they say about the offset there."""

    shift_sec: float
    windows: np.ndarray  # (n,) indices into the analysis's windows that the track covers at this shift
    logits: np.ndarray  # (n, classes) of the offset model
    sync_probs: np.ndarray | None  # (n,) P(synchronizable), where a synchronizability model was run
    offset_sec: float | None  # the shift plus the class the windows' evidence favours (the log pool's)
    agreement: float  # the mean pool's peak probability: sharp windows that agree score high
    sync: float | None  # mean P(synchronizable)
    # the log-likelihood ratio (nats) of "the offset is offset_sec" against "the windows know nothing" (uniform
    # over the classes): each window's log(classes * p(class)), weighted by its share of the time covered
    # (distributions.overlap_weights), summed; grows with consistent evidence and with the time covered
    llr: float = 0.0
    sync_llr: float | None = None  # the same sum of the windows' log-odds of being synchronizable
    effective_windows: float = 0.0
    problems: list | None = field(default=None, repr=False)  # per window, the model-free checks on the shifted sound

    def evidence(self, kind: str) -> float:
        if not len(self.windows) or not np.isfinite(self.llr):
            return -np.inf
        if kind == "sync" and self.sync is not None:
            return self.sync
        if kind == "llr+sync" and self.sync_llr is not None:
            return self.llr + self.sync_llr
        if kind in ("llr", "llr+sync"):
            return self.llr
        return self.agreement

    def to_dict(self, kind: str) -> dict:
        e = self.evidence(kind)
        return {"shift_sec": round(self.shift_sec, 2), "windows": int(len(self.windows)),
                "offset_sec": None if self.offset_sec is None else round(self.offset_sec, 2),
                "evidence": round(float(e), 3) if np.isfinite(e) else None, "llr": round(self.llr, 3),
                "agreement": round(self.agreement, 4), "sync": None if self.sync is None else round(self.sync, 4)}


@dataclass(frozen=True)
class Search:
    """Where a wide search looked and what it chose."""

    max_offset_sec: float
    shifts: tuple[Shift, ...]
    best: int  # index into shifts
    rival: int | None  # a shift at another offset whose evidence is close to the best's: ambiguous
    evidence_kind: str  # how the shifts were compared (EVIDENCE)
    settled: str | None = None  # why no wider search ran: the model's own range answered (``settled``)

    @property
    def chosen(self) -> Shift:
        return self.shifts[self.best]

    @property
    def ambiguous(self) -> bool:
        return self.rival is not None

    def reasons(self) -> list[str]:
        """Why the choice cannot be trusted (empty: it can), for the verdict."""
        a, k = self.chosen, self.evidence_kind
        out = []
        if self.rival is not None:
            b = self.shifts[self.rival]
            out.append(f"ambiguous: {signed(a.offset_sec)} s and {signed(b.offset_sec)} s fit "
                       f"(evidence {a.evidence(k):.1f} and {b.evidence(k):.1f} nats)")
        return out

    @property
    def reach_sec(self) -> tuple[float, float]:
        """The offsets the candidate shifts covered: where too little of the file overlaps its shifted sound
        (fewer than MIN_WINDOWS windows), nothing was looked for."""
        seen = [s.shift_sec for s in self.shifts if s.shift_sec == 0.0 or len(s.windows) >= MIN_WINDOWS]
        if self.settled:
            seen = [0.0]
        reach = 2.0
        return (min(seen) - reach, max(seen) + reach)

    @property
    def reached_all(self) -> bool:
        lo, hi = self.reach_sec
        return lo <= -self.max_offset_sec + 1e-6 and hi >= self.max_offset_sec - 1e-6

    def to_dict(self) -> dict:
        k = self.evidence_kind
        return {"max_offset_sec": self.max_offset_sec, "evidence": k,
                "chosen_shift_sec": round(self.chosen.shift_sec, 2),
                "reach_sec": [round(x, 2) for x in self.reach_sec],
                "ran": self.settled is None, "settled": self.settled, "ambiguous": self.ambiguous,
                "rival_offset_sec": None if self.rival is None else round(self.shifts[self.rival].offset_sec, 2),
                "shifts": [s.to_dict(k) for s in self.shifts]}

    def analysis(self, analysis: Analysis) -> Analysis:
        """``analysis`` as read at the chosen shift: its windows the track covers there, their offsets on the
        grid moved by the shift (the shift 0 is the analysis itself)."""
        s = self.chosen
        if s.shift_sec == 0.0:
            return analysis
        w = s.windows
        return dataclasses.replace(
            analysis, window_starts=analysis.window_starts[w], logits=s.logits, grid=analysis.grid + s.shift_sec,
            sync_probs=s.sync_probs,
            problems=s.problems if s.problems is not None else [analysis.problems[i] for i in w] if analysis.problems
            else [],
            first_segments=np.asarray(analysis.first_segments)[w], audio_shift_sec=s.shift_sec)


def _shift(shift_sec, windows, logits, sync_probs, grid, starts, problems=None) -> Shift:
    """A shift's evidence from its windows: those with a model-free problem (silence, a still picture: see
    checks.py) count for nothing, as in the pooling."""
    if not len(windows):
        return Shift(shift_sec, np.zeros(0, np.int64), np.zeros((0, len(grid)), np.float32), None, None, 0.0, None)
    probs = torch.from_numpy(np.asarray(logits, np.float32)).softmax(-1).double().numpy()
    w = overlap_weights(np.asarray(starts, np.float64)[windows])
    if problems is not None:
        w = w * np.array([not p for p in problems], np.float64)
    if not w.sum() > 0:  # nothing to time at this shift
        return Shift(shift_sec, np.asarray(windows, np.int64), np.asarray(logits, np.float32), sync_probs, None,
                     0.0, None, -np.inf, None, 0.0, problems)
    mean = normalise_rows((probs * w[:, None]).sum(0, keepdims=True))[0]
    evidence = (w[:, None] * np.log(len(grid) * np.maximum(probs, PROB_FLOOR))).sum(0)
    # the outer classes also take what lies beyond them: a reading there is the neighbouring shift's to make
    c = int(evidence[1:-1].argmax()) + 1 if len(grid) > 2 else int(evidence.argmax())
    sync = sync_llr = None
    if sync_probs is not None:
        sync = float(np.average(sync_probs, weights=w))
        q = np.clip(np.asarray(sync_probs, np.float64), PROB_FLOOR, 1 - PROB_FLOOR)
        sync_llr = float((w * np.log(q / (1 - q))).sum())
    return Shift(shift_sec, np.asarray(windows, np.int64), np.asarray(logits, np.float32), sync_probs,
                 float(shift_sec + grid[c]), float(mean.max()), sync, float(evidence[c]), sync_llr, float(w.sum()),
                 problems)


def settled(pooled: Pooled) -> str | None:
    """Why the model's own range answers for a file whose windows pooled so (``Analysis.pool``; None: it does not,
    a search may): its reading is reliable and away from the grid's edges, or its offset drifts within the range."""
    s = conclude(pooled)
    if s.drift is not None and s.drift.detected:
        return "the offset drifts inside the model's range (see drift)"
    grid = np.asarray(pooled.grid, np.float64)
    step = float(np.diff(grid).mean()) if len(grid) > 1 else 0.0
    if s.reliable and s.offset_sec is not None and abs(s.offset_sec) < grid.max() - (EDGE_CLASSES - 0.5) * step:
        return "a reliable reading inside the model's range, away from its edges"
    return None


def search(model: Synchformer, analysis: Analysis, max_offset_sec: float, sync_model: Synchformer | None = None,
           *, evidence: str = "auto", precision: str | None = None, window_batch: int = 16,
           encode_batch: int | None = None, min_sync_prob: float = 0.5, pooled: Pooled | None = None) -> Search:
    """Score ``analysis``'s windows with their sound at every shift that covers +-``max_offset_sec`` and choose one
    (see the module docstring). ``analysis`` must come from ``analyze(keep_visual=True)`` with its sound kept far
    enough (``keep_margin_sec``). ``evidence``: how shifts are compared (EVIDENCE; :class:`Shift`), or "auto"
    (llr+sync where a synchronizability model sharing the offset model's encoders is given, else llr). ``pooled``:
    ``analysis.pool(min_sync_prob)`` where it is already made (whether the file is ``settled`` reads it)."""
    if analysis.visual_features is None or analysis.first_segments is None:
        raise ValueError("a wide search needs the analysis's visual features: analyze(keep_visual=True)")
    if sync_model is not None and not same_encoders(model, sync_model):
        sync_model = None  # its own features were not kept: the offset model's evidence alone
    if evidence == "auto":
        evidence = "llr+sync" if sync_model is not None and analysis.sync_probs is not None else "llr"
    if evidence not in EVIDENCE:
        raise ValueError(f"evidence must be one of {', '.join(EVIDENCE)} or auto, not {evidence!r}")
    grid = np.asarray(analysis.grid, np.float64)
    firsts = [int(k) for k in analysis.first_segments]
    starts = analysis.window_starts
    own = _shift(0.0, np.arange(len(firsts)), analysis.logits, analysis.sync_probs, grid, starts,
                 analysis.problems or None)
    why = settled(pooled or analysis.pool(min_sync_prob))
    if why is not None:  # nothing to look for further: today's answer, at no cost
        return Search(max_offset_sec, (own,), 0, None, evidence, why)
    n = model.cfg.n_segments
    m = sync_model.cfg.n_segments if sync_model is not None else 0
    kept = analysis.kept_audio
    visual = analysis.visual_features
    encode_batch = encode_batch or (32 if model.device.type == "cuda" else 4)
    audio: dict[int, torch.Tensor] = {}  # audio features by the segment whose sound they are (shift 0's grid)
    waves: dict[int, torch.Tensor | None] = {}  # and their sound (None: not kept)
    signals = analysis.segment_signals  # per segment: checks.segment_signals (the picture's columns are reused)

    def wave(j: int, k: int, sec: float):
        if j not in waves:
            got = kept.segments([k], sec)
            waves[j] = None if got is None else got[0]
        return waves[j]

    def problems(k0: int, shift: int) -> list[str] | None:
        if signals is None or any(k not in signals for k in range(k0, k0 + n)):
            return None
        rows = np.array([signals[k] for k in range(k0, k0 + n)], np.float64)
        sound = torch.stack([waves[k - shift] for k in range(k0, k0 + n)]).float()
        rows[:, 0] = sound.abs().amax(dim=1).numpy()  # the sound's columns, taken at the shift
        rows[:, 1] = sound.square().mean(dim=1).sqrt().numpy()
        return window_problems(rows)

    def encode(keys: list[int]):
        todo = [j for j in keys if j not in audio]
        for s in range(0, len(todo), encode_batch):
            part = todo[s:s + encode_batch]
            x = audio_to_model(torch.stack([waves[j] for j in part]).to(model.device).float())
            out = model.extract_afeats(x[None])[0]
            for i, j in enumerate(part):
                audio[j] = out[i]

    shifts = []
    with using(precision, model, sync_model), torch.inference_mode():
        for shift in shift_segments(max_offset_sec, float(np.max(np.abs(grid)))):
            sec = shift * SEGMENT_STRIDE_SEC
            if shift == 0:
                shifts.append(own)
                continue
            windows = []
            for i, k0 in enumerate(firsts):
                ks = range(k0, k0 + n)
                if kept is None or not all(k in visual for k in ks) or kept.sound_fraction(ks, sec) < MIN_SOUND:
                    continue
                if all(wave(k - shift, k, sec) is not None for k in ks):
                    windows.append(i)
            logits, sync_logits = [], []
            for s in range(0, len(windows), window_batch):
                part = [firsts[i] for i in windows[s:s + window_batch]]
                encode(sorted({k - shift for k0 in part for k in range(k0, k0 + n)}))
                a = torch.stack([torch.stack([audio[k - shift] for k in range(k0, k0 + n)]) for k0 in part])
                v = torch.stack([torch.stack([visual[k] for k in range(k0, k0 + n)]) for k0 in part]).to(a.device)
                logits.append(model.compare_v_a(v, a).float().cpu())
                if sync_model is not None:
                    sync_logits.append(sync_model.compare_v_a(v[:, :m], a[:, :m]).float().cpu())
            lg = torch.cat(logits).numpy() if logits else np.zeros((0, len(grid)), np.float32)
            sp = torch.cat(sync_logits).softmax(-1)[:, 1].numpy() if sync_logits else None
            found = [problems(firsts[i], shift) for i in windows]
            shifts.append(_shift(sec, windows, lg, sp, grid, starts,
                                 None if any(p is None for p in found) else found))
    return choose(tuple(shifts), max_offset_sec, evidence)


def choose(shifts: tuple[Shift, ...], max_offset_sec: float, evidence: str = "llr") -> Search:
    """The shift whose windows explain the evidence best, and a rival at another offset that comes close.

    A shift is a candidate with at least ``MIN_WINDOWS`` windows (a few windows agree by chance) and
    ``MIN_EVIDENCE_NATS`` of evidence; the shift 0 (the model's own range) always is, with a head start of
    ``PRIOR_NATS``: most files are within it, and its windows are the most. Close: within ``AMBIGUOUS_NATS`` of the best (``llr`` kinds), or at least ``AMBIGUOUS_RATIO`` of
    it (``sync``, ``agreement``)."""
    def score(s: Shift) -> float:
        e = s.evidence(evidence)
        if s.shift_sec == 0.0 and np.isfinite(e):
            e = e + PRIOR_NATS if evidence.startswith("llr") else e
        return e

    candidates = [i for i, s in enumerate(shifts) if s.shift_sec == 0.0 or len(s.windows) >= MIN_WINDOWS
                  and (not evidence.startswith("llr") or s.evidence(evidence) >= MIN_EVIDENCE_NATS)]
    candidates = [i for i in candidates if np.isfinite(shifts[i].evidence(evidence))] or [
        next(i for i, s in enumerate(shifts) if s.shift_sec == 0.0)]
    ranked = sorted(candidates, key=lambda i: score(shifts[i]), reverse=True)
    best, rival = ranked[0], None
    for i in ranked[1:]:
        if shifts[i].offset_sec is None or abs(shifts[i].offset_sec - shifts[best].offset_sec) <= RIVAL_SEC:
            continue  # neighbouring shifts reading the same offset: one answer
        a, b = score(shifts[best]), score(shifts[i])
        close = (a - b < AMBIGUOUS_NATS) if evidence.startswith("llr") else (b >= AMBIGUOUS_RATIO * a)
        rival = i if close else None
        break
    return Search(max_offset_sec, shifts, best, rival, evidence)


__all__ = ["AMBIGUOUS_RATIO", "DEFAULT_MAX_OFFSET_SEC", "MIN_SOUND", "STEP_SEGMENTS", "Search", "Shift", "choose",
           "keep_margin_sec", "search", "searches", "settled",
           "shift_segments"]
