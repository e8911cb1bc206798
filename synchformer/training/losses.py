"""Stage I loss: InfoNCE over every segment of the batch, with a learnable temperature."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
import torch.nn.functional as F
from torch import nn


class ContrastiveLoss(nn.Module):
    """Segment-level InfoNCE of the reference (AVCLIP): each visual segment must pick out its own audio
    segment among all segments of the batch, other segments of the same clip included, and vice versa.

    ``logit_scale`` is a temperature (similarities are divided by it), starts at 0.07 and is clamped to
    [0.001, 0.5] before every use. ``gather=True`` takes the negatives from every process's batch (the
    reference keeps them per process, so its loss depends on the number of GPUs).

    ``center=True`` subtracts the batch's mean embedding before normalising. Encoders trained from scratch
    (the reference starts from pretrained Motionformer and AST) otherwise fall into the trap of mapping
    every segment to one vector: the loss sits at log(N) and never moves.
    """

    def __init__(self, init: float = 0.07, lo: float = 0.001, hi: float = 0.5, gather: bool = False,
                 center: bool = False):
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(float(init)))
        self.lo, self.hi, self.gather, self.center = lo, hi, gather, center

    def forward(self, v: torch.Tensor, a: torch.Tensor):
        """v, a: (N, D) segment embeddings, row i of each from the same segment -> (loss, [matched, N])."""
        with torch.no_grad():
            self.logit_scale.clamp_(self.lo, self.hi)
        v, a = v.float(), a.float()
        if self.center:
            v, a = v - _mean(v), a - _mean(a)
        v, a = F.normalize(v, dim=-1), F.normalize(a, dim=-1)
        first = 0
        if self.gather and dist.is_initialized() and dist.get_world_size() > 1:
            first = dist.get_rank() * len(v)
            a_all, v_all = _gather(a), _gather(v)
        else:
            a_all, v_all = a, v
        targets = torch.arange(first, first + len(v), device=v.device)
        sim_v2a = v @ a_all.T / self.logit_scale
        sim_a2v = a @ v_all.T / self.logit_scale
        loss = (F.cross_entropy(sim_v2a, targets) + F.cross_entropy(sim_a2v, targets)) / 2
        matched = (sim_v2a.argmax(1) == targets).sum() + (sim_a2v.argmax(1) == targets).sum()
        return loss, torch.stack([matched.float() / 2, torch.tensor(float(len(v)), device=v.device)])


def _mean(x: torch.Tensor) -> torch.Tensor:
    """Mean row over every process's batch, differentiable across processes (N processes match one)."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        return dist_nn.all_reduce(x.sum(0)) / (len(x) * dist.get_world_size())
    return x.mean(0)


def _gather(x: torch.Tensor) -> torch.Tensor:
    """All processes' rows; gradients flow back to the process each row came from."""
    return torch.cat(dist_nn.all_gather(x))
