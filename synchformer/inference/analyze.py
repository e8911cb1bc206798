"""Whole-video analysis: 4.8 s windows slid over a file, every segment encoded once.

Windows start every ``hop`` segments on the 0.32 s segment grid (a hop is rounded to a multiple of 0.32 s so
that windows share segments), plus one window flush with the end of the file so the tail is covered. Each
window's 14 segments come from the cache of encoder features; only the sync transformer runs per window.
"""

from __future__ import annotations

import math
import os
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from synchformer.constants import (MAX_WINDOWS, SEGMENT_FRAMES, SEGMENT_STRIDE_FRAMES, SEGMENT_STRIDE_SEC,
                                   VIDEO_FPS, WINDOW_SEC)
from synchformer.features.segments import decode_size
from synchformer.inference.analysis import Analysis
from synchformer.inference.checks import segment_signals, window_problems
from synchformer.inference.stream import SegmentChunk, SegmentGrid, encode_chunk, read_segments, too_short
from synchformer.model import Synchformer, same_encoders
from synchformer.model.precision import using

def hop_in_segments(hop_sec: float) -> int:
    if not hop_sec > 0:
        raise ValueError(f"hop must be positive, got {hop_sec}")
    return max(1, round(hop_sec / SEGMENT_STRIDE_SEC))


@dataclass
class EncodeRequest:
    """What an analysis waits for: the encoder features of ``chunk``'s segments by ``model``. The analysis is
    a generator that yields these and is sent back ``(video, audio)`` features, so that a caller can serve
    the requests of several files with one encoder call (score's batching across files)."""

    model: Synchformer
    chunk: SegmentChunk
    batch: int  # segments per encoder call when served alone


def encode_alone(request: EncodeRequest) -> tuple[torch.Tensor, torch.Tensor]:
    return encode_chunk(request.model, request.chunk, batch=request.batch)


