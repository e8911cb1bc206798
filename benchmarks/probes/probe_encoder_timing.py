"""Do a model's encoders tell *when* things happen? A training-free read-out of their features.

For each validation window of a stage II config (fixed offsets, cached features of the config's encoders:
``init=`` a stage I file, or none for random encoders), every token's novelty (distance from the window's
median token, z-scored) is placed at its time, and the visual and audio novelty curves are cross-correlated
over the 21 offsets. Encoders that respond to events score far above chance (1/21); this separates "the
features lack timing" from "the sync transformer has not learned to read it".

    python benchmarks/probe_encoder_timing.py --config C.json [key=value ...]

On a synth folder the ceiling (every event found exactly) is printed beside it.
"""
import argparse
import json

import torch
import torch.nn.functional as F

from synchformer.training.features import FeatureDataset, build_feature_cache
from synchformer.training.loop import Dist, start_of_run
from synchformer.training.synth import ceiling_of

BIN = 0.04  # seconds: one video frame


def token_times(n_segments: int, per_segment: int, seg: float = 0.64, stride: float = 0.32) -> torch.Tensor:
    k = torch.arange(per_segment)
    return (torch.arange(n_segments)[:, None] * stride + (k + 0.5) * seg / per_segment).flatten()


def curve(novelty: torch.Tensor, times: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Mean novelty per 0.04 s bin (overlapping segments put several tokens in one bin)."""
    idx = (times / BIN).long().clamp(max=n_bins - 1)
    total = torch.zeros(n_bins).index_add_(0, idx, novelty)
    count = torch.zeros(n_bins).index_add_(0, idx, torch.ones_like(novelty))
    return total / count.clamp(min=1)


def novelty(feats: torch.Tensor) -> torch.Tensor:
    f = feats.float().flatten(0, 1)
    n = (f - f.median(0).values).norm(dim=1)
    return (n - n.mean()) / (n.std() + 1e-6)


def predict(vfeats, afeats, grid) -> int:
    """Offset class whose shift best lines up the novelty curves (positive: audio leads, so an event at video
    time t is heard at audio time t - offset)."""
    s, v_per, a_per = vfeats.shape[0], vfeats.shape[1], afeats.shape[1]
    n_bins = round((0.32 * (s - 1) + 0.64) / BIN)
    tv = curve(novelty(vfeats), token_times(s, v_per), n_bins)
    ta = curve(novelty(afeats), token_times(s, a_per), n_bins)
    ta = F.max_pool1d(ta[None, None], 3, 1, 1)[0, 0]  # audio tokens are ~0.107 s apart: allow a bin

    def score(k):
        return (tv[k:] * ta[:n_bins - k]).mean() if k >= 0 else (tv[:n_bins + k] * ta[-k:]).mean()

    return int(torch.stack([score(k) for k in (grid / BIN).round().long().tolist()]).argmax())


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True, help="a stage II config (its data.valid and encoders are used)")
    p.add_argument("overrides", nargs="*", help="key=value settings, as for synchformer train")
    args = p.parse_args()
    cfg, model, data = start_of_run("sync", args.config, args.overrides)
    if "valid" not in data:
        p.error("the config needs data.valid (clips with fixed offsets)")
    base = data["valid"][1]
    feats = build_feature_cache(model, base.clips, cfg.cache_dir, "cpu", Dist(), cfg.feature_video_step)
    ds = FeatureDataset(base, feats, cfg.feature_video_step)
    grid = model.cfg.offset_grid()
    hits = near = 0
    for i in range(len(ds)):
        item = ds[i]
        guess = predict(item["vfeats"], item["afeats"], grid)
        hits += guess == item["target"]
        near += abs(guess - item["target"]) <= 1
    out = {"windows": len(ds), "accuracy_1": hits / len(ds), "accuracy_1_tol1": near / len(ds),
           "encoders": cfg.init or "random"}
    bound = ceiling_of(cfg.data.valid, model.cfg.n_segments)
    if bound:
        out["ceiling"] = bound
    print(json.dumps(out))


if __name__ == "__main__":
    main()
