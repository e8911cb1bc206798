"""Evaluation metrics for offset classification (stages II/III) and binary in-sync detection.

Everything takes logits and targets as tensors on any device and returns plain Python numbers, so results can
go straight into JSON logs. Their figures (confusion matrix, ROC) are drawn by ``synchformer.plots.training``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor



def offset_metrics(logits: Tensor, targets: Tensor) -> dict:
    """Top-1, top-1 within one neighbouring class, top-5 and per-class accuracy of offset-class logits (N, C).

    ``accuracy_1_tol1`` is the reference's "Acc@1 ±1 class": the classes are ordered offsets, so predicting an
    adjacent one is a near miss. ``per_class_accuracy`` is NaN for a class with no samples, so the mean over
    classes can skip it rather than count it as 0.
    """
    logits, targets = logits.detach().float().cpu(), targets.detach().long().cpu()
    n, n_classes = logits.shape
    pred = logits.argmax(dim=1)
    correct = pred == targets
    top5 = logits.topk(min(5, n_classes), dim=1).indices
    per_class = [correct[targets == c].float().mean().item() if (targets == c).any() else math.nan
                 for c in range(n_classes)]
    return {
        "accuracy_1": _mean(correct),
        "accuracy_1_tol1": _mean((pred - targets).abs() <= 1),
        "accuracy_5": _mean((top5 == targets[:, None]).any(dim=1)),
        "n": n,
        "per_class_accuracy": per_class,
    }


def confusion_matrix(pred: Tensor, target: Tensor, n_classes: int) -> Tensor:
    """Counts (C, C) with rows = true class and columns = predicted class."""
    flat = target.detach().long().cpu() * n_classes + pred.detach().long().cpu()
    return torch.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def roc_auc(scores: Tensor, labels: Tensor) -> float:
    """Area under the ROC curve: P(random positive scores above random negative), ties counted 1/2.

    Uses the Mann-Whitney rank-sum with tied scores sharing their average rank, which is exactly the pairwise
    count in O(n log n). NaN when only one class is present (the area is undefined).
    """
    scores = scores.detach().double().cpu().flatten()
    labels = labels.detach().cpu().flatten().bool()
    n_pos = int(labels.sum())
    n_neg = labels.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    _, inverse, counts = torch.unique(scores, return_inverse=True, return_counts=True)
    # 1-based rank of each distinct score's last member, minus half the ties before it = its average rank
    last_rank = counts.cumsum(0).double()
    avg_rank = last_rank - (counts.double() - 1) / 2
    rank_sum = avg_rank[inverse][labels].sum().item()
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def sync_metrics(logits: Tensor, targets: Tensor) -> dict:
    """Accuracy and ROC AUC of in-sync (class 1) vs. off-sync (class 0) logits (N, 2)."""
    logits, targets = logits.detach().float().cpu(), targets.detach().long().cpu()
    auc = roc_auc(logits.softmax(dim=1)[:, 1], targets == 1)
    out = {"accuracy": _mean(logits.argmax(dim=1) == targets), "roc_auc": None if math.isnan(auc) else auc,
           "n": len(targets)}
    if out["roc_auc"] is None:  # JSON has no NaN: null, and why
        only = "in-sync" if bool((targets == 1).all()) else "off-sync"
        out["roc_auc_undefined"] = f"every clip is {only}: the ROC needs both classes"
    return out


def roc_curve(scores: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """(false positive rates, true positive rates) of binary scores, one point per distinct threshold, from (0, 0)."""
    scores = scores.detach().double().cpu().flatten()
    labels = labels.detach().cpu().flatten().bool()
    order = scores.argsort(descending=True)
    tp = labels[order].double().cumsum(0)
    fp = (~labels[order]).double().cumsum(0)
    # one point per distinct threshold: the last sample of each run of equal scores
    keep = torch.ones_like(order, dtype=torch.bool)
    keep[:-1] = scores[order][1:] != scores[order][:-1]
    tpr = torch.cat([torch.zeros(1, dtype=torch.double), tp[keep] / max(tp[-1].item(), 1)])
    fpr = torch.cat([torch.zeros(1, dtype=torch.double), fp[keep] / max(fp[-1].item(), 1)])
    return fpr, tpr


def _mean(mask: Tensor) -> float:
    return mask.float().mean().item() if mask.numel() else math.nan
