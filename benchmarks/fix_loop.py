"""Close the loop on frame accuracy: measure -> fix -> measure again, on clips written out of sync by known
continuous offsets (``synchformer synth --offsets continuous``).

    python benchmarks/fix_loop.py                        # 48 clips of 20 s, seed 9001, the bundled models
    python benchmarks/fix_loop.py --n 24 --seed 7780 --fine-weights none   # without the fine pass

Each clip is measured as ``synchformer fix`` measures it (predict's settings, the bundled synchronizability and
fine models unless told otherwise), fixed as fix fixes it (``shift_audio``: the audio moved by the refined
offset; a clip whose 90 % interval is inside ITU-R BT.1359's -125..+45 ms window is left alone), and the fixed
copy measured again. Prints, in ms: |error| of the first measurement, the true residual after the fix
(truth - applied shift), what the second measurement reads on the fixed copy, and the share of clips inside
BT.1359 after one fix.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np


def stats(x) -> dict:
    e = np.abs(np.asarray(x, dtype=np.float64)) * 1000
    return {"median_ms": round(float(np.median(e)), 1), "p90_ms": round(float(np.percentile(e, 90)), 1),
            "max_ms": round(float(e.max()), 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--seed", type=int, default=9001)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--weights", default=None, help="default: the bundled offset model")
    ap.add_argument("--fine-weights", default="auto")
    ap.add_argument("--folder", default=None, help="where the clips go (default: a temporary folder)")
    args = ap.parse_args()

    from synchformer.cli import common
    from synchformer.constants import BT1359_SEC
    from synchformer.inference.analyze import analyze
    from synchformer.io.fix import shift_audio
    from synchformer.model.bundled import SYNTHETIC_TINY
    from synchformer.training.synth import in_file_offsets, synth

    model = common.load(args.weights or str(SYNTHETIC_TINY), "cpu")
    sync_model = common.load_syncability("auto", model, "cpu")
    fine = common.load_fine(args.fine_weights, model, "cpu")
    folder = Path(args.folder or tempfile.mkdtemp(prefix="fix-loop-"))
    truth = in_file_offsets(synth(folder / "clips", args.n, seed=args.seed, duration=args.duration,
                                  offsets="continuous", progress=False))

    def measure(path) -> tuple[float, tuple[float, float]] | None:
        s = analyze(model, path, hop_sec=0.64, sync_model=sync_model, keep_visual=fine is not None).summarize(
            fine_model=fine)
        if s.refined_offset_sec is None:
            return None
        return round(float(s.refined_offset_sec), 3), s.refined_interval_sec  # rounded as fix rounds

    first, residual, second = [], [], []
    (folder / "fixed").mkdir(exist_ok=True)
    for i, (path, off) in enumerate(truth.items()):
        read = measure(path)
        if read is None:
            continue
        m, (lo, hi) = read
        applied = 0.0 if BT1359_SEC[0] <= lo and hi <= BT1359_SEC[1] else m  # fix leaves such a file alone
        fixed = path
        if applied:
            fixed = folder / "fixed" / Path(path).name
            fixed.unlink(missing_ok=True)
            shift_audio(path, fixed, applied)
        again = measure(fixed)
        first.append(m - off)
        residual.append(off - applied)
        second.append(np.nan if again is None else again[0] - (off - applied))
        print(f"\r{i + 1}/{len(truth)}", end="", file=sys.stderr)
    print(file=sys.stderr)
    r = np.asarray(residual)
    out = {"clips": len(first), "seed": args.seed, "fine_weights": args.fine_weights,
           "first_measurement_error": stats(first), "residual_after_fix": stats(r),
           "second_measurement_error": stats(np.asarray(second)[np.isfinite(second)]),
           "inside_bt1359_after_fix": round(float(np.mean((r >= BT1359_SEC[0]) & (r <= BT1359_SEC[1]))), 3)}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
