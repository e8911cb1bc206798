"""``synchformer features VIDEO... -o OUT``: segment features for downstream (MMAudio-style) models."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synchformer.cli.common import (add_audio_track, add_device, add_precision, add_timing, add_weights,
                                    check_device, int_at_least, load)
from synchformer.io.outputs import check_output, check_output_folder, make_folder, protect_inputs, write_atomic
from synchformer.errors import SynchformerError

FORMATS = (".npy", ".safetensors")
CROP = 224  # the centre crop the released models take


def add_parser(sub):
    p = sub.add_parser("features", help="visual (and audio) segment features of whole videos, as MMAudio uses them",
                       description="Write the features the model's encoders give for every 0.64 s segment of each "
                       "video (one every 0.32 s), as MMAudio-style generators take them: visual (S*8, 768) and, "
                       "with --audio, audio (S*6, 768) for the released models.")
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files (or stream URLs)")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("-o", "--output", metavar="FILE", help="one video: FILE.npy (visual (S*8, 768); the audio, "
                     "with --audio, in FILE.audio.npy) or FILE.safetensors (vfeats, afeats with --audio, "
                     "segment_start_sec); an existing FILE is replaced")
    out.add_argument("--out-dir", metavar="DIR", help="one or many videos: DIR/<video name>.<format> each "
                     "(DIR is created, with its parents, if missing; existing files are replaced)")
    p.add_argument("--format", choices=["npy", "safetensors"], default="safetensors",
                   help="the file format with --out-dir (default: safetensors, one file with every array; npy: "
                        "plain numpy arrays, the audio in <name>.audio.npy)")
    p.add_argument("--audio", action="store_true", help="also the audio features (S*6, 768); default: visual only")
    p.add_argument("--size", type=int_at_least(CROP), default=224, metavar="PX",
                   help="short side the frames are resized to before the 224 x 224 centre crop (at least 224; "
                        "default 224, as MMAudio prepares frames; 256 as the published evaluation does: the crop "
                        "then keeps less of the picture's sides)")
    add_weights(p)
    add_timing(p)
    add_audio_track(p, what="take the audio features from (with --audio)")
    add_device(p)
    add_precision(p)
    return p


def outputs(args) -> list[Path]:
    """The files to write, one per video, checked before any work: a name features can write, in a folder that
    can be written (or created), no two videos on one name, never over an input."""
    if args.output:
        if len(args.videos) > 1:
            raise SynchformerError(args.output, "-o takes one video; use --out-dir for several")
        out = Path(args.output)
        if out.suffix not in FORMATS:
            raise SynchformerError(out, f"the output must end in {' or '.join(FORMATS)}")
        targets = [out]
    else:
        folder = check_output_folder(args.out_dir)
        targets, by_name = [], {}
        for video in args.videos:
            out = folder / f"{Path(video).stem}.{args.format}"
            other = by_name.setdefault(out, video)
            if other != video and Path(other).resolve() != Path(video).resolve():  # (the same file twice: alike)
                raise SynchformerError(video, f"has the same name as {other}: both would be written to {out}; "
                                              "rename one, or give them separate --out-dir runs")
            targets.append(out)
    for out in targets:
        for path in [out, *([out.with_name(f"{out.stem}.audio.npy")] if out.suffix == ".npy" and args.audio
                            else [])]:
            if args.output or path.parent.is_dir():
                check_output(path, args.videos)
            else:
                protect_inputs(path, args.videos)
    return targets


def _write_bytes(tmp: str, data: bytes) -> None:
    with open(tmp, "wb") as f:  # into write_atomic's file: a failed write (a full disk) is an OSError it reports
        f.write(data)


def _write_npy(tmp: str, array: np.ndarray) -> None:
    with open(tmp, "wb") as f:
        np.save(f, array)


def save(path: Path, feats: dict[str, np.ndarray], timing: str = "true") -> None:
    if path.suffix == ".npy":
        write_atomic(path, lambda tmp: _write_npy(tmp, feats["vfeats"]))
        if "afeats" in feats:
            write_atomic(path.with_name(f"{path.stem}.audio.npy"), lambda tmp: _write_npy(tmp, feats["afeats"]))
    else:
        from safetensors.numpy import save

        meta = {"fps": "25", "segment_frames": "16", "stride_frames": "8"}
        if "afeats" in feats:  # how the audio behind them was placed
            meta["timing"] = timing
        # serialized here and written by Python: safetensors' own file writer reports a full disk as an
        # exception of its own and replaces the (private) temporary file
        data = save({k: np.ascontiguousarray(v) for k, v in feats.items()}, metadata=meta)
        write_atomic(path, lambda tmp: _write_bytes(tmp, data))


def run(args) -> int:
    targets = outputs(args)
    from synchformer.io.decode import check_media

    check_device(args.device)  # the arguments first, then the inputs, then the weights
    for video in args.videos:
        check_media(video, audio=args.audio, audio_track=args.audio_track)
    if args.out_dir:
        make_folder(args.out_dir)
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
