"""``synchformer adapt DIR -w audioset -o site.safetensors``: tune a model on a few of your own in-sync videos."""

from __future__ import annotations

from . import common


def add_parser(sub):
    from synchformer.training.adapt import MIN_CLIPS, TUNE_CHOICES, Settings

    d = Settings()
    p = sub.add_parser(
        "adapt", help="tune the model on your own footage: a folder of videos that are in sync, no labels needed",
        description="Tune an offset model on DIR, a folder of your own videos whose sound and pictures are in sync "
        "(or a CSV with a path column). The videos are shifted by known offsets, so they need no labels. They are "
        "split by clip into a tuning set and a held-out set (never windows of one clip on both sides); the model "
        "is measured on the held-out clips, its sync transformer and the query side of the visual encoder's "
        "spatial pooling are tuned with the encoders otherwise frozen (their outputs computed once per clip; "
        "--tune), stopped early when the held-out loss stops falling, and measured again "
        "on the same held-out clips. The new model is written to OUT only if it is better there (or with "
        "--force); otherwise nothing is written and the command says so (exit 0). OUT works wherever --weights "
        "is taken (predict, fix, score, eval, explain). Everything a run makes lives in OUT.work/ until it ends, "
        f"so an interrupted run (Ctrl-C, a kill) is resumed by the same command. Needs at least {MIN_CLIPS} "
        "usable clips of at least 6.8 s (each is read up to --max-clip-sec); 40 clips of 10 s are enough, more "
        "help. Run `synchformer eval DIR` first to see whether the model needs it.")
    p.add_argument("data", metavar="DIR", help="folder of in-sync videos (searched recursively), or a CSV with a "
                   "path column")
    common.add_weights(p)
    p.add_argument("--output", "-o", required=True, metavar="OUT.safetensors",
                   help="the tuned model to write (a new file, unless --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    p.add_argument("--force", action="store_true", help="write OUT even when the tuned model is not better on the "
                   "held-out clips (default: only when it is)")
    p.add_argument("--keep-all", action="store_true",
                   help="also tune on clips that do not look in sync to the model (default: a clip it finds "
                        "reliably more than 0.3 s from 0 is listed and left out: tuning on it would teach a wrong "
                        "offset as 0)")
    p.add_argument("--max-minutes", type=common.positive_float, default=d.max_minutes, metavar="M",
                   help=f"stop tuning when the run has taken M minutes (default {d.max_minutes:g}), keeping the "
                        "best weights so far; reading and encoding the clips comes first and is not cut short")
    p.add_argument("--held-out", type=_share, default=d.held_out, metavar="SHARE",
                   help=f"share of the clips held out to judge the result (default {d.held_out:g}; at least 6 "
                        "clips). More makes the judgement surer and leaves fewer clips to tune on")
    p.add_argument("--seed", type=common.random_seed, default=d.seed,
                   help="draws the split and the held-out offsets (default 0: the same every run)")
    p.add_argument("--lr", type=common.positive_float, default=d.lr, help=f"learning rate (default {d.lr:g})")
    p.add_argument("--tune", choices=TUNE_CHOICES, default=d.tune,
                   help="what is tuned, the encoders otherwise frozen: 'pooling' (default) the sync transformer and "
                        "the query side of the visual encoder's spatial pooling (what in the picture each segment "
                        "attends to); on new footage it gained more and forgot less of what the model knew, and its "
                        "cache is as many times larger as a frame has patches (about 72 MB per 10 s clip for the "
                        "released model). 'sync': the sync transformer only")
    p.add_argument("--max-clip-sec", type=common.float_at_least(6.8), default=d.max_clip_sec, metavar="SEC",
                   help=f"read at most the first SEC seconds of each clip (default {d.max_clip_sec:g}); longer "
                        "reads give more windows per clip and take more time and disk")
    p.add_argument("--keep-work", action="store_true", help="keep OUT.work/ (decoded clips, features, "
                   "checkpoints) when the run ends (default: removed)")
    p.add_argument("--json", metavar="FILE", help="also write the report (split, left-out clips, before/after "
                   "numbers) as JSON to FILE")
    p.add_argument("--threads", type=common.positive_int, metavar="N",
                   help="CPU threads for the model (default: torch's, one per core). On a machine busy with other "
                        "work, fewer threads than cores can be many times faster (measured: docs/benchmarks.md)")
    common.add_device(p)
    common.add_precision(p)
    return p


def _share(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise ValueError(text)
    return value


_share.__name__ = "share (a number between 0 and 1)"


def run(args) -> int:
    import json
    from pathlib import Path

    from synchformer.errors import SynchformerError
    from synchformer.io.outputs import check_output, write_atomic
    from synchformer.training.adapt import Settings, adapt, work_dir_of

    out = Path(args.output)
    # before any model loads or clip decodes: a file we may write, not one already there
    if out.suffix.lower() != ".safetensors":
        raise SynchformerError(out, "must end in .safetensors (the tuned model is written in that format)")
    if out.exists() and not args.overwrite:
        raise SynchformerError(out, "already exists: pass --overwrite to replace it, or choose another name")
    check_output(out, inputs=[p for p in (args.weights,) if p and Path(p).is_file()])
    if args.json:
        check_output(args.json)
    if not Path(args.data).exists():
        raise SynchformerError(args.data, "does not exist (expected a folder of in-sync videos or a CSV)")
    common.check_device(args.device)
    settings = Settings(seed=args.seed, held_out=args.held_out, max_minutes=args.max_minutes, lr=args.lr,
                        max_clip_sec=args.max_clip_sec, keep_all=args.keep_all, force=args.force, tune=args.tune)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if work_dir_of(out).exists():
        print(f"resuming the run in {work_dir_of(out)}")
    report = adapt(args.data, args.weights, out, settings, device=args.device, precision=args.precision,
                   keep_work=args.keep_work)
    if args.json:
        write_atomic(args.json, lambda tmp: Path(tmp).write_text(json.dumps(report, indent=2) + "\n"))
    return 0
