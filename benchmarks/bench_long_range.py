"""Offsets beyond +-2 s: the wide search (``--max-offset``) on synthetic clips, and a separate sound file.

    python benchmarks/bench_long_range.py far  [--n 40 --seed 9710]   # 30 s clips, |offset| in 2.2..8 s
    python benchmarks/bench_long_range.py near [--n 40 --seed 9750]   # 30 s clips, |offset| <= 2 s
    python benchmarks/bench_long_range.py separate [--n 20 --seed 9800]  # 20 s of a 40 s clip's sound as a WAV
    python benchmarks/bench_long_range.py cost [--config full]        # predict's time, default search vs +-2 s
                                                                      # (30 s clip; random weights: the search runs)

The bundled models (with their synchronizability and fine models, as ``-w bundled`` runs), seeds no training set
used. ``far`` and ``near`` run predict once per clip with the widest search asked for and keep every shift's
evidence, then judge each way of choosing a shift (``inference.search.choose``) on the same numbers; ``near`` also
runs ``--max-offset 2``. Prints one JSON object: per evidence kind, the share of clips reliable, the share of
reliable clips within 0.2 s of the truth, the share of clips reliable and wrong by more than 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import synchformer  # noqa: E402
from synchformer.inference import search as wide  # noqa: E402
from synchformer.training.synth import clip_seed, make_sparse_clip  # noqa: E402


def _rates(rows: list[dict]) -> dict:
    n = len(rows)
    rel = [r for r in rows if r["reliable"]]
    ok = [r for r in rel if abs(r["error"]) <= 0.2]
    bad = [r for r in rel if abs(r["error"]) > 0.5]
    err = np.abs([r["error"] for r in rows])
    return {"clips": n, "reliable": round(len(rel) / n, 3),
            "within_0.2_of_reliable": round(len(ok) / max(1, len(rel)), 3),
            "reliable_and_off_by_0.5": round(len(bad) / n, 3),
            "within_0.2_of_all": round(float((err <= 0.2).mean()), 3),
            "median_abs_error_sec": round(float(np.median(err)), 3)}


def _clips(kind: str, n: int, seed: int, tmp: Path, duration: float):
    rng = np.random.default_rng(seed)
    for i in range(n):
        if kind == "far":
            t = float(rng.uniform(2.2, 8.0)) * (1 if rng.random() < 0.5 else -1)
        else:
            t = float(rng.uniform(-2.0, 2.0))
        path = tmp / f"{kind}{i}.mp4"
        make_sparse_clip(path, clip_seed(seed, i), duration=duration, offset_sec=round(t, 3))
        yield path, round(t, 3)


def run_clips(kind: str, n: int, seed: int, max_offset: float, duration: float = 30.0) -> dict:
    models = synchformer.load_models("bundled")
    rows, per_kind = [], {k: [] for k in wide.EVIDENCE}
    narrow = []
    with tempfile.TemporaryDirectory() as d:
        for path, truth in _clips(kind, n, seed, Path(d), duration):
            p = synchformer.predict(path, models=models, max_offset_sec=max_offset)
            s = p.search
            rows.append({"truth": truth, "offset": p.refined_offset_sec, "reliable": p.reliable,
                         "error": (p.refined_offset_sec if p.refined_offset_sec is not None else 99) - truth,
                         "reasons": p.reasons,
                         "shifts": [sh.to_dict(s.evidence_kind) for sh in s.shifts]})
            for k in wide.EVIDENCE:  # the same shifts chosen another way: right shift?
                c = wide.choose(s.shifts, max_offset, k)
                off = c.chosen.offset_sec
                per_kind[k].append({"truth": truth, "reliable": not c.ambiguous, "error": (off or 99) - truth})
            if kind == "near":
                q = synchformer.predict(path, models=models, max_offset_sec=2.0)
                narrow.append({"truth": truth, "reliable": q.reliable,
                               "error": (q.refined_offset_sec if q.refined_offset_sec is not None else 99) - truth})
            print(f"{path.name}: truth {truth:+.2f} got {p.refined_offset_sec} reliable {p.reliable} "
                  f"{p.reasons}", file=sys.stderr)
    out = {"kind": kind, "max_offset_sec": max_offset, "seed": seed, "predict": _rates(rows),
           "shift_chosen_by": {k: _rates(v) for k, v in per_kind.items()}}
    if narrow:
        out["max_offset_2"] = _rates(narrow)
    out["rows"] = rows
    return out


def run_separate(n: int, seed: int, max_offset: float) -> dict:
    from scipy.io import wavfile

    from synchformer.io.decode import load_audio

    models = synchformer.load_models("bundled")
    rng = np.random.default_rng(seed)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for i in range(n):
            video = Path(d) / f"v{i}.mp4"
            make_sparse_clip(video, clip_seed(seed, i), duration=40.0)
            start = round(float(rng.uniform(0.0, 20.0)), 2)
            sound = load_audio(video)[int(start * 16000):int((start + 20.0) * 16000)]
            wav = Path(d) / f"a{i}.wav"
            wavfile.write(wav, 16000, (np.clip(sound, -1, 1) * 32767).astype(np.int16))
            p = synchformer.predict(video, models=models, audio=wav, max_offset_sec=max_offset)
            err = (p.refined_offset_sec if p.refined_offset_sec is not None else 99) - start
            rows.append({"truth": start, "offset": p.refined_offset_sec, "reliable": p.reliable, "error": err,
                         "reasons": p.reasons})
            print(f"{wav.name}: truth {start:+.2f} got {p.refined_offset_sec} reliable {p.reliable}", file=sys.stderr)
    return {"kind": "separate", "max_offset_sec": max_offset, "seed": seed, "predict": _rates(rows), "rows": rows}


def run_cost(config: str, repeats: int, default: float) -> dict:
    import torch

    torch.set_num_threads(2)
    if config == "full":
        from synchformer.model import Synchformer

        from synchformer.model.precision import resolve

        model = Synchformer().eval()
        model.precision = resolve("auto", model.device, model.cfg)  # bf16 where the CPU has bf16 units
        from synchformer.inference.predict import Models

        models = Models(offset=model, weights="random full size")
    else:
        models = synchformer.load_models("bundled")
    times = {2.0: [], default: []}
    with tempfile.TemporaryDirectory() as d:
        clip = Path(d) / "c.mp4"
        make_sparse_clip(clip, 12345, duration=30.0, size=224 if config == "full" else 96)
        synchformer.predict(clip, models=models, max_offset_sec=2.0)  # warm
        ran = synchformer.predict(clip, models=models, max_offset_sec=default).search.settled is None
        for _ in range(repeats):
            for m in times:  # alternating
                t = time.perf_counter()
                synchformer.predict(clip, models=models, max_offset_sec=m)
                times[m].append(time.perf_counter() - t)
    best = {m: min(v) for m, v in times.items()}
    return {"kind": "cost", "config": config, "precision": getattr(models.offset, "precision", "fp32"),
            "default_max_offset_sec": default,
            "seconds": {str(m): round(v, 3) for m, v in best.items()},
            "ratio": round(best[default] / best[2.0], 3), "search_ran": ran}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["far", "near", "separate", "cost"])
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--max-offset", type=float, default=None)
    ap.add_argument("--config", choices=["tiny", "full"], default="tiny")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    from synchformer.inference.predict import DEFAULT_MAX_OFFSET_SEC

    if a.what == "far":
        out = run_clips("far", a.n or 40, 9710 if a.seed is None else a.seed, a.max_offset or 8.0)
    elif a.what == "near":
        out = run_clips("near", a.n or 40, 9750 if a.seed is None else a.seed, a.max_offset or DEFAULT_MAX_OFFSET_SEC)
    elif a.what == "separate":
        out = run_separate(a.n or 20, 9800 if a.seed is None else a.seed, a.max_offset or 20.0)
    else:
        out = run_cost(a.config, a.repeats, a.max_offset or DEFAULT_MAX_OFFSET_SEC)
    text = json.dumps(out)
    if a.out:
        a.out.write_text(text + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "rows"}, indent=1))


if __name__ == "__main__":
    main()
