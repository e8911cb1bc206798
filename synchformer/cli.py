"""Command line: ``synchformer predict``, ``synchformer convert``.

Errors caused by the input (a missing file, a video without sound, a bad checkpoint) print one line and
exit with code 2; they never show a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from synchformer.errors import SynchformerError

RELEASED = "24-01-04T16-39-21.pt (AudioSet), 24-01-02T10-00-53.pt (VGGSound), 23-12-23T18-33-57.pt (LRS3)"


def _device(name: str):
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _load(weights: str | None, device: str):
    from synchformer.model import load_model

    if weights is None:
        raise SynchformerError(None, f"no weights given: pass --weights with a released checkpoint ({RELEASED}) "
                                     "or a file made by `synchformer convert`")
    return load_model(weights, device=_device(device))


def cmd_predict(args) -> int:
    from synchformer.inference import predict_window

    model = _load(args.weights, args.device)
    for video in args.videos:
        result = predict_window(model, video, start_sec=args.start)
        if args.json:
            print(json.dumps({**result.to_dict(), "weights": args.weights}))
            continue
        span = f"window {result.start_sec:.2f}-{result.end_sec:.2f} s"
        if result.head == "synchronizability":
            print(f"{video}  {span}  synchronizable: p={result.probability:.3f}")
            continue
        off = result.offset_sec
        what = "in sync" if off == 0 else f"audio {'leads' if off > 0 else 'lags'} the video by {abs(off):.2f} s"
        print(f"{video}  {span}")
        print(f"  offset {off:+.2f} s ({what}), p={result.probability:.3f}")
        print("  top-5: " + "  ".join(f"{t['offset_sec']:+.2f} s p={t['probability']:.3f}" for t in result.top(5)))
    return 0


def cmd_convert(args) -> int:
    from synchformer.model import load_model, save_model

    src, dst = Path(args.input), Path(args.output)
    if dst.suffix != ".safetensors":
        raise SynchformerError(dst, "the output name must end in .safetensors")
    model = load_model(src)
    digest = save_model(model, dst, protect=[src], extra={"converted_from": src.name})
    print(f"wrote {dst} ({model.cfg.head} head, {model.cfg.n_segments} segments) sha256 {digest}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="synchformer", description="Find and fix audio-visual offsets in videos. "
                                     "Offsets are positive when the audio leads the video.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("predict", help="offset of the 4.8 s window at --start of each video")
    p.add_argument("videos", nargs="+", metavar="VIDEO")
    p.add_argument("--weights", "-w", help=f"checkpoint: a released .pt ({RELEASED}), a stage III "
                   "synchronizability .pt, or a .safetensors from `synchformer convert`")
    p.add_argument("--start", type=float, default=0.0, metavar="SEC",
                   help="where the 5 s crop starts; the window is [start+0.08, start+4.88] s (default 0)")
    p.add_argument("--json", action="store_true", help="one JSON object per video")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("convert", help="convert a released checkpoint to the package's .safetensors format")
    p.add_argument("input", metavar="IN.pt")
    p.add_argument("output", metavar="OUT.safetensors")
    p.set_defaults(func=cmd_convert)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SynchformerError as e:
        print(f"synchformer: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("synchformer: interrupted", file=sys.stderr)
        return 130
