"""Stage II epoch time: frozen encoders recomputed every step (the reference) vs. features cached once.

Both runs train the same model on the same synthetic clips for one epoch, side by side in this process;
the one-off cost of building the cache is reported separately.

    python benchmarks/bench_feature_cache.py                 # the bundled model's size, 48 clips
    python benchmarks/bench_feature_cache.py --size small --clips 16  # 256 wide, 4 layers, 224 px
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from synchformer.features.segments import decode_size
from synchformer.model import ModelConfig, Synchformer
from synchformer.training.config import load_config
from synchformer.training.data import SyncDataset, prepare, read_clip_list, required_sec
from synchformer.training.features import FeatureDataset, build_feature_cache
from synchformer.training.loop import Dist, Stage, make_optimizer
from synchformer.training.synth import synth

SIZES = {
    "bundled": dict(v_width=64, a_width=64, width=64, v_heads=4, a_heads=4, heads=4, v_depth=2, a_depth=2, depth=2,
                    image_size=64),
    "small": dict(v_width=256, a_width=256, width=256, v_heads=4, a_heads=4, heads=4, v_depth=4, a_depth=4),
    "base": {},
}


def epoch_seconds(stage: Stage, dataset, batch_size: int, workers: int, device: str) -> float:
    cfg = load_config("sync", None, ["optim.lr=1e-4", "optim.warmup_steps=0"])
    opt = make_optimizer(stage, cfg)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                         drop_last=True)
    stage.train()
    t = time.perf_counter()
    for batch in loader:
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        loss, _ = stage(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=SIZES, default="bundled")
    ap.add_argument("--clips", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers of the recomputing run (the cached "
                    "run reads a few KB per sample and uses none, as training does)")
    ap.add_argument("--video-step", type=int, default=8, help="feature_video_step of the cache (1, 2, 4 or 8)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--data", help="existing folder of synthetic clips (default: made in a temporary folder)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = Path(args.data) if args.data else tmp / "clips"
        if not args.data:
            synth(data, args.clips, seed=7, progress=False)
        cfg = ModelConfig(**SIZES[args.size])
        clips = read_clip_list(data)[: args.clips]
        prep = prepare(clips, tmp / "cache", decode_size(cfg.image_size), 10.0, required_sec("sync", cfg, 8))
        torch.manual_seed(0)
        model = Synchformer(cfg).to(args.device)
        stage = Stage(model, "sync").to(args.device)
        raw = SyncDataset(prep.clips, tmp / "cache", "sync", cfg, train=True)
        t = time.perf_counter()
        feat_dir = build_feature_cache(model, prep.clips, tmp / "cache", args.device, Dist(), args.video_step)
        cache_sec = time.perf_counter() - t
        cached = FeatureDataset(raw, feat_dir, args.video_step)
        batch = min(args.batch_size, len(prep.clips))
        cached_sec = epoch_seconds(stage, cached, batch, 0, args.device)
        recompute_sec = epoch_seconds(stage, raw, batch, args.workers, args.device)
        cached_sec = min(cached_sec, epoch_seconds(stage, cached, batch, 0, args.device))
    result = {"size": args.size, "device": args.device, "clips": len(prep.clips), "batch_size": batch,
              "recompute_epoch_sec": round(recompute_sec, 3), "cached_epoch_sec": round(cached_sec, 3),
              "speedup": round(recompute_sec / cached_sec, 1), "video_step": args.video_step,
              "build_cache_sec": round(cache_sec, 2),
              "epochs_to_repay_cache": round(cache_sec / max(recompute_sec - cached_sec, 1e-9), 2)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
