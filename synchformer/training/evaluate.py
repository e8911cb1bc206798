"""Evaluate a model (and the non-learned baseline) on clips with fixed offsets: Acc@1, Acc@1 +-1 class,
a confusion plot; accuracy and ROC-AUC for synchronizability.

Two protocols for the offset head: one window per clip (the reference's: the window at the CSV's
``vstart_sec``), or every window of the clip pooled into one prediction, as ``predict`` does (``pooled_windows``
and ``pool_logits``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from synchformer.constants import AUDIO_SR, BT1359_SEC, SAMPLES_PER_FRAME, SEGMENT_STRIDE_FRAMES, VIDEO_FPS
from synchformer.errors import SynchformerError
from synchformer.features.segments import LEAD_FRAMES, LEAD_SAMPLES, decode_size

from .config import DataConfig
from .data import Clip, SyncDataset, model_inputs, prepare, read_clip_list, required_sec
from .metrics import confusion_matrix, offset_metrics, roc_auc, roc_curve, sync_metrics


def eval_dataset(source, cfg, *, seed: int = 0, cache_dir=None, workers: int = 1, progress: bool = False,
                 timing: str | None = None):
    """Fixed-offset samples of ``source`` (a folder or CSV) for a model of config ``cfg``: CSV offsets where
    given, otherwise one offset per clip drawn from ``seed``; audio timed by ``timing`` (default the model's,
    ``cfg.timing``). Clips are taken as ``predict`` takes them: any frame rate and any sample rate (resampled
    to 25 fps and 16 kHz; training's minimums are for training data), as long as a sample fits (``required_sec``).
    Returns (dataset, Prepared)."""
    stage = "sync" if cfg.head == "offset" else "synchronizability"
    cache = Path(cache_dir) if cache_dir else Path(tempfile.mkdtemp(prefix="synchformer-eval-"))
    data = DataConfig()  # the training defaults: 10 s clips, segments 8 frames apart
    prep = prepare(read_clip_list(source), cache, decode_size(cfg.image_size), data.max_clip_sec,
                   required_sec(stage, cfg, data.segment_stride), workers=workers, progress=progress,
                   timing=timing or cfg.timing, min_fps=0.0, min_sample_rate=0)
    if not prep.clips:
        raise SynchformerError(source, f"no usable clips ({prep.report('clips')})")
    return SyncDataset(prep.clips, cache, stage, cfg, train=False, seed=seed), prep


def pooled_windows(dataset: SyncDataset, hop_sec: float = 2.4):
    """Every window of each clip of ``dataset`` (an offset-head eval set), with the clip's fixed offset (or
    the one drawn for it), starting every ``hop_sec`` (rounded to a multiple of 0.32 s, as ``predict`` does)
    from the first start where both the video and the shifted audio fit, plus one flush with the end.

    Returns (a dataset of those windows, the clip index of each window (W,), each window's video start in
    seconds (W,)). A window's ``vstart_sec`` is its frame / 25 plus 0.01 ms, so the reference's int() of
    seconds lands on that frame (as ``synth`` writes 1.1601).
    """
    from synchformer.inference.analyze import hop_in_segments

    if dataset.stage != "sync":
        raise ValueError("pooled windows are for the offset head")
    hop = hop_in_segments(hop_sec) * SEGMENT_STRIDE_FRAMES
    span, a_span = dataset.span_frames, dataset.span_frames * SAMPLES_PER_FRAME
    clips, groups, starts = [], [], []
    for i, clip in enumerate(dataset.clips):
        gen, _ = dataset.sample_key(i)
        offset = round(dataset.place(i, clip.frames, gen).offset_sec, 2)

        def fits(f: int) -> bool:
            a0 = int((f / VIDEO_FPS + 1e-5 + offset) * AUDIO_SR) + LEAD_SAMPLES
            return f + LEAD_FRAMES + span <= clip.frames and 0 <= a0 and a0 + a_span <= clip.frames * SAMPLES_PER_FRAME

        ok = [f for f in range(clip.frames) if fits(f)]
        if not ok:  # cannot happen for clips that passed prepare(); keep the clip's own window
            clips.append(clip)
            groups.append(i)
            starts.append(clip.vstart_sec or 0.0)
            continue
        firsts = list(range(ok[0], ok[-1] + 1, hop))
        if firsts[-1] != ok[-1]:
            firsts.append(ok[-1])
        for f in firsts:
            clips.append(Clip(clip.path, offset, f / VIDEO_FPS + 1e-5, clip.key, clip.frames))
            groups.append(i)
            starts.append((f + LEAD_FRAMES) / VIDEO_FPS)
    windows = SyncDataset(clips, dataset.cache_dir, dataset.stage, dataset.cfg, train=False, seed=dataset.seed,
                          segment_stride=dataset.stride, raw=dataset.raw)
    return windows, np.asarray(groups), np.asarray(starts)


def pool_logits(logits: torch.Tensor, targets: torch.Tensor, groups, starts, grid, window_sec: float):
    """One row per clip from per-window ``logits``: the log of the distribution ``pooling.summarize`` reports
    for the clip's windows, as ``predict`` does. Returns (logits (N, K), targets (N,))."""
    from synchformer.inference.pooling import summarize

    groups, starts = np.asarray(groups), np.asarray(starts)
    probs = logits.double().softmax(-1).numpy()
    rows, tg = [], []
    for g in np.unique(groups):
        sel = np.flatnonzero(groups == g)
        pooled = summarize(starts[sel], probs[sel], grid, window_sec=window_sec).distribution
        rows.append(np.log(np.maximum(pooled, 1e-12)))
        tg.append(int(targets[sel[0]]))
    return torch.from_numpy(np.stack(rows)).float(), torch.tensor(tg)


