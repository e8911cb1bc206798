"""GPU checks of what CPU-only CI cannot run: parity on CUDA (fp32 and bf16), CPU-vs-GPU `predict` on a real
clip, and the training paths that only exist on a GPU (fp16 with a gradient scaler, bf16, gradient
checkpointing, NCCL through torchrun, the stage II feature cache, `eval`).

    SYNCHFORMER_SHARED=../shared python benchmarks/gpu_check.py --out gpu_check

Prints one line per check and writes gpu_check.json; exits 1 if a check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

RESULTS: dict[str, dict] = {}
DEV = "cuda"


def check(name):
    def wrap(fn):
        def run(*a, **k):
            t0 = time.time()
            try:
                out = fn(*a, **k) or {}
                out["ok"] = out.get("ok", True)
            except Exception as e:  # keep going: one report for all checks
                out = {"ok": False, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]}
            out["seconds"] = round(time.time() - t0, 1)
            RESULTS[name] = out
            print(f"[{'ok' if out['ok'] else 'FAILED'}] {name}: "
                  + json.dumps({k: v for k, v in out.items() if k not in ("ok", "trace")}), flush=True)
            if not out["ok"] and "trace" in out:
                print(out["trace"], flush=True)
        return run
    return wrap


def cli(*args, env=None, torchrun=False):
    cmd = ([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "-m", "synchformer"] if torchrun
           else [sys.executable, "-m", "synchformer"]) + [str(a) for a in args]
    run = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if run.returncode:
        raise RuntimeError(f"{' '.join(cmd[2:])} exited {run.returncode}: {run.stderr[:1500]}")
    return run.stdout


@check("parity stage II on cuda (fp32, TF32 off)")
def parity_fp32(shared: Path):
    import synchformer
    from _shared import seeded_state_dict

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    exp = np.load(shared / "parity" / "sync_expected.npz")
    model = synchformer.load_model(seeded_state_dict(shared / "parity" / "keys_sync.txt", seed=1),
                                   config=synchformer.ModelConfig()).cuda()
    v, a = torch.from_numpy(exp["video_input"]).cuda(), torch.from_numpy(exp["audio_input"]).cuda()
    with torch.inference_mode():
        vf, af = model.extract_vfeats(v), model.extract_afeats(a)
        logits = model.compare_v_a(vf, af)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            bf = model(v, a).float()
    err = {k: float(np.abs(x.float().cpu().numpy() - exp[k]).max()) for k, x in
           (("vfeats", vf), ("afeats", af), ("logits", logits))}
    bf_err = float(np.abs(bf.cpu().numpy() - exp["logits"]).max())
    same = int(logits.argmax()) == int(exp["logits"].argmax())
    return {"ok": max(err.values()) < 1e-4 and same, **{f"max_err_{k}": f"{v:.1e}" for k, v in err.items()},
            "bf16_max_err_logits": f"{bf_err:.1e}", "bf16_argmax_same": int(bf.argmax()) == int(exp["logits"].argmax())}


@check("predict: cpu and cuda agree on a real clip")
def predict_cpu_vs_cuda(shared: Path, work: Path):
    from safetensors.torch import save_file
    from _shared import seeded_state_dict

    weights = work / "seeded.safetensors"
    save_file(seeded_state_dict(shared / "parity" / "keys_sync.txt", seed=1), str(weights))
    weights.with_suffix(".json").write_text('{"model": {"center_segments": false}}')  # the reference's
    clip = shared / "media" / "pen_hits_coin__node-opencv_motion.mov"
    out = {}
    for dev in ("cpu", "cuda"):
        t0 = time.time()
        out[dev] = json.loads(cli("predict", clip, "--weights", weights, "--json", "--device", dev,
                                  env={"OMP_NUM_THREADS": "8"}).strip().splitlines()[-1])
        out[dev + "_s"] = round(time.time() - t0, 1)
    c, g = offsets(out["cpu"]), offsets(out["cuda"])
    return {"ok": c == g and len(c) > 0, "offsets_cpu": c, "offsets_cuda": g, "cpu_s": out["cpu_s"],
            "cuda_s": out["cuda_s"]}


def offsets(report) -> list:
    """Every offset_sec in a predict --json report (overall and per window), in order."""
    if isinstance(report, dict):
        return [v for k, x in report.items() for v in ([x] if k == "offset_sec" else offsets(x))]
    if isinstance(report, list):
        return [v for x in report for v in offsets(x)]
    return []


def train_args(out_dir: Path, data: Path, stage: str, *extra):
    model = json.dumps({"preset": "tiny", "image_size": 64, "v_width": 64, "a_width": 64, "width": 64,
                        "v_heads": 4, "a_heads": 4, "heads": 4, "depth": 2})
    return ["train", stage, f"out_dir={out_dir}", f"model={model}", f"data.train={data / 'train' / 'clips.csv'}",
            f"data.valid={data / 'valid' / 'clips.csv'}", f"data.cache_dir={data / 'cache'}", "data.batch_size=8",
            "data.num_workers=2", "data.decode_workers=8", "optim.warmup_steps=5", "optim.lr=1e-3", "log_every=2",
            f"device={DEV}", "--quiet", *extra]


def last_loss(run_dir: Path) -> float:
    rows = [json.loads(line) for line in (run_dir / "logs" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train/loss"] for r in rows if "train/loss" in r]
    if not losses or not all(np.isfinite(losses)):
        raise RuntimeError(f"losses not finite: {losses}")
    return losses[-1]


@check("train contrastive: fp16 with gradient scaler on cuda")
def contrastive_fp16(work: Path, data: Path):
    cli(*train_args(work / "s1_fp16", data, "contrastive", "precision=fp16", "epochs=2", "center_embeddings=true"))
    return {"last_loss": last_loss(work / "s1_fp16")}


@check("train contrastive: bf16 + gradient checkpointing on cuda")
def contrastive_bf16(work: Path, data: Path):
    cli(*train_args(work / "s1_bf16", data, "contrastive", "precision=bf16", "grad_checkpointing=true", "epochs=2",
                    "center_embeddings=true"))
    return {"last_loss": last_loss(work / "s1_bf16")}


@check("train sync: torchrun (NCCL), cached features, fp16; then eval on cuda")
def sync_torchrun(work: Path, data: Path):
    init = work / "s1_bf16" / "best.safetensors"
    cli(*train_args(work / "s2", data, "sync", f"init={init}", "cache_features=true", "feature_video_step=8",
                    f"precision={'fp16' if DEV == 'cuda' else 'bf16'}", "epochs=3"), torchrun=True)
    t0 = time.time()
    cli("eval", data / "valid" / "clips.csv", "--weights", work / "s2" / "best.safetensors", "--device", DEV,
        "--out", work / "eval", "--cache-dir", data / "cache")
    res = json.loads((work / "eval" / "eval.json").read_text())
    return {"last_loss": last_loss(work / "s2"), "eval_s": round(time.time() - t0, 1),
            "eval": res["results"]["model"]}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="gpu_check")
    p.add_argument("--clips", type=int, default=32)
    p.add_argument("--dry-run-on-cpu", action="store_true", help="run the training checks on the CPU (no fp16)")
    args = p.parse_args()
    global DEV
    if args.dry_run_on_cpu:
        DEV = "cpu"
    elif not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device")
    from _shared import SHARED

    work = Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name() if DEV == 'cuda' else 'cpu'}, shared {SHARED}", flush=True)
    data = work / "data"
    cli("synth", data / "train", "--n", args.clips, "--seed", 1, "--size", 96, "--workers", 8)
    cli("synth", data / "valid", "--n", 16, "--seed", 2, "--size", 96, "--workers", 8)
    if DEV == "cuda":
        parity_fp32(SHARED)
        contrastive_fp16(work, data)
    contrastive_bf16(work, data)
    sync_torchrun(work, data)
    if DEV == "cuda":
        predict_cpu_vs_cuda(SHARED, work)
    (work / "gpu_check.json").write_text(json.dumps(RESULTS, indent=1))
    failed = [k for k, v in RESULTS.items() if not v["ok"]]
    print(f"{len(RESULTS) - len(failed)} of {len(RESULTS)} checks passed" + (f"; failed: {failed}" if failed else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
