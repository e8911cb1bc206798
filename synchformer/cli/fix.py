"""``synchformer fix VIDEO -o OUT [--offset SEC]``: a copy with the sound moved into sync."""

from __future__ import annotations

import json
import sys

from synchformer.cli.common import (OPTIONS, add_audio_track, add_device, add_fine, add_max_windows, add_precision,
                                    add_syncability, add_timing, add_weights, check_device, finite_float,
                                    positive_float, probability)
from synchformer.errors import SynchformerError


def add_parser(sub):
    p = sub.add_parser("fix", help="write a corrected copy: the audio moved by the measured (or given) offset, "
                       "the video copied bit for bit")
    p.add_argument("video", metavar="VIDEO", help="the video to correct (it is only read)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="the corrected file (never the input); its "
                   "extension picks the container (.mkv .mp4 .mov .ts .flv .nut .avi ...)")
    p.add_argument("--offset", type=finite_float, metavar="SEC", help="the offset to remove (positive: the audio "
                   "leads, so it is delayed); default: measure it with --weights (the refined offset, to the ms)")
    p.add_argument("--hop", type=positive_float, default=0.64, metavar="SEC",
                   help="when measuring: time between window starts, rounded to a multiple of 0.32 s (default "
                        "0.64; larger is faster and gives the offset fewer windows of evidence)")
    add_max_windows(p, " when measuring")
    p.add_argument("--min-confidence", type=probability, default=0.0, metavar="P",
                   help="refuse to fix when the measured offset's confidence (0 to 1) is below P (default 0: "
                        "only the reliability verdict decides)")
    p.add_argument("--force", action="store_true", help="write the copy even when the measured offset is not "
                   "reliable (it is refused by default, with the reasons) or when the file is already in sync")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists (never the input)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_weights(p)
    add_syncability(p)
    add_fine(p)
    add_timing(p)
    add_audio_track(p, allow_all=True, what="measure and move (the other tracks are copied as they are)")
    add_device(p)
    add_precision(p)
    return p


def run(args) -> int:
    from synchformer.io.decode import check_media, pick_audio_track
    from synchformer.io.fix import shift_audio

    from pathlib import Path

    if Path(args.output).exists() and not args.overwrite and Path(args.output).resolve() != Path(args.video).resolve():
        raise SynchformerError(args.output, "already exists: pass --overwrite to replace it")
    _check_output(args)  # before the minutes of measuring
    every_track = args.audio_track == "all"
    choice = None if every_track else args.audio_track
    measured = None
    offset = args.offset
    if offset is None:
        check_device(args.device)  # the arguments first, then the input, then the weights
        check_media(args.video, audio_track=choice)
        from synchformer.inference.predict import decide_fix, load_models, predict

        models = load_models(args.weights, syncability=args.syncability_weights, fine=args.fine_weights,
                             device=args.device, precision=args.precision, options=OPTIONS)
        if args.weights is None and models.warnings:  # the bundled model stood in
            print(f"synchformer: warning: {models.warnings[0]}", file=sys.stderr)
        p = predict(args.video, models=models, audio_track=choice, hop_sec=args.hop, max_windows=args.max_windows,
                    min_sync_prob=args.min_sync_prob, timing=args.timing)
        decision = decide_fix(p, force=args.force, min_confidence=args.min_confidence)
        s, track = p.summary, p.analysis.audio_track
        if decision.action == "refuse":
            raise SynchformerError(args.video, f"not fixed: {decision.why}; nothing written"
                                   + (" (--offset SEC to give it, --force to use it anyway)"
                                      if decision.offset_sec is not None and not s.reliable else ""))
        offset = decision.offset_sec
        measured = {"offset_sec": offset, "class_offset_sec": s.offset_sec,
                    "refined_interval_sec": [round(x, 3) for x in s.refined_interval_sec],
                    "confidence": s.confidence, "agreement": s.agreement, "timing": p.analysis.timing,
                    "sampled": p.analysis.sampled, "fine_weights": p.fine_weights,
                    "audio_track": track.to_dict() if track else None,
                    "audio_events": [e.to_dict() for e in p.analysis.audio_events],
                    "drift_detected": s.drift is not None and s.drift.detected, "reliable": s.reliable,
                    "reasons": s.reasons}
        for warning in decision.warnings:  # what one constant shift cannot mend
            print(f"synchformer: warning: {args.video}: {warning}", file=sys.stderr)
        if decision.action == "leave":  # nobody notices it (ITU-R BT.1359): nothing to do
            print(f"{args.video}: {decision.why}; nothing written (--force to write a copy anyway)")
            return 0
    else:
        track = None if every_track else pick_audio_track(args.video, choice)
    report = shift_audio(args.video, args.output, offset, overwrite=args.overwrite,
                         audio_stream=None if every_track or track is None else track.stream_index)
    report["measured"] = measured
    report["audio_track"] = "all" if every_track else track.to_dict()
    left = [f"#{st['index']} {st['type']} ({st['codec']}): {st['action'].removeprefix('left out ').strip('()')}"
            for st in report["streams"] if st["action"].startswith("left out")]
    if left:  # what the output's container cannot hold is said, not dropped in silence
        print(f"synchformer: warning: {args.output}: left out {'; '.join(left)}", file=sys.stderr)
    if args.json:
        print(json.dumps(report))
    else:
        how = "measured" if measured else "given"
        moved = "delayed" if offset > 0 else "advanced" if offset < 0 else "left as it was"
        n_audio = sum(1 for st in report["streams"] if st["type"] == "audio")
        which = ("audio" if n_audio == 1 else "every audio track" if every_track
                 else f"audio {track.describe()}")
        print(f"{args.video}: offset {offset:+.3f} s ({how}); {which} {moved}"
              + (f" by {abs(report['audio_shift_sec']):.3f} s" if offset else "")
              + f" ({report['method']}" + (", the other tracks copied as they are" if n_audio > 1 and not every_track
                                           else "") + f") -> {args.output}")
    return 0


def _check_output(args) -> None:
    """OUT before any work: a container the extension names, in a folder that can be written, not the input."""
    import os

    from synchformer.io.outputs import check_output

    check_output(args.output, [args.video])
    ext = os.path.splitext(args.output)[1] or os.path.splitext(args.video)[1]
    import av

    try:
        with av.open(f"x{ext}", "w"):  # picks the muxer by the extension; creates no file
            pass
    except ValueError:
        raise SynchformerError(args.output, f"no output format for the extension {ext!r}") from None
