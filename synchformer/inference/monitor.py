"""Watching a live input: windows analysed as they complete, alerts when the sound drifts out of tolerance.

    import synchformer

    for event in synchformer.monitor("udp://127.0.0.1:5000", weights="bundled", tolerance="ebu-r37"):
        print(event.to_dict())            # what `synchformer monitor --json` prints, one line each

The input is decoded in a thread of its own (``io.live.LiveReader``). Each 4.8 s window on the hop grid is read
as ``analyze`` reads a file's windows (``analysis_steps``: the same encoders, sync transformer, stage III gate,
silence / still-picture checks and per-window verdict), each segment encoded once however many windows share it.

Keeping up: a live input does not wait. When a window is done, the next one analysed is the newest complete one,
so that a slow model (the full-size one on a CPU) analyses one window in k instead of falling behind; each window
event says how many were skipped, and the share analysed. When even one window takes longer than ``max_lag_sec``
the monitor says so (``lagging``). A finished file (no ``follow``) is read through, every window.

Alerts: an ``alert`` when the last ``alert_after`` reliable readings are all out of tolerance on the same side,
``clear`` when the last ``alert_after`` reliable readings are all back inside; unreliable windows (silence, a still
picture, a low P(synchronizable), a low probability) count for neither, and are counted. Offsets are compared by
their refined value: a fine-offset model's (``inference.fine``, as predict runs it: the window read again with its
sound delayed by the coarse offset, to 20 ms), which waits for the 2.5 s of sound after the window that it may need,
or without one the expectation over the top class and its neighbours.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

import numpy as np

from synchformer.constants import (AUDIO_SR, MONITOR_ALERT_AFTER, MONITOR_HOP_SEC, MONITOR_MAX_LAG_SEC,
                                   MONITOR_MEDIAN_OF, MONITOR_TIMEOUT_SEC, SAMPLES_PER_FRAME, SEGMENT_STRIDE_FRAMES,
                                   SEGMENT_STRIDE_SEC, VIDEO_FPS, WINDOW_SEC)
from synchformer.features.segments import decode_size, segment_audio, segment_video, span_frames
from synchformer.inference.analyze import EncodeRequest, analysis_steps, hop_in_segments, run_steps
from synchformer.inference.distributions import json_prob, json_sec
from synchformer.inference.fine import FineSource, fine_pass
from synchformer.inference.predict import Models, load_models
from synchformer.inference.stream import SegmentChunk, SegmentGrid, encode_chunk
from synchformer.inference.tolerance import Tolerance, tolerance_of
from synchformer.io.decode import AUTHORS_DROPPED_SAMPLES
from synchformer.inference.verdict import fine_edge_reason
from synchformer.io.live import LiveReader, SourceEvent, check_live_input
from synchformer.io.reader import KEEP_MARGIN_SEC, KeptAudio
from synchformer.model import same_encoders
from synchformer.model.precision import using

DEFAULT_HOP_SEC = MONITOR_HOP_SEC
DEFAULT_ALERT_AFTER = MONITOR_ALERT_AFTER
DEFAULT_MEDIAN_OF = MONITOR_MEDIAN_OF
DEFAULT_MAX_LAG_SEC = MONITOR_MAX_LAG_SEC
DEFAULT_TIMEOUT_SEC = MONITOR_TIMEOUT_SEC
FRACTION_OVER = 30  # windows of the hop grid the analysed fraction is counted over


def _now_iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def side_of(offset_sec: float, tolerance: Tolerance) -> str | None:
    """"lead" (the sound too early), "lag" (too late) or None (inside ``tolerance``)."""
    if tolerance.contains(offset_sec):
        return None
    return "lead" if offset_sec > 0 else "lag"


# ------------------------------------------------------------------------------------------------ events

@dataclass
class MonitorEvent:
    """What ``monitor`` yields; ``to_dict`` is one line of ``monitor --json``. ``wall_time``: when it happened
    (ISO 8601, UTC); ``timeline``: which of the input's timelines (a new one after a reconnection or a restarted
    stream; their media times each count from their first picture)."""

    event: str = field(init=False, default="")
    wall: float
    timeline: int | None

    def to_dict(self) -> dict:
        out = {"event": self.event, "wall_time": _now_iso(self.wall)}
        for k, v in asdict(self).items():
            if k not in ("event", "wall"):
                out[k] = _json(v)
        return out


def _json(v):
    if isinstance(v, float):
        return None if not math.isfinite(v) else round(v, 4)
    if isinstance(v, (list, tuple)):
        return [_json(x) for x in v]
    if isinstance(v, dict):
        return {k: _json(x) for k, x in v.items()}
    return v


@dataclass
class WindowReading(MonitorEvent):
    """One analysed window. ``media_time_sec``: its end (s from the timeline's first picture)."""

    media_time_sec: float
    start_sec: float
    offset_sec: float | None  # the top class; + = the sound leads
    refined_offset_sec: float | None  # the expectation over it and its neighbours
    confidence: float | None  # the top class's probability
    sync_prob: float | None  # P(synchronizable) where a stage III model ran
    reliable: bool
    reasons: list[str]
    in_tolerance: bool | None  # of the refined offset (None: no offset)
    side: str | None  # "lead" / "lag" when out of tolerance
    median_offset_sec: float | None  # of the last ``median_of`` reliable readings' refined offsets
    median_of: int  # how many readings that median is of (up to --median-of)
    alert: str | None  # the alert in force after this reading ("lead", "lag"), None
    lag_sec: float  # how far this reading is behind the newest decoded media
    skipped: int  # windows of the hop grid passed over since the last one analysed (to keep up)
    analysed_fraction: float  # of the last windows of the hop grid, the share analysed
    event: str = field(init=False, default="window")


@dataclass
class Alert(MonitorEvent):
    media_time_sec: float
    side: str  # "lead": the sound is ahead of the picture; "lag": behind it
    offset_sec: float  # median of the readings that raised it
    readings: int
    tolerance: dict
    event: str = field(init=False, default="alert")


@dataclass
class Clear(MonitorEvent):
    media_time_sec: float
    offset_sec: float
    readings: int
    tolerance: dict
    event: str = field(init=False, default="clear")


@dataclass
class InputLost(MonitorEvent):
    media_time_sec: float | None  # how far the timeline had got
    reason: str
    event: str = field(init=False, default="input_lost")


@dataclass
class InputBack(MonitorEvent):
    event: str = field(init=False, default="input_back")


@dataclass
class NewTimeline(MonitorEvent):
    """A new timeline starts (the first; after a reconnection; where the timestamps jumped): its media times
    count from 0 again, and no offset is compared across it."""

    reason: str
    origin_sec: float | None  # the container time (the stream's own timestamps) of its first picture
    event: str = field(init=False, default="timeline")


@dataclass
class Started(MonitorEvent):
    """The monitor runs (the models are loaded, the input is being opened): what it will do."""

    input: str
    hop_sec: float
    tolerance: dict
    alert_after: int
    median_of: int
    max_lag_sec: float
    every_window: bool  # a finished file: every window; a live input: the newest each time
    weights: str
    event: str = field(init=False, default="start")


@dataclass
class Lagging(MonitorEvent):
    lag_sec: float
    max_lag_sec: float
    analysed_fraction: float
    seconds_per_window: float  # what the last window took to analyse
    event: str = field(init=False, default="lagging")


@dataclass
class MonitorSummary(MonitorEvent):
    """The run so far: printed when it ends (the input's end, Ctrl-C, SIGTERM)."""

    windows_analysed: int
    windows_skipped: int
    reliable: int
    unreliable: int
    reliable_fraction: float | None
    median_offset_sec: float | None  # of every reliable reading's refined offset
    alerts: int
    alert: str | None  # in force at the end
    inputs_lost: int
    media_seconds: float  # of media covered by the timelines decoded
    wall_seconds: float
    event: str = field(init=False, default="summary")


# ------------------------------------------------------------------------------------------------ alerts

class AlertState:
    """Raises an alert when the last ``after`` reliable readings are all out of ``tolerance`` on one side, and
    clears it when the last ``after`` are all inside; unreliable readings are not looked at."""

    def __init__(self, tolerance: Tolerance, after: int):
        if after < 1:
            raise ValueError(f"after must be >= 1, got {after}")
        self.tolerance, self.after = tolerance, after
        self.recent: deque = deque(maxlen=after)  # (side, refined offset)
        self.active: str | None = None
        self.raised = 0

    def add(self, offset_sec: float) -> tuple[str, str | None, float] | None:
        """A reliable reading: ("alert", side, median) / ("clear", None, median) when it changes the state."""
        self.recent.append((side_of(offset_sec, self.tolerance), offset_sec))
        if len(self.recent) < self.after:
            return None
        sides = {s for s, _ in self.recent}
        if len(sides) != 1:
            return None
        side = sides.pop()
        median = float(np.median([o for _, o in self.recent]))
        if side is not None and side != self.active:
            self.active = side
            self.raised += 1
            return "alert", side, median
        if side is None and self.active is not None:
            self.active = None
            return "clear", None, median
        return None


# ------------------------------------------------------------------------------------------------ the monitor

class _SegmentFeatures:
    """Encoder features by (model, timeline, segment): each segment encoded once whichever windows use it."""

    def __init__(self):
        self.feats: dict = {}

    def encode(self, request: EncodeRequest, timeline: int, k0: int):
        import torch

        chunk, model = request.chunk, request.model
        keys = [(id(model), timeline, k0 + chunk.first + i) for i in range(len(chunk))]
        missing = [i for i, key in enumerate(keys) if key not in self.feats]
        if missing:
            v, a = encode_chunk(model, chunk.select(missing), batch=request.batch)
            for j, i in enumerate(missing):
                self.feats[keys[i]] = (v[j], a[j])
        v, a = zip(*(self.feats[key] for key in keys))
        return torch.stack(v), torch.stack(a)

    def visual(self, model, timeline: int, k: int):
        return self.feats[(id(model), timeline, k)][0]

    def forget(self, timeline: int, below: int) -> None:
        for key in [k for k in self.feats if k[1] != timeline or k[2] < below]:
            del self.feats[key]


class Monitor:
    """A live input watched: iterate ``events()``; ``stop()`` (from another thread) or the input's end (a
    finished file) ends it; ``summary()`` is the run so far. Arguments as ``monitor``'s."""

    def __init__(self, source: str, models: Models, *, follow: bool = False, hop_sec: float = DEFAULT_HOP_SEC,
                 tolerance: Tolerance | str | None = None, alert_after: int = DEFAULT_ALERT_AFTER,
                 median_of: int = DEFAULT_MEDIAN_OF, max_lag_sec: float = DEFAULT_MAX_LAG_SEC,
                 timeout_sec: float = DEFAULT_TIMEOUT_SEC, min_sync_prob: float = 0.5,
                 audio_track: int | str | None = None, every_window: bool | None = None):
        check_live_input(source, follow)
        self.source, self.models = source, models
        model = models.offset
        self.n = model.cfg.n_segments
        self.h = hop_in_segments(hop_sec)
        self.tolerance = tolerance_of(tolerance)
        self.alerts = AlertState(self.tolerance, alert_after)
        self.median_of, self.max_lag, self.min_sync_prob = median_of, max_lag_sec, min_sync_prob
        self.timing = model.cfg.timing
        # the authors' timing: their software took the sound 64 ms early (io.decode), which the weights learned
        lead = AUTHORS_DROPPED_SAMPLES / AUDIO_SR if self.timing == "authors" else 0.0
        self.audio_lead_sec = lead
        crop = model.cfg.image_size
        self.reader = LiveReader(source, size=decode_size(crop), crop=crop, audio_track=audio_track,
                                 audio_lead_sec=lead, follow=follow, timeout_sec=timeout_sec,
                                 keep_sec=max(60.0, 2 * max_lag_sec))
        self.every_window = (not self.reader.live) if every_window is None else every_window
        self.features = _SegmentFeatures()
        # a fine-offset model that reads the offset model's visual features (the bundled one does): the window is
        # read again from memory, so a window waits for the sound its delayed read may take after its end
        self.fine = (models.fine if models.fine is not None and models.fine.cfg.n_segments <= self.n
                     and same_encoders(model, models.fine, ("vfeat_extractor.",)) else None)
        self.margin_ticks = math.ceil(KEEP_MARGIN_SEC * VIDEO_FPS)
        self.wait_segments = math.ceil(self.margin_ticks / SEGMENT_STRIDE_FRAMES) if self.fine is not None else 0
        self.timeline: int | None = None
        self.last_k0: int | None = None
        self.recent: deque = deque(maxlen=median_of)
        self.grid_windows: deque = deque(maxlen=FRACTION_OVER)  # 1: analysed, 0: skipped
        self.offsets: list[float] = []
        self.analysed = self.skipped = self.n_reliable = self.lost = 0
        self.covered: dict[int, float] = {}  # per timeline, the media decoded (s)
        self.lagging = False
        self._stop = False
        self._started: float | None = None

    def stop(self) -> None:
        self._stop = True
        self.reader.stop()

    def events(self) -> Iterator[MonitorEvent]:
        self._warm()
        self._started = time.monotonic()
        self.reader.start()
        yield Started(time.time(), None, input=self.source, hop_sec=self.h * SEGMENT_STRIDE_SEC,
                      tolerance=self.tolerance.to_dict(), alert_after=self.alerts.after, median_of=self.median_of,
                      max_lag_sec=self.max_lag, every_window=self.every_window, weights=self.models.weights)
        ended = False
        try:
            while not self._stop:
                for se in self.reader.events():
                    if se.kind == "end":
                        ended = True
                    else:
                        yield from self._source_event(se)
                tl = self.reader.current()
                k0 = None if tl is None else self._next_window(tl)
                if k0 is None:
                    if ended:
                        return
                    self.reader.wait(0.2)
                    continue
                yield from self._window(tl, k0)
        finally:
            self.reader.stop()

    def _warm(self) -> None:
        """One window of black and silence through every model before the input is opened: the first call's
        one-off costs (seconds on a CPU) would otherwise make the first live reading lag and skip."""
        import torch

        crop, ticks = self.models.offset.cfg.image_size, span_frames(self.n)
        frames = torch.zeros((ticks, 3, crop, crop), dtype=torch.uint8)
        sound = torch.zeros(ticks * SAMPLES_PER_FRAME)
        row = self._read_window(-1, 0, frames, sound)
        if self.fine is not None and row.offset_sec is not None:
            margin = self.margin_ticks
            self._fine_from(-1, 0, 0.0, 0.0, [], -margin, np.zeros((ticks + 2 * margin) * SAMPLES_PER_FRAME,
                                                                        np.float32))
        self.features.feats.clear()

    def _source_event(self, se: SourceEvent) -> Iterator[MonitorEvent]:
        if se.kind == "lost":
            self.lost += 1
            yield InputLost(se.wall, se.timeline, se.media_sec, se.reason)
        elif se.kind == "back":
            yield InputBack(se.wall, se.timeline)
        elif se.kind == "timeline":
            yield NewTimeline(se.wall, se.timeline, se.reason, se.origin_sec)

    def _next_window(self, tl: int) -> int | None:
        if tl != self.timeline:
            self.timeline, self.last_k0 = tl, None
            self.features.forget(tl, 0)
        self.covered[tl] = self.reader.newest_sec(tl) or 0.0
        # windows wait for the sound after them that a fine pass may take, unless no more is coming
        wait = 0 if self.reader.lost or self.reader.ended else self.wait_segments
        complete = self.reader.complete_segments(tl) - wait
        if complete < self.n:
            return None
        newest = (complete - self.n) // self.h * self.h
        following = 0 if self.last_k0 is None else self.last_k0 + self.h
        if newest < following:
            return None
        k0 = following if self.every_window else newest
        passed = (k0 - following) // self.h
        if self.last_k0 is None:
            passed = 0  # joining a stream: what came before was never there to analyse
        self.skipped += passed
        self.grid_windows.extend([0] * min(passed, FRACTION_OVER))
        return k0

    def _window(self, tl: int, k0: int) -> Iterator[MonitorEvent]:
        first_tick = k0 * SEGMENT_STRIDE_FRAMES
        t_start = time.monotonic()
        span = self.reader.span(tl, first_tick, first_tick + span_frames(self.n))
        if span is None:  # dropped or superseded meanwhile
            self.last_k0 = k0
            return
        frames, sound = span
        row = self._read_window(tl, k0, frames, sound)
        refined, reasons = row.refined_offset_sec, list(row.reasons)
        if self.fine is not None and row.used and row.offset_sec is not None:
            refined, reasons = self._fine(tl, k0, row.offset_sec, refined, reasons)
        spent = time.monotonic() - t_start
        passed = 0 if self.last_k0 is None else max(0, (k0 - self.last_k0) // self.h - 1)
        self.last_k0 = k0
        # (the fine pass of the next window may take sound from before it)
        self.reader.release(tl, (k0 + self.h) * SEGMENT_STRIDE_FRAMES - self.margin_ticks)
        self.features.forget(tl, k0 + self.h)
        self.analysed += 1
        self.grid_windows.append(1)
        newest = self.reader.newest_sec(tl) or 0.0
        end = k0 * SEGMENT_STRIDE_SEC + WINDOW_SEC
        lag = max(0.0, newest - end) if not self.every_window else 0.0
        reliable = not reasons
        change = None
        if reliable and refined is not None:
            self.n_reliable += 1
            self.recent.append(refined)
            self.offsets.append(refined)
            change = self.alerts.add(refined)
        side = None if refined is None else side_of(refined, self.tolerance)
        wall = time.time()
        yield WindowReading(
            wall, tl, media_time_sec=end, start_sec=k0 * SEGMENT_STRIDE_SEC, offset_sec=json_sec(row.offset_sec),
            refined_offset_sec=json_sec(refined), confidence=json_prob(row.probability),
            sync_prob=json_prob(row.sync_prob), reliable=reliable, reasons=reasons,
            in_tolerance=None if refined is None else side is None, side=side,
            median_offset_sec=float(np.median(self.recent)) if self.recent else None, median_of=len(self.recent),
            alert=self.alerts.active, lag_sec=lag, skipped=passed,
            analysed_fraction=float(np.mean(self.grid_windows)))
        if change is not None:
            kind, to_side, median = change
            cls = Alert if kind == "alert" else Clear
            extra = {"side": to_side} if kind == "alert" else {}
            yield cls(wall, tl, media_time_sec=end, offset_sec=median, readings=self.alerts.after,
                      tolerance=self.tolerance.to_dict(), **extra)
        if not self.every_window:
            if lag > self.max_lag and not self.lagging:
                self.lagging = True
                yield Lagging(time.time(), tl, lag_sec=lag, max_lag_sec=self.max_lag,
                              analysed_fraction=float(np.mean(self.grid_windows)), seconds_per_window=spent)
            elif lag < self.max_lag / 2:
                self.lagging = False

    def _read_window(self, tl: int, k0: int, frames, sound):
        """The window's row (pooling.WindowRow): as ``analyze`` reads a file's window."""
        n, model, gate = self.n, self.models.offset, self.models.syncability
        chunk = SegmentChunk(0, segment_video(frames, 0, n), segment_audio(sound, 0, n))
        grid = SegmentGrid(path=self.source, start_sec=k0 * SEGMENT_STRIDE_SEC, warnings=[], timing=self.timing,
                           audio_lead_sec=self.audio_lead_sec)
        with using(None, model, gate):
            analysis = run_steps(analysis_steps(model, grid, [chunk], sync_model=gate, first_only=True),
                                 encode=lambda request: self.features.encode(request, tl, k0))
        return analysis.pool(self.min_sync_prob).windows[0]

    def _fine(self, tl: int, k0: int, coarse: float, refined: float, reasons: list[str]):
        """(refined offset, reasons) with the fine-offset model's reading of the window; as they were where the
        sound its delayed read needs is not held."""
        first_tick = k0 * SEGMENT_STRIDE_FRAMES
        got = self.reader.sound(tl, first_tick - self.margin_ticks,
                                first_tick + span_frames(self.n) + self.margin_ticks)
        if got is None:
            return refined, reasons
        return self._fine_from(tl, k0, coarse, refined, reasons, got[0] - first_tick, got[1])

    def _fine_from(self, tl: int, k0: int, coarse: float, refined: float, reasons: list[str], first: int,
                   wave: np.ndarray):
        """``_fine`` with the sound held around the window: ``wave`` from its tick ``first`` on."""
        kept = KeptAudio(0, 0, limit_samples=len(wave) + 1)
        kept.add(first * SAMPLES_PER_FRAME, wave)
        m = self.fine.cfg.n_segments
        if kept.segments(range(m), coarse) is None:
            return refined, reasons
        model = self.models.offset
        visual = {i: self.features.visual(model, tl, k0 + i) for i in range(m)}
        source = FineSource(path=self.source, first_segments=np.zeros(1, np.int64), read_args={}, timing=self.timing,
                            visual_features=visual, visual_model=model, kept_audio=kept)
        fine = fine_pass(self.fine, source, np.ones(1, bool), coarse, timing=self.timing)
        edge = fine_edge_reason(fine)
        return fine.offset_sec, reasons + [edge] if edge else reasons

    def summary(self) -> MonitorSummary:
        wall = time.monotonic() - self._started if self._started is not None else 0.0
        if self.timeline is not None:
            self.covered[self.timeline] = max(self.covered.get(self.timeline, 0.0),
                                              self.reader.newest_sec(self.timeline) or 0.0)
        media = sum(self.covered.values())
        return MonitorSummary(
            time.time(), self.timeline, windows_analysed=self.analysed, windows_skipped=self.skipped,
            reliable=self.n_reliable, unreliable=self.analysed - self.n_reliable,
            reliable_fraction=self.n_reliable / self.analysed if self.analysed else None,
            median_offset_sec=statistics.median(self.offsets) if self.offsets else None,
            alerts=self.alerts.raised, alert=self.alerts.active, inputs_lost=self.lost, media_seconds=media,
            wall_seconds=wall)


def monitor(source: str, weights: str | None = None, *, models: Models | None = None, device: str = "cpu",
            precision: str = "auto", syncability: str | None = "auto", fine: str | None = "auto", **kw) -> Iterator[MonitorEvent]:
    """Watch ``source`` (a stream URL, or a file: ``follow=True`` for one still being written) and yield its
    events (``Started``, then ``WindowReading``, ``Alert``, ``Clear``, ``InputLost``, ``InputBack``, ``NewTimeline``,
    ``Lagging``),
    then a ``MonitorSummary`` when it ends (a finished file's end; closing the generator ends it silently).
    ``models``: from ``load_models`` (else ``weights`` etc. load them, as ``predict``). Other keywords:
    ``Monitor``'s (``hop_sec``, ``tolerance``, ``alert_after``, ``median_of``, ``max_lag_sec``, ``timeout_sec``,
    ``min_sync_prob``, ``audio_track``, ``follow``, ``every_window``)."""
    check_live_input(source, kw.get("follow", False))
    if models is None:
        models = load_models(weights, syncability=syncability, fine=fine, device=device, precision=precision)
    m = Monitor(source, models, **kw)
    yield from m.events()
    yield m.summary()


__all__ = ["Alert", "AlertState", "Clear", "DEFAULT_ALERT_AFTER", "DEFAULT_HOP_SEC", "DEFAULT_MAX_LAG_SEC",
           "DEFAULT_MEDIAN_OF", "DEFAULT_TIMEOUT_SEC", "InputBack", "InputLost", "Lagging", "Monitor",
           "MonitorEvent", "MonitorSummary", "NewTimeline", "Started", "WindowReading", "monitor", "side_of"]
