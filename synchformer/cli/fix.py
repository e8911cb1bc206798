"""``synchformer fix VIDEO -o OUT [--offset SEC]``: a copy with the sound moved into sync."""

from __future__ import annotations

import json
import sys

from synchformer.cli.common import (add_audio_track, add_device, add_fine, add_max_windows, add_precision,
                                    add_syncability, add_timing, add_weights, check_device, fine_label,
                                    finite_float, load, load_fine, load_syncability, positive_float, probability)
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
        from synchformer.inference.analyze import analyze
        from synchformer.constants import BT1359_SEC
        from synchformer.inference.verdict import two_decimals

        model = load(args.weights, args.device, head="offset", precision=args.precision)
        sync_model = load_syncability(args.syncability_weights, model, args.device)
        fine = load_fine(args.fine_weights, model, args.device)
        result = analyze(model, args.video, hop_sec=args.hop, sync_model=sync_model, timing=args.timing,
                         max_windows=args.max_windows, keep_visual=fine is not None, audio_track=choice)
        track = result.audio_track
        summary = result.summarize(min_sync_prob=args.min_sync_prob, fine_model=fine)
        if summary.offset_sec is None:
            raise SynchformerError(args.video, f"no offset to fix: {summary.message}")
        if not summary.reliable and not args.force:  # shifting a file by noise is the worst this tool can do
            raise SynchformerError(args.video, f"not fixed: the measured offset {summary.offset_sec:+.2f} s is not "
                                               f"reliable ({'; '.join(summary.reasons)}); nothing written "
                                               "(--offset SEC to give it, --force to use it anyway)")
        if summary.confidence < args.min_confidence:
            raise SynchformerError(args.video, f"the measured offset {summary.offset_sec:+.2f} s has confidence "
                                               f"{two_decimals(summary.confidence)} < --min-confidence {args.min_confidence}")
        # the refined offset, not the 0.2 s class: a fix that leaves up to 100 ms is a failed fix (BT.1359)
        offset = round(float(summary.refined_offset_sec), 3)
        # left alone only when the whole 90 % interval is inside the window: a -100 ms reading whose truth may be
        # -140 ms is not "in sync"
        lo, hi = summary.refined_interval_sec
        in_sync = BT1359_SEC[0] <= lo and hi <= BT1359_SEC[1]
        drift = summary.drift is not None and summary.drift.detected
        jumps = [e for e in result.audio_events if e.kind in ("gap", "overlap")]
        measured = {"offset_sec": offset, "class_offset_sec": summary.offset_sec,
                    "refined_interval_sec": [round(x, 3) for x in summary.refined_interval_sec],
                    "confidence": summary.confidence, "agreement": summary.agreement,
                    "timing": result.timing, "sampled": result.sampled,
                    "fine_weights": fine_label(args.fine_weights, fine),
                    "audio_track": track.to_dict() if track else None,
                    "audio_events": [e.to_dict() for e in result.audio_events],
                    "drift_detected": drift, "reliable": summary.reliable, "reasons": summary.reasons}
        if drift:  # one constant shift cannot undo a drift: say so, the file is still shifted by the average
            print(f"synchformer: warning: {args.video}: {summary.drift.reason}; a constant shift corrects only "
                  "the average offset", file=sys.stderr)
        if jumps:  # measured as a player that honours timestamps plays it; one shift cannot mend the hole
            print(f"synchformer: warning: {args.video}: its audio timestamps jump ("
                  f"{'; '.join(e.describe() for e in jumps[:3])}{'; ...' if len(jumps) > 3 else ''}); one constant "
                  "shift cannot repair a gap: players that join the audio end to end stay off by its length after "
                  "it", file=sys.stderr)
        if in_sync and not args.force:  # nobody notices it (ITU-R BT.1359): nothing to do
            print(f"{args.video}: in sync (measured {offset * 1000:+.0f} ms, 90% interval {lo * 1000:+.0f} to "
                  f"{hi * 1000:+.0f} ms, inside BT.1359's -125..+45 ms; confidence {two_decimals(summary.confidence)}); "
                  f"nothing written (--force to write a copy anyway)")
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
