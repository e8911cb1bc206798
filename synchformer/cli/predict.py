"""``synchformer predict VIDEO...``: the offset of whole videos (or of one window with ``--start``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from synchformer.cli.common import (add_audio_track, add_device, add_fine, add_max_windows, add_precision,
                                    add_syncability, add_timing, add_weights, check_device, check_workers,
                                    fine_label, gpu_decode_workers, load, load_fine, load_syncability,
                                    syncability_label)
from synchformer.io.decode import audio_tracks, check_media
from synchformer.io.outputs import protect_inputs
from synchformer.errors import SynchformerError
from synchformer.inference.pooling import describe_offset

MAX_TABLE_ROWS = 30  # longer timelines are printed as runs of windows with the same offset


def add_parser(sub):
    p = sub.add_parser("predict", help="measure the audio-visual offset of videos (whole file, windows of 4.8 s)")
    p.add_argument("videos", nargs="+", metavar="VIDEO")
    add_weights(p)
    add_syncability(p)
    add_fine(p)
    add_timing(p)
    add_audio_track(p, allow_all=True)
    p.add_argument("--hop", type=float, default=0.64, metavar="SEC",
                   help="time between window starts; rounded to a multiple of 0.32 s so that windows share "
                        "their segments (default 0.64: more windows are more evidence for the offset and its "
                        "verdict, at little cost: only the sync transformer runs per window)")
    add_max_windows(p)
    p.add_argument("--start", type=float, default=None, metavar="SEC",
                   help="analyse only one window, in the reference's layout: a 5 s crop at SEC, the window is "
                        "[SEC+0.08, SEC+4.88] s. Times count from the file's first video frame (an MPEG-TS whose "
                        "timestamps start at 1.4 s starts at 0 here), as in every window this prints")
    p.add_argument("--json", action="store_true", help="one JSON object per video (schema in README.md)")
    p.add_argument("--plot", metavar="PNG", help="heat map of the windows' probabilities over time "
                   "(with several videos: the video's name is appended)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="with several videos: decoding processes that read ahead while the model runs, and on a GPU "
                        "the segments of several files share encoder calls (default: up to 8 on GPU, 0 on CPU: "
                        "one file at a time in this process)")
    p.add_argument("--batch-size", type=int, default=None, metavar="B",
                   help="with --workers: segments per encoder call (default 128 on GPU, halved if it runs out of "
                        "memory; 4 on CPU)")
    add_device(p)
    add_precision(p)
    return p


def run(args) -> int:
    check_device(args.device)  # the arguments first, then the inputs, then the weights
    check_workers(args)
    jobs, failed = [], 0  # (video, audio track: a number, a language, or None for the default)
    for video in args.videos:  # before seconds of model loading: a bad file says so now and is skipped
        try:
            if args.audio_track == "all":
                check_media(video)
                jobs += [(video, t.number) for t in audio_tracks(video)]
            else:
                check_media(video, audio_track=args.audio_track)
                jobs.append((video, args.audio_track))
        except SynchformerError as e:
            print(f"synchformer: error: {e}", file=sys.stderr)
            failed += 1
    if not jobs:
        return 2
    model = load(args.weights, args.device, precision=args.precision)
    if args.start is not None:
        return _single_window(model, args, jobs, failed)
    if model.cfg.head != "offset":
        raise SynchformerError(args.weights, "is a synchronizability model: pass it as --syncability-weights and "
                                             "an offset model (stage II) as --weights")
    sync_model = load_syncability(args.syncability_weights, model, args.device)
    fine = load_fine(args.fine_weights, model, args.device)
    for video, result in _analyses(model, jobs, args, sync_model, keep_visual=fine is not None):
        try:
            if isinstance(result, SynchformerError):
                raise result
            report = report_of(model, video, result, args, sync_model, fine)
        except SynchformerError as e:  # one bad file does not stop the others
            if len(jobs) == 1:
                raise
            print(f"synchformer: error: {e}", file=sys.stderr)
            failed += 1
            continue
        print(json.dumps(report) if args.json else format_report(report))
    return 2 if failed else 0


def _analyses(model, jobs: list[tuple[str, int | str | None]], args, sync_model, keep_visual: bool = False):
    """(video, Analysis or SynchformerError) per job, in order. Several files on a GPU: decoded ahead by
    worker processes, their segments sharing encoder calls (as score does); otherwise one file at a time."""
    workers = args.workers
    if workers is None:
        workers = gpu_decode_workers() if model.device.type == "cuda" and len(jobs) > 1 else 0
    if workers > 0 and len(jobs) > 1 and args.audio_track != "all":
        from synchformer.inference.score import analyze_files

        yield from analyze_files(model, [v for v, _ in jobs], hop_sec=args.hop, sync_model=sync_model,
                                 timing=args.timing, max_windows=args.max_windows, workers=workers,
                                 batch_size=args.batch_size, keep_visual=keep_visual, audio_track=args.audio_track)
        return
    from synchformer.inference.analyze import analyze

    for video, track in jobs:
        try:
            yield video, analyze(model, video, hop_sec=args.hop, sync_model=sync_model, timing=args.timing,
                                 max_windows=args.max_windows, keep_visual=keep_visual, audio_track=track,
                                 progress=not args.json and sys.stderr.isatty())  # a film must not look hung
        except SynchformerError as e:
            yield video, e


def report_of(model, video: str, result, args, sync_model=None, fine=None) -> dict:
    """The report of ``result`` (the Analysis of ``video``; ``fine``: a fine-offset model for the refined
    offset); writes the heat map when asked. Beside the Summary's keys (``pooling.py``'s schema): the file, the
    models, ``timing``, ``audio_track`` (``AudioTrack.to_dict``: number, stream_index, language, codec,
    channels, sample_rate, title, default) and ``audio_timeline`` ({"events": [AudioEvent.to_dict], "checked":
    "the whole file" | "the sampled windows only", "meaning": what a gap or an overlap means, or null})."""
    from synchformer.plots.heatmap import plot_heatmap

    summary = result.summarize(min_sync_prob=args.min_sync_prob, fine_model=fine)
    segments = result.file_segments if result.sampled else result.segments_total
    report = {"file": str(video), "weights": getattr(model, "weights_label", args.weights),
              "syncability_weights": syncability_label(args.syncability_weights, sync_model),
              "fine_weights": fine_label(getattr(args, "fine_weights", None), fine),
              "precision": getattr(model, "precision", "fp32"), "timing": result.timing,
              "audio_lead_sec": result.audio_lead_sec,
              "hop_sec": round(result.hop_sec, 3), "segments": segments,
              "analysed_sec": round(segments * 0.32 + 0.32, 3), "sampled": sampled_of(result),
              "warnings": [w for w in [getattr(model, "load_warning", None)] if w] + result.warnings,
              "audio_track": result.audio_track.to_dict() if result.audio_track else None,
              "audio_timeline": audio_timeline(result),
              **summary.to_dict()}
    if args.plot:
        out = Path(args.plot)
        if len(args.videos) > 1:
            out = out.with_name(f"{out.stem}_{Path(video).stem}{out.suffix or '.png'}")
        protect_inputs(out, args.videos)
        plot_heatmap(result.window_starts, result.probs, result.grid, summary, out, sync_probs=result.sync_probs,
                     title=Path(video).name + (f" (sampled: {len(result.window_starts)} windows spread over the file)"
                                               if result.sampled else ""),
                     warning=getattr(model, "load_warning", None))
        report["plot"] = str(out)
    return report


# what a gap or an overlap in the audio's timestamps means for the people who watch the file
TIMELINE_MEANING = ("players that honour timestamps (as this measurement does) stay in sync across a gap or an "
                    "overlap; those that join the audio end to end (some editors and converters) are off by its "
                    "length after it")


def audio_timeline(result) -> dict:
    """The audio's gaps, overlaps and format changes found, where they were looked for, and what they mean."""
    events = [e.to_dict() for e in result.audio_events]
    checked = "the sampled windows only" if result.sampled else "the whole file"
    jumps = [e for e in result.audio_events if e.kind in ("gap", "overlap")]
    return {"events": events, "checked": checked, "meaning": TIMELINE_MEANING if jumps else None}


