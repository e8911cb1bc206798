"""``synchformer monitor INPUT``: watch a live stream (or a growing file) and alert when it drifts out of sync."""

from __future__ import annotations

import json
import os
import sys

from synchformer.cli.common import (OPTIONS, add_audio_track, add_device, add_fine, add_precision, add_syncability,
                                    add_tolerance, add_weights, check_device, int_at_least, positive_float,
                                    positive_int)
from synchformer.constants import MONITOR_ALERT_AFTER as ALERT_AFTER
from synchformer.constants import MONITOR_HOP_SEC as HOP_SEC
from synchformer.constants import MONITOR_MAX_LAG_SEC as MAX_LAG_SEC
from synchformer.constants import MONITOR_MEDIAN_OF as MEDIAN_OF
from synchformer.constants import MONITOR_TIMEOUT_SEC as TIMEOUT_SEC
from synchformer.errors import SynchformerError


def add_parser(sub):
    p = sub.add_parser("monitor", help="watch a live stream or a growing file; alert when it drifts out of sync",
                       description="Decode a live input continuously, analyse its 4.8 s windows as they complete and "
                       "print one line per window (its end in the stream's time, the wall time, the offset, the "
                       "refined offset, the confidence, the verdict, in or out of tolerance) with the median of the "
                       "last reliable readings; an ALERT line when the last --alert-after reliable readings are all "
                       "out of tolerance on the same side, CLEAR when as many are back inside. A model slower than "
                       "real time analyses the newest window each time (one in k, said on each line) rather than "
                       "fall behind. The input is opened again when it is lost. Ctrl-C or SIGTERM ends it with a "
                       "summary (exit code 130 / 143, as for every command stopped so); a finished file read to its "
                       "end exits 0. Offsets are positive when the sound leads the picture.")
    p.add_argument("input", metavar="INPUT",
                   help="a stream URL FFmpeg reads live (udp://127.0.0.1:5000, rtmp://, rtsp://, an HLS .m3u8 over "
                        "http(s), tcp://), a file being written (with --follow: MPEG-TS or Matroska, not MP4/MOV), "
                        "or a finished file (read through, every window). SRT: PyAV's FFmpeg has no SRT support; relay "
                        "it to UDP")
    p.add_argument("--follow", action="store_true",
                   help="INPUT is a file still being written (a recorder's .ts): keep reading at its end as it grows; "
                        "no growth for --timeout seconds is reported as the input lost")
    add_weights(p)
    add_syncability(p)
    add_fine(p)
    add_audio_track(p)
    add_tolerance(p, "a reading outside it is out of tolerance, and --alert-after of them in a row raise an alert")
    p.add_argument("--alert-after", type=positive_int, default=ALERT_AFTER, metavar="N",
                   help=f"raise an alert when the last N reliable readings are all out of tolerance on the same side, "
                        f"clear it when the last N are all inside (default {ALERT_AFTER}: the fewest with no false "
                        f"alarm on 20 min of in-sync test streams, docs/monitoring.md; with --hop {HOP_SEC:g} an "
                        "alert comes a median 13 s of stream after the change; fewer: sooner, more false alarms). "
                        "Unreliable windows (silence, a still picture, a low "
                        "P(synchronizable) or probability) neither raise nor clear an alert")
    p.add_argument("--hop", type=positive_float, default=HOP_SEC, metavar="SEC",
                   help=f"time between the starts of the windows read (default {HOP_SEC:g}: a reading about every 2 s; "
                        "rounded to a multiple of 0.32 s). A model slower than real time reads fewer: the newest "
                        "window each time")
    p.add_argument("--median-of", type=positive_int, default=MEDIAN_OF, metavar="N",
                   help=f"the running summary is the median of the last N reliable readings (default {MEDIAN_OF})")
    p.add_argument("--max-lag", type=positive_float, default=MAX_LAG_SEC, metavar="SEC",
                   help=f"say so (a lagging event) when a reading comes more than SEC behind the newest decoded media "
                        f"(default {MAX_LAG_SEC:g}): the hardware cannot analyse even one window in that time")
    p.add_argument("--timeout", type=positive_float, default=TIMEOUT_SEC, metavar="SEC",
                   help=f"no data for SEC seconds is an input lost (default {TIMEOUT_SEC:g}); it is then opened again "
                        "with a growing wait (0.5 s up to 8 s between tries)")
    p.add_argument("--metrics-port", type=int_at_least(1), default=None, metavar="P",
                   help="serve Prometheus metrics (current and median offset, windows analysed and skipped, alerts, "
                        "lag, input up) at http://HOST:P/metrics; nothing else is served")
    p.add_argument("--metrics-host", default="127.0.0.1", metavar="HOST",
                   help="the address the metrics listen on (default 127.0.0.1: this machine only; 0.0.0.0: every "
                        "interface)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object per line per event instead of text: event (start, window, alert, "
                        "clear, input_lost, input_back, lagging, timeline, summary), wall_time, timeline, media_time_sec "
                        "(a window's end, in the stream's timeline from its first picture) and the event's own keys "
                        "(inference/monitor.py)")
    add_device(p)
    add_precision(p)
    return p


