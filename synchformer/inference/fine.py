"""Frame-accurate offsets: a fine-offset model reads what the coarse offset leaves.

An offset model classifies a window's offset on a 0.2 s grid, and the classes of the released models (and the
bundled one) were trained with +-0.05 s of jitter: they are taught not to tell offsets 50 ms apart, so the
expectation over the argmax class and its neighbours (``refined_offset_sec``) has a p90 error of about 55 ms
on synthetic clips, and no estimator read off those posteriors does better (benchmarks/refine_offsets.py).
A fine-offset model is the same architecture with 21 classes 20 ms apart over +-0.2 s, trained on offsets to
the sample against two-hot targets (``synchformer train sync`` with ``model={"n_offset_classes": 21,
"max_offset_sec": 0.2}``, ``data.offsets=continuous``), its visual encoder the offset model's own, frozen.

After the coarse pass, the windows' sound is taken again, delayed by the coarse refined offset (from the audio the
first pass kept in memory, else by reading the file again with ``audio_delay_sec``), so that it holds only the
residual; the fine model scores the windows the coarse pass
used, their distributions pooled as independent evidence (distributions.log_pooled), and the residual is the pool's
expectation. The visual features are the coarse pass's (``analyze(keep_visual=True)``): the second
pass costs decoding, the audio encoder (about 3 % of a full-size model's compute) and the small sync
transformer. The offset is the coarse one plus the residual, which can move it across a coarse class.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from synchformer.constants import SEGMENT_STRIDE_SEC
from synchformer.errors import SynchformerError
from synchformer.features import audio_to_model
from synchformer.features.segments import decode_size
from synchformer.inference.distributions import log_pooled, overlap_weights
from synchformer.inference.pooling import FineOffset
from synchformer.inference.stream import encode_chunk, read_segments
from synchformer.model import Synchformer, same_encoders
from synchformer.model.precision import using

# The 90 % interval of the fine offset: +- this many standard deviations of the pooled fine distribution.
# Calibrated on continuous-offset synthetic clips with the bundled fine model (synth --seed 9300, 400 clips:
# 90 % inside), checked on others (docs/reliability.md); for other models a guide, not a measurement.
FINE_INTERVAL_SCALE = 1.41


@dataclass(frozen=True)
class FineSource:
    """A file's windows as the first pass read them, for a fine pass to read again (``Analysis.fine_source``)."""

    path: str
    first_segments: np.ndarray  # (W,) each window's first segment
    read_args: dict  # how the first pass read the file (first_frame, size, audio, audio_path, max_windows, ...)
    timing: str
    visual_features: dict | None = field(default=None, repr=False)  # segment -> the first pass's visual tokens
    visual_model: Synchformer | None = field(default=None, repr=False)  # whose encoder made them
    kept_audio: object | None = field(default=None, repr=False)  # the first pass's decoded sound (stream.py)


def is_fine_model(model: Synchformer) -> bool:
    """A fine-offset model: an offset head whose grid reaches no further than half a second."""
    return model.cfg.head == "offset" and model.cfg.max_offset_sec <= 0.5


def expectation(dist: np.ndarray, grid: np.ndarray) -> tuple[float, tuple[float, float]]:
    """The expected offset of ``dist`` over ``grid``, and its 90 % interval (FINE_INTERVAL_SCALE)."""
    mean = float((dist * grid).sum())
    half = FINE_INTERVAL_SCALE * float(np.sqrt((dist * (grid - mean) ** 2).sum()))
    return mean, (mean - half, mean + half)


