"""fp32 against bf16 autocast (``--precision``), side by side in one run, on this machine.

    python benchmarks/bench_precision.py              # encoder on 2 full-size segments + the bundled model (~2 min)
    python benchmarks/bench_precision.py --predict    # also predict on the 8 s pen clip, full size (~10+ min)
    python benchmarks/bench_precision.py --sizes      # also the visual encoder at several sizes: where bf16 pays

Prints what ``--precision auto`` picks here and why (the CPU's bf16 units), then for each part the seconds in
fp32 and in bf16 (best of ``--repeats``), their ratio, and how far bf16's numbers are from fp32's: the
relative error of the visual features, and the largest difference of a window's (or the pooled) class
probability. The full-size model has random weights (the released ones are not shipped): the timings are
real, the differences are indicative.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
PEN = HERE.parent.parent / "shared" / "media" / "pen_hits_coin__node-opencv_motion.mov"


def best_of(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def side_by_side(fn, repeats: int) -> dict:
    """fn(precision) -> array; returns seconds of each, the ratio and the outputs."""
    t32, a = best_of(lambda: fn("fp32"), repeats)
    t16, b = best_of(lambda: fn("bf16"), repeats)
    return {"fp32_sec": round(t32, 3), "bf16_sec": round(t16, 3), "speedup_bf16": round(t32 / t16, 2)}, a, b


def main():
    from synchformer.model import ModelConfig, Synchformer
    from synchformer.model.bundled import synthetic_tiny
    from synchformer.model.precision import cpu_has_fast_bf16, gains_from_bf16_on_cpu, resolve, using
    from synchformer.inference.analyze import analyze

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--predict", action="store_true", help="also the full-size model end to end on the pen clip")
    ap.add_argument("--sizes", action="store_true",
                    help="also the visual encoder on 2 segments at sizes from the bundled model's to full size, "
                         "with what --precision auto picks for each (model.precision.gains_from_bf16_on_cpu)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_fast_bf16": cpu_has_fast_bf16(),
           "auto_picks": {"full size": resolve("auto", "cpu", ModelConfig()),
                          "bundled": resolve("auto", "cpu", synthetic_tiny().cfg)},
           "threads": torch.get_num_threads()}
    print(json.dumps(out), file=sys.stderr)

    torch.manual_seed(0)
    full = Synchformer(ModelConfig()).eval()
    video = torch.rand(1, 2, 16, 3, 224, 224, generator=torch.Generator().manual_seed(1)) * 2 - 1

    def encode(precision):
        with torch.inference_mode(), using(precision, full):
            return full.extract_vfeats(video).numpy()

    row, a, b = side_by_side(encode, args.repeats)
    row["features_rel_error"] = round(float(np.linalg.norm(b - a) / np.linalg.norm(a)), 4)
    out["visual encoder, 2 full-size segments"] = row
    print(json.dumps(row), file=sys.stderr)

    if PEN.exists():
        tiny = synthetic_tiny()
        row, a, b = side_by_side(lambda p: analyze(tiny, PEN, hop_sec=0.64, precision=p).probs, args.repeats)
        row["max_prob_diff_per_window"] = round(float(np.abs(a - b).max()), 4)
        out["predict, bundled model, pen clip"] = row
        print(json.dumps(row), file=sys.stderr)
        if args.predict:
            def pooled(p):
                return analyze(full, PEN, hop_sec=0.64, precision=p).summarize().distribution

            row, a, b = side_by_side(pooled, 1)
            row["max_pooled_prob_diff"] = round(float(np.abs(a - b).max()), 4)
            out["predict, full-size model, pen clip"] = row
    if args.sizes:
        for image, width in ((32, 48), (64, 64), (224, 128), (224, 256), (224, 384), (224, 768)):
            heads = max(1, width // 64)
            cfg = ModelConfig(v_width=width, v_heads=heads, image_size=image)
            torch.manual_seed(0)
            m = Synchformer(cfg).eval()
            x = torch.rand(1, 2, 16, 3, image, image, generator=torch.Generator().manual_seed(1)) * 2 - 1

            def encode_at(precision, m=m, x=x):
                with torch.inference_mode(), using(precision, m):
                    return m.extract_vfeats(x).numpy()

            row, _, _ = side_by_side(encode_at, max(3, args.repeats))
            row.update(activation=cfg.v_tokens * cfg.v_patches * width, gains=gains_from_bf16_on_cpu(cfg))
            out[f"visual encoder, {image} px, width {width}"] = row
            print(json.dumps({"image": image, "width": width, **row}), file=sys.stderr)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
