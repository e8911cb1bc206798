"""``synchformer predict VIDEO...``: the offset of whole videos (or of one window with ``--start``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from synchformer.cli.common import (OPTIONS, add_audio_track, add_device, add_fine, add_max_windows, add_precision,
                                    add_syncability, add_timing, add_weights, check_device, check_workers,
                                    gpu_decode_workers, non_negative_float, non_negative_int, positive_float,
                                    positive_int)
from synchformer.cli.common import add_max_offset, add_tolerance
from synchformer.io.decode import audio_tracks, check_media
from synchformer.io.outputs import protect_inputs
from synchformer.errors import SynchformerError
from synchformer.inference.distributions import describe_offset, two_decimals
from synchformer.inference.pooling import SCHEMA

MAX_TABLE_ROWS = 30  # longer timelines are printed as runs of windows with the same offset
OUTSIDE, NOT_RELIABLE = 3, 4  # --check's exit codes (0: all in tolerance; 2: an input failed)


def add_parser(sub):
    p = sub.add_parser("predict", help="measure the audio-visual offset of videos (whole file, windows of 4.8 s)",
                       description="Measure how far each video's sound is ahead of (+) or behind (-) its pictures: "
                       "the whole file is read in windows of 4.8 s, each window's offset is estimated, and they are "
                       "pooled into one offset with a verdict (reliable or not, with the reasons). Exit code 0 when "
                       "every input was measured, 2 when any failed (each failure is one line on stderr); with "
                       "--check also 3 and 4.")
    p.add_argument("videos", nargs="+", metavar="VIDEO",
                   help="video files (any container and codec ffmpeg reads), or http(s)/rtmp/srt stream URLs")
    add_weights(p)
    add_syncability(p)
    add_fine(p)
    add_timing(p)
    add_audio_track(p, allow_all=True)
    p.add_argument("--hop", type=positive_float, default=0.64, metavar="SEC",
                   help="time between window starts; rounded to a multiple of 0.32 s so that windows share "
                        "their segments (default 0.64: more windows are more evidence for the offset and its "
                        "verdict, at little cost: only the sync transformer runs per window)")
    add_max_windows(p)
    add_max_offset(p)
    p.add_argument("--audio", metavar="FILE", default=None,
                   help="measure a separately recorded sound file (any format ffmpeg reads; its track by "
                        "--audio-track) against the one VIDEO's pictures instead of the video's own sound: the sound "
                        "is placed at the video's first frame and searched for up to --max-offset either way (give "
                        "a rough range, e.g. --max-offset 60 for a recorder started within a minute of the camera). "
                        "The result says where the sound starts on the video's timeline (audio_file.starts_at_sec). "
                        "Default: the video's own sound")
    p.add_argument("--start", type=non_negative_float, default=None, metavar="SEC",
                   help="analyse only the 4.8 s window [SEC, SEC+4.8] (default: the whole file): the window that "
                        "starts at SEC in a whole-file run's table and in explain --start, with its own verdict. "
                        "Times count from the file's first video frame (an MPEG-TS whose timestamps start at 1.4 s "
                        "starts at 0 here), as in every window this prints")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object per line for each input, in the order given, instead of the text: "
                        "the offset, refined offset, confidence, verdict and reasons, drift and every window "
                        f"(schema {SCHEMA}; every key is described in synchformer/inference/pooling.py). An input "
                        "that fails gets {\"file\", \"status\": \"error\", \"error\"} (the others have "
                        "\"status\": \"ok\")")
    add_tolerance(p, "each result says whether its refined offset is inside it (in_tolerance)")
    p.add_argument("--check", action="store_true",
                   help="quality control: the exit code says whether every input is in sync: 0 when every result "
                        "is reliable and inside --tolerance, 3 when a reliable result is outside it, 4 when a "
                        "result is not reliable (no verdict either way). Several inputs: the worst, 2 (an input "
                        "failed) over 3 (out of sync) over 4 (not reliable). The output is "
                        "the same as without it")
    p.add_argument("--plot", metavar="PNG", help="also write a heat map of the windows' offset probabilities over "
                   "time to PNG (needs matplotlib); with several videos each gets PNG's name with _<video name> "
                   "appended, with --audio-track all also _track<N>. Default: no heat map")
    p.add_argument("--workers", type=non_negative_int, default=None, metavar="N",
                   help="with several videos: decoding processes that read ahead while the model runs, and on a GPU "
                        "the segments of several files share encoder calls (default: up to 8 on GPU, 0 on CPU: "
                        "one file at a time in this process)")
    p.add_argument("--batch-size", type=positive_int, default=None, metavar="B",
                   help="with --workers: segments per encoder call; more is faster on a GPU and needs more of "
                        "its memory (default 128 on GPU, halved if it runs out of memory; 4 on CPU)")
    add_device(p)
    add_precision(p)
    return p


class _Failures:
    """The inputs that failed, reported in input order: one line on stderr as each fails, and with --json one
    object each in the output, between the results of the inputs before and after it."""

    def __init__(self, args):
        self.args, self.count, self.pending = args, 0, []  # pending: (job index it comes before, object)

    def add(self, video: str, error: SynchformerError, before: int | None = None, track=None) -> None:
        print(f"synchformer: error: {error}", file=sys.stderr)
        self.count += 1
        obj = {"file": str(video), "status": "error", "error": str(error), "audio_track": track, "schema": SCHEMA}
        if before is None:
            self.emit(obj)
        else:
            self.pending.append((before, obj))

    def emit(self, obj: dict) -> None:
        if self.args.json:
            print(json.dumps(obj), flush=True)

    def flush(self, upto: float = float("inf")) -> None:
        """Print the failures that come before job ``upto`` (all: the end)."""
        while self.pending and self.pending[0][0] <= upto:
            self.emit(self.pending.pop(0)[1])


def plot_path(args, video: str, track=None) -> Path | None:
    """Where the heat map of ``video`` (its audio track ``track`` with --audio-track all) goes; None: no plot."""
    if not args.plot:
        return None
    out, parts = Path(args.plot), []
    if len(args.videos) > 1:
        parts.append(Path(video).stem)
    if args.audio_track == "all":
        parts.append(f"track{track}")
    return out.with_name(f"{out.stem}_{'_'.join(parts)}{out.suffix or '.png'}") if parts else out


def _check_plot(args) -> None:
    """--plot before any work: matplotlib, a writable folder, no input written over, no two maps on one name."""
    if not args.plot:
        return
    from synchformer.plots import check_figure_output

    check_figure_output(args.plot, args.videos, "--plot (the heat map)", formats=None)
    seen = {}
    for video in args.videos:  # with --audio-track all, the names carry the track too (checked once known)
        out = plot_path(args, video, "N")
        if args.audio_track != "all":
            protect_inputs(out, args.videos)
        other = seen.setdefault(out, video)
        if other != video and Path(other).resolve() != Path(video).resolve():
            raise SynchformerError(args.plot, f"{other} and {video} have the same name: their heat maps would "
                                              f"both be {out}; rename one, or plot them in separate runs")


def run(args) -> int:
    check_device(args.device)  # the arguments first, then the inputs, then the weights
    check_workers(args)
    _check_plot(args)
    if args.audio is not None:
        _check_separate_sound(args)
    jobs = []  # (video, audio track: a number, a language, or None for the default)
    failures = _Failures(args)
    for video in args.videos:  # before seconds of model loading: a bad file says so now and is skipped
        try:
            if args.audio_track == "all":
                check_media(video)
                tracks = [(video, t.number) for t in audio_tracks(video)]
                for _, track in tracks if args.plot else ():
                    protect_inputs(plot_path(args, video, track), args.videos)
                jobs += tracks
            else:
                check_media(video, audio=args.audio is None, audio_track=args.audio_track)
                jobs.append((video, args.audio_track))
        except SynchformerError as e:
            failures.add(video, e, before=len(jobs), track=args.audio_track)
    if not jobs:
        failures.flush()
        return 2
    from synchformer.inference.predict import load_models, predict_files

    models = load_models(args.weights, syncability=args.syncability_weights, fine=args.fine_weights,
                         device=args.device, precision=args.precision, options=OPTIONS,
                         any_head=args.start is not None)
    if args.weights is None and models.warnings:  # the bundled model stood in: said now, and with every result
        print(f"synchformer: warning: {models.warnings[0]}", file=sys.stderr)
    if args.check and models.offset.cfg.head != "offset":
        raise SynchformerError(args.weights, "--check needs an offset model; a synchronizability model alone "
                                             "measures no offset")
    if models.offset.cfg.head != "offset":  # --start with a synchronizability model alone: P(sync)
        return _single_window(models, args, jobs, failures)
    workers = args.workers
    if workers is None:
        workers = gpu_decode_workers() if models.offset.device.type == "cuda" and len(jobs) > 1 else 0
    if args.audio is not None:
        results = _with_separate_sound(models, args, jobs)
    else:
        results = predict_files(jobs, models, hop_sec=args.hop, max_windows=args.max_windows, start_sec=args.start,
                                min_sync_prob=args.min_sync_prob, timing=args.timing, workers=workers,
                                batch_size=args.batch_size, tolerance=args.tolerance,
                                progress=not args.json and sys.stderr.isatty(),  # a film must not look hung
                                max_offset_sec=args.max_offset)
    reports = []  # for --check
    for k, (result, (video, track)) in enumerate(zip(results, jobs)):
        failures.flush(k)
        try:
            if isinstance(result, SynchformerError):
                raise result
            report = result.to_dict()
            if args.plot:
                report["plot"] = _plot(result, args, video, track, models.warnings)
        except SynchformerError as e:  # one bad file does not stop the others
            failures.add(video, e, track=track)
            continue
        print(json.dumps(report) if args.json else format_report(report), flush=True)
        reports.append(report)
    failures.flush()
    if failures.count:
        return 2
    return check_code(reports) if args.check else 0


def _check_separate_sound(args) -> None:
    """``--audio FILE``: one video, no window alone, a file with sound; said before any model loads."""
    if len(args.videos) != 1:
        raise SynchformerError(args.audio, "--audio measures one sound file against one VIDEO; "
                                           f"{len(args.videos)} were given")
    if args.start is not None or args.audio_track == "all":
        raise SynchformerError(args.audio, "--audio cannot be combined with --start or --audio-track all")
    if not audio_tracks(args.audio):  # no sound in it: one line now
        raise SynchformerError(args.audio, "has no audio stream")


def _with_separate_sound(models, args, jobs):
    """predict's results (one) for the video against the separate sound file."""
    from synchformer.inference.predict import predict

    (video, _), = jobs
    try:
        yield predict(video, models=models, audio=args.audio, audio_track=args.audio_track, hop_sec=args.hop,
                      max_windows=args.max_windows, min_sync_prob=args.min_sync_prob, timing=args.timing,
                      tolerance=args.tolerance, max_offset_sec=args.max_offset,
                      progress=not args.json and sys.stderr.isatty())
    except SynchformerError as e:
        yield e