class _FeatureCache:
    """Encoder features by segment index for one model, encoding only the segments it is asked for."""

    def __init__(self, model: Synchformer, batch: int, keep_visual: bool = False):
        self.model, self.batch, self.feats, self.encoded = model, batch, {}, 0
        self.kept: dict | None = {} if keep_visual else None  # visual features, never pruned

    def add(self, chunk: SegmentChunk, rows: list[int]):
        """A generator: yields one EncodeRequest (none when ``rows`` is empty) and stores the features sent."""
        if not rows:
            return
        v, a = yield EncodeRequest(self.model, chunk.select(rows), self.batch)
        for i, r in enumerate(rows):
            self.feats[chunk.first + r] = (v[i], a[i])
            if self.kept is not None:
                self.kept[chunk.first + r] = v[i]
        self.encoded += len(rows)

    def window(self, k0: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        v, a = zip(*(self.feats[k] for k in range(k0, k0 + n)))
        return torch.stack(v), torch.stack(a)

    def prune(self, below: int):
        for k in [k for k in self.feats if k < below]:
            del self.feats[k]


def analyze(model: Synchformer, path: str | os.PathLike, *, first_frame: int = 0, size: int | None = None,
            audio: np.ndarray | None = None, timing: str | None = None, progress: bool = False,
            max_windows: int = MAX_WINDOWS, precision: str | None = None, audio_track: int | str | None = None,
            start_sec: float | None = None, keep_margin_sec: float | None = None, pad_audio: bool = False,
            **kw) -> Analysis:
    """Offset logits of every window of ``path`` (and P(synchronizable) with a stage III ``sync_model``).

    ``audio``: a 16 kHz mono waveform used instead of the file's sound (e.g. a generated track). ``size``:
    short side before the 224 centre crop (default 256, as the released models were trained; 224 as
    av-benchmark and MMAudio do; a model with smaller inputs scales it in proportion). ``timing``: how the
    file's audio is placed (``load_av``; default: as the model was trained, ``ModelConfig.timing``); offsets are
    in the file's true timeline either way. ``progress``: a bar over the file's segments on stderr.
    ``max_windows``: the analysis budget. A file with more segments than ``max_windows`` windows hold (32 x
    4.8 s, about 2.6 minutes, by default) is analysed in ``max_windows`` windows spread evenly over it, each
    decoded by seeking to it, so that a film costs what a short clip does (``Analysis.sampled``); 0: every
    window, whatever the length. ``precision``: fp32, bf16, fp16 or auto for this call (default:
    ``model.precision``, fp32 unless ``load_model`` was told otherwise). ``audio_track``: which of the file's
    audio tracks is measured (a number from 1, or a language code; default: the one a player picks; see
    ``io.decode.pick_audio_track``). Window times count from the file's first video frame. ``start_sec``: only
    the one window that starts there (at the first frame at or after it; ``predict --start``), read, judged and
    reported as any window of the file is. ``keep_margin_sec``: with ``keep_visual``, the sound kept around
    the windows (default 2.5 s; a wide search, inference.search, keeps more). ``pad_audio``: an ``audio`` track
    shorter than the picture is followed by silence rather than ending the analysis. Other keywords: see
    :func:`analyze_segments`.
    """
    crop = model.cfg.image_size
    size = size or decode_size(crop)
    max_windows = 0 if kw.get("ends_only") or start_sec is not None else max_windows
    chunk = {}
    if start_sec is not None:
        if not (start_sec >= 0 and np.isfinite(start_sec)):
            raise ValueError(f"start_sec must be finite and >= 0, got {start_sec}")
        first_frame = math.ceil(start_sec * VIDEO_FPS - 1e-6)
        chunk = {"chunk_segments": model.cfg.n_segments}  # decode just the window
        kw["first_only"] = True
    grid, chunks = read_segments(path, first_frame=first_frame, size=size, crop=crop, audio=audio,
                                 timing=timing or model.cfg.timing, max_windows=max_windows,
                                 window_segments=model.cfg.n_segments, audio_track=audio_track,
                                 keep_audio=bool(kw.get("keep_visual")),  # a fine pass takes its sound from memory
                                 pad_audio=pad_audio, **chunk,
                                 **({"keep_margin_sec": keep_margin_sec} if keep_margin_sec is not None else {}))
    if progress:
        total = len(grid.windows) * model.cfg.n_segments if grid.windows is not None else None
        chunks = _with_progress(chunks, grid.path, total)
    with using(precision, model, kw.get("sync_model")):
        result = analyze_segments(model, grid, chunks, **kw)
    result.read_args = {"first_frame": first_frame, "size": size, "audio": audio, "max_windows": max_windows,
                        "audio_track": audio_track}
    return result


def _with_progress(chunks: Iterable[SegmentChunk], path: str, total: int | None = None) -> Iterator[SegmentChunk]:
    """The chunks, with a bar over the segments to read (by default: all the header's duration promises; a
    film must not look hung)."""
    from tqdm import tqdm

    from synchformer.io.decode import declared_duration

    duration = declared_duration(path) if total is None else None
    if duration:
        total = max(1, int((duration * VIDEO_FPS - SEGMENT_FRAMES) // SEGMENT_STRIDE_FRAMES) + 1)
    with tqdm(total=total, unit="segment", desc=os.path.basename(path), leave=False, file=sys.stderr,
              dynamic_ncols=True) as bar:
        for chunk in chunks:
            yield chunk
            bar.update(len(chunk))


def analyze_segments(model: Synchformer, grid: SegmentGrid, chunks: Iterable[SegmentChunk], **kw) -> Analysis:
    """The windows of a stream of segment chunks (from :func:`read_segments`, possibly decoded elsewhere).

    ``hop_sec`` (default 2.4) is rounded to a multiple of 0.32 s. ``ends_only``: just the first and the last
    window (av-benchmark's DeSync protocol). ``sync_model``: a stage III model run on the same windows.
    ``encode_batch``: segments per encoder call; ``window_batch``: windows per sync-transformer call.
    ``keep_visual``: keep the visual features of every segment used (``Analysis.visual_features``), for a
    fine-offset model to reuse (``inference.fine``).
    """
    return run_steps(analysis_steps(model, grid, chunks, **kw))


def run_steps(steps, encode=encode_alone):
    """Drive an :func:`analysis_steps` generator to its Analysis, serving each request with ``encode``."""
    try:
        request = next(steps)
        while True:
            request = steps.send(encode(request))
    except StopIteration as done:
        return done.value


def analysis_steps(model: Synchformer, grid: SegmentGrid, chunks: Iterable[SegmentChunk], *,
                   hop_sec: float = 2.4, sync_model: Synchformer | None = None, ends_only: bool = False,
                   window_batch: int = 16, encode_batch: int | None = None, keep_visual: bool = False,
                   first_only: bool = False):
    """:func:`analyze_segments` as a generator: yields EncodeRequests, is sent their features, returns the
    Analysis (``StopIteration.value``). ``first_only``: the first window alone."""
    path = grid.path
    if model.cfg.head != "offset":
        raise ValueError("the first model must have the offset head; pass a stage III model as sync_model")
    n = model.cfg.n_segments
    h = hop_in_segments(hop_sec) if not (ends_only or first_only) else 10**9
    encode_batch = encode_batch or (32 if model.device.type == "cuda" else 4)
    caches = [_FeatureCache(model, encode_batch, keep_visual)]
    if sync_model is not None:
        if sync_model.cfg.head != "synchronizability" or sync_model.cfg.n_segments > n:
            raise ValueError("sync_model must be a synchronizability model of at most as many segments")
        shared = same_encoders(model, sync_model)
        caches.append(caches[0] if shared else _FeatureCache(sync_model, encode_batch))

    starts, logits, sync_logits, batch = [], [], [], []

    def run_batch():
        if not batch:
            return
        with torch.inference_mode():
            v, a = (torch.stack(x) for x in zip(*(caches[0].window(k0, n) for k0 in batch)))
            logits.append(model.compare_v_a(v, a).float().cpu())
            if sync_model is not None:
                m = sync_model.cfg.n_segments
                v, a = (torch.stack(x) for x in zip(*(caches[1].window(k0, m) for k0 in batch)))
                sync_logits.append(sync_model.compare_v_a(v, a).float().cpu())
        starts.extend(batch)
        batch.clear()

    signals: dict[int, np.ndarray] = {}  # per segment: the model-free checks' four numbers
    if grid.windows is not None and not ends_only:  # sampled (read_segments' max_windows): a chunk per window
        read = 0
        for chunk in chunks:
            signals.update(zip(range(chunk.first, chunk.first + len(chunk)), segment_signals(chunk.video, chunk.audio)))
            for cache in dict.fromkeys(caches):
                yield from cache.add(chunk, list(range(min(len(chunk), n))))
            read += len(chunk)
            batch.append(chunk.first)
            if len(batch) >= window_batch:
                run_batch()
            for cache in dict.fromkeys(caches):
                cache.prune(batch[0] if batch else chunk.first + len(chunk))
        run_batch()
        if not starts:
            raise too_short(path, n, 0)
        warnings = list(grid.warnings)
        if len(starts) < len(grid.windows):
            warnings.append(f"the file ends before the {grid.time(grid.file_segments) + SEGMENT_STRIDE_SEC:.1f} s its header "
                            f"states: {len(grid.windows) - len(starts)} of {len(grid.windows)} sampled windows "
                            "were not there")
        spacing = float(np.median(np.diff(starts))) * SEGMENT_STRIDE_SEC if len(starts) > 1 else WINDOW_SEC
        return _analysis(model, grid, starts, logits, sync_logits, signals, n, caches[0].encoded, read,
                         hop_sec=spacing, warnings=warnings, sampled=True, file_segments=grid.file_segments,
                         kept=caches[0].kept)

    recent: deque = deque(maxlen=n)  # raw segments of the tail, in case its window was not on the hop grid
    next_k0, seen = 0, 0
    for chunk in chunks:
        signals.update(zip(range(chunk.first, chunk.first + len(chunk)), segment_signals(chunk.video, chunk.audio)))
        ks = range(chunk.first, chunk.first + len(chunk))
        wanted = [i for i, k in enumerate(ks) if k % h < n]  # segments that some hop window uses
        for cache in dict.fromkeys(caches):
            yield from cache.add(chunk, wanted)
        recent.extend((k, chunk, i) for i, k in enumerate(ks))
        seen = chunk.first + len(chunk)
        while next_k0 + n <= seen:
            batch.append(next_k0)
            next_k0 += h
            if len(batch) >= window_batch:
                run_batch()
        # keep what windows not yet run need, and the last n segments (the tail window may need them)
        for cache in dict.fromkeys(caches):
            cache.prune(min(batch[0] if batch else next_k0, seen - n))
        if first_only and seen >= n:
            break
    if seen < n:
        raise too_short(path, n, seen)
    tail = seen - n
    if tail % h and not first_only:  # the last hop window ends before the file does: add one flush with the end
        for cache in dict.fromkeys(caches):
            by_chunk: dict[int, tuple[SegmentChunk, list[int]]] = {}
            for k, c, i in recent:
                if k not in cache.feats:
                    by_chunk.setdefault(id(c), (c, []))[1].append(i)
            for c, rows in by_chunk.values():
                yield from cache.add(c, rows)
        batch.append(tail)
    run_batch()

    return _analysis(model, grid, starts, logits, sync_logits, signals, n, caches[0].encoded, seen,
                     hop_sec=h * SEGMENT_STRIDE_SEC if not (ends_only or first_only) else float("inf"),
                     warnings=grid.warnings,
                     kept=caches[0].kept)


def _analysis(model, grid: SegmentGrid, starts: list[int], logits, sync_logits, signals: dict, n: int,
              encoded: int, read: int, kept: dict | None = None, **kw) -> Analysis:
    sync_probs = torch.cat(sync_logits).softmax(-1)[:, 1].numpy() if sync_logits else None
    problems = [window_problems(np.stack([signals[k] for k in range(k0, k0 + n)])) for k0 in starts]
    return Analysis(path=grid.path, window_starts=np.asarray(grid.time(starts), dtype=np.float64),
                    logits=torch.cat(logits).numpy(), grid=model.cfg.offset_grid().numpy(),
                    sync_probs=sync_probs, segments_encoded=encoded, segments_total=read, problems=problems,
                    model_caveat=getattr(model, "caveat", None), timing=grid.timing,
                    audio_lead_sec=grid.audio_lead_sec, first_segments=np.asarray(starts, dtype=np.int64),
                    visual_features=kept, visual_model=None if kept is None else model, origin_sec=grid.origin_sec,
                    audio_track=grid.audio_track, audio_events=list(grid.audio_events),
                    kept_audio=None if kept is None else getattr(grid, "kept_audio", None),
                    segment_signals=None if kept is None else signals, **kw)
