"""``synchformer features VIDEO... -o OUT``: segment features for downstream (MMAudio-style) models."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synchformer.cli.common import (add_audio_track, add_device, add_precision, add_timing, add_weights,
                                    check_device, load)
from synchformer.io.outputs import protect_inputs, write_atomic
from synchformer.errors import SynchformerError

FORMATS = (".npy", ".safetensors")


def add_parser(sub):
    p = sub.add_parser("features", help="visual (and audio) segment features of whole videos, as MMAudio uses them")
    p.add_argument("videos", nargs="+", metavar="VIDEO")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("-o", "--output", metavar="FILE", help="one video: FILE.npy (visual (S*8, 768)) or "
                     "FILE.safetensors (vfeats, afeats with --audio, segment_start_sec)")
    out.add_argument("--out-dir", metavar="DIR", help="many videos: DIR/<name>.<format>")
    p.add_argument("--format", choices=["npy", "safetensors"], default="safetensors", help="with --out-dir")
    p.add_argument("--audio", action="store_true", help="also the audio features (S*6, 768)")
    p.add_argument("--size", type=int, default=224, help="short side before the 224 centre crop (224: MMAudio's "
                   "preprocessing, the default; 256: the reference's)")
    add_weights(p)
    add_timing(p)
    add_audio_track(p, what="take the audio features from (with --audio)")
    add_device(p)
    add_precision(p)
    return p


def outputs(args) -> list[Path]:
    if args.output:
        if len(args.videos) > 1:
            raise SynchformerError(args.output, "-o takes one video; use --out-dir for several")
        out = Path(args.output)
        if out.suffix not in FORMATS:
            raise SynchformerError(out, f"the output must end in {' or '.join(FORMATS)}")
        return [out]
    folder = Path(args.out_dir)
    if not folder.is_dir():
        raise SynchformerError(folder, "is not a folder")
    names = [Path(v).stem for v in args.videos]
    if len(set(names)) < len(names):
        raise SynchformerError(folder, "two videos have the same name; their features would overwrite each other")
    return [folder / f"{n}.{args.format}" for n in names]


def save(path: Path, feats: dict[str, np.ndarray], timing: str = "true") -> None:
    if path.suffix == ".npy":
        write_atomic(path, lambda tmp: np.save(tmp, feats["vfeats"]))
        if "afeats" in feats:
            audio = path.with_name(f"{path.stem}.audio.npy")
            write_atomic(audio, lambda tmp: np.save(tmp, feats["afeats"]))
    else:
        from safetensors.numpy import save_file

        meta = {"fps": "25", "segment_frames": "16", "stride_frames": "8"}
        if "afeats" in feats:  # how the audio behind them was placed
            meta["timing"] = timing
        write_atomic(path, lambda tmp: save_file({k: np.ascontiguousarray(v) for k, v in feats.items()}, tmp,
                                                 metadata=meta))


def run(args) -> int:
    targets = outputs(args)
    for out in targets:
        protect_inputs(out, args.videos)
    from synchformer.io.decode import check_media

    check_device(args.device)  # the arguments first, then the inputs, then the weights
    for video in args.videos:
        check_media(video, audio=args.audio, audio_track=args.audio_track)
    from synchformer.inference.embed import extract_features

    model = load(args.weights, args.device, sync_head=False, precision=args.precision)
    for video, out in zip(args.videos, targets):
        feats = extract_features(model, video, audio=args.audio, size=args.size, timing=args.timing,
                                 audio_track=args.audio_track)
        save(out, feats, args.timing or model.cfg.timing)
        print(f"{video}: {feats['vfeats'].shape[0] // model.cfg.v_tokens} segments -> {out} "
              f"(vfeats {tuple(feats['vfeats'].shape)}" + (f", afeats {tuple(feats['afeats'].shape)}"
                                                          if args.audio else "") + ")")
    return 0