def sampled_of(result) -> dict | None:
    """What a sampled analysis saw (None: every window): the budget, the seconds seen and their spans."""
    if not result.sampled:
        return None
    spans = result.seen
    return {"windows": len(result.window_starts), "seen_sec": round(sum(b - a for a, b in spans), 3),
            "spans_sec": [list(s) for s in spans]}


def format_report(r: dict) -> str:
    if r.get("sampled"):
        lines = [f"{r['file']}  {r['analysed_sec']:.2f} s, sampled: {r['n_windows']} windows of 4.8 s spread over "
                 f"it ({r['sampled']['seen_sec']:.1f} s seen, one every {r['hop_sec']:.1f} s; --max-windows 0 "
                 "for every window)"]
    else:
        lines = [f"{r['file']}  {r['analysed_sec']:.2f} s analysed, {r['n_windows']} windows of 4.8 s "
                 f"(hop {r['hop_sec']:.2f} s)"]
    if r["offset_sec"] is None:
        lines.append(f"  {r['message']}")
    else:
        lines.append(f"  offset {r['offset_sec']:+.2f} s ({describe_offset(r['offset_sec'])}), confidence "
                     f"{r['confidence']:.2f}, {r['agreement'] * 100:.0f}% of {r['n_used']} windows agree "
                     f"within 0.2 s")
        lo, hi = r["refined_interval_sec"]
        lines.append(f"  refined {r['refined_offset_sec'] * 1000:+.0f} ms (90% interval {lo * 1000:+.0f} to "
                     f"{hi * 1000:+.0f} ms{', fine model' if r.get('fine') else ''})")
    lines.append("  reliable" if r["reliable"] else f"  NOT RELIABLE: {'; '.join(r['reasons'])}")
    if r["left_out"]["count"]:
        lines.append(f"  {r['left_out']['count']} window(s) left out: {r['left_out']['why']}")
    drift = r.get("drift")
    if drift:
        if drift["detected"]:
            lines.append(f"  drift: {drift['slope_ms_per_min']:+.0f} ms/min (95% CI {drift['ci95_ms_per_min'][0]:+.0f}"
                         f"..{drift['ci95_ms_per_min'][1]:+.0f}): {drift['offset_at_start_sec']:+.2f} s at the start, "
                         f"{drift['offset_at_end_sec']:+.2f} s at the end")
        else:
            lines.append(f"  drift: not detected ({drift['reason']})")
    track = r.get("audio_track")
    if track:
        lines.append(f"  audio: {_track_text(track)}")
    timeline = r.get("audio_timeline") or {}
    for e in timeline.get("events", []):
        lines.append(f"  audio timeline: {_event_text(e)}")
    if timeline.get("meaning"):
        lines.append(f"  ({timeline['meaning']}; looked for in {timeline['checked']})")
    for w in r["warnings"]:
        lines.append(f"  warning: {w}")
    windows = r["windows"]
    sync = any(w["sync_prob"] is not None for w in windows)
    head = "  start-end (s)      offset      p   entropy" + ("  P(sync)" if sync else "")
    lines.append(head)
    if len(windows) <= MAX_TABLE_ROWS:
        for w in windows:
            lines.append(_row(w["start_sec"], w["end_sec"], w, sync))
    else:  # runs of consecutive, overlapping windows with the same offset (a sampled file's gaps stay visible)
        run = [windows[0]]
        for w in windows[1:] + [None]:
            if (w is not None and w["offset_sec"] == run[0]["offset_sec"] and w["used"] == run[0]["used"]
                    and w["start_sec"] <= run[-1]["end_sec"]):
                run.append(w)
                continue
            lines.append(_row(run[0]["start_sec"], run[-1]["end_sec"], run[0], sync, len(run)))
            run = [w]
    if r.get("plot"):
        lines.append(f"  heat map: {r['plot']}")
    return "\n".join(lines)


