"""`synchformer adapt` on a domain the bundled model has never seen (`synth --style workshop`), and what adapting
the full-size model costs on this machine.

    python benchmarks/bench_adapt.py domain [--clips 60 --max-minutes 14 --tune pooling,sync]   # issue 39's targets
    python benchmarks/bench_adapt.py cost [--clips 3]                       # full size, random weights, bf16

`domain`: makes --clips in-sync workshop clips of 10 s to adapt on (seed 3901), two sets of 100 other workshop clips
to test on (seeds 3902 and 3905) and 100 clips of the default style (seed 3903, how much the original domain is
forgotten); measures the bundled model on the test sets, one window per clip (`eval`) and every window of a clip
pooled (`eval --pool`, hop 2.56 s); runs `synchformer adapt CLIPS -w bundled -o OUT --max-minutes M --tune T` in its
own process for each --tune choice given, timed from start to end (decoding, encoding, tuning, measuring, writing:
one run); then measures each OUT the same way. Targets: Acc@1 on the workshop test clips (one window; both sets
together, 200 clips) up by >= 0.15, and the pooled per-clip accuracy likewise, in <= 15 minutes on the 2-core CPU.
The load (uptime) before and after goes with the numbers.

`cost`: the full-size model (random weights: the released ones are not here) in bf16 where the CPU has bf16 units,
for both of adapt's --tune choices: seconds per 10 s clip of building adapt's feature cache (visual features, or the
visual pooling's inputs, every 8 frames; audio at every frame) and its size, and seconds per tuning step of 32
windows from the cache, so that what adapting the released model to 50 clips costs can be stated.
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
    tests = {"workshop": synth(work / "workshop_test", 100, seed=3902, workers=2, progress=False, cues=ws),
             "workshop_b": synth(work / "workshop_test_b", 100, seed=3905, workers=2, progress=False, cues=ws),
             "default": synth(work / "default_test", 100, seed=3903, workers=2, progress=False)}
    base = load_model("bundled")
    before = {k: scores(base, str(v), work / "cache") for k, v in tests.items()}
    runs = {}
    for choice in args.tune.split(","):  # one after the other on the same clips, tests and machine
        out, report_path = work / f"site_{choice}.safetensors", work / f"adapt_{choice}.json"
        if out.exists():
            out.unlink()
        load_before = load()
        t = time.time()
        proc = subprocess.run([sys.executable, "-m", "synchformer", "adapt", str(tune), "-w", "bundled", "-o", str(out),
                               "--max-minutes", str(args.max_minutes), "--threads", str(args.threads), "--tune",
                               choice, *(["--lr", str(args.lr)] if args.lr else []), "--json", str(report_path),
                               "--force"],
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
        wall = time.time() - t
        load_after = load()
        if proc.returncode != 0:
            raise SystemExit(f"adapt --tune {choice} failed ({proc.returncode}): {proc.stderr[-2000:]}")
        report = json.loads(report_path.read_text())
        tuned = load_model(out)
        after = {k: scores(tuned, str(v), work / "cache") for k, v in tests.items()}
        lift = {k: {m: round(after[k][m] - before[k][m], 4) for m in ("accuracy_1", "pooled_accuracy_1")}
                for k in tests}
        # the target, on both workshop test sets together (200 clips: half the standard error of one set)
        both = {m: round((lift["workshop"][m] + lift["workshop_b"][m]) / 2, 4) for m in ("accuracy_1", "pooled_accuracy_1")}
        runs[choice] = {
            "adapt_wall_sec": round(wall, 1), "load_before": load_before, "load_after": load_after,
            "adapt_printed": [line for line in proc.stdout.splitlines() if line.strip()],
            "adapt_held_out": {"before": report["before"], "after": report["after"]}, "adapt_better": report["better"],
            "steps": report["steps"], "after": after, "lift": lift, "lift_workshop_200": both,
            "targets_met": bool(both["accuracy_1"] >= 0.15 and both["pooled_accuracy_1"] >= 0.15 and wall <= 15 * 60)}
    first = args.tune.split(",")[0]
    return {"kind": "domain", "cpu": cpu_kind(), "cores": os.cpu_count(), "threads": args.threads, "clips": args.clips,
            "max_minutes": args.max_minutes, "lr": args.lr, "before": before, "runs": runs,
            "targets_met": runs[first]["targets_met"]}


def run_cost(args) -> dict:
    import torch

    from synchformer.features.segments import decode_size
    from synchformer.model import Synchformer
    from synchformer.model.precision import resolve
    from synchformer.training.adapt import FEATURE_VIDEO_STEP
    from synchformer.training.data import load_cached, prepare, read_clip_list, required_sec
    from synchformer.training.features import encode_clip
    from synchformer.training.loop import Stage
    from synchformer.training.synth import synth

    from synchformer.model import ModelConfig

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = Synchformer(ModelConfig() if args.config == "full" else ModelConfig.tiny(image_size=32)).eval()
    model.precision = resolve("auto", model.device, model.cfg)
    cfg = model.cfg
    # tuning steps first (from inputs of the cached shapes: what a step costs does not depend on their values),
    # as adapt's two --tune choices: the sync transformer on pooled features, and with the pooling's query side on
    # the pooling's inputs (32 windows of those: 2.2 GB in float32 at full size)
    n, batch = cfg.n_segments, 32
    a = torch.randn(batch, n, cfg.a_tokens, cfg.a_width)
    target = torch.randint(cfg.n_classes, (batch,))
    inputs = {"sync": {"vfeats": torch.randn(batch, n, cfg.v_tokens, cfg.v_width)},
              "pooling": {"vtokens": torch.randn(batch, n, cfg.v_tokens, cfg.v_patches, cfg.v_width)}}
    step = {}
    for tune, batch_inputs in inputs.items():
        stage = Stage(model, "sync", tune_pooling=tune == "pooling").train()
        opt = torch.optim.Adam([p for p in stage.parameters() if p.requires_grad], lr=1e-4)
        times = []
        for _ in range(args.steps + 1):
            t = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=model.precision == "bf16"):
                loss, _ = stage({**batch_inputs, "afeats": a, "target": target})
            opt.zero_grad()
            loss.backward()
            opt.step()
            times.append(time.perf_counter() - t)
        step[tune] = min(times[1:])
        print(f"--tune {tune}: tuning step of 32: best {step[tune]:.3f} s", file=sys.stderr, flush=True)
    inputs.clear()
    model.eval()
    encode, size_mb = {"sync": [], "pooling": []}, {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synth(tmp / "clips", args.clips, seed=3904, size=224 if args.config == "full" else 48, progress=False)
        prep = prepare(read_clip_list(tmp / "clips"), tmp / "cache", decode_size(cfg.image_size), 10.0,
                       required_sec("sync", cfg, 8))
        for clip in prep.clips:
            for tune in encode:
                t = time.perf_counter()
                vf, af = encode_clip(model, *load_cached(tmp / "cache", clip.key), "cpu", FEATURE_VIDEO_STEP,
                                     visual="pooling" if tune == "pooling" else "features")
                encode[tune].append(time.perf_counter() - t)
                size_mb[tune] = round((vf.nbytes + af.nbytes) / 1e6, 1)  # float16, as cached
                print(f"clip {len(encode[tune])}, --tune {tune}: {encode[tune][-1]:.1f} s to encode, "
                      f"{size_mb[tune]} MB", file=sys.stderr, flush=True)
    best = {k: min(v) for k, v in encode.items()}
    return {"kind": "cost", "config": args.config, "cpu": cpu_kind(), "cores": os.cpu_count(), "threads": args.threads,
            "precision": model.precision, "load": load(), "clips": len(encode["sync"]),
            "encode_sec_per_clip": {k: [round(s, 1) for s in v] for k, v in encode.items()},
            "encode_sec_per_clip_best": {k: round(v, 1) for k, v in best.items()},
            "cache_mb_per_clip": size_mb,
            "step_sec_batch_32": {k: round(v, 3) for k, v in step.items()},
            "epoch_sec_8_steps": {k: round(8 * v, 2) for k, v in step.items()},
            "fifty_clips_cache_min": round(50 * best["pooling"] / 60, 1),
            "fifty_clips_cache_gb": {k: round(50 * v / 1e3, 2) for k, v in size_mb.items()}}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["domain", "cost"])
    ap.add_argument("--clips", type=int, default=None, help="domain: clips to adapt on (default 60); cost: clips "
                    "to time the feature caching on (default 3)")
    ap.add_argument("--lr", type=float, help="domain: adapt's --lr (default: adapt's own)")
    ap.add_argument("--tune", default="pooling", help="domain: adapt's --tune, or several to compare, one after the "
                    "other on the same clips (e.g. pooling,sync; the first decides targets_met) (default pooling)")
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
