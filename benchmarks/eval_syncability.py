"""Accuracy and ROC-AUC of a synchronizability (stage III) model on held-out clips, by kind of sample.

Each clip of ``--data`` gives ``--repeats`` windows (sample seeds 0, 1, ...): half synchronizable (the clip's
own sound at an offset of the 21-class grid), half not, split evenly among the kinds stage III trains on
(``synchformer.training.data.NEGATIVES``: a far window of its own sound, another clip's sound, near-silence,
a frozen picture). The model alone is scored, one 13-segment window at a time, without the model-free checks
that ``predict`` adds (they catch silence and still pictures by themselves).

    synchformer synth data/synthetic/test --n 200 --seed 3          # clips no training used
    python benchmarks/eval_syncability.py data/synthetic/test        # the bundled model, about 2 minutes
    python benchmarks/eval_syncability.py DIR --weights W.safetensors --json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import torch

from synchformer.features.segments import decode_size
from synchformer.model import load_model
from synchformer.model.bundled import SYNTHETIC_TINY_SYNCABILITY
from synchformer.training.config import DataConfig
from synchformer.training.data import NEGATIVES, SyncDataset, model_inputs, prepare, read_clip_list, required_sec
from synchformer.training.metrics import roc_auc


def score(model, data: str, repeats: int, cache: Path, batch: int = 32) -> dict:
    cfg = model.cfg
    prep = prepare(read_clip_list(data), cache, decode_size(cfg.image_size), DataConfig().max_clip_sec,
                   required_sec("synchronizability", cfg, 8), workers=2, progress=False)
    # every window drawn from the seed, never from a CSV's fixed offsets
    clips = [dataclasses.replace(c, offset_sec=None, vstart_sec=None) for c in prep.clips]
    probs, kinds = [], []
    for seed in range(repeats):
        ds = SyncDataset(clips, cache, "synchronizability", cfg, train=False, seed=seed,
                         negatives={k: 1.0 for k in NEGATIVES})
        for i in range(0, len(ds), batch):
            items = [ds[j] for j in range(i, min(i + batch, len(ds)))]
            kinds += [item.pop("negative") or "sync" for item in items]
            video, audio = model_inputs(torch.utils.data.default_collate(items))
            with torch.no_grad():
                probs.append(model(video, audio).softmax(-1)[:, 1])
    p = torch.cat(probs)
    sync = torch.tensor([k == "sync" for k in kinds])
    out = {"n": len(kinds), "clips": len(clips), "accuracy": float(((p >= 0.5) == sync).float().mean()),
           "roc_auc": roc_auc(p, sync), "kept_sync": float((p[sync] >= 0.5).float().mean())}
    for kind in NEGATIVES:
        mask = torch.tensor([k == kind for k in kinds])
        out[f"flagged_{kind}"] = float((p[mask] < 0.5).float().mean()) if mask.any() else None
        out[f"auc_{kind}"] = roc_auc(p[sync | mask], sync[sync | mask]) if mask.any() else None
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="a folder of clips no training used (synchformer synth DIR --seed 3)")
    ap.add_argument("--weights", default=str(SYNTHETIC_TINY_SYNCABILITY), help="default: the bundled model")
    ap.add_argument("--repeats", type=int, default=4, help="windows per clip (default 4)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    model = load_model(args.weights)
    if model.cfg.head != "synchronizability":
        print(f"{args.weights}: not a synchronizability model", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="synchformer-syncability-") as tmp:
        res = score(model, args.data, args.repeats, Path(tmp))
    if args.json:
        print(json.dumps(res))
    else:
        print(f"{res['n']} windows of {res['clips']} clips: accuracy {res['accuracy']:.3f}  ROC-AUC "
              f"{res['roc_auc']:.3f}  synchronizable kept {res['kept_sync']:.3f}")
        print("  flagged (P < 0.5) / AUC against the synchronizable ones, by kind:  " + "  ".join(
            f"{k} {res[f'flagged_{k}']:.3f} / {res[f'auc_{k}']:.3f}" for k in NEGATIVES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
