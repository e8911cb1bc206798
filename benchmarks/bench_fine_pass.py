"""What the fine pass (``--fine-weights``, inference/fine.py) costs: predict with and without it, side by side.

    python benchmarks/bench_fine_pass.py                    # full size, the 8 s pen clip, --precision auto
    python benchmarks/bench_fine_pass.py --precision fp32   # the same in fp32
    python benchmarks/bench_fine_pass.py --config tiny      # the bundled model and its fine companion

The full-size models have random weights (the released ones are not shipped, and no released fine model
exists): a coarse offset model, and a fine one that shares its visual encoder (as a fine model trained with
``freeze_encoders="visual"`` does), so the fine pass decodes the file again and runs the audio encoder and the
sync transformer only. Prints the seconds of each (best of --repeats, alternating), the ratio, and the segments
each pass encoded.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
PEN = HERE.parent.parent / "shared" / "media" / "pen_hits_coin__node-opencv_motion.mov"


def models(config: str, precision: str):
    from synchformer.model import ModelConfig, Synchformer
    from synchformer.model.precision import resolve

    if config == "tiny":
        from synchformer.model.bundled import synthetic_tiny, synthetic_tiny_fine

        coarse, fine = synthetic_tiny(), synthetic_tiny_fine()
    else:
        torch.manual_seed(0)
        coarse = Synchformer(ModelConfig()).eval()
        torch.manual_seed(1)
        fine = Synchformer(dataclasses.replace(coarse.cfg, max_offset_sec=0.2)).eval()
        own = fine.state_dict()
        fine.load_state_dict({k: v for k, v in coarse.state_dict().items()
                              if k.startswith("vfeat_extractor.") and own[k].shape == v.shape}, strict=False)
    for m in (coarse, fine):
        m.precision = resolve(precision, "cpu", m.cfg)
    return coarse, fine


def main():
    from synchformer.inference.analyze import analyze

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", choices=["full", "tiny"], default="full")
    ap.add_argument("--clip", default=str(PEN))
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not Path(args.clip).exists():
        sys.exit(f"{args.clip} is missing (the pen clip is in ../shared/media)")
    coarse, fine = models(args.config, args.precision)

    def plain():
        return analyze(coarse, args.clip, hop_sec=0.64).summarize()

    def with_fine():
        return analyze(coarse, args.clip, hop_sec=0.64, keep_visual=True).summarize(fine_model=fine)

    times = {"plain": [], "fine": []}
    out = {}
    for _ in range(args.repeats):  # alternating, so that a slow spell of the machine hits both
        for name, fn in (("plain", plain), ("fine", with_fine)):
            t0 = time.perf_counter()
            out[name] = fn()
            times[name].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in times.items()}
    s = out["fine"]
    row = {"config": args.config, "clip": Path(args.clip).name, "precision": coarse.precision,
           "threads": torch.get_num_threads(), "plain_sec": round(best["plain"], 3),
           "with_fine_pass_sec": round(best["fine"], 3), "ratio": round(best["fine"] / best["plain"], 3),
           "windows": len(s.windows), "fine_windows": s.fine.windows,
           "fine_segments_encoded": s.fine.segments_encoded,
           "coarse_refined_sec": round(out["plain"].refined_offset_sec, 4),
           "fine_refined_sec": round(s.refined_offset_sec, 4)}
    print(json.dumps(row, indent=1))


if __name__ == "__main__":
    main()
