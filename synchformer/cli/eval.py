"""``synchformer eval DATA``: accuracy of a model on clips with fixed offsets, beside a non-learned baseline."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from synchformer.io.outputs import check_output_folder, make_folder, write_atomic

from . import common


def add_parser(sub):
    p = sub.add_parser("eval", help="Acc@1 / Acc@1 +-1 class (or synchronizability accuracy and ROC-AUC) on a "
                       "dataset with fixed offsets, with a cross-correlation baseline for comparison",
                       description="Evaluate on DATA: a folder of videos or a CSV (path,offset_sec,vstart_sec: the "
                       "official fixed-offset format, also written by `synchformer synth`). Clips without fixed "
                       "offsets get one drawn from --seed. Clips are read as predict reads them (any frame rate and sample rate), "
                       "but each must hold a window and its largest shift: 6.8 s for an offset model (4.8 s and "
                       "+-2 s), 8.96 s for a synchronizability one (two 4.48 s windows). A clips.csv from "
                       "`synchformer synth --offsets continuous` (offsets in the files) is measured as predict "
                       "measures (every window, hop 0.64 s): |error| in ms of the class and of the refined offset, "
                       "the 90% interval's coverage, and what one fix leaves inside ITU-R BT.1359's window.")
    p.add_argument("data", help="folder of videos or CSV with path[,offset_sec,vstart_sec]")
    common.add_weights(p)
    common.add_syncability(p)  # for a CSV of offsets in the files (predict's protocol); the rest ignore it
    common.add_fine(p)  # likewise
    common.add_timing(p)
    common.add_device(p)
    common.add_precision(p)
    p.add_argument("--out", "-o", metavar="DIR",
                   help="also write eval.json, the logits and the confusion (or ROC) plots into DIR (created if "
                        "missing; the plots need matplotlib). Default: the results are only printed")
    p.add_argument("--json", metavar="FILE", help="also write the report (eval.json's content) to FILE")
    p.add_argument("--no-footage", action="store_true",
                   help="for a folder: skip the \"does it work on my footage?\" pass (default: each clip is also "
                        "written with its sound shifted by its offset and read as predict reads a file, with the "
                        "companions; it costs about one predict per clip)")
    p.add_argument("--no-baseline", action="store_true", help="skip the cross-correlation baseline (default: "
                   "it runs beside the model, for comparison)")
    p.add_argument("--pool", action="store_true",
                   help="score each clip as `predict` does: every window of the whole clip under its offset, "
                        "pooled (default: the published evaluation's protocol, the one window at vstart_sec)")
    p.add_argument("--hop", type=common.positive_float, default=2.4, metavar="SEC",
                   help="with --pool: seconds between window starts, rounded to a multiple of 0.32 (default 2.4, "
                        "so 2.56 s: fewer windows than predict's default 0.64, faster, less evidence per clip)")
    p.add_argument("--batch-size", type=common.positive_int, default=8, metavar="B",
                   help="windows per model call (default 8; more is faster and needs more memory)")
    p.add_argument("--seed", type=common.random_seed, default=0,
                   help="draws the offsets of clips without fixed ones (default 0: the same offsets every run)")
    p.add_argument("--cache-dir", metavar="DIR", help="keep the decoded clips in DIR, so that another run on the "
                   "same data skips decoding (default: a new temporary folder each run)")
    p.add_argument("--workers", type=common.positive_int, default=1, metavar="N",
                   help="processes decoding the clips (default 1: decode in this process)")
    return p


def run(args):
    from synchformer.errors import SynchformerError

    if args.out:  # before the model loads and the clips decode
        check_output_folder(args.out)
    if args.json:
        from synchformer.io.outputs import check_output

        check_output(args.json)
    if args.cache_dir:
        check_output_folder(args.cache_dir)
    from synchformer.inference.baseline import OnsetCorrelation
    from synchformer.constants import VIDEO_FPS
    from synchformer.features.segments import span_frames
    from synchformer.training.evaluate import eval_dataset, metrics_of, plot, pool_logits, pooled_windows, predict_dataset
    from synchformer.plots import PlotDependencyError, require_matplotlib
    from synchformer.training.synth import ceiling_of, in_file_offsets

    model = common.load(args.weights, args.device, precision=args.precision)
    cfg = model.cfg
    truth = in_file_offsets(args.data)
    if truth is not None:  # the offsets are in the files: measured as predict measures them, in ms
        from synchformer.training.evaluate import evaluate_in_file

        if cfg.head != "offset":
            raise SynchformerError(args.data, "holds offsets in the files: evaluate an offset model (stage II)")
        sync_model = common.load_syncability(args.syncability_weights, model, args.device)
        fine = common.load_fine(args.fine_weights, model, args.device)
        report = {"data": str(args.data), "weights": getattr(model, "weights_label", args.weights),
                  "syncability_weights": common.syncability_label(args.syncability_weights, sync_model),
                  "fine_weights": common.fine_label(args.fine_weights, fine),
                  "protocol": "offsets in the files, measured as predict does (hop 0.64 s)",
                  **evaluate_in_file(model, truth, timing=args.timing, sync_model=sync_model,
                                     min_sync_prob=args.min_sync_prob, fine_model=fine)}
        for name in ("class", "coarse", "refined") if fine is not None else ("class", "refined"):
            e = report[name]
            print(f"{name:8s} |error| mean {e['mean_ms']:.1f} ms  median {e['median_ms']:.1f} ms  "
                  f"p90 {e['p90_ms']:.1f} ms")
        print(f"right class {report['right_class']:.3f}; refined inside its 90% interval "
              f"{report['interval_coverage']:.3f}; after one fix inside BT.1359 (-125..+45 ms) "
              f"{report['inside_bt1359_after_fix']:.3f} of {report['clips']} clips")
        if args.out:
            out = make_folder(args.out)
            _write_json(out / "eval.json", report)
            print(f"wrote {out / 'eval.json'}")
        if args.json:
            _write_json(Path(args.json), report)
        return 0
    dataset, prep = eval_dataset(args.data, cfg, seed=args.seed, cache_dir=args.cache_dir, workers=args.workers,
                                 progress=True, timing=args.timing)
    print(prep.report(args.data))
    for path, why in prep.problems[:20]:
        print(f"  skipped {path}: {why}")
    n_clips = len(dataset)
    in_sync = dataset  # the clips and their drawn offsets, for the footage pass
    groups = starts = bound_windows = None
    if args.pool:
        if cfg.head != "offset":
            raise SynchformerError(args.weights or "bundled model", "--pool is for offset models (stage II), "
                                   "not synchronizability ones")
        dataset, groups, starts = pooled_windows(dataset, args.hop)
        bound_windows = {}
        for clip in dataset.clips:
            bound_windows.setdefault(clip.path, []).append(clip.vstart_sec)
        print(f"pooling {len(dataset)} windows of {n_clips} clips (hop {args.hop:g} s)")
    runs = {"model": model}
    if not args.no_baseline and cfg.head == "offset":
        runs["baseline (onset x motion cross-correlation)"] = OnsetCorrelation(cfg.n_segments, cfg.image_size)
    out = Path(args.out) if args.out else None
    can_plot = True
    if out:
        try:
            require_matplotlib("the eval plots")
        except PlotDependencyError as e:  # the numbers matter more than the pictures: write them, say what is missing
            can_plot = False
            print(f"note: {e}; eval.json and the logits are written without the plots", file=sys.stderr)
        make_folder(out)
    report = {"data": str(args.data), "weights": getattr(model, "weights_label", args.weights),
              "clips": n_clips,
              "protocol": "pooled windows" if args.pool else "one window", "skipped": dict(prep.skipped),
              "results": {}}
    if args.pool:
        report["windows"], report["hop_sec"] = len(dataset), args.hop
    for name, m in runs.items():
        logits, targets = predict_dataset(m.to(model.device), dataset, str(model.device), args.batch_size, True)
        if groups is not None:
            logits, targets = pool_logits(logits, targets, groups, starts, cfg.offset_grid().numpy(),
                                          span_frames(cfg.n_segments) / VIDEO_FPS)
        res = metrics_of(logits, targets, cfg.head)
        report["results"][name] = res
        print(f"{name}: " + "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in res.items()))
        if out:
            tag = "model" if name == "model" else "baseline"
            _write_torch(out / f"{tag}_logits.pt", {"logits": logits, "targets": targets})
            if can_plot:
                plot(logits, targets, cfg, out / f"{tag}_{'confusion' if cfg.head == 'offset' else 'roc'}.png",
                     f"{tag}: Acc@1 {res.get('accuracy_1', res.get('accuracy')):.3f}")
    bound = ceiling_of(args.data, cfg.n_segments, bound_windows) if cfg.head == "offset" else None
    if bound:
        report["ceiling"] = bound
        print(f"ceiling (every event found exactly; synth's events.jsonl): accuracy_1 {bound['accuracy_1']:.4f}  "
              f"accuracy_1_tol1 {bound['accuracy_1_tol1']:.4f}")
    if Path(args.data).is_dir() and not args.no_footage and cfg.head == "offset":
        report["footage"] = _footage(args, model, in_sync, prep)
    if out:
        _write_json(out / "eval.json", report)
        print(f"wrote {out / 'eval.json'}")
    if args.json:
        _write_json(Path(args.json), report)
        print(f"wrote {args.json}")
    return 0


def _footage(args, model, dataset, prep) -> dict:
    """"Does it work on my footage?": each clip shifted by its offset and read as predict reads a file."""
    from synchformer.inference.baseline import OnsetCorrelation
    from synchformer.inference.predict import Models
    from synchformer.training.footage import WRONG_SEC, footage_report, verdict

    sync_model = common.load_syncability(args.syncability_weights, model, args.device)
    fine = common.load_fine(args.fine_weights, model, args.device)
    models = Models(offset=model, syncability=sync_model, fine=fine, weights=getattr(model, "weights_label", ""),
                    syncability_weights=common.syncability_label(args.syncability_weights, sync_model),
                    fine_weights=common.fine_label(args.fine_weights, fine))
    clips = []
    for i, clip in enumerate(dataset.clips):
        gen, _ = dataset.sample_key(i)
        clips.append((clip.path, round(dataset.place(i, clip.frames, gen).offset_sec, 2)))
    base = None if args.no_baseline else OnsetCorrelation(model.cfg.n_segments, model.cfg.image_size)
    rep = footage_report(models, clips, baseline=base, progress=True)
    rep["unusable"] = [{"path": p, "why": why} for p, why in prep.problems] + rep["unusable"]
    works, line = verdict(rep)
    rep["works"], rep["verdict"] = works, line
    print(f"as predict reads them ({len(rep['clips'])} clips, each shifted by its offset; wrong: more than "
          f"{WRONG_SEC:g} s off):")
    print(f"  {'':9s}{'median |error|':>15s}{'p90 |error|':>13s}{'wrong':>7s}{'reliable':>10s}"
          f"{'reliable & wrong':>18s}")
    for name in ("model", "baseline"):
        m = rep.get(name)
        if not m:
            continue
        med = "-" if m["median_abs_error_sec"] is None else f"{1000 * m['median_abs_error_sec']:.0f} ms"
        p90 = "-" if m["p90_abs_error_sec"] is None else f"{1000 * m['p90_abs_error_sec']:.0f} ms"
        rel = f"{100 * m['reliable']:.0f}%" if "reliable" in m else "-"
        rw = f"{m['reliable_and_wrong']}" if "reliable" in m else "-"
        print(f"  {name:9s}{med:>15s}{p90:>13s}{100 * m['wrong']:>6.0f}%{rel:>10s}{rw:>18s}")
    worst = sorted(rep["clips"], key=lambda r: -abs(r["error_sec"]) if r["error_sec"] is not None else -1e9)
    shown = worst[:10]
    print(f"  clips (the {len(shown)} furthest off{'' if len(shown) == len(worst) else f' of {len(worst)}'}):")
    for r in shown:
        got = "no answer" if r["refined_sec"] is None else f"{r['refined_sec']:+.3f} s"
        err = "" if r["error_sec"] is None else f" (error {1000 * r['error_sec']:+.0f} ms)"
        print(f"    {r['path']}: truth {r['offset_sec']:+.2f} s, found {got}{err}"
              f"{', reliable' if r['reliable'] else ''}")
    for u in rep["unusable"]:
        print(f"  unusable {u['path']}: {u['why']}")
    if not works:
        line += f" (synchformer adapt {args.data} -w {args.weights or 'audioset'} -o site.safetensors)"
        rep["verdict"] = line
    print(f"verdict: {line}")
    return rep


def _write_json(path: Path, report: dict) -> None:
    write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(report, indent=2) + "\n"))


def _write_torch(path: Path, obj) -> None:
    """torch.save through a Python file: a full disk is then an OSError (write_atomic's one line), not
    torch's own RuntimeError."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    write_atomic(path, lambda tmp: Path(tmp).write_bytes(buf.getvalue()))

