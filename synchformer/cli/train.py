"""``synchformer train STAGE --config FILE [key=value ...]``: stage I, II or III; ``torchrun`` for many GPUs."""

from __future__ import annotations

import json

from synchformer.constants import STAGES


def add_parser(sub):
    p = sub.add_parser("train", help="train a stage: contrastive (I), sync (II) or synchronizability (III)",
                       description="Train one stage of Synchformer. Settings: the stage's defaults (the paper's "
                       "settings), then --config (JSON), then key=value overrides such as optim.lr=1e-4 "
                       "data.train=clips/ out_dir=runs/s2. Runs resume from out_dir's last checkpoint. For "
                       "several GPUs or processes: torchrun --nproc_per_node N -m synchformer train ...")
    p.add_argument("stage", choices=STAGES, help="contrastive: the two encoders (stage I); sync: the offset "
                   "model on top of them (stage II, or a fine-offset model); synchronizability: stage III")
    p.add_argument("--config", "-c", help="JSON file with the settings that differ from the stage's defaults")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. optim.lr=1e-4 data.batch_size=8")
    p.add_argument("--print-config", action="store_true", help="print the resolved settings and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bar (default: one, on stderr)")
    p.set_defaults(takes_overrides=True)
    return p


def run(args):
    from synchformer.training.config import load_config

    cfg = load_config(args.stage, args.config, args.overrides)
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    from synchformer.training.loop import train

    summary = train(cfg, progress=not args.quiet)
    if summary.pop("rank") == 0:
        print(json.dumps(summary))
    return 0
