"""``synchformer demo``: make a synthetic clip with a random offset, predict it, show both."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

from . import common


def add_parser(sub):
    p = sub.add_parser("demo", help="make a synthetic flash/click clip with a random offset and predict it",
                       description="Writes a 10 s synthetic clip (the benchmark of `synchformer synth`) whose sound "
                       "is shifted by a random offset from the model's grid, then predicts the offset. Without "
                       "--weights the bundled model is used (trained on such clips only).")
    p.add_argument("--offset", type=common.finite_float, metavar="SEC",
                   help="offset to apply in seconds, within +-2 (default: random from the model's 0.2 s grid); "
                        "positive: the audio leads")
    p.add_argument("--seed", type=common.random_seed, help="clip seed: the same seed makes the same clip "
                   "(default: random)")
    p.add_argument("--keep", metavar="MP4", help="keep the clip at this path, a new file (default: a temporary "
                   "file, removed at the end)")
    common.add_weights(p)
    common.add_device(p)
    return p


def run(args):
    from synchformer.errors import SynchformerError
    from synchformer.io.outputs import check_output

    if args.keep:  # before the model loads
        if Path(args.keep).exists():
            raise SynchformerError(args.keep, "already exists; demo writes a new file (choose another name)")
        check_output(args.keep)
    from synchformer.inference.analyze import analyze
    from synchformer.inference.distributions import describe_offset
    from synchformer.training.synth import make_sparse_clip

    model = common.load_or_bundled(args.weights, args.device, head="offset")
    rng = random.Random()
    seed = args.seed if args.seed is not None else rng.randrange(1 << 30)
    grid = [round(x, 2) for x in model.cfg.offset_grid().tolist()]
    offset = args.offset if args.offset is not None else rng.choice(grid)
    if abs(offset) > model.cfg.max_offset_sec:
        raise SynchformerError(None, f"--offset must be within +-{model.cfg.max_offset_sec:g} s, got {offset:g}")
    with tempfile.TemporaryDirectory(prefix="synchformer-demo-") as tmp:
        path = Path(args.keep) if args.keep else Path(tmp) / "demo.mp4"
        make_sparse_clip(path, seed, duration=10.0, offset_sec=offset)
        result = analyze(model, path, hop_sec=0.64)
        summary = result.summarize()
    pred = summary.reported.offset_sec if summary.reported else float("nan")
    print(f"clip: synthetic, seed {seed}{f', kept at {path}' if args.keep else ''}")
    print(f"true offset:      {offset:+.2f} s ({describe_offset(offset)})")
    print(f"predicted offset: {pred:+.2f} s ({describe_offset(pred)}), "
          f"{len(result.window_starts)} windows, agreement {summary.agreement or 0:.2f}")
    print("correct" if abs(pred - offset) < 0.1 else
          ("within one class (0.2 s)" if abs(pred - offset) < 0.3 else "wrong"))
    print("verdict: reliable" if summary.reliable else f"verdict: not reliable ({'; '.join(summary.reasons)})")
    return 0
