"""Is the GPU kept busy? Encoder throughput against the GPU's bf16 peak, and `score --metric desync` against an
av-benchmark-style pipeline on the same 8 s clips, side by side in one run.

    python benchmarks/bench_gpu.py --out bench_gpu.json                 # CUDA, full-size model, 64 clips
    python benchmarks/bench_gpu.py --device cpu --model tiny --clips 4  # the same code on a CPU (a smoke test)

1. Encoders: ``--batch-size`` segments (video + audio) per call in bf16 autocast, timed after a warm-up; the
   FLOPs of one segment are counted by ``torch.utils.flop_counter`` with attention on its math kernel (so that
   every matmul is seen); TFLOP/s and the fraction of the bf16 peak (``--peak-tflops``, else a table of dense
   bf16 peaks by GPU name; the one used is printed).
2. Clips/s on ``--clips`` generated 8 s clips (640x360 H.264 + AAC, made here):
   - ``score``: ``score_files(metric="desync")`` as the CLI runs it on a GPU (decoding workers, files in
     flight, segments of several files per encoder call, precision auto);
   - av-benchmark-style, written here from its published description: decode every clip first (the same
     number of processes), then MMAudio's ``encode_video_with_sync`` layout (each clip's 24 segments as
     ``(b s) 1 t c h w``, in batches), fp32, the video encoder under ``torch.compile``, the audio segments
     likewise, and ``compare_v_a`` on the first and the last 14 segments.
   Both give each clip's first and last offset: the rows are compared (agreement of the argmax classes).

The model has random weights unless ``--weights`` names a file: speed does not depend on the values, and both
pipelines use the same model. Prints one JSON object (also to ``--out``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

# dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from the vendors' data sheets; --peak-tflops overrides
BF16_PEAKS = {"H200": 989.0, "H100 SXM": 989.0, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 756.0,
              "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0, "RTX 4090": 165.0}


def peak_of(name: str) -> tuple[str, float] | None:
    for key in sorted(BF16_PEAKS, key=len, reverse=True):  # the most specific name first
        if key.lower() in name.lower():
            return key, BF16_PEAKS[key]
    return None


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def write_clip(path: Path, seconds: float, seed: int, size=(640, 360)):
    """A moving gradient with flashes, a click at each flash (so the sound and the picture share events)."""
    import av

    rng = np.random.default_rng(seed)
    fps, sr, n = 25, 48000, int(seconds * 25)
    flashes = rng.random(n) < 0.08
    w, h = size
    x = np.linspace(0, 255, w)[None, :, None]
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps, options={"preset": "veryfast", "crf": "28"})
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        aus = out.add_stream("aac", rate=sr, layout="stereo")
        for i in range(n):
            img = np.broadcast_to((x + 4 * i) % 256, (h, w, 3)) * (1.0 if not flashes[i] else 0.2) + (200 * flashes[i])
            frame = av.VideoFrame.from_ndarray(np.clip(img, 0, 255).astype(np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
        wave = rng.normal(0, 0.01, int(seconds * sr))
        for i in np.nonzero(flashes)[0]:
            s = int(i / fps * sr)
            wave[s:s + 1200] += 0.5 * np.sin(np.arange(len(wave[s:s + 1200])) / 5)
        wave = np.clip(wave, -1, 1).astype(np.float32)
        for s in range(0, len(wave), 1024):
            part = np.ascontiguousarray(np.stack([wave[s:s + 1024]] * 2))
            frame = av.AudioFrame.from_ndarray(part, format="fltp", layout="stereo")
            frame.sample_rate, frame.pts = sr, s
            out.mux(aus.encode(frame))
        out.mux(aus.encode(None))
    return path


def encoder_throughput(model, device, batch: int, iters: int) -> dict:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from synchformer.features import audio_to_model, frames_to_model
    from synchformer.model.precision import using

    crop = int(model.cfg.image_size)
    v = torch.randint(0, 256, (batch, 16, 3, crop, crop), dtype=torch.uint8, device=device)
    a = torch.randn(batch, 10240, device=device) * 0.1

    def step():
        model.extract_vfeats(frames_to_model(v)[None])
        model.extract_afeats(audio_to_model(a)[None])

    with torch.inference_mode():
        counter = FlopCounterMode(display=False)
        with sdpa_kernel(SDPBackend.MATH), counter:
            model.extract_vfeats(frames_to_model(v[:1])[None])
            model.extract_afeats(audio_to_model(a[:1])[None])
        flops = counter.get_total_flops()
        with using("bf16" if device.type == "cuda" else "auto", model):
            step()  # warm-up: kernels chosen, memory allocated
            sync(device)
            t0 = time.perf_counter()
            for _ in range(iters):
                step()
            sync(device)
            sec = time.perf_counter() - t0
    tflops = flops * batch * iters / sec / 1e12
    return {"gflop_per_segment": round(flops / 1e9, 2), "batch": batch, "segments_per_sec": round(batch * iters / sec, 1),
            "tflops": round(tflops, 2)}


def _decode(path: str, crop: int):
    from synchformer.io import load_av

    clip = load_av(path, size=crop, crop=crop)  # av-benchmark: short side 224, centre crop, from frame 0
    return clip.frames.numpy(), clip.audio.numpy()


def av_benchmark_style(model, clips: list[str], workers: int, batch: int, compile_: bool) -> tuple[float, list]:
    """Decode everything, then encode in MMAudio's layout in fp32, then score the first and last 14 segments."""
    from synchformer.features import audio_to_model, frames_to_model, segment_audio, segment_video

    crop, device = int(model.cfg.image_size), model.device
    venc = torch.compile(model.extract_vfeats) if compile_ else model.extract_vfeats
    aenc = torch.compile(model.extract_afeats) if compile_ else model.extract_afeats
    grid = model.cfg.offset_grid()
    t0 = time.perf_counter()
    # spawn: the parent holds CUDA, which a forked child must not inherit
    with ProcessPoolExecutor(max(1, workers), mp_context=multiprocessing.get_context("spawn")) as pool:
        decoded = list(pool.map(_decode, clips, [crop] * len(clips)))
    rows = []
    with torch.inference_mode():
        for frames, wave in decoded:
            frames, wave = torch.from_numpy(frames), torch.from_numpy(wave)
            s = min((len(frames) - 16) // 8 + 1, (len(wave) - 10240) // 5120 + 1)
            segs, auds = segment_video(frames, 0, s), segment_audio(wave, 0, s)  # (b s) 1 t c h w, b = 1
            vf = torch.cat([venc(frames_to_model(segs[i:i + batch].to(device))[None])[0] for i in range(0, s, batch)])
            af = torch.cat([aenc(audio_to_model(auds[i:i + batch].to(device).float())[None])[0]
                            for i in range(0, s, batch)])
            n = model.cfg.n_segments
            logits = model.compare_v_a(torch.stack([vf[:n], vf[-n:]]), torch.stack([af[:n], af[-n:]])).float()
            k = logits.argmax(-1).cpu()
            rows.append((round(float(grid[k[0]]), 3), round(float(grid[k[1]]), 3)))
    sync(device)
    return time.perf_counter() - t0, rows


def main():
    from synchformer.inference.score import score_files
    from synchformer.model import ModelConfig, Synchformer, load_model
    from synchformer.model.precision import resolve

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--model", choices=["full", "tiny"], default="full", help="sizes of the random model")
    ap.add_argument("--weights", help="a checkpoint instead of random weights")
    ap.add_argument("--clips", type=int, default=64)
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    ap.add_argument("--batch-size", type=int, default=128, help="segments per encoder call (both pipelines' "
                    "encoders benchmark; score's calls)")
    ap.add_argument("--av-batch", type=int, default=24, help="av-benchmark-style segments per call (one 8 s clip)")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--peak-tflops", type=float)
    ap.add_argument("--no-compile", action="store_true", help="the av-benchmark-style pipeline without torch.compile")
    ap.add_argument("--work", default="bench_gpu_clips", help="folder for the generated clips")
    ap.add_argument("--out")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    if args.weights:
        model = load_model(args.weights, device)
    else:
        model = Synchformer(ModelConfig() if args.model == "full" else ModelConfig.tiny()).to(device).eval()
    res: dict = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                 "torch": torch.__version__, "model": args.weights or f"random {args.model}"}

    enc = encoder_throughput(model, device, args.batch_size, args.iters)
    peak = (("--peak-tflops", args.peak_tflops) if args.peak_tflops else peak_of(res["device"])
            if device.type == "cuda" else None)
    if peak:
        enc.update(peak_used=f"{peak[0]}: {peak[1]} TFLOP/s dense bf16", fraction_of_peak=round(enc["tflops"] / peak[1], 3))
    res["encoders"] = enc
    print(json.dumps({"encoders": enc}), file=sys.stderr, flush=True)

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    clips = [str(work / f"clip{i:03d}.mp4") for i in range(args.clips)]
    for i, c in enumerate(clips):
        if not os.path.exists(c):
            write_clip(Path(c), 8.0, seed=i)

    t0 = time.perf_counter()
    rows = list(score_files(model, clips, metric="desync", workers=args.workers, batch_size=args.batch_size,
                            precision="auto"))
    sync(device)
    t_score = time.perf_counter() - t0
    t_av, av_rows = av_benchmark_style(model, clips, args.workers, args.av_batch, not args.no_compile)
    ours = [(r["first_offset_sec"], r["last_offset_sec"]) for r in rows]
    agree = float(np.mean([a == b for o, r in zip(ours, av_rows) for a, b in zip(o, r)]))
    res["clips_per_sec"] = {"score": round(len(clips) / t_score, 2), "av_benchmark_style": round(len(clips) / t_av, 2),
                            "ratio": round(t_av / t_score, 2)}
    res["rows"] = {"clips": len(clips), "failed": sum(r["status"] != "ok" for r in rows),
                   "argmax_agreement": round(agree, 4), "score_precision": resolve("auto", device),
                   "note": "score in precision auto (bf16 on a CUDA GPU), av-benchmark-style in fp32"}
    res["settings"] = {"workers": args.workers, "batch_size": args.batch_size, "av_batch": args.av_batch,
                       "compile": not args.no_compile}
    print(json.dumps(res, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
