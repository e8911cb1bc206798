"""Calibrate the verdict (synchformer.inference.verdict) on clips with known truth, and print the table.

Synchronizable: synthetic clips (``make_sparse_clip``, seeds no training set used) with an offset drawn from
the 21 classes. Not synchronizable: the same kind of clips with digital silence for a sound, with another
clip's sound, with a still picture (the first frame held), and with sound at -80 dBFS. Every clip is analysed
once as ``predict`` does (hop 0.64 s; beside the bundled offset model, the bundled synchronizability model);
the verdict is then recomputed for each threshold, so the sweep is cheap. For each MIN_CONFIDENCE it prints:
coverage (synchronizable clips called reliable), accuracy of those (exact class), the share of correctly
estimated clips kept reliable, and the share of each kind of unsynchronizable clip called unreliable.

    python benchmarks/calibrate_verdict.py --n 60            # the bundled model, about 5 minutes on 2 cores
    python benchmarks/calibrate_verdict.py --weights W.pt    # another offset model
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

import numpy as np

import synchformer
from synchformer.cli.common import load_syncability
from synchformer.inference import verdict
from synchformer.inference.analyze import analyze
from synchformer.io import load_av
from synchformer.model.bundled import synthetic_tiny
from synchformer.training import synth

SEED0 = 970_000  # clip seeds SEED0 + i: no training set (seed * 1000003 + i, seeds >= 1) and no test uses them


def make_static(path: Path, seed: int) -> None:
    """A synthetic clip whose picture is its first frame throughout (the sound is the clip's own)."""
    plan = synth._plan(seed, 10.0, 96, 0.0, synth.Cues())
    video = synth._render(plan, 96)
    video[:] = video[:1]
    synth._encode(path, video, plan.audio)


def collect(model, n: int, work: Path, seed0: int, hop: float, sync_model=None) -> list[dict]:
    rng = random.Random(seed0)
    grid = [round(x, 2) for x in model.cfg.offset_grid().tolist()]
    cases = []
    for i in range(n):
        seed = seed0 + i
        truth = rng.choice(grid)
        clip = work / f"sync_{i}.mp4"
        synth.make_sparse_clip(clip, seed, duration=10.0, offset_sec=truth)
        cases.append(("sync", truth, clip, None))
    n_un = max(1, n // 3)
    for i in range(n_un):
        own = work / f"own_{i}.mp4"
        synth.make_sparse_clip(own, seed0 + 5000 + i, duration=10.0)
        other = load_av(work / f"sync_{(i + 1) % n}.mp4", size=None, crop=None).audio.numpy()
        sound = load_av(own, size=None, crop=None).audio.numpy()
        cases.append(("silent", None, own, np.zeros(len(sound), np.float32)))
        cases.append(("quiet", None, own, sound * 1e-4))
        cases.append(("other_sound", None, own, other[:len(sound)]))
        static = work / f"static_{i}.mp4"
        make_static(static, seed0 + 7000 + i)
        cases.append(("static", None, static, None))
    out = []
    for k, (kind, truth, path, audio) in enumerate(cases):
        a = analyze(model, path, hop_sec=hop, audio=audio, sync_model=sync_model)
        out.append({"kind": kind, "truth": truth, "analysis": a})
        print(f"\r{k + 1}/{len(cases)} analysed", end="", file=sys.stderr)
    print(file=sys.stderr)
    return out


def table(results: list[dict], thresholds, edges, agreements=None) -> list[dict]:
    rows = []
    saved = verdict.MIN_CONFIDENCE, verdict.EDGE_MIN_CONFIDENCE, verdict.MIN_AGREEMENT
    try:
        for g, e, t in ((g, e, t) for g in (agreements or [verdict.MIN_AGREEMENT]) for e in edges for t in thresholds):
            verdict.MIN_CONFIDENCE, verdict.EDGE_MIN_CONFIDENCE, verdict.MIN_AGREEMENT = t, max(t, e), g
            stats = {"min_confidence": t, "edge_min_confidence": max(t, e), "min_agreement": g}
            judged = [(r, r["analysis"].summarize()) for r in results]  # once per setting
            sync = [(r, v) for r, v in judged if r["kind"] == "sync"]
            correct = [v.offset_sec is not None and abs(v.offset_sec - r["truth"]) < 0.1 for r, v in sync]
            reliable = [v.reliable for _, v in sync]
            n_rel = sum(reliable)
            stats["coverage"] = n_rel / len(sync)
            stats["accuracy_reliable"] = (sum(c and r for c, r in zip(correct, reliable)) / n_rel) if n_rel else None
            stats["accuracy_all"] = sum(correct) / len(sync)
            stats["correct_kept"] = (sum(c and r for c, r in zip(correct, reliable)) / sum(correct)
                                     if any(correct) else None)
            for kind in ("silent", "quiet", "other_sound", "static"):
                group = [v for r, v in judged if r["kind"] == kind]
                stats[f"{kind}_flagged"] = sum(not v.reliable for v in group) / len(group)
            un = [v for r, v in judged if r["kind"] != "sync"]
            stats["unsync_flagged"] = sum(not v.reliable for v in un) / len(un)
            rows.append(stats)
    finally:
        verdict.MIN_CONFIDENCE, verdict.EDGE_MIN_CONFIDENCE, verdict.MIN_AGREEMENT = saved
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", help="an offset model (default: the bundled one)")
    ap.add_argument("--n", type=int, default=60, help="synchronizable clips (a third as many of each other kind)")
    ap.add_argument("--seed", type=int, default=SEED0)
    ap.add_argument("--hop", type=float, default=0.64, help="window hop (predict's and fix's default: 0.64)")
    ap.add_argument("--syncability-weights", default="auto",
                    help="a synchronizability model, 'none', or 'auto' (default: the bundled one with the bundled "
                         "offset model, as predict does)")
    ap.add_argument("--json", metavar="PATH", help="also write the table as JSON")
    args = ap.parse_args()
    model = synchformer.load_model(args.weights) if args.weights else synthetic_tiny()
    sync_model = load_syncability(args.syncability_weights, model, "cpu")
    with tempfile.TemporaryDirectory(prefix="synchformer-calibrate-") as tmp:
        results = collect(model, args.n, Path(tmp), args.seed, args.hop, sync_model)
    rows = table(results, [0.2, 0.25, 0.3, 0.35, 0.4, 0.5], [0.5, 0.6], [0.4, 0.5])
    cols = ["min_confidence", "edge_min_confidence", "min_agreement", "coverage", "accuracy_reliable", "accuracy_all", "correct_kept", "unsync_flagged",
            "silent_flagged", "quiet_flagged", "other_sound_flagged", "static_flagged"]
    print(" ".join(f"{c:>12s}" for c in ["min_conf", "edge_min", "min_agree", "coverage", "acc_reliable", "acc_all", "correct_kept",
                                          "unsync_flag", "silent", "quiet", "other_sound", "static"]))
    for r in rows:
        print(" ".join("        None" if r[c] is None else f"{r[c]:12.3f}" for c in cols))
    print(f"clips: {args.n} synchronizable, {len(results) - args.n} not; hop {args.hop} s; synchronizability "
          f"model: {'none' if sync_model is None else sync_model.bundled or args.syncability_weights}")
    # what keeps correct estimates from being reliable, and what lets unsynchronizable ones through
    lost, passed = {}, {}
    for r in results:
        s = r["analysis"].summarize()
        if r["kind"] == "sync" and s.offset_sec is not None and abs(s.offset_sec - r["truth"]) < 0.1:
            for reason in s.reasons:
                key = reason.split(" (")[0].split(" 0.")[0]
                lost[key] = lost.get(key, 0) + 1
        elif r["kind"] != "sync" and s.reliable:
            passed[r["kind"]] = passed.get(r["kind"], 0) + 1
    print(f"at MIN_CONFIDENCE {verdict.MIN_CONFIDENCE}: reasons on correct estimates {lost}; "
          f"unsynchronizable called reliable {passed}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
