"""``synchformer explain VIDEO -o fig.png``: which moments of a window the offset decision rests on."""

from __future__ import annotations

import argparse
import json

from synchformer.cli.common import (add_audio_track, add_device, add_precision, add_timing, add_weights,
                                    check_device, load, non_negative_float)


def _target(text: str):
    import math

    if text == "predicted":
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected 'predicted' or an offset in seconds, got {text!r}")
    return value


def add_parser(sub):
    p = sub.add_parser("explain", help="show which moments of a window the offset decision rests on",
                       description="Attribution of one window's offset decision over its 14 segments (and their "
                                   "tokens), picture and sound separately. Score = drop in log P(target offset) "
                                   "when that part is replaced by the mean of the window's other segments.")
    p.add_argument("video", metavar="VIDEO", help="a video file (or stream URL)")
    p.add_argument("-o", "--output", metavar="FIG", help="also draw the figure (the window's frames and waveform "
                   "over the segments' scores) into FIG: .png, .pdf or .svg; needs matplotlib. Default: the top "
                   "segments are only printed")
    add_weights(p)
    add_timing(p)
    add_audio_track(p, what="explain")
    p.add_argument("--start", type=non_negative_float, default=0.0, metavar="SEC",
                   help="the window to explain: the 4.8 s from SEC, counted from the file's first video frame, "
                        "as `predict --start SEC` reads it (default 0)")
    p.add_argument("--target", type=_target, default=None, metavar="predicted|SEC",
                   help="the offset class to explain, in seconds: one of the model's classes (-2.0 to +2.0 in "
                        "0.2 s steps for the released ones; positive: the audio leads); default: the predicted one")
    p.add_argument("--method", choices=("occlusion", "gradient"), default="occlusion",
                   help="occlusion (default): the sync transformer re-run per occluded segment/token; gradient: "
                        "gradient x (token - baseline), one backward pass: much faster, but a first-order estimate")
    p.add_argument("--segments-only", action="store_true", help="occlusion per segment only, not per token "
                                                                "(about 7x fewer transformer passes)")
    p.add_argument("--json", action="store_true", help="print the scores as one JSON object instead of the text")
    add_device(p)
    add_precision(p)
    return p


def run(args) -> int:
    from synchformer.plots import check_figure_output
    from synchformer.io.decode import check_media

    if args.output is not None:  # fail before the minutes of work
        check_figure_output(args.output, [args.video, *([args.weights] if args.weights else [])],
                            "the explain figure")
    check_device(args.device)  # the arguments first, then the input, then the weights
    check_media(args.video, audio_track=args.audio_track)
    from synchformer.inference.explain import explain_window
    from synchformer.plots.explain import save_figure
    from synchformer.inference.distributions import describe_offset

    model = load(args.weights, args.device, head="offset", precision=args.precision)
    warning = getattr(model, "load_warning", None)
    ex = explain_window(model, args.video, start_sec=args.start, target_sec=args.target, method=args.method,
                        tokens=not args.segments_only, timing=args.timing, audio_track=args.audio_track)
    if args.output is not None:
        save_figure(ex, args.output, inputs=[args.weights] if args.weights else [], warning=warning)
    if args.json:
        print(json.dumps({**ex.to_dict(), "weights": getattr(model, "weights_label", args.weights),
                          "warnings": [warning] if warning else [], "figure": args.output,
                          "timing": args.timing or model.cfg.timing}))
        return 0
    print(f"{args.video}  window {ex.start_sec:.2f}-{ex.end_sec:.2f} s")
    print(f"  offset {ex.offset_sec:+.2f} s ({describe_offset(ex.offset_sec)}), p={ex.probability:.3f}")
    print(f"  explaining {ex.target_sec:+.2f} s ({'as asked' if ex.target_given else 'predicted'}), "
          f"p={float(ex.probs[ex.target]):.3f}, by {ex.method}: drop in log p per segment")
    starts = ex.segment_starts()
    for name, scores in (("picture", ex.visual_segment), ("sound", ex.audio_segment)):
        top = scores.argsort(descending=True)[:3].tolist()
        print(f"  {name + ':':9}" + "  ".join(f"{starts[s]:.2f}-{starts[s] + 0.64:.2f} s {float(scores[s]):+.3g}"
                                              for s in top))
    if warning:
        print(f"  warning: {warning}")
    if args.output is not None:
        print(f"  figure: {args.output}")
    return 0
