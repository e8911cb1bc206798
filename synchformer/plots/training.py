"""The training evaluation's figures: the confusion matrix of the offset classes and the ROC of in-sync
detection (``synchformer.training.metrics`` computes them)."""

from __future__ import annotations

import torch

from synchformer import plots


def plot_confusion(matrix, class_names: list[str], path, title: str = "") -> None:
    """Save a confusion matrix as an image: colour = row-normalised rate, text = count."""
    counts = torch.as_tensor(matrix).cpu().long()
    rates = counts.double() / counts.sum(dim=1, keepdim=True).clamp(min=1)  # empty rows stay 0, not NaN
    fig = _figure(figsize=(1 + 0.45 * len(class_names),) * 2)
    ax = fig.add_subplot()
    image = ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    ticks = range(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=90)
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("predicted offset (s)")
    ax.set_ylabel("true offset (s)")
    for i, j in counts.nonzero().tolist():
        ax.text(j, i, str(counts[i, j].item()), ha="center", va="center", fontsize=7,
                color="white" if rates[i, j] > 0.5 else "black")
    ax.set_title(title)
    _save(fig, path)


def plot_roc(fpr, tpr, auc: float, path) -> None:
    """Save a ROC curve (``training.metrics.roc_curve``), with its area in the title."""
    fig = _figure(figsize=(4, 4))
    ax = fig.add_subplot()
    ax.plot(torch.as_tensor(fpr).numpy(), torch.as_tensor(tpr).numpy())
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"ROC (AUC = {auc:.3f})")
    _save(fig, path)


def _figure(figsize):
    return plots.new_figure("the training plots", figsize=figsize, layout="constrained")


def _save(fig, path) -> None:
    plots.write_figure(fig, path, dpi=120)  # the format from the suffix, which the temporary file keeps


__all__ = ["plot_confusion", "plot_roc"]