def evaluate_in_file(model, truth: dict[str, float], hop_sec: float = 0.64, timing: str | None = None,
                     progress: bool = True, sync_model=None, min_sync_prob: float = 0.5, fine_model=None) -> dict:
    """Files whose offset is known (``truth``: path -> seconds, + = audio leads), measured as ``predict``
    measures them (``sync_model``, ``min_sync_prob``: its synchronizability gate): |error| (ms) of the class
    and of the refined offset, the class accuracy (nearest class), how often the truth lies in the refined
    offset's 90 % interval, and the fraction of files that one ``fix`` leaves inside ITU-R BT.1359's window
    (it moves the audio by the refined offset, unless its 90 % interval is inside the window already).
    ``fine_model``: the refined offset is a fine-offset model's (``inference.fine``), and ``coarse`` is the one
    without it."""
    from tqdm import tqdm

    from synchformer.inference.analyze import analyze

    grid = model.cfg.offset_grid().numpy()
    rows = []
    for path, off in tqdm(truth.items(), desc="measuring", unit="clip", disable=not progress, leave=False):
        a = analyze(model, path, hop_sec=hop_sec, timing=timing, sync_model=sync_model,
                    keep_visual=fine_model is not None)
        s = a.summarize(min_sync_prob, fine_model=fine_model)
        if s.offset_sec is None:
            rows.append({"path": path, "offset_sec": off, "class_sec": None, "refined_sec": None})
            continue
        lo, hi = s.refined_interval_sec
        rows.append({"path": path, "offset_sec": off, "class_sec": s.offset_sec,
                     "coarse_sec": round(s.reported.refined_offset_sec, 4),
                     "refined_sec": round(s.refined_offset_sec, 4), "interval_sec": [round(lo, 4), round(hi, 4)]})
    done = [r for r in rows if r["class_sec"] is not None]
    if not done:
        raise SynchformerError(None, "no file gave an offset")
    t = np.array([r["offset_sec"] for r in done])
    c, f = np.array([r["class_sec"] for r in done]), np.array([r["refined_sec"] for r in done])
    coarse = np.array([r["coarse_sec"] for r in done])
    inside = np.array([r["interval_sec"][0] <= r["offset_sec"] <= r["interval_sec"][1] for r in done])
    nearest = grid[np.abs(t[:, None] - grid[None]).argmin(1)]
    lo, hi = np.array([r["interval_sec"][0] for r in done]), np.array([r["interval_sec"][1] for r in done])
    applied = np.where((lo >= BT1359_SEC[0]) & (hi <= BT1359_SEC[1]), 0.0, f)  # as fix: in sync, nothing written
    residual = t - applied

    def stats(err):
        e = np.abs(err) * 1000
        return {"mean_ms": float(e.mean()), "median_ms": float(np.median(e)), "p90_ms": float(np.percentile(e, 90)),
                "max_ms": float(e.max())}

    return {"clips": len(rows), "measured": len(done), "class": stats(c - t), "coarse": stats(coarse - t),
            "refined": stats(f - t),
            "residual_after_fix": stats(residual),
            "right_class": float(np.mean(np.abs(c - nearest) < 1e-6)), "interval_coverage": float(inside.mean()),
            "inside_bt1359_after_fix": float(np.mean((residual >= BT1359_SEC[0]) & (residual <= BT1359_SEC[1]))),
            "files": rows}


@torch.no_grad()
def predict_dataset(model, dataset, device: str = "cpu", batch_size: int = 8, progress: bool = False):
    """Logits (N, classes) and targets (N,) of every sample."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=0)
    if progress:
        from tqdm import tqdm

        loader = tqdm(loader, desc="evaluating", unit="batch", leave=False)
    logits, targets = [], []
    for batch in loader:
        logits.append(model(*model_inputs(batch, device)).float().cpu())
        targets.append(batch["target"])
    return torch.cat(logits), torch.cat(targets)


def metrics_of(logits, targets, head: str) -> dict:
    if head == "offset":
        m = offset_metrics(logits, targets)
        m.pop("per_class_accuracy")
        return m
    return sync_metrics(logits, targets)


def plot(logits, targets, cfg, path: Path, title: str) -> None:
    """Confusion matrix (offset head) or ROC curve (synchronizability)."""
    from synchformer.plots.training import plot_confusion, plot_roc  # (matplotlib only when a figure is drawn)

    if cfg.head == "offset":
        names = [f"{o:+.1f}" for o in cfg.offset_grid().tolist()]
        plot_confusion(confusion_matrix(logits.argmax(1), targets, cfg.n_classes), names, path, title)
    else:
        scores = logits.softmax(1)[:, 1]
        plot_roc(*roc_curve(scores, targets), roc_auc(scores, targets), path)
