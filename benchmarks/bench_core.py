"""Time and peak memory of one 14-segment forward pass, and of preprocessing a 10 s 720p clip.

Each measurement runs in a fresh process (so its peak RSS is its own), side by side with a
reference-style implementation of the same computation on the same weights (benchmarks/reference_style.py).

    python benchmarks/bench_core.py                 # full-size model, 2 threads (a few minutes on a CPU)
    python benchmarks/bench_core.py --config tiny   # quick check of the script itself
    python benchmarks/bench_core.py --device cuda   # absolute times on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def peak_rss_mb() -> float:
    """This process's peak resident memory. Linux: VmHWM, because getrusage's ru_maxrss carries over the fork +
    exec that started a worker from its parent (a parent that had just made a clip inflated every worker's)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def sync(device):
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def worker_forward(args) -> dict:
    import torch

    sys.path.insert(0, str(HERE))
    from synchformer.model import ModelConfig, Synchformer

    torch.manual_seed(0)
    cfg = ModelConfig() if args.config == "full" else ModelConfig.tiny()
    model = Synchformer(cfg, segment_batch=args.segment_batch or None).eval().to(args.device)
    if args.impl == "reference":
        from reference_style import ReferenceStyle

        model = ReferenceStyle(model).to(args.device)
    g = torch.Generator().manual_seed(1)
    video = (torch.rand(1, 14, 16, 3, 224, 224, generator=g) * 2 - 1).to(args.device)
    audio = torch.randn(1, 14, 1, 128, 66, generator=g).to(args.device)
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    after_load = rss_mb()
    best = None
    with torch.inference_mode():
        model.extract_vfeats(video[:, :1])  # warm-up (kernel selection, allocator)
        for _ in range(args.repeats):  # this machine's speed drifts: keep the fastest of a few runs
            times = [time.perf_counter()]
            vfeats = model.extract_vfeats(video)
            sync(args.device)
            times.append(time.perf_counter())
            afeats = model.extract_afeats(audio)
            sync(args.device)
            times.append(time.perf_counter())
            logits = model.compare_v_a(vfeats, afeats)
            sync(args.device)
            times.append(time.perf_counter())
            if best is None or times[3] - times[0] < best[3] - best[0]:
                best = times
    t0, t1, t2, t3 = best
    out = {"seconds": t3 - t0, "visual_s": t1 - t0, "audio_s": t2 - t1, "sync_s": t3 - t2,
           "rss_after_load_mb": after_load, "peak_rss_mb": peak_rss_mb(), "logits": logits.float().cpu().tolist()}
    if args.device.startswith("cuda"):
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def make_720p_clip(path: Path, seconds: float = 10.0):
    """A 1280x720 30 fps h264 + 48 kHz stereo aac file with moving content (not timed)."""
    import av
    import numpy as np

    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=30, options={"preset": "ultrafast"})
        v.width, v.height, v.pix_fmt = 1280, 720, "yuv420p"
        a = out.add_stream("aac", rate=48000, layout="stereo")
        yy, xx = np.mgrid[0:720, 0:1280]
        for i in range(int(seconds * 30)):
            img = ((xx + 7 * i) % 256).astype(np.uint8)
            rgb = np.stack([img, ((yy + 3 * i) % 256).astype(np.uint8), np.full_like(img, i % 256)], -1)
            out.mux(v.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        t = np.arange(int(seconds * 48000)) / 48000
        wave = (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for s in range(0, len(wave), 1024):
            chunk = np.stack([wave[s:s + 1024]] * 2)
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            frame.sample_rate = 48000
            out.mux(a.encode(frame))
        out.mux(v.encode(None))
        out.mux(a.encode(None))


def worker_preprocess(args) -> dict:
    import synchformer
    from synchformer.features import LEAD_FRAMES, span_frames

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip_720p.mp4"
        make_720p_clip(path)
        base = rss_mb()
        t0 = time.perf_counter()
        clip = synchformer.load_av(path)
        t1 = time.perf_counter()
        n_windows = 0
        last = (len(clip.frames) - LEAD_FRAMES - span_frames(14)) / 25
        for start in [0.0, 2.4, 4.8]:
            if start <= last:
                synchformer.make_inputs(clip.frames, clip.audio, start_sec=start)
                n_windows += 1
        t2 = time.perf_counter()
    return {"decode_s": t1 - t0, "make_inputs_s_per_window": (t2 - t1) / n_windows, "frames": len(clip.frames),
            "rss_before_mb": base, "peak_rss_mb": peak_rss_mb()}


def run_json(script: str, argv: list[str], threads: int) -> dict:
    """Run ``script argv`` in a fresh process (its own peak RSS) and return the JSON of its last line."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    run = subprocess.run([sys.executable, script, *argv], capture_output=True, text=True, env=env)
    if run.returncode:
        sys.exit(f"{' '.join(argv)} failed:\n{run.stderr}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def run_worker(kind: str, impl: str, args) -> dict:
    return run_json(__file__, ["--worker", kind, "--impl", impl, "--config", args.config, "--threads",
                               str(args.threads), "--device", args.device, "--repeats", str(args.repeats),
                               "--segment-batch", str(args.segment_batch)], args.threads)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", choices=["full", "tiny"], default="full")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=2, help="forward passes per implementation; the fastest counts")
    p.add_argument("--segment-batch", type=int, default=0,
                   help="segments per window per encoder call (ours; default: 2 on a CPU, 14 on a GPU; the reference: 14)")
    p.add_argument("--skip-reference", action="store_true", help="time only our implementation")
    p.add_argument("--worker", choices=["forward", "preprocess"], help=argparse.SUPPRESS)
    p.add_argument("--impl", choices=["ours", "reference"], default="ours", help=argparse.SUPPRESS)
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    if args.worker:
        fn = worker_forward if args.worker == "forward" else worker_preprocess
        print(json.dumps(fn(args)))
        return

    print(f"torch {torch.__version__}, {args.threads} threads, device {args.device}, {args.config} model")
    results = {"ours": run_worker("forward", "ours", args)}
    if not args.skip_reference:
        results["reference-style"] = run_worker("forward", "reference", args)
    print(f"\none 14-segment window, forward pass ({args.config} model, fastest of {args.repeats})")
    print(f"{'':18}{'total s':>9}{'visual s':>10}{'audio s':>9}{'sync s':>8}{'peak RSS MB':>13}{'after load MB':>15}")
    for name, r in results.items():
        print(f"{name:18}{r['seconds']:9.2f}{r['visual_s']:10.2f}{r['audio_s']:9.2f}{r['sync_s']:8.3f}"
              f"{r['peak_rss_mb']:13.0f}{r['rss_after_load_mb']:15.0f}"
              + (f"   peak GPU {r['peak_gpu_mb']:.0f} MB" if "peak_gpu_mb" in r else ""))
    if "reference-style" in results:
        ours, ref = results["ours"], results["reference-style"]
        diff = max(abs(a - b) for a, b in zip(ours["logits"][0], ref["logits"][0]))
        print(f"speed-up {ref['seconds'] / ours['seconds']:.2f}x (visual {ref['visual_s'] / ours['visual_s']:.2f}x), "
              f"peak memory {ours['peak_rss_mb'] / ref['peak_rss_mb']:.2f}x of reference-style; "
              f"max |logit difference| {diff:.2e}")

    pre = run_worker("preprocess", "ours", args)
    print(f"\npreprocessing a 10 s 1280x720 30 fps h264/aac clip: decode {pre['decode_s']:.2f} s "
          f"({pre['frames']} frames at 25 fps, 224 crop), make_inputs {pre['make_inputs_s_per_window']:.3f} s "
          f"per window, peak RSS {pre['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
