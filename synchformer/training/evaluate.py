"""Evaluate a model (and the non-learned baseline) on clips with fixed offsets: Acc@1, Acc@1 +-1 class,
a confusion plot; accuracy and ROC-AUC for synchronizability."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from synchformer.errors import SynchformerError
from synchformer.features.segments import decode_size

from .config import DataConfig
from .data import SyncDataset, model_inputs, prepare, read_clip_list, required_sec
from .metrics import confusion_matrix, offset_metrics, plot_confusion, plot_roc, sync_metrics


def eval_dataset(source, cfg, *, seed: int = 0, cache_dir=None, workers: int = 1, progress: bool = False):
    """Fixed-offset samples of ``source`` (a folder or CSV) for a model of config ``cfg``: CSV offsets where
    given, otherwise one offset per clip drawn from ``seed``. Returns (dataset, Prepared)."""
    stage = "sync" if cfg.head == "offset" else "synchronizability"
    cache = Path(cache_dir) if cache_dir else Path(tempfile.mkdtemp(prefix="synchformer-eval-"))
    data = DataConfig()  # the training defaults: 10 s clips, segments 8 frames apart
    prep = prepare(read_clip_list(source), cache, decode_size(cfg.image_size), data.max_clip_sec,
                   required_sec(stage, cfg, data.segment_stride), workers=workers, progress=progress)
    if not prep.clips:
        raise SynchformerError(source, f"no usable clips ({prep.report('clips')})")
    return SyncDataset(prep.clips, cache, stage, cfg, train=False, seed=seed), prep


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
    if cfg.head == "offset":
        names = [f"{o:+.1f}" for o in cfg.offset_grid().tolist()]
        plot_confusion(confusion_matrix(logits.argmax(1), targets, cfg.n_classes), names, path, title)
    else:
        plot_roc(logits.softmax(1)[:, 1], targets, path)
