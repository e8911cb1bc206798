"""Frame-accurate offsets: a fine-offset model reads what the coarse offset leaves.

An offset model classifies a window's offset on a 0.2 s grid, and the classes of the released models (and the
bundled one) were trained with +-0.05 s of jitter: they are taught not to tell offsets 50 ms apart, so the
expectation over the argmax class and its neighbours (``refined_offset_sec``) has a p90 error of about 55 ms
on synthetic clips, and no estimator read off those posteriors does better (benchmarks/refine_offsets.py).
A fine-offset model is the same architecture with 21 classes 20 ms apart over +-0.2 s, trained on offsets to
the sample against two-hot targets (``synchformer train sync`` with ``model={"n_offset_classes": 21,
"max_offset_sec": 0.2}``, ``data.offsets=continuous``), its visual encoder the offset model's own, frozen.

After the coarse pass, the file is read again with its sound delayed by the coarse refined offset (``load_av``'s
``audio_delay_sec``), so the windows hold only the residual; the fine model scores the windows the coarse pass
used, their distributions pooled as independent evidence (pooling.log_pooled), and the residual is the pool's
expectation. The visual features are the coarse pass's (``analyze(keep_visual=True)``): the second
pass costs decoding, the audio encoder (about 3 % of a full-size model's compute) and the small sync
transformer. The offset is the coarse one plus the residual, which can move it across a coarse class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from synchformer.errors import SynchformerError
from synchformer.features.segments import decode_size
from synchformer.inference.analyze import SEGMENT_SEC, Analysis, encoders_equal
from synchformer.inference.stream import encode_chunk, read_segments
from synchformer.model import Synchformer
from synchformer.model.precision import using

# The 90 % interval of the fine offset: +- this many standard deviations of the pooled fine distribution.
# Calibrated on continuous-offset synthetic clips with the bundled fine model (synth --seed 9300, 400 clips:
# 90 % inside), checked on others (docs/reliability.md); for other models a guide, not a measurement.
FINE_INTERVAL_SCALE = 1.41


@dataclass
class FineOffset:
    """What the fine pass found: the offset is ``coarse_sec + residual_sec``."""

    coarse_sec: float  # the coarse refined offset the sound was delayed by
    residual_sec: float  # what the fine model read after that
    offset_sec: float
    interval_sec: tuple[float, float]  # 90 %
    distribution: np.ndarray  # pooled (pooling.log_pooled), over the fine model's grid
    grid: np.ndarray
    windows: int  # windows scored
    segments_encoded: int  # audio segments through the fine model's encoder (visual too if not shared)
    window_probs: np.ndarray | None = None  # (windows, classes), before pooling
    window_weights: np.ndarray | None = None  # their overlap weights (pooling.overlap_weights)

    def to_dict(self) -> dict:
        return {"coarse_sec": round(self.coarse_sec, 4), "residual_sec": round(self.residual_sec, 4),
                "offset_sec": round(self.offset_sec, 4),
                "interval_sec": [round(float(x), 4) for x in self.interval_sec], "windows": self.windows}


def is_fine_model(model: Synchformer) -> bool:
    """A fine-offset model: an offset head whose grid reaches no further than half a second."""
    return model.cfg.head == "offset" and model.cfg.max_offset_sec <= 0.5


def shares_visual_encoder(a: Synchformer, b: Synchformer) -> bool:
    """Whether ``a``'s visual features are ``b``'s (the same visual encoder, weight for weight)."""
    return encoders_equal(a, b, ("vfeat_extractor.",))


def expectation(dist: np.ndarray, grid: np.ndarray) -> tuple[float, tuple[float, float]]:
    """The expected offset of ``dist`` over ``grid``, and its 90 % interval (FINE_INTERVAL_SCALE)."""
    mean = float((dist * grid).sum())
    half = FINE_INTERVAL_SCALE * float(np.sqrt((dist * (grid - mean) ** 2).sum()))
    return mean, (mean - half, mean + half)


def refine(fine_model: Synchformer, analysis: Analysis, used: np.ndarray, coarse_sec: float, *,
           timing: str | None = None, precision: str | None = None, window_batch: int = 16,
           encode_batch: int | None = None) -> FineOffset:
    """The fine pass over ``analysis``'s windows where ``used`` (the summary's: not left out), with the sound
    delayed by ``coarse_sec``. ``analysis`` should come from ``analyze(..., keep_visual=True)`` with a model
    whose visual encoder ``fine_model`` shares; otherwise the visual features are computed again."""
    from synchformer.inference.pooling import log_pooled, overlap_weights

    if not is_fine_model(fine_model):
        raise ValueError("fine_model must be a fine-offset model (an offset head over at most +-0.5 s)")
    used = np.asarray(used, dtype=bool)
    if not used.any():
        raise ValueError("no window to refine")
    n = fine_model.cfg.n_segments
    firsts = [int(k) for k in np.asarray(analysis.first_segments)[used]]
    need = sorted({k for k0 in firsts for k in range(k0, k0 + n)})
    visual = analysis.visual_features or {}
    reuse = (bool(visual) and all(k in visual for k in need) and analysis.visual_model is not None
             and shares_visual_encoder(analysis.visual_model, fine_model))  # else its own visual encoder runs
    args = analysis.read_args
    audio = args.get("audio")
    if audio is None and args.get("audio_path"):  # score's separate track
        from synchformer.io.decode import load_audio

        audio = load_audio(args["audio_path"], args.get("audio_track"))
    grid, chunks = read_segments(analysis.path, first_frame=args.get("first_frame", 0),
                                 size=args.get("size") or decode_size(fine_model.cfg.image_size),
                                 crop=fine_model.cfg.image_size, audio=audio,
                                 timing=timing or fine_model.cfg.timing, max_windows=args.get("max_windows", 0),
                                 window_segments=n, audio_delay_sec=coarse_sec,
                                 audio_track=args.get("audio_track"))
    wanted = set(need)
    encode_batch = encode_batch or (32 if fine_model.device.type == "cuda" else 4)
    feats: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    encoded = 0
    with using(precision, fine_model):
        for chunk in chunks:
            rows = [i for i in range(len(chunk)) if chunk.first + i in wanted]
            if not rows:
                continue
            v, a = encode_chunk(fine_model, chunk.select(rows), video=not reuse, batch=encode_batch)
            for j, i in enumerate(rows):
                k = chunk.first + i
                feats[k] = (visual[k].to(a.device) if reuse else v[j], a[j])
            encoded += len(rows)
        missing = [k0 for k0 in firsts if any(k not in feats for k in range(k0, k0 + n))]
        if missing:  # the second read ended early (a damaged file): refine from the windows it saw
            firsts = [k0 for k0 in firsts if k0 not in missing]
            if not firsts:
                raise SynchformerError(analysis.path, "changed or damaged: reading it again for the fine pass gave "
                                                      "none of the windows the first read had")
        logits = []
        with torch.inference_mode():
            for s in range(0, len(firsts), window_batch):
                v = torch.stack([torch.stack([feats[k][0] for k in range(k0, k0 + n)]) for k0 in firsts[s:s + window_batch]])
                a = torch.stack([torch.stack([feats[k][1] for k in range(k0, k0 + n)]) for k0 in firsts[s:s + window_batch]])
                logits.append(fine_model.compare_v_a(v, a).float().cpu())
    probs = torch.cat(logits).softmax(-1).double().numpy()
    w = overlap_weights(np.asarray(firsts, dtype=np.float64) * SEGMENT_SEC)
    # pooled as independent evidence (as the first pass's log pool): the mean pool, broader than any window,
    # let a flat, misplaced maximum decide (max error 169 against 65 ms on 400 clips; docs/reliability.md)
    dist = log_pooled(probs, w)
    fgrid = fine_model.cfg.offset_grid().double().numpy()
    residual, (lo, hi) = expectation(dist, fgrid)
    return FineOffset(coarse_sec=float(coarse_sec), residual_sec=residual, offset_sec=float(coarse_sec) + residual,
                      interval_sec=(float(coarse_sec) + lo, float(coarse_sec) + hi), distribution=dist, grid=fgrid,
                      windows=len(firsts), segments_encoded=encoded * (1 if reuse else 2), window_probs=probs,
                      window_weights=w)


__all__ = ["FineOffset", "refine", "is_fine_model", "shares_visual_encoder"]