class Metrics:
    """The Prometheus endpoint: a registry of our own metrics only, served by prometheus_client."""

    def __init__(self, host: str, port: int):
        try:
            from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
        except ImportError:  # (a dependency: only a broken install lacks it)
            raise SynchformerError(None, "--metrics-port needs the prometheus_client package") from None
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.offset = Gauge("synchformer_offset_seconds", "refined offset of the last reliable window (+: sound "
                            "leads)", registry=r)
        self.median = Gauge("synchformer_median_offset_seconds", "median refined offset of the last reliable "
                            "windows", registry=r)
        self.windows = Counter("synchformer_windows_analysed", "windows analysed", ["reliable"], registry=r)
        self.skipped = Counter("synchformer_windows_skipped", "windows passed over to keep up with the input",
                               registry=r)
        self.alerts = Counter("synchformer_alerts", "alerts raised", registry=r)
        self.alert = Gauge("synchformer_alert", "1 while an alert is in force", ["side"], registry=r)
        self.lag = Gauge("synchformer_lag_seconds", "how far the last reading was behind the newest decoded media",
                         registry=r)
        self.fraction = Gauge("synchformer_analysed_fraction", "share of the recent windows analysed", registry=r)
        self.up = Gauge("synchformer_input_up", "1 while the input delivers", registry=r)
        self.lost = Counter("synchformer_inputs_lost", "times the input was lost", registry=r)
        for side in ("lead", "lag"):
            self.alert.labels(side).set(0)
        for reliable in ("true", "false"):
            self.windows.labels(reliable)
        try:
            self.server, _ = start_http_server(port, addr=host, registry=r)
        except OSError as e:
            raise SynchformerError(None, f"--metrics-port {port}: cannot listen on {host}:{port} "
                                         f"({e.strerror or e})") from None

    def update(self, e: dict) -> None:
        kind = e["event"]
        if kind == "window":
            self.up.set(1)
            self.windows.labels("true" if e["reliable"] else "false").inc()
            self.skipped.inc(e["skipped"])
            if e["reliable"] and e["refined_offset_sec"] is not None:
                self.offset.set(e["refined_offset_sec"])
            if e["median_offset_sec"] is not None:
                self.median.set(e["median_offset_sec"])
            self.lag.set(e["lag_sec"])
            self.fraction.set(e["analysed_fraction"])
        elif kind == "alert":
            self.alerts.inc()
            for side in ("lead", "lag"):
                self.alert.labels(side).set(int(side == e["side"]))
        elif kind == "clear":
            for side in ("lead", "lag"):
                self.alert.labels(side).set(0)
        elif kind == "input_lost":
            self.up.set(0)
            self.lost.inc()
        elif kind in ("input_back", "timeline"):
            self.up.set(1)
        elif kind == "lagging":
            self.lag.set(e["lag_sec"])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def run(args) -> int:
    from synchformer.io.live import check_live_input

    check_live_input(args.input, args.follow)  # a bad input: one line, before any model loads
    check_device(args.device)
    metrics = Metrics(args.metrics_host, args.metrics_port) if args.metrics_port is not None else None
    import torch

    threads = torch.get_num_threads()
    if "OMP_NUM_THREADS" not in os.environ:
        # the input is decoded all the while in a thread of its own: the model leaves it a core (with every core
        # the model's threads wait on one another whenever decoding runs; docs/monitoring.md measured 40x)
        torch.set_num_threads(max(1, (os.cpu_count() or 1) - 1))
    try:
        return _watch(args, metrics)
    finally:
        torch.set_num_threads(threads)
        if metrics is not None:
            metrics.close()