def fine_pass(fine_model: Synchformer, source: FineSource, used: np.ndarray, coarse_sec: float, *,
              timing: str | None = None, precision: str | None = None, window_batch: int = 16,
              encode_batch: int | None = None) -> FineOffset:
    """The fine pass over ``source``'s windows where ``used`` (the pooled ones), with the sound delayed by
    ``coarse_sec``. The visual features are the first pass's where ``fine_model`` shares its visual encoder
    (``analyze(keep_visual=True)``), else computed again; the sound comes from what the first pass kept in
    memory where it covers the delayed windows, else from reading the file again."""
    if not is_fine_model(fine_model):
        raise ValueError("fine_model must be a fine-offset model (an offset head over at most +-0.5 s)")
    used = np.asarray(used, dtype=bool)
    if not used.any():
        raise ValueError("no window to refine")
    n = fine_model.cfg.n_segments
    firsts = [int(k) for k in np.asarray(source.first_segments)[used]]
    need = sorted({k for k0 in firsts for k in range(k0, k0 + n)})
    visual = source.visual_features or {}
    reuse = (bool(visual) and all(k in visual for k in need) and source.visual_model is not None
             and same_encoders(source.visual_model, fine_model, ("vfeat_extractor.",)))
    encode_batch = encode_batch or (32 if fine_model.device.type == "cuda" else 4)
    with using(precision, fine_model):
        feats, encoded = None, 0
        kept = source.kept_audio
        if reuse and kept is not None:  # nothing to decode: the first pass's pictures and sound
            feats, encoded = _from_memory(fine_model, kept, need, visual, coarse_sec, encode_batch)
        if feats is None:
            feats, encoded = _read_again(fine_model, source, need, visual if reuse else None, coarse_sec, timing,
                                         encode_batch)
        missing = [k0 for k0 in firsts if any(k not in feats for k in range(k0, k0 + n))]
        if missing:  # the second read ended early (a damaged file): refine from the windows it saw
            firsts = [k0 for k0 in firsts if k0 not in missing]
            if not firsts:
                raise SynchformerError(source.path, "changed or damaged: reading it again for the fine pass gave "
                                                    "none of the windows the first read had")
        logits = []
        with torch.inference_mode():
            for s in range(0, len(firsts), window_batch):
                part = firsts[s:s + window_batch]
                v = torch.stack([torch.stack([feats[k][0] for k in range(k0, k0 + n)]) for k0 in part])
                a = torch.stack([torch.stack([feats[k][1] for k in range(k0, k0 + n)]) for k0 in part])
                logits.append(fine_model.compare_v_a(v, a).float().cpu())
    probs = torch.cat(logits).softmax(-1).double().numpy()
    w = overlap_weights(np.asarray(firsts, dtype=np.float64) * SEGMENT_STRIDE_SEC)
    # pooled as independent evidence (as the first pass's log pool): the mean pool, broader than any window,
    # let a flat, misplaced maximum decide (max error 169 against 65 ms on 400 clips; docs/reliability.md)
    dist = log_pooled(probs, w)
    fgrid = fine_model.cfg.offset_grid().double().numpy()
    residual, (lo, hi) = expectation(dist, fgrid)
    return FineOffset(coarse_sec=float(coarse_sec), residual_sec=residual, offset_sec=float(coarse_sec) + residual,
                      interval_sec=(float(coarse_sec) + lo, float(coarse_sec) + hi), distribution=dist, grid=fgrid,
                      windows=len(firsts), segments_encoded=encoded * (1 if reuse else 2), window_probs=probs,
                      window_weights=w)


def _from_memory(fine_model, kept, need: list[int], visual: dict, coarse_sec: float, batch: int):
    """(segment -> (visual, audio features), audio segments encoded) from the first pass's kept sound, or
    (None, 0) where it does not cover the delayed windows."""
    waves = kept.segments(need, coarse_sec)
    if waves is None:
        return None, 0
    feats = {}
    with torch.inference_mode():
        for s in range(0, len(need), batch):
            a = audio_to_model(waves[s:s + batch].to(fine_model.device).float())
            out = fine_model.extract_afeats(a[None])[0]
            for j, k in enumerate(need[s:s + batch]):
                feats[k] = (visual[k].to(out.device), out[j])
    return feats, len(need)


def _read_again(fine_model, source: FineSource, need: list[int], visual: dict | None, coarse_sec: float,
                timing: str | None, batch: int):
    """(segment -> (visual, audio features), segments encoded) from reading the file again, the sound delayed."""
    args = source.read_args
    audio = args.get("audio")
    if audio is None and args.get("audio_path"):  # score's separate track
        from synchformer.io.decode import load_audio

        audio = load_audio(args["audio_path"], args.get("audio_track"))
    n = fine_model.cfg.n_segments
    grid, chunks = read_segments(source.path, first_frame=args.get("first_frame", 0),
                                 size=args.get("size") or decode_size(fine_model.cfg.image_size),
                                 crop=fine_model.cfg.image_size, audio=audio,
                                 timing=timing or source.timing or fine_model.cfg.timing,
                                 max_windows=args.get("max_windows", 0), window_segments=n,
                                 audio_delay_sec=coarse_sec, audio_track=args.get("audio_track"))
    wanted, feats, encoded = set(need), {}, 0
    for chunk in chunks:
        rows = [i for i in range(len(chunk)) if chunk.first + i in wanted]
        if not rows:
            continue
        v, a = encode_chunk(fine_model, chunk.select(rows), video=visual is None, batch=batch)
        for j, i in enumerate(rows):
            k = chunk.first + i
            feats[k] = (visual[k].to(a.device) if visual is not None else v[j], a[j])
        encoded += len(rows)
    return feats, encoded


__all__ = ["FineOffset", "FineSource", "fine_pass", "is_fine_model", "expectation", "FINE_INTERVAL_SCALE"]