def _track_text(t: dict) -> str:
    facts = [t["language"]] if t.get("language") else []
    facts += [t["codec"], f"{t['channels']} ch", f"{t['sample_rate'] / 1000:g} kHz"]
    return f"track {t['number']} ({', '.join(facts)})"


def _event_text(e: dict) -> str:
    if e["kind"] == "format":
        return f"format change at {e['at_sec']:.2f} s ({e.get('detail', '')})"
    what = "no audio: silence put there" if e["kind"] == "gap" else "audio overlapping what came before: trimmed"
    return f"{e['kind']} at {e['at_sec']:.2f} s, {e['duration_sec'] * 1000:.0f} ms of {what}"


def _row(start, end, w, sync, count=1) -> str:
    off = "     -" if w["offset_sec"] is None else f"{w['offset_sec']:+6.2f}"
    p = "    -" if w["probability"] is None else f"{w['probability']:5.2f}"
    ent = "    -" if w["entropy_norm"] is None else f"{w['entropy_norm']:5.2f}"
    s = f"  {start:7.2f}-{end:<8.2f}  {off} s  {p}  {ent}"
    if sync:
        s += "     -" if w["sync_prob"] is None else f"  {w['sync_prob']:5.2f}"
    if count > 1:
        s += f"   ({count} windows)"
    if not w["used"]:
        s += f"   left out: {w['note']}"
    for e in w.get("audio_events") or []:
        s += f"   audio {e['kind']} at {e['at_sec']:.2f} s" + (f" ({e['duration_sec'] * 1000:.0f} ms)"
                                                             if e["kind"] != "format" else "")
    return s


def _single_window(model, args, jobs, failed: int) -> int:
    from synchformer.inference import predict_window

    for video, track in jobs:
        try:
            result = predict_window(model, video, start_sec=args.start, timing=args.timing, audio_track=track)
        except SynchformerError as e:
            if len(jobs) == 1:
                raise
            print(f"synchformer: error: {e}", file=sys.stderr)
            failed += 1
            continue
        if args.json:
            print(json.dumps({**result.to_dict(), "weights": getattr(model, "weights_label", args.weights),
                              "timing": args.timing or model.cfg.timing}))
            continue
        span = f"window {result.start_sec:.2f}-{result.end_sec:.2f} s"
        audio = f"  audio {_track_text(result.audio_track.to_dict())}" if result.audio_track else ""
        if result.head == "synchronizability":
            print(f"{video}  {span}{audio}  synchronizable: p={result.probability:.3f}")
            continue
        print(f"{video}  {span}{audio}")
        print(f"  offset {result.offset_sec:+.2f} s ({describe_offset(result.offset_sec)}), p={result.probability:.3f}")
        print("  top-5: " + "  ".join(f"{t['offset_sec']:+.2f} s p={t['probability']:.3f}" for t in result.top(5)))
        for e in result.audio_events:
            print(f"  audio timeline: {_event_text(e.to_dict())}")
    return 2 if failed else 0
