"""Do the bundled model's frozen encoders register a synthetic style's events? (the diagnosis behind
`synth --style workshop`, docs/benchmarks.md)

    python benchmarks/probes/probe_event_features.py [--clips 40] [--style workshop|default] [--seed 3902]

Makes --clips in-sync clips of 10 s of the style (--seed: 3902, bench_adapt's workshop test clips), encodes them with the
bundled model (visual segments every 8 frames, audio every 4 frames), labels each segment by whether an event
lies in its middle half (frames 4..11 of 16), fits a logistic regression on the segments of the first 60 % and
reports the ROC AUC on the rest, per encoder and per event kind. 0.5: the features say nothing about the
events; 1.0: they separate them perfectly.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from synchformer.features.segments import decode_size
from synchformer.model import load_model
from synchformer.training.data import load_cached, prepare, read_clip_list
from synchformer.training.features import encode_clip
from synchformer.training.synth import Cues, synth


def auc(score: np.ndarray, y: np.ndarray) -> float:
    order = np.argsort(score)
    rank = np.empty(len(score))
    rank[order] = np.arange(len(score))
    pos = y == 1
    return float((rank[pos].mean() - (pos.sum() - 1) / 2) / (~pos).sum())


def fit_score(x: np.ndarray, y: np.ndarray, n_train: int) -> np.ndarray:
    """Logistic regression (L2 1e-2, LBFGS) on the first ``n_train`` rows; the scores of the others."""
    mu, sd = x[:n_train].mean(0), x[:n_train].std(0) + 1e-4
    xt, yt = torch.tensor((x - mu) / sd), torch.tensor(y)
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xt[:n_train] @ w + b, yt[:n_train])
        loss = loss + 1e-2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return (xt[n_train:] @ w + b).detach().numpy()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--style", default="workshop")
    ap.add_argument("--seed", type=int, default=3902)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model("bundled").eval()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synth(tmp / "clips", args.clips, seed=args.seed, progress=False, cues=Cues(style=args.style))
        events = {json.loads(line)["path"]: json.loads(line)
                  for line in (tmp / "clips" / "events.jsonl").read_text().splitlines()}
        prep = prepare(read_clip_list(tmp / "clips"), tmp / "cache", decode_size(model.cfg.image_size), 10.0, 5.0,
                       min_fps=0, min_sample_rate=0)
        rows = {"visual": ([], [], []), "audio": ([], [], [])}
        for clip in prep.clips:
            vf, af = encode_clip(model, *load_cached(tmp / "cache", clip.key), "cpu", 8)
            ev = events[Path(clip.path).name]
            frames, kinds = np.array(ev["events"]) * 25, ev["kinds"]
            for name, feats, starts in (("visual", vf, range(0, len(vf) * 8, 8)), ("audio", af[::4], range(0, len(af), 4))):
                for f, s in zip(feats, starts):
                    inside = [k for t, k in zip(frames, kinds) if s + 4 <= t < s + 12]
                    rows[name][0].append(np.asarray(f, np.float32).reshape(-1))
                    rows[name][1].append(float(bool(inside)))
                    rows[name][2].append(inside[0] if inside else "")
    result = {"style": args.style, "clips": len(prep.clips)}
    for name, (x, y, k) in rows.items():
        x, y, k = np.stack(x), np.array(y, np.float32), np.array(k)
        n_train = int(len(x) * 0.6)
        score, yt, kt = fit_score(x, y, n_train), y[n_train:], k[n_train:]
        result[name] = {"auc": round(auc(score, yt), 3), "positives": round(float(y.mean()), 2)}
        for kind in sorted(set(kt) - {""}):
            sel = (kt == kind) | (yt == 0)
            result[name][kind] = round(auc(score[sel], yt[sel]), 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
