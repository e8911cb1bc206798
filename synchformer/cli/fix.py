"""``synchformer fix VIDEO -o OUT [--offset SEC]``: a copy with the sound moved into sync."""

from __future__ import annotations

import json
import sys

from synchformer.cli.common import (OPTIONS, add_audio_track, add_device, add_fine, add_max_windows, add_precision,
                                    add_syncability, add_timing, add_weights, check_device, finite_float,
                                    positive_float, probability)
from synchformer.cli.common import add_max_offset, add_tolerance
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
    add_max_offset(p, " when measuring")
    p.add_argument("--min-confidence", type=probability, default=0.0, metavar="P",
                   help="refuse to fix when the measured offset's confidence (0 to 1) is below P (default 0: "
                        "only the reliability verdict decides)")
    add_tolerance(p, "a file whose measured offset's 90%% interval lies wholly inside it is left alone (nothing "
                     "written)")
    p.add_argument("--force", action="store_true", help="write the copy even when the measured offset is not "
                   "reliable (it is refused by default, with the reasons) or when the file is already in sync")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists (never the input)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_weights(p)
    add_syncability(p)
    add_fine(p)
    add_timing(p)
    add_audio_track(p, allow_all=True, what="measure and move (the other tracks are copied as they are); with "
                                            "--audio: the sound file's track")
    p.add_argument("--audio", metavar="FILE", default=None,
                   help="a separately recorded sound (any format ffmpeg reads) to put in place of VIDEO's own: its "
                        "offset against the pictures is measured as predict VIDEO --audio FILE does (give "
                        "--max-offset to cover how far apart the recordings may have started, e.g. 60), and OUT holds "
                        "VIDEO's picture with the sound moved into place (the video's own sound is left out). "
                        "Written whenever the measurement is reliable, even inside --tolerance. Default: fix "
                        "VIDEO's own sound")
    add_device(p)
    add_precision(p)
    return p


def run(args) -> int:
    if args.audio is not None:
        return _run_with_sound(args)
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
        from synchformer.inference.predict import decide_fix, predict

        models = _load_models(args)
        p = predict(args.video, models=models, audio_track=choice, hop_sec=args.hop, max_windows=args.max_windows,
                    min_sync_prob=args.min_sync_prob, timing=args.timing, max_offset_sec=args.max_offset)
        decision = decide_fix(p, force=args.force, min_confidence=args.min_confidence, tolerance=args.tolerance)
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
        if decision.action == "leave":  # nobody notices it (inside --tolerance): nothing to do
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


def _run_with_sound(args) -> int:
    """``fix VIDEO --audio FILE -o OUT``: the picture with the separate sound moved into place."""
    from pathlib import Path

    from synchformer.io.decode import audio_tracks, check_media
    from synchformer.io.mux import replace_audio

    if Path(args.output).exists() and not args.overwrite:
        raise SynchformerError(args.output, "already exists: pass --overwrite to replace it")
    if args.audio_track == "all":
        raise SynchformerError(args.audio, "--audio takes one track of the sound file, not --audio-track all")
    _check_output(args, [args.video, args.audio])
    check_media(args.video, audio=False)  # its own sound is not needed
    if not audio_tracks(args.audio):
        raise SynchformerError(args.audio, "has no audio stream")
    measured, offset = None, args.offset
    if offset is None:
        check_device(args.device)
        from synchformer.inference.predict import decide_fix, predict

        models = _load_models(args)
        p = predict(args.video, models=models, audio=args.audio, audio_track=args.audio_track, hop_sec=args.hop,
                    max_windows=args.max_windows, min_sync_prob=args.min_sync_prob, timing=args.timing,
                    max_offset_sec=args.max_offset)
        decision = decide_fix(p, force=True, min_confidence=args.min_confidence, tolerance=args.tolerance)
        if not p.reliable and not args.force:
            raise SynchformerError(args.video, f"not fixed: the sound's place is not reliable "
                                               f"({'; '.join(p.reasons)}); nothing written (--offset SEC to give "
                                               "it, --force to use it anyway)")
        if decision.action == "refuse" or decision.offset_sec is None:
            raise SynchformerError(args.video, f"not fixed: {decision.why}; nothing written")
        offset = decision.offset_sec
        measured = {"offset_sec": offset, "refined_interval_sec": [round(x, 3) for x in p.refined_interval_sec],
                    "confidence": p.confidence, "reliable": p.reliable, "reasons": p.reasons,
                    "search": p.search.to_dict() if p.search else None}
    report = replace_audio(args.video, args.audio, args.output, offset, sound_track=args.audio_track,
                           overwrite=args.overwrite)
    report["measured"] = measured
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{args.video}: {args.audio} placed to start at {offset:+.3f} s of the video "
              f"({'measured' if measured else 'given'}; {report['method']}) -> {args.output}")
    return 0


def _load_models(args):
    """The models that measure the offset, as --weights and its companions name them; the bundled model standing
    in is said on stderr."""
    from synchformer.inference.predict import load_models

    models = load_models(args.weights, syncability=args.syncability_weights, fine=args.fine_weights,
                         device=args.device, precision=args.precision, options=OPTIONS)
    if args.weights is None and models.warnings:  # the bundled model stood in
        print(f"synchformer: warning: {models.warnings[0]}", file=sys.stderr)
    return models


def _check_output(args, inputs=None) -> None:
    """OUT before any work: a container the extension names, in a folder that can be written, not the input."""
    import os

    from synchformer.io.outputs import check_output

    check_output(args.output, inputs or [args.video])
    ext = os.path.splitext(args.output)[1] or os.path.splitext(args.video)[1]
    import av

    try:
        with av.open(f"x{ext}", "w"):  # picks the muxer by the extension; creates no file
            pass
    except ValueError:
        raise SynchformerError(args.output, f"no output format for the extension {ext!r}") from None
