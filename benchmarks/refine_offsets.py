"""Sub-class offsets: which estimator reads the offset best off a model's posteriors, measured on synthetic
clips written out of sync by continuous offsets (``synchformer synth --offsets continuous``).

    python benchmarks/refine_offsets.py                      # the bundled model, 48 clips of 20 s (~15 min)
    python benchmarks/refine_offsets.py --n 16 --weights W   # another model

Every window of each clip (hop 0.64 s, as predict) is scored with the audio as it is and with the audio taken
later by each of --shifts (test-time shifting: the audio encoder and the sync transformer run again, the
visual features are reused). Printed: |error| median / p90 / max in ms of each estimator, all from the same
logits:

- class: the argmax class of the mean-pooled distribution;
- refined (shipped): the expectation over that class and its two neighbours;
- parabola: the vertex of a parabola through the three log-probabilities;
- dither K: the refined offset of each shifted pool, less its shift, averaged over K shifts that tile one
  class width (so the pull towards class centres averages out);
- log-pool dither K: the same with log-pooled windows;
- posterior fit: the offset whose shifted classes the pooled (interpolated) probabilities like best over all
  shifts.

Measured, the bundled model, two sets of 48 clips of 20 s (median / p90 |error|, ms):

                          this script (--seed 7780)   make_sparse_clip seeds 7780000+ (same method)
  class                   58.8 / 106.6                36.7 / 111.0
  refined (shipped)       21.9 /  60.5                20.9 /  61.9
  parabola                20.2 /  56.5                22.4 /  66.9
  dither 5                18.1 /  49.4                21.5 /  70.3
  log-pool dither 5       18.1 /  50.7                21.8 /  64.5
  dither 10               17.5 /  48.6                19.5 /  70.9
  posterior fit           19.0 /  44.1                19.4 /  62.8

Shifting helps on one set and hurts on the other: the errors are the model's, per clip (a clip's estimate
is off by about the same amount at every shift), so predict keeps the plain refined offset at no extra cost.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synchformer.features.segments import audio_to_model, decode_size, frames_to_model, segment_video  # noqa: E402
from synchformer.io.decode import load_av  # noqa: E402


def softmax(x):
    x = x - x.max(-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(-1, keepdims=True)


def shifted_logits(model, path: str, shifts: np.ndarray) -> np.ndarray:
    """(J, W, K) logits of every window (hop 2 segments, plus one flush with the end) per audio shift."""
    crop = model.cfg.image_size
    clip = load_av(path, size=decode_size(crop), crop=crop, timing=model.cfg.timing)
    n_seg = model.cfg.n_segments
    S = (clip.frames.shape[0] - 16) // 8 + 1
    starts = list(range(0, S - n_seg + 1, 2))
    if starts[-1] != S - n_seg:
        starts.append(S - n_seg)
    margin = int(np.ceil(np.abs(shifts).max() * 16000)) + 1
    wave = torch.nn.functional.pad(clip.audio, (margin, margin))  # silence past the clip's ends
    out = []
    with torch.inference_mode():
        video = segment_video(clip.frames, 0, S)
        vf = torch.cat([model.extract_vfeats(frames_to_model(video[s:s + 16])[None])[0] for s in range(0, S, 16)])
        for d in shifts:
            a0 = margin + int(round(d * 16000))
            segs = torch.stack([wave[a0 + 5120 * k:a0 + 5120 * k + 10240] for k in range(S)])
            af = torch.cat([model.extract_afeats(audio_to_model(segs[s:s + 16])[None])[0] for s in range(0, S, 16)])
            v = torch.stack([vf[k:k + n_seg] for k in starts])
            a = torch.stack([af[k:k + n_seg] for k in starts])
            out.append(model.compare_v_a(v, a).float().numpy())
    return np.stack(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", "-w", default=None, help="default: the bundled synthetic model")
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--seed", type=int, default=7780, help="synth --seed (clip seeds no training set used)")
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--folder", default=None, help="where the clips go (default: a temporary folder)")
    args = ap.parse_args()
    import tempfile

    from synchformer.cli.common import load
    from synchformer.training.synth import in_file_offsets, synth

    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = load(args.weights, "cpu")
    folder = Path(args.folder or tempfile.mkdtemp(prefix="refine-offsets-"))
    truth = in_file_offsets(synth(folder, args.n, seed=args.seed, duration=args.duration, offsets="continuous"))
    shifts = np.round(np.arange(-0.1, 0.1001, 0.02), 3)  # 11 shifts, 0 among them
    grid = model.cfg.offset_grid().numpy()
    logits = {p: shifted_logits(model, p, shifts) for p in truth}
    at = {round(float(s), 3): j for j, s in enumerate(shifts)}

    def local(p):
        k = int(np.argmax(p))
        lo, hi = max(0, k - 1), min(len(p), k + 2)
        return float((p[lo:hi] * grid[lo:hi]).sum() / p[lo:hi].sum())

    def parabola(p):
        k = int(np.argmax(p))
        if k in (0, len(p) - 1):
            return float(grid[k])
        l0, l1, l2 = np.log(p[k - 1:k + 2] + 1e-12)
        den = l0 - 2 * l1 + l2
        return float(grid[k] + 0.1 * (l0 - l2) / den) if den < 0 else float(grid[k])

    def dither(ss, pool="mean"):
        def f(L):
            vals = []
            for s in ss:
                P = softmax(L[at[s]])
                P = P.mean(0) if pool == "mean" else softmax(np.log(P + 1e-9).mean(0))
                vals.append(local(P) - s)
            return float(np.mean(vals))
        return f

    def fit(L):
        fine = np.arange(grid[0] - 0.1, grid[-1] + 0.1, 0.005)
        total = sum(np.log(np.interp(fine + s, grid, softmax(L[j]).mean(0)) + 1e-9) for j, s in enumerate(shifts))
        return float(fine[int(np.argmax(total))])

    five = (-0.08, -0.04, 0.0, 0.04, 0.08)
    estimators = {"class": lambda L: float(grid[np.argmax(softmax(L[at[0.0]]).mean(0))]),
                  "refined (shipped)": lambda L: local(softmax(L[at[0.0]]).mean(0)),
                  "parabola": lambda L: parabola(softmax(L[at[0.0]]).mean(0)),
                  "dither 5": dither(five), "log-pool dither 5": dither(five, "log"),
                  "dither 10": dither(tuple(round(float(s), 3) for s in shifts[:-1])), "posterior fit (11 shifts)": fit}
    print(f"{len(truth)} clips of {args.duration:g} s, offsets uniform in +-1.5 s, model {getattr(model, 'weights_label', args.weights)}")
    for name, f in estimators.items():
        e = np.abs([f(logits[p]) - t for p, t in truth.items()]) * 1000
        print(f"  {name:28s} |error| median {np.median(e):5.1f} ms  p90 {np.percentile(e, 90):5.1f}  max {e.max():5.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
