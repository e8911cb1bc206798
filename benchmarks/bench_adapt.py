"""`synchformer adapt` on a domain the bundled model has never seen (`synth --style workshop`), and what adapting
the full-size model costs on this machine.

    python benchmarks/bench_adapt.py domain [--clips 60 --max-minutes 14]   # the targets of issue 39
    python benchmarks/bench_adapt.py cost [--clips 3]                       # full size, random weights, bf16

`domain`: makes --clips in-sync workshop clips of 10 s to adapt on (seed 3901), 100 other workshop clips to test
on (seed 3902) and 100 clips of the default style (seed 3903, how much the original domain is forgotten); measures
the bundled model on both test sets, one window per clip (`eval`) and every window of a clip pooled
(`eval --pool`, hop 2.56 s); runs `synchformer adapt CLIPS -w bundled -o OUT --max-minutes M` in its own process,
timed from start to end (decoding, encoding, tuning, measuring, writing: one run); then measures OUT the same way.
Targets: held-out Acc@1 (the test clips, one window) up by >= 0.15, and the pooled per-clip accuracy likewise, in
<= 15 minutes on the 2-core CPU. The load (uptime) before and after goes with the numbers.

`cost`: the full-size model (random weights: the released ones are not here) in bf16 where the CPU has bf16 units:
seconds per 10 s clip of building adapt's feature cache (visual features every 8 frames, audio at every frame), and
seconds per tuning step of 32 windows from cached features, so that what adapting the released model to 50 clips
costs can be stated.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cpu_kind() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])  # 1, 5, 15 minutes, as uptime says
    except OSError:
        return "unknown"


def scores(model, csv_path: str, cache: Path) -> dict:
    """One window per clip (eval's protocol) and every window pooled (eval --pool, hop 2.4 -> 2.56 s)."""
    from synchformer.constants import VIDEO_FPS
    from synchformer.features.segments import span_frames
    from synchformer.training.evaluate import eval_dataset, metrics_of, pool_logits, pooled_windows, predict_dataset

    cfg = model.cfg
    data, _ = eval_dataset(csv_path, cfg, cache_dir=cache)
    logits, targets = predict_dataset(model, data, "cpu", 16)
    one = metrics_of(logits, targets, "offset")
    windows, groups, starts = pooled_windows(data, 2.4)
    wl, wt = predict_dataset(model, windows, "cpu", 16)
    pl, pt = pool_logits(wl, wt, groups, starts, cfg.offset_grid().numpy(), span_frames(cfg.n_segments) / VIDEO_FPS)
    pooled = metrics_of(pl, pt, "offset")
    return {"accuracy_1": one["accuracy_1"], "accuracy_1_tol1": one["accuracy_1_tol1"],
            "pooled_accuracy_1": pooled["accuracy_1"], "pooled_accuracy_1_tol1": pooled["accuracy_1_tol1"],
            "clips": len(data)}


def run_domain(args) -> dict:
    import torch

    from synchformer.model import load_model
    from synchformer.training.synth import Cues, synth

    torch.set_num_threads(args.threads)
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-adapt-"))
    work.mkdir(parents=True, exist_ok=True)
    ws = Cues(style="workshop")
    tune = work / "workshop_clips"
    synth(tune, args.clips, seed=3901, workers=2, progress=False, cues=ws)
    (tune / "clips.csv").unlink()  # adapt takes the folder: in-sync videos, nothing else
    (tune / "events.jsonl").unlink()
    test_ws = synth(work / "workshop_test", 100, seed=3902, workers=2, progress=False, cues=ws)
    test_default = synth(work / "default_test", 100, seed=3903, workers=2, progress=False)
    base = load_model("bundled")
    before = {"workshop": scores(base, str(test_ws), work / "cache"),
              "default": scores(base, str(test_default), work / "cache")}
    out = work / "site.safetensors"
    if out.exists():
        out.unlink()
    load_before = load()
    t = time.time()
    proc = subprocess.run([sys.executable, "-m", "synchformer", "adapt", str(tune), "-w", "bundled", "-o", str(out),
                           "--max-minutes", str(args.max_minutes), "--threads", str(args.threads), *(["--lr", str(args.lr)] if args.lr else []), "--json", str(work / "adapt.json"), "--force"],
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    wall = time.time() - t
    load_after = load()
    printed = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0:
        raise SystemExit(f"adapt failed ({proc.returncode}): {proc.stderr[-2000:]}")
    report = json.loads((work / "adapt.json").read_text())
    tuned = load_model(out)
    after = {"workshop": scores(tuned, str(test_ws), work / "cache"),
             "default": scores(tuned, str(test_default), work / "cache")}
    lift = after["workshop"]["accuracy_1"] - before["workshop"]["accuracy_1"]
    lift_pooled = after["workshop"]["pooled_accuracy_1"] - before["workshop"]["pooled_accuracy_1"]
    return {"kind": "domain", "cpu": cpu_kind(), "cores": os.cpu_count(), "threads": args.threads, "clips": args.clips,
            "max_minutes": args.max_minutes, "lr": args.lr, "adapt_wall_sec": round(wall, 1), "load_before": load_before,
            "load_after": load_after, "adapt_printed": printed, "adapt_held_out": {"before": report["before"],
                                                                                   "after": report["after"]},
            "adapt_better": report["better"], "steps": report["steps"],
            "before": before, "after": after, "lift_accuracy_1": round(lift, 4),
            "lift_pooled_accuracy_1": round(lift_pooled, 4),
            "targets_met": bool(lift >= 0.15 and lift_pooled >= 0.15 and wall <= 15 * 60)}


def run_cost(args) -> dict:
    import torch

    from synchformer.features.segments import decode_size
    from synchformer.model import Synchformer
    from synchformer.model.precision import resolve
    from synchformer.training.adapt import FEATURE_VIDEO_STEP
    from synchformer.training.data import load_cached, prepare, read_clip_list, required_sec
    from synchformer.training.features import encode_clip
    from synchformer.training.synth import synth

    from synchformer.model import ModelConfig

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = Synchformer(ModelConfig() if args.config == "full" else ModelConfig.tiny(image_size=32)).eval()
    model.precision = resolve("auto", model.device, model.cfg)
    # tuning steps first (from features of the cached shapes: what a step costs does not depend on their values)
    n, batch = model.cfg.n_segments, 32
    v = torch.randn(batch, n, model.cfg.v_tokens, model.cfg.v_width)
    a = torch.randn(batch, n, model.cfg.a_tokens, model.cfg.a_width)
    for p in list(model.vfeat_extractor.parameters()) + list(model.afeat_extractor.parameters()):
        p.requires_grad_(False)
    model.train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    target = torch.randint(model.cfg.n_classes, (batch,))
    steps = []
    for _ in range(args.steps + 1):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=model.precision == "bf16"):
            logits = model.compare_v_a(v, a)
        loss = torch.nn.functional.cross_entropy(logits.float(), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps.append(time.perf_counter() - t)
    model.eval()
    print(f"tuning step of 32: best {min(steps[1:]):.3f} s", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synth(tmp / "clips", args.clips, seed=3904, size=224 if args.config == "full" else 48, progress=False)
        prep = prepare(read_clip_list(tmp / "clips"), tmp / "cache", decode_size(model.cfg.image_size), 10.0,
                       required_sec("sync", model.cfg, 8))
        per_clip = []
        for clip in prep.clips:
            t = time.perf_counter()
            encode_clip(model, *load_cached(tmp / "cache", clip.key), "cpu", FEATURE_VIDEO_STEP)
            per_clip.append(time.perf_counter() - t)
            print(f"clip {len(per_clip)}: {per_clip[-1]:.1f} s to encode", file=sys.stderr, flush=True)
    step = min(steps[1:])
    return {"kind": "cost", "config": args.config, "cpu": cpu_kind(), "cores": os.cpu_count(), "threads": args.threads, "precision": model.precision,
            "load": load(), "clips": len(per_clip), "encode_sec_per_clip": [round(s, 1) for s in per_clip],
            "encode_sec_per_clip_best": round(min(per_clip), 1), "step_sec_batch_32": round(step, 3),
            "epoch_sec_8_steps": round(8 * step, 2),
            "fifty_clips_cache_min": round(50 * min(per_clip) / 60, 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["domain", "cost"])
    ap.add_argument("--clips", type=int, default=None, help="domain: clips to adapt on (default 60); cost: clips "
                    "to time the feature caching on (default 3)")
    ap.add_argument("--lr", type=float, help="domain: adapt's --lr (default: adapt's own)")
    ap.add_argument("--max-minutes", type=float, default=14.0, help="domain: adapt's --max-minutes (default 14)")
    ap.add_argument("--config", choices=["full", "tiny"], default="full", help="cost: the model's size (tiny: a "
                    "smoke test)")
    ap.add_argument("--steps", type=int, default=5, help="cost: tuning steps timed (best of)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (domain: here and adapt's --threads) "
                    "(default 1: on a 2-core machine shared with other work, 2 threads of the tiny model ran up to 50x "
                    "slower than 1)")
    ap.add_argument("--work", help="domain: folder for the clips and outputs (default: a new temporary one)")
    ap.add_argument("--out", help="also write the result as JSON here")
    args = ap.parse_args()
    if args.clips is None:
        args.clips = 60 if args.kind == "domain" else 3
    result = run_domain(args) if args.kind == "domain" else run_cost(args)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
