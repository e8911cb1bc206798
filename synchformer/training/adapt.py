"""Adapt an offset model to a site's own footage: ``synchformer adapt DIR -w audioset -o site.safetensors``.

The clips need no labels: clips that are in sync are shifted by known amounts. They are split by clip (seeded)
into a tuning set and a held-out set, so that no clip has windows on both sides. The base model is measured on
the held-out set (one window per offset, as ``eval`` reads a CSV, and every window of a clip pooled, as
``predict`` pools them); the sync transformer is tuned with the encoders frozen and their outputs cached once
(``training.features``), by default with the query side of the visual encoder's spatial pooling (``Settings.tune``:
what in the picture a segment's tokens attend to, which a new kind of footage changes most), stopped early on the
held-out loss; then measured again on the same held-out windows.
The result is written only when it is better there (or when forced), with the base model's identity, the clips
and the numbers in its metadata. Everything a run makes lives in a work folder beside the output, so an
interrupted run picks up where it stopped.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from synchformer.constants import AUDIO_SR, SAMPLES_PER_FRAME, VIDEO_FPS
from synchformer.errors import SynchformerError
from synchformer.io.outputs import write_atomic

# (torch, numpy and the data modules are imported where used: `synchformer adapt --help` and the checks of the
# command line come before them)
if TYPE_CHECKING:
    from .data import Clip, SyncDataset

MIN_CLIPS = 20  # usable clips: fewer leave a held-out set too small to tell a better model from a worse one
MIN_HELD_OUT = 6
HELD_OUT_SHARE = 0.25
HELD_OUT_OFFSETS = 8  # one-window samples per held-out clip, each at its own offset and start
POOL_HOP_SEC = 2.4  # the pooled per-clip check: a window every 2.56 s, as ``eval --pool`` by default
OUT_OF_SYNC_SEC = 0.3  # a clip the base model reliably finds further than this from 0 is not in sync
FEATURE_VIDEO_STEP = 8  # visual features every 8 frames: 8x fewer visual encoder passes (training.features)
TUNE_CHOICES = ("pooling", "sync")  # Settings.tune
EMA = 0.99  # judge and keep the weights averaged over about the last 100 steps (steadier than the live ones)
STATE = "adapt.json"


@dataclasses.dataclass
class Settings:
    """What a run is told (and what the work folder must match to be resumed)."""

    seed: int = 0
    held_out: float = HELD_OUT_SHARE
    max_minutes: float = 15.0
    lr: float = 3e-4  # 1e-3 forgot more of the old domain and gained less on the new (docs/benchmarks.md)
    batch_size: int = 32
    patience: int = 20  # validations (epochs) without a lower held-out loss
    max_epochs: int = 100  # of about 8 steps: a bound for the progress bar's ETA (early stopping ends most runs)
    max_clip_sec: float = 10.0
    keep_all: bool = False
    force: bool = False
    # "pooling": the sync transformer and the query side of the visual pooling (docs/benchmarks.md: it gained more
    # on new footage and forgot less than the sync transformer alone); "sync": the sync transformer only
    tune: str = "pooling"


def work_dir_of(out: str | Path) -> Path:
    """Where a run keeps its decoded clips, features, checkpoints and state: ``OUT.work`` beside ``OUT``."""
    out = Path(out)
    return out.with_name(out.name + ".work")


def adapt(source: str | Path, weights: str | None, out: str | Path, settings: Settings = Settings(), *,
          device: str = "auto", precision: str = "auto", work_dir: str | Path | None = None,
          keep_work: bool = False, progress: bool = True, say=print, stop_after: int = 0) -> dict:
    """Tune the offset model ``weights`` (a name or a file; None: the released audioset model, or the bundled
    one with a warning) on the in-sync clips of ``source`` (a folder or CSV) and write it to ``out`` if it is
    better on the held-out clips (or ``settings.force``). ``say``: where the lines for people go.
    ``stop_after``: leave after that many tuning steps (tests use it to stand in for an interruption; the next
    call resumes). Returns the report (also in the written file's metadata under ``adapt``)."""
    from synchformer.features.segments import decode_size
    from synchformer.inference.predict import load_weights, resolve_device
    from synchformer.model.load import weights_identity

    from .data import prepare, read_clip_list, required_sec

    if settings.tune not in TUNE_CHOICES:
        raise ValueError(f"Settings.tune must be one of {', '.join(TUNE_CHOICES)}, not {settings.tune!r}")
    t0 = time.time()
    out = Path(out)
    work = Path(work_dir) if work_dir else work_dir_of(out)
    dev = resolve_device(device)
    model, label, warnings = load_weights(weights, device=dev, precision=precision, head="offset")
    for w in warnings:
        say(f"note: {w}")
    if model.source_path is None:
        raise SynchformerError(weights, "is not a file the tuning can start from")
    base = {**weights_identity(model), "file": model.source_path}
    cfg = model.cfg
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "cache"

    clips = read_clip_list(source)
    need = required_sec("sync", cfg, 8)
    prep = prepare(clips, cache, decode_size(cfg.image_size), settings.max_clip_sec, need, workers=1,
                   progress=progress, timing=cfg.timing, min_fps=0.0, min_sample_rate=0)
    left_out = [{"path": p, "why": why} for p, why in prep.problems]
    for row in left_out:
        say(f"  left out {row['path']}: {row['why']}")
    usable = sorted(prep.clips, key=lambda c: c.path)
    if len(usable) < MIN_CLIPS:
        raise SynchformerError(source, f"{len(usable)} usable clips (in sync, at least {need:.1f} s each); adapt "
                                       f"needs at least {MIN_CLIPS} ({2 * MIN_CLIPS} clips of 10 s are enough)")
    key = _run_key(base, [c.key for c in usable], settings)
    state = _read_state(work, key)

    from .features import build_feature_cache
    from .loop import Dist

    visual = "pooling" if settings.tune == "pooling" else "features"  # what the cache holds for the picture
    feat_dir = build_feature_cache(model, usable, cache, str(dev), Dist(), FEATURE_VIDEO_STEP, progress, visual)

    if "in_sync" not in state:  # the base model reads each clip as it is: far from 0 with confidence = not in sync
        state["in_sync"] = _check_in_sync(model, usable, cache, feat_dir, str(dev), visual)
        _write_state(work, state)
    far = [r for r in state["in_sync"] if r["out_of_sync"]]
    if far:
        say(f"{len(far)} clip{'s do' if len(far) > 1 else ' does'} not look in sync to the base model"
            + ("" if settings.keep_all else " (left out; --keep-all keeps them)") + ":")
        for r in far:
            say(f"  {r['path']}: found at {r['offset_sec']:+.2f} s (confidence {r['confidence']:.2f})")
    if not settings.keep_all:
        bad = {r["path"] for r in far}
        left_out += [{"path": r["path"], "why": f"not in sync: the base model finds {r['offset_sec']:+.2f} s"}
                     for r in far]
        usable = [c for c in usable if c.path not in bad]
        if len(usable) < MIN_CLIPS:
            raise SynchformerError(source, f"{len(usable)} clips left once those not in sync are left out; adapt "
                                           f"needs at least {MIN_CLIPS} (--keep-all keeps them all)")

    if "split" not in state:
        state["split"] = _split(usable, settings)
        _write_state(work, state)
    by_path = {c.path: c for c in usable}
    tune = [by_path[p] for p in state["split"]["tuning"]]
    held = [by_path[p] for p in state["split"]["held_out"]]
    rows = _held_out_rows(held, cfg, settings.seed)
    # (absolute paths: a CSV's relative ones are read from the CSV's folder)
    _write_csv(work / "held_out.csv", ["path", "offset_sec", "vstart_sec"],
               [[os.path.abspath(p), o, v] for p, o, v in rows])
    repeat = max(1, math.ceil(8 * settings.batch_size / len(tune)))  # about 8 steps per epoch
    _write_csv(work / "tuning.csv", ["path"], [[os.path.abspath(c.path)] for c in tune for _ in range(repeat)])
    say(f"{len(tune)} clips to tune on, {len(held)} held out ({len(rows)} windows at offsets drawn from seed "
        f"{settings.seed}); split by clip")

    if "before" not in state:
        state["before"] = measure(model, held, rows, cache, feat_dir, str(dev), visual)
        _write_state(work, state)

    from .config import load_config
    from .loop import train

    spent = (time.time() - t0) / 60 + state.get("minutes_before", 0.0)
    settings_of_run = {
        "out_dir": str(work / "run"), "init": base["file"], "data.train": str(work / "tuning.csv"),
        "data.valid": str(work / "held_out.csv"), "data.cache_dir": str(cache), "data.timing": cfg.timing,
        "data.max_clip_sec": settings.max_clip_sec, "data.min_fps": 0, "data.min_sample_rate": 0,
        "data.batch_size": min(settings.batch_size, len(tune) * repeat), "data.num_workers": 0,
        "data.decode_workers": 1, "data.augment": {}, "cache_features": True,
        "feature_video_step": FEATURE_VIDEO_STEP, "tune_visual_pooling": visual == "pooling", "ema": EMA,
        "optim.lr": settings.lr, "optim.warmup_steps": 20,
        "epochs": settings.max_epochs, "patience": settings.patience, "valid_every": 1, "save_every": 40,
        "log_every": 20,
        "select_on": "loss", "seed": settings.seed, "max_minutes": round(max(settings.max_minutes - spent, 0.5), 3),
        "precision": "bf16" if model.precision == "bf16" else "fp32", "device": str(dev)}
    tcfg = load_config("sync", None, [f"{k}={json.dumps(v)}" for k, v in settings_of_run.items()])
    say(f"tuning: each clip {repeat} times per epoch at new offsets and starts ({len(tune) * repeat} samples), "
        f"the held-out loss after every epoch")
    summary = train(tcfg, progress=progress, stop_after=stop_after)
    state["minutes_before"] = spent
    _write_state(work, state)
    best = Path(tcfg.out_dir) / "best.safetensors"
    if stop_after and summary["steps"] and not (Path(tcfg.out_dir) / "last.safetensors").exists():
        return {"interrupted": True, "steps": summary["steps"], "work_dir": str(work)}

    from synchformer.model import load_model

    tuned = load_model(best, device=dev, precision=model.precision)
    after = measure(tuned, held, rows, cache, feat_dir, str(dev), visual)
    before = state["before"]
    better = is_better(before, after)
    report = {"base": base, "weights_label": label, "source": str(source),
              "clips": {"tuning": [c.path for c in tune], "held_out": [c.path for c in held], "left_out": left_out},
              "before": before, "after": after, "better": better, "steps": summary["steps"],
              "epochs": summary["epochs"], "minutes": round((time.time() - t0) / 60 + spent, 2),
              "settings": dataclasses.asdict(settings), "out": str(out), "written": False}
    for line in table(before, after, len(held), len(rows)):
        say(line)
    if better or settings.force:
        from synchformer.model.load import save_model

        report["written"] = True
        report["sha256"] = save_model(tuned, out, extra={"adapt": {k: v for k, v in report.items()
                                                                   if k not in ("written", "out")}})
        say(f"wrote {out} (" + ("better on the held-out clips" if better else "--force: not better on the held-out "
                                "clips") + f"); use it with --weights {out}")
    else:
        say(f"not written: the tuned model is not better on the {len(held)} held-out clips (loss "
            f"{before['loss']:.3f} -> {after['loss']:.3f}, Acc@1 {before['accuracy_1']:.3f} -> "
            f"{after['accuracy_1']:.3f}, pooled {before['pooled_accuracy_1']:.3f} -> "
            f"{after['pooled_accuracy_1']:.3f}); --force writes it anyway")
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return report


def is_better(before: dict, after: dict) -> bool:
    """The tuned model is better on the held-out clips: a lower loss, neither Acc@1 (one window, pooled per clip)
    lower, and at least one of them higher."""
    accs = ("accuracy_1", "pooled_accuracy_1")
    return (after["loss"] < before["loss"] and all(after[k] >= before[k] for k in accs)
            and any(after[k] > before[k] for k in accs))


def table(before: dict, after: dict, n_clips: int, n_windows: int) -> list[str]:
    """The before/after lines ``adapt`` prints."""
    rows = [(f"Acc@1, one window ({n_windows} windows)", "accuracy_1", "{:.3f}"),
            ("Acc@1 +-1 class", "accuracy_1_tol1", "{:.3f}"),
            ("loss", "loss", "{:.3f}"),
            (f"Acc@1, every window pooled ({n_clips} clips)", "pooled_accuracy_1", "{:.3f}")]
    width = max(len(r[0]) for r in rows) + 2
    lines = [f"{'held-out clips':{width}s}{'before':>8s}{'after':>8s}"]
    for name, k, fmt in rows:
        lines.append(f"{name:{width}s}{fmt.format(before[k]):>8s}{fmt.format(after[k]):>8s}")
    return lines


def measure(model, held: list[Clip], rows: list, cache: Path, feat_dir: Path, device: str,
            visual: str = "features") -> dict:
    """The held-out numbers of ``model`` from the cached features: one window per row of ``rows`` (Acc@1, +-1
    class, mean cross-entropy) and every window of each held-out clip at its first row's offset, pooled as
    ``predict`` pools them (``pooled_accuracy_1``)."""
    import torch.nn.functional as F

    from synchformer.features.segments import span_frames

    from .data import Clip, SyncDataset
    from .evaluate import pool_logits, pooled_windows
    from .metrics import offset_metrics

    cfg = model.cfg
    by_path = {c.path: c for c in held}
    fixed = [Clip(p, o, v, by_path[p].key, by_path[p].frames) for p, o, v in rows]
    logits, targets = _logits(model, SyncDataset(fixed, cache, "sync", cfg, train=False), feat_dir, device, visual)
    m = offset_metrics(logits, targets)
    loss = float(F.cross_entropy(logits, targets))
    first_row = {}
    for p, o, v in rows:
        first_row.setdefault(p, (o, v))
    firsts = [Clip(c.path, *first_row[c.path], c.key, c.frames) for c in held]
    windows, groups, starts = pooled_windows(SyncDataset(firsts, cache, "sync", cfg, train=False), POOL_HOP_SEC)
    wl, wt = _logits(model, windows, feat_dir, device, visual)
    pl, pt = pool_logits(wl, wt, groups, starts, cfg.offset_grid().numpy(), span_frames(cfg.n_segments) / VIDEO_FPS)
    pooled = offset_metrics(pl, pt)
    return {"accuracy_1": m["accuracy_1"], "accuracy_1_tol1": m["accuracy_1_tol1"], "loss": loss,
            "windows": len(fixed), "pooled_accuracy_1": pooled["accuracy_1"],
            "pooled_accuracy_1_tol1": pooled["accuracy_1_tol1"], "clips": len(held)}


def _logits(model, dataset: SyncDataset, feat_dir: Path, device: str, visual: str = "features"):
    import torch

    from .features import FeatureDataset, cached_visual

    feats = FeatureDataset(dataset, feat_dir, FEATURE_VIDEO_STEP, visual)
    # a window of the pooling's inputs is as many times larger as a frame has patches (196 at full size: 60 MB)
    batch = 64 if visual == "features" else max(1, 256 // model.cfg.v_patches)
    loader = torch.utils.data.DataLoader(feats, batch_size=batch, num_workers=0)
    was = model.training
    model.eval()
    out, targets = [], []
    with torch.no_grad():
        for b in loader:
            feats = {k: v.to(device) for k, v in b.items() if k in ("vfeats", "vtokens", "afeats")}
            out.append(model.compare_v_a(cached_visual(model, feats), feats["afeats"].float()).float().cpu())
            targets.append(b["target"])
    model.train(was)
    return torch.cat(out), torch.cat(targets)


def _check_in_sync(model, clips: list[Clip], cache: Path, feat_dir: Path, device: str, visual: str) -> list[dict]:
    """Each clip read at offset 0 as it is (every window, pooled as ``predict`` pools them): where the base model
    reliably finds it further than OUT_OF_SYNC_SEC from 0, it is not in sync (or the model is wrong there with
    confidence, which a tuning set must not teach either)."""
    import numpy as np

    from synchformer.features.segments import span_frames
    from synchformer.inference.pooling import summarize

    from .data import Clip, SyncDataset
    from .evaluate import pooled_windows

    cfg = model.cfg
    zero = [Clip(c.path, 0.0, 0.0, c.key, c.frames) for c in clips]
    windows, groups, starts = pooled_windows(SyncDataset(zero, cache, "sync", cfg, train=False), POOL_HOP_SEC)
    logits, _ = _logits(model, windows, feat_dir, device, visual)
    probs = logits.double().softmax(-1).numpy()
    grid = cfg.offset_grid().numpy()
    out = []
    for i, c in enumerate(clips):
        sel = np.flatnonzero(groups == i)
        s = summarize(starts[sel], probs[sel], grid, window_sec=span_frames(cfg.n_segments) / VIDEO_FPS)
        off = s.offset_sec
        far = bool(s.reliable and off is not None and abs(off) > OUT_OF_SYNC_SEC)
        out.append({"path": c.path, "offset_sec": None if off is None else float(off),
                    "confidence": float(s.confidence or 0.0), "reliable": bool(s.reliable), "out_of_sync": far})
    return out


def _split(clips: list[Clip], settings: Settings) -> dict:
    """Tuning and held-out clips, by clip, from the seed (the same clips give the same split)."""
    import numpy as np

    n = len(clips)
    n_held = max(MIN_HELD_OUT, int(round(settings.held_out * n)))
    order = np.random.default_rng([settings.seed % (1 << 63), 39]).permutation(n)
    held = sorted(clips[i].path for i in order[:n_held])
    tune = sorted(clips[i].path for i in order[n_held:])
    return {"tuning": tune, "held_out": held}


def _held_out_rows(held: list[Clip], cfg, seed: int) -> list[list]:
    """HELD_OUT_OFFSETS windows per held-out clip: (path, offset_sec, vstart_sec), an offset class and a video
    start where the window and its shifted sound fit, drawn from ``seed`` and the clip's name."""
    import numpy as np

    from synchformer.features.segments import LEAD_FRAMES, span_frames

    grid = np.round(cfg.offset_grid().numpy().astype(np.float64), 2)
    span = span_frames(cfg.n_segments)
    rows = []
    for c in held:
        name_seed = int(hashlib.sha1(Path(c.path).name.encode()).hexdigest()[:8], 16)
        rng = np.random.default_rng([seed % (1 << 63), name_seed, 40])
        for _ in range(HELD_OUT_OFFSETS):
            o = float(rng.choice(grid))
            shift = round(o * AUDIO_SR)
            lo = max(0, math.ceil(-shift / SAMPLES_PER_FRAME))
            hi = min(c.frames - span, (c.frames * SAMPLES_PER_FRAME - span * SAMPLES_PER_FRAME - shift)
                     // SAMPLES_PER_FRAME) - 1
            first = int(rng.integers(lo, max(lo, hi) + 1))
            # a fixed window's video starts at int(vstart * 25) + LEAD_FRAMES: vstart on the frame, 0.01 ms after it
            rows.append([c.path, o, round((first - LEAD_FRAMES) / VIDEO_FPS + 1e-5, 5) if first >= LEAD_FRAMES
                         else 0.0])
    return rows


def _run_key(base: dict, keys: list[str], settings: Settings) -> str:
    ident = {"base": base["sha256"], "clips": sorted(keys), "seed": settings.seed, "held_out": settings.held_out,
             "lr": settings.lr, "batch": settings.batch_size, "epochs": settings.max_epochs,
             "keep_all": settings.keep_all, "tune": settings.tune,
             "max_clip_sec": settings.max_clip_sec}
    return hashlib.sha1(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]


def _read_state(work: Path, key: str) -> dict:
    path = work / STATE
    if path.exists():
        state = json.loads(path.read_text())
        if state.get("key") != key:
            raise SynchformerError(work, "holds an interrupted adapt run of other clips, weights or settings: "
                                         "delete it to start again, or run that command again to finish it")
        return state
    return {"key": key}


def _write_state(work: Path, state: dict) -> None:
    write_atomic(work / STATE, lambda tmp: Path(tmp).write_text(json.dumps(state, indent=1) + "\n"))


def _write_csv(path: Path, header: list[str], rows: list) -> None:
    def write(tmp):
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            w.writerows(rows)

    write_atomic(path, write)
