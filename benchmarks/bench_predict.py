"""predict's time on the shared clips, this checkout against another one, side by side (alternating, one run).

    git worktree add /tmp/before <commit>
    python benchmarks/bench_predict.py --baseline /tmp/before             # the bundled models, every shared clip
    python benchmarks/bench_predict.py --baseline /tmp/before --config full --clips 2

Each checkout runs in its own process (``PYTHONPATH`` set to it): ``synchformer predict`` on each clip, as the
command runs it, timed from the call (the model loaded once before, not timed), best of ``--repeats``, the two
checkouts alternating. ``--config full``: a full-size model of random weights (fp32 unless ``--precision``),
without companions; ``tiny``: the bundled models with their gate and fine model, as ``-w bundled`` runs. Also
counts how often each clip is opened (PyAV's ``av.open``) by one predict. Prints one JSON object: seconds per
checkout and clip, their ratio, and the opens.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
MEDIA = HERE.parent.parent / "shared" / "media"

# What one process does: load the models once, then time predict on every clip (the CLI's code path).
CHILD = r"""
import json, sys, time
import av
opens = []
real_open = av.open
def counting_open(*a, **k):
    opens.append(str(a[0]) if a else "")
    return real_open(*a, **k)
av.open = counting_open
import torch
torch.set_num_threads(int(sys.argv[4]))
import synchformer
from synchformer.cli import main
clips, weights, precision = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
extra = ["--syncability-weights", "none", "--fine-weights", "none"] if weights != "bundled" else []
args = lambda clip: ["predict", clip, "-w", weights, "--json", "--precision", precision] + extra
import contextlib, io
with contextlib.redirect_stdout(io.StringIO()):
    main(args(clips[0]))  # warm: the model's first call, the imports
out = {}
for clip in clips:
    opens.clear()
    buf = io.StringIO()
    t = time.perf_counter()
    with contextlib.redirect_stdout(buf):
        code = main(args(clip))
    took = time.perf_counter() - t
    d = json.loads(buf.getvalue().splitlines()[-1])
    out[clip] = {"sec": took, "code": code, "offset_sec": d.get("offset_sec"), "refined_offset_sec":
                 d.get("refined_offset_sec"), "opens": sum(1 for o in opens if clip.split("/")[-1] in o)}
print(json.dumps(out))
print(synchformer.__file__, file=sys.stderr)
"""


def full_size_weights(folder: Path) -> Path:
    import torch

    from synchformer.model import ModelConfig, Synchformer, save_model

    torch.manual_seed(0)
    path = folder / "full.safetensors"
    save_model(Synchformer(ModelConfig()).eval(), path)
    return path


def run(checkout: Path, clips, weights: str, precision: str, threads: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    # run from a folder of its own: the current one may hold a checkout, which Python would import first
    with tempfile.TemporaryDirectory() as cwd:
        out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(clips), weights, precision, str(threads)],
                             env=env, capture_output=True, text=True, check=True, cwd=cwd)
    if f"{checkout}/synchformer" not in out.stderr.splitlines()[-1]:
        raise SystemExit(f"the run of {checkout} imported another copy of the package: {out.stderr[-300:]}")
    return json.loads(out.stdout.splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", required=True, help="another checkout of the package (e.g. a git worktree)")
    ap.add_argument("--config", choices=["tiny", "full"], default="tiny")
    ap.add_argument("--clips", type=int, default=0, help="the first N shared clips only (0: all)")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    clips = sorted(str(p) for p in MEDIA.glob("*.*") if p.suffix not in (".txt", ".tsv"))
    clips = clips[:args.clips] if args.clips else clips
    here = HERE.parent.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        weights = "bundled" if args.config == "tiny" else str(full_size_weights(Path(tmp)))
        best = {"before": {}, "after": {}}
        for _ in range(args.repeats):
            for name, checkout in (("before", Path(args.baseline).resolve()), ("after", here)):
                for clip, r in run(checkout, clips, weights, args.precision, args.threads).items():
                    if clip not in best[name] or r["sec"] < best[name][clip]["sec"]:
                        best[name][clip] = r
    rows = {Path(c).name: {"before_sec": round(best["before"][c]["sec"], 3),
                           "after_sec": round(best["after"][c]["sec"], 3),
                           "ratio": round(best["after"][c]["sec"] / best["before"][c]["sec"], 3),
                           "opens_before": best["before"][c]["opens"], "opens_after": best["after"][c]["opens"],
                           "same_offset": best["before"][c]["offset_sec"] == best["after"][c]["offset_sec"]}
            for c in clips}
    total = (sum(r["after_sec"] for r in rows.values()) / sum(r["before_sec"] for r in rows.values()))
    print(json.dumps({"config": args.config, "precision": args.precision, "repeats": args.repeats,
                      "total_ratio": round(total, 3), "clips": rows}, indent=1))


if __name__ == "__main__":
    main()