def _watch(args, metrics) -> int:
    from synchformer.cli.common import device
    from synchformer.inference.monitor import Monitor
    from synchformer.inference.predict import load_models

    models = load_models(args.weights, syncability=args.syncability_weights, fine=args.fine_weights,
                         device=device(args.device), precision=args.precision, options=OPTIONS)
    for w in models.warnings:
        print(f"synchformer: note: {w}", file=sys.stderr)
    m = Monitor(args.input, models, follow=args.follow, hop_sec=args.hop, tolerance=args.tolerance,
                alert_after=args.alert_after, median_of=args.median_of, max_lag_sec=args.max_lag,
                timeout_sec=args.timeout, min_sync_prob=args.min_sync_prob, audio_track=args.audio_track)
    say = _say_json if args.json else _say_text
    try:
        for event in m.events():
            d = event.to_dict()
            if metrics is not None:
                metrics.update(d)
            say(d)
    finally:  # the input's end, Ctrl-C, SIGTERM: the summary, then the exit code of how it ended
        m.stop()
        say(m.summary().to_dict())
    return 0


def _say_json(d: dict) -> None:
    print(json.dumps(d), flush=True)


def _sec(x, width: int = 6) -> str:
    return "-".rjust(width) if x is None else f"{x:+.3f}".rjust(width)


def _say_text(d: dict) -> None:
    kind, clock = d["event"], d["wall_time"][11:19]
    if kind == "window":
        verdict = "reliable" if d["reliable"] else "unreliable (" + "; ".join(d["reasons"]) + ")"
        tol = {None: "", True: "  in tolerance", False: f"  OUT ({'sound early' if d['side'] == 'lead' else 'sound late'})"}
        rate = (f"  [1 in {1 / d['analysed_fraction']:.0f} windows read, lag {d['lag_sec']:.1f} s]"
                if d["analysed_fraction"] < 0.999 else "")
        med = (f"  median {d['median_offset_sec']:+.3f} s of {d['median_of']}" if d["median_offset_sec"] is not None
               else "")
        conf = "-" if d["confidence"] is None else f"{d['confidence']:.2f}"
        print(f"{clock}  {d['media_time_sec']:8.2f} s  offset {_sec(d['offset_sec'])} s  refined "
              f"{_sec(d['refined_offset_sec'])} s  conf {conf}  {verdict}"
              f"{tol[d['in_tolerance'] if d['reliable'] else None]}{med}{rate}", flush=True)
    elif kind == "alert":
        where = "ahead of" if d["side"] == "lead" else "behind"
        print(f"{clock}  ALERT at {d['media_time_sec']:.2f} s: the sound is {abs(d['offset_sec']):.3f} s {where} the "
              f"picture (median of the last {d['readings']} reliable readings), outside the tolerance "
              f"-{d['tolerance']['lag_ms']:g}..+{d['tolerance']['lead_ms']:g} ms", flush=True)
    elif kind == "clear":
        print(f"{clock}  CLEAR at {d['media_time_sec']:.2f} s: back in tolerance (median {d['offset_sec']:+.3f} s of "
              f"the last {d['readings']} reliable readings)", flush=True)
    elif kind == "input_lost":
        print(f"{clock}  INPUT LOST: {d['reason']}; trying again", flush=True)
    elif kind == "input_back":
        print(f"{clock}  INPUT BACK", flush=True)
    elif kind == "start":
        how = "every window" if d["every_window"] else "the newest window each time"
        print(f"monitoring {d['input']}: windows of 4.8 s every {d['hop_sec']:.2f} s ({how}), tolerance "
              f"-{d['tolerance']['lag_ms']:g}..+{d['tolerance']['lead_ms']:g} ms, alert after {d['alert_after']} "
              "reliable readings out of it; offsets + when the sound leads", flush=True)
    elif kind == "timeline":
        if d["timeline"] > 1:
            print(f"{clock}  new timeline {d['timeline']} ({d['reason']}): times count from 0 again", flush=True)
    elif kind == "lagging":
        print(f"{clock}  LAGGING: readings come {d['lag_sec']:.1f} s behind the input (more than {d['max_lag_sec']:g} s); "
              f"one window takes {d['seconds_per_window']:.1f} s here: use a GPU or a faster model", flush=True)
    elif kind == "summary":
        frac = "-" if d["reliable_fraction"] is None else f"{d['reliable_fraction']:.0%}"
        med = "-" if d["median_offset_sec"] is None else f"{d['median_offset_sec']:+.3f} s"
        print(f"summary: {d['windows_analysed']} windows analysed ({d['windows_skipped']} skipped to keep up) over "
              f"{d['media_seconds']:.1f} s of stream in {d['wall_seconds']:.1f} s; reliable {frac}; median offset "
              f"{med}; {d['alerts']} alert(s){', one in force (' + d['alert'] + ')' if d['alert'] else ''}; input lost "
              f"{d['inputs_lost']} time(s)", flush=True)
