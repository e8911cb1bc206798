"""``synchformer predict VIDEO...``: the offset of a video (one window with ``--start``)."""

from __future__ import annotations

import json

from synchformer.cli.common import add_device, add_weights, load


def add_parser(sub):
    p = sub.add_parser("predict", help="measure the audio-visual offset of videos")
    p.add_argument("videos", nargs="+", metavar="VIDEO")
    add_weights(p)
    p.add_argument("--start", type=float, default=None, metavar="SEC",
                   help="analyse only the window of the reference's layout: a 5 s crop at SEC, the window is "
                        "[SEC+0.08, SEC+4.88] s")
    p.add_argument("--json", action="store_true", help="one JSON object per video")
    add_device(p)
    return p


def run(args) -> int:
    from synchformer.inference import predict_window

    model = load(args.weights, args.device)
    for video in args.videos:
        result = predict_window(model, video, start_sec=args.start or 0.0)
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
