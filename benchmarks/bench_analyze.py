"""Whole-video analysis of a 60 s 720p clip: encoder work shared across windows, decode vs model time and memory.

    python benchmarks/bench_analyze.py                     # tiny model: seconds
    python benchmarks/bench_analyze.py --config full       # released size: ~5 min on a 2-core CPU
    python benchmarks/bench_analyze.py --config full --device cuda

Every run: (1) encoder passes per minute of video, shared segments vs window-by-window, at several hops;
(2) in separate processes (own peak RSS): decoding alone, and the full analysis (decode + model, overlapped);
(3) side by side in one process: the analysis vs window-by-window (each window decoded and encoded on its own,
as the reference does) at the default hop; with the full-size model the window-by-window baseline is timed
on its first ``--baseline-windows`` windows and scaled to the clip.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_core import make_720p_clip, peak_rss_mb, run_json  # noqa: E402


def build(config: str, device: str):
    import torch

    from synchformer.model import ModelConfig, Synchformer

    torch.manual_seed(0)
    return Synchformer(ModelConfig() if config == "full" else ModelConfig.tiny()).eval().to(device)


def worker(args) -> dict:
    import torch

    from synchformer.inference.analyze import analyze
    from synchformer.inference.stream import read_segments

    torch.set_num_threads(args.threads)
    if args.worker == "decode":
        t0 = time.perf_counter()
        n = sum(len(c) for c in read_segments(args.clip)[1])
        return {"seconds": time.perf_counter() - t0, "segments": n, "peak_rss_mb": peak_rss_mb()}
    model = build(args.config, args.device)
    t0 = time.perf_counter()
    result = analyze(model, args.clip, hop_sec=args.hop)
    out = {"seconds": time.perf_counter() - t0, "windows": len(result.window_starts),
           "segments_encoded": result.segments_encoded, "peak_rss_mb": peak_rss_mb()}
    if args.worker == "compare":  # window by window, as the reference: decode and encode each window alone
        import synchformer
        from synchformer.features import LEAD_FRAMES

        windows = result.window_starts[: args.baseline_windows or None]
        t0 = time.perf_counter()
        for start in windows:
            s = max(0.0, start - LEAD_FRAMES / 25)  # make_inputs' window starts 2 frames into its crop
            clip = synchformer.load_av(args.clip, start_sec=s, end_sec=s + 5.0)
            v, a = synchformer.make_inputs(clip.frames, clip.audio)
            with torch.inference_mode():
                model(v[None].to(args.device), a[None].to(args.device))
        per_window = (time.perf_counter() - t0) / len(windows)
        out.update(baseline_seconds=per_window * len(result.window_starts), baseline_windows_timed=len(windows))
    return out


def run(kind: str, args, clip: Path) -> dict:
    return run_json(__file__, ["--worker", kind, "--clip", str(clip), "--config", args.config, "--device",
                               args.device, "--threads", str(args.threads), "--hop", str(args.hop),
                               "--baseline-windows", str(args.baseline_windows)], args.threads)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", choices=["tiny", "full"], default="tiny")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--hop", type=float, default=2.4)
    p.add_argument("--seconds", type=float, default=60.0, help="length of the synthetic 720p clip")
    p.add_argument("--baseline-windows", type=int, default=None,
                   help="time only this many windows of the window-by-window baseline (default: all for tiny, 2 for full)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--clip", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    if args.baseline_windows is None:
        args.baseline_windows = 0 if args.config == "tiny" else 2

    from synchformer.inference.analyze import hop_in_segments

    print("encoder passes per minute of video (187.5 segments of 0.64 s at stride 0.32 s):")
    per_min = 60 / 0.32
    for hop in (0.32, 0.64, 0.96, 1.28, 2.4):
        h = hop_in_segments(hop)
        windows = per_min / h
        shared = per_min if h <= 14 else per_min * 14 / h
        print(f"  hop {hop:4.2f} s (used {h * 0.32:4.2f} s): window-by-window {windows * 14:7.1f}, shared "
              f"{shared:6.1f}  -> {windows * 14 / shared:5.2f}x less encoder work")

    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip_720p.mp4"
        make_720p_clip(clip, args.seconds)
        decode = run("decode", args, clip)
        full = run("compare", args, clip)
    model_s = full["seconds"] - decode["seconds"]
    print(f"\n{args.seconds:.0f} s 1280x720 clip, {args.config} model, {args.device}, {args.threads} threads, "
          f"hop {args.hop} s -> {full['windows']} windows, {full['segments_encoded']} segments encoded")
    print(f"  decode only          {decode['seconds']:7.2f} s   peak RSS {decode['peak_rss_mb']:6.0f} MB")
    print(f"  analysis (decode+model, overlapped) {full['seconds']:7.2f} s   peak RSS {full['peak_rss_mb']:6.0f} MB"
          f"   (model ~{max(model_s, 0):.2f} s beyond decoding)")
    timed = full["baseline_windows_timed"]
    print(f"  window-by-window     {full['baseline_seconds']:7.2f} s"
          + (f"   (timed on {timed} windows, scaled to {full['windows']})" if timed < full["windows"] else "")
          + f"\n  speed-up of the analysis over window-by-window: {full['baseline_seconds'] / full['seconds']:.2f}x")


if __name__ == "__main__":
    main()