def check_code(reports: list[dict]) -> int:
    """``--check``'s exit code for these results: a reliable reading out of tolerance is a known fault, so it
    outranks one that could not be read (which needs a person to look)."""
    if any(r["reliable"] and r["in_tolerance"] is False for r in reports):
        return OUTSIDE
    if any(not r["reliable"] or r["in_tolerance"] is None for r in reports):
        return NOT_RELIABLE
    return 0


def _plot(prediction, args, video: str, track, load_warnings) -> str:
    """The heat map of ``prediction`` (``--plot``), with the models' warning; its path."""
    from synchformer.plots.heatmap import plot_heatmap

    a = prediction.analysis
    out = plot_path(args, video, track)
    protect_inputs(out, args.videos)
    plot_heatmap(a.window_starts, a.probs, a.grid, prediction.summary, out, sync_probs=a.sync_probs,
                 title=Path(video).name + (f" (sampled: {len(a.window_starts)} windows spread over the file)"
                                           if a.sampled else ""),
                 warning=load_warnings[0] if load_warnings else None)
    return str(out)


def format_report(r: dict) -> str:
    if r.get("sampled"):
        lines = [f"{r['file']}  {r['analysed_sec']:.2f} s, sampled: {r['n_windows']} windows of 4.8 s spread over "
                 f"it ({r['sampled']['seen_sec']:.1f} s seen, one every {r['hop_sec']:.1f} s; --max-windows 0 "
                 "for every window)"]
    elif r["hop_sec"] is None:  # --start: one window
        w = r["windows"][0]
        lines = [f"{r['file']}  one window, {w['start_sec']:.2f}-{w['end_sec']:.2f} s"]
    else:
        lines = [f"{r['file']}  {r['analysed_sec']:.2f} s analysed, {r['n_windows']} windows of 4.8 s "
                 f"(hop {r['hop_sec']:.2f} s)"]
    if r["offset_sec"] is None:
        lines.append(f"  {r['message']}")
    else:
        lines.append(f"  offset {r['offset_sec']:+.2f} s ({describe_offset(r['offset_sec'])}), confidence "
                     f"{two_decimals(r['confidence'])}, {r['agreement'] * 100:.0f}% of {r['n_used']} windows agree "
                     f"within 0.2 s")
        lo, hi = r["refined_interval_sec"]
        lines.append(f"  refined {r['refined_offset_sec'] * 1000:+.0f} ms (90% interval {lo * 1000:+.0f} to "
                     f"{hi * 1000:+.0f} ms{', fine model' if r.get('fine') else ''})")
    search = r.get("search")
    if search and search["ran"] and r["offset_sec"] is not None:
        lo, hi = search["reach_sec"]
        reach = (f"searched {lo:+.1f}..{hi:+.1f} s of the +-{search['max_offset_sec']:g} s asked: a longer file reaches "
                 "further" if lo > -search["max_offset_sec"] or hi < search["max_offset_sec"]
                 else f"searched +-{search['max_offset_sec']:g} s")
        shifted = search["chosen_shift_sec"]
        lines.append(f"  beyond the model's +-2 s: found with the sound shifted by {shifted:+.2f} s ({reach})"
                     if shifted else f"  {reach}")
    if r.get("audio_file"):
        f = r["audio_file"]
        at = "" if f["starts_at_sec"] is None else f", starts at {f['starts_at_sec']:+.2f} s of the video"
        lines.append(f"  sound file: {f['path']} ({f['duration_sec']:.1f} s){at}")
    lines.append("  reliable" if r["reliable"] else f"  NOT RELIABLE: {'; '.join(r['reasons'])}")
    if r.get("in_tolerance") is not None:
        from synchformer.inference.tolerance import Tolerance

        within = Tolerance(**r["tolerance"]).describe()
        lines.append(f"  in tolerance: refined offset inside {within}" if r["in_tolerance"]
                     else f"  OUT OF TOLERANCE: refined offset outside {within}")
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


def _single_window(models, args, jobs, failures: _Failures) -> int:
    """``--start`` with a synchronizability model as ``--weights``: P(synchronizable) of that window."""
    from synchformer.inference import predict_window

    model = models.offset
    for k, (video, track) in enumerate(jobs):
        failures.flush(k)
        try:
            result = predict_window(model, video, start_sec=args.start, timing=args.timing, audio_track=track)
        except SynchformerError as e:
            failures.add(video, e, track=track)
            continue
        if args.json:
            print(json.dumps({**result.to_dict(), "status": "ok",
                              "weights": models.weights,
                              "timing": args.timing or model.cfg.timing}), flush=True)
            continue
        audio = f"  audio {_track_text(result.audio_track.to_dict())}" if result.audio_track else ""
        print(f"{video}  window {result.start_sec:.2f}-{result.end_sec:.2f} s{audio}  synchronizable: "
              f"p={result.probability:.3f}")
    failures.flush()
    return 2 if failures.count else 0
