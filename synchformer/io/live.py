"""Live inputs: a network stream (``udp://``, ``rtmp://``, ``rtsp://``, ``http(s)://`` HLS, ``tcp://``), a file
that is still being written (``follow=True``), or a finished file, decoded continuously onto timelines.

A ``LiveReader`` runs one thread that demuxes and decodes the input as it arrives and places it by ``load_av``'s
rules (io.decode): the pictures on the 25 fps grid anchored at the first video frame (tick n shows the last frame
whose rounded time is <= n; each shown frame scaled and cropped once), the sound on a 16 kHz mono timeline by its
timestamps (``AudioTimeline``). The analysis takes whole segments from it (``segments``) as they complete.

A stream's timestamps are one timeline until they jump (back, or far ahead: an encoder or a sender that restarted);
a jump, and every reconnection, starts a new timeline whose time 0 is its first video frame. When the input stops
(no packet for ``timeout_sec``, an error, the end of a stream) the reader says so (``SourceEvent("lost")``),
opens it again with a growing backoff, and says when it is back. What it holds is bounded: ``keep_sec`` of media
behind the newest; a finished file is read no faster than the analysis takes it (``ahead_sec``).
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from synchformer.constants import AUDIO_SR, SAMPLES_PER_FRAME, SEGMENT_FRAMES, SEGMENT_STRIDE_FRAMES, VIDEO_FPS
from synchformer.errors import SynchformerError
from synchformer.io.decode import (STREAM_SCHEMES, check_local_input, choose_track, close_media, ffmpeg_name,
                                   frame_image, frame_rotation, frame_sizes, is_url, media_stream, nearest_tick)
from synchformer.io.reader import AudioTimeline

# Containers whose index is written when the recording ends (the `moov` box of a plain MP4/MOV): nothing of them can
# be read while they grow. Fragmented MP4 needs seeking the demuxer cannot do on a growing file either.
UNFOLLOWABLE = (".mp4", ".m4v", ".mov", ".3gp", ".3g2", ".m4a", ".f4v")
JUMP_BACK_SEC = 1.0  # a video timestamp this far behind the last one starts a new timeline
JUMP_AHEAD_SEC = 5.0  # ... or this far ahead of it (more than any gap a live encoder leaves)
AUDIO_WAIT_SEC = 3.0  # a segment whose sound has not come this long after its pictures is taken without it
BACKOFF_SEC = (0.5, 1.0, 2.0, 4.0, 8.0)  # waits between reconnection attempts (the last repeats)
POLL_SEC = 0.05
TRIM_SAMPLES = 10 * AUDIO_SR  # a growing file's end is looked at this often


def supported_protocols() -> set[str]:
    return set(av.protocols_available) if hasattr(av, "protocols_available") else set()


def check_live_input(source: str, follow: bool = False) -> None:
    """A one-line SynchformerError (before any model loads) for an input that cannot be monitored: a protocol
    this FFmpeg lacks (SRT in PyAV's wheels), a missing or unreadable file, ``follow`` on a URL or on a container
    that cannot be read while it is written."""
    scheme, sep, _ = source.partition("://")
    scheme = scheme.lower() if sep else ""
    if scheme:
        protocols = supported_protocols()
        if scheme == "srt" and "libsrt" not in protocols and "srt" not in protocols:
            raise SynchformerError(source, "this build of FFmpeg (the one PyAV brings) has no SRT support: relay the "
                                           "stream to UDP (e.g. srt-live-transmit srt://... udp://127.0.0.1:5000) "
                                           "and monitor udp://127.0.0.1:5000")
        if scheme not in STREAM_SCHEMES or protocols and scheme not in protocols and not (
                scheme in ("https", "rtmps", "rtsps") and "tls" in protocols):
            raise SynchformerError(source, f"the {scheme}:// protocol is not supported here (live inputs: "
                                           f"{', '.join(s for s in STREAM_SCHEMES if not protocols or s in protocols)})")
        if follow:
            raise SynchformerError(source, "--follow is for a file that is being written; a stream URL is "
                                           "followed anyway")
        return
    check_local_input(source)
    if follow and os.path.splitext(source)[1].lower() in UNFOLLOWABLE or follow and _is_mp4(source):
        raise SynchformerError(source, "an MP4/MOV file cannot be read while it is being written (its index comes "
                                       "at the end): record to MPEG-TS (.ts) or Matroska (.mkv) to follow it")


def _is_mp4(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    return head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free")


@dataclass
class SourceEvent:
    """What happened to the input: ``kind`` is "timeline" (a new timeline starts: the first, after a
    reconnection, or where the timestamps jumped), "lost", "back" or "end" (a finished file read through)."""

    kind: str
    wall: float  # time.time() when it happened
    timeline: int | None = None
    reason: str = ""
    media_sec: float | None = None  # "lost": how far the timeline had got
    origin_sec: float | None = None  # "timeline": the container time of its first picture (its time 0)


class _GrowingFile:
    """A file that is still being written, read as a stream that never ends: at its end, ``read`` waits for more
    (saying once when nothing came for ``timeout_sec``, and when it grows again) until ``stop`` is set."""

    def __init__(self, path: str, timeout_sec: float, stop: threading.Event, on_lost, on_back):
        self.f = open(path, "rb")
        self.timeout, self.stop, self.on_lost, self.on_back = timeout_sec, stop, on_lost, on_back
        self.lost = False

    def read(self, n: int = -1) -> bytes:
        waited = 0.0
        while True:
            data = self.f.read(n)
            if data:
                if self.lost:
                    self.lost = False
                    self.on_back()
                return data
            if self.stop.is_set():
                return b""
            if waited >= self.timeout and not self.lost:
                self.lost = True
                self.on_lost(f"the file has not grown for {self.timeout:g} s")
            time.sleep(POLL_SEC)
            waited += POLL_SEC

    def close(self) -> None:
        self.f.close()


@dataclass
class _Timeline:
    """One timeline of the input: pictures by tick (sample 640 n of the sound is tick n's), from ``t0``."""

    index: int
    t0: Fraction  # container time of its first video frame (tick 0)
    sound: AudioTimeline
    images: dict = field(default_factory=dict)  # tick -> uint8 (3, H, W)
    next_tick: int = 0  # ticks below are final
    shown: object = None  # the frame shown from next_tick on (not yet converted)
    shown_image: np.ndarray | None = None
    last_t: Fraction | None = None
    floor_tick: int = 0  # ticks below were dropped


class LiveReader:
    """Decode ``source`` continuously in a thread of its own (``start``; ``stop`` ends it).

    ``size``/``crop``: the short side before the centre crop, and the crop (as ``read_segments``).
    ``audio_lead_sec``: the sound is taken that much early (a model trained with the authors' timing).
    ``follow``: a file still being written. ``live``: the input moves on by itself (a stream, a growing file),
    so that the analysis must keep up with it; a finished file is read only ``ahead_sec`` ahead of what the
    analysis has released. ``timeout_sec``: no data for this long is a lost input."""

    def __init__(self, source: str, *, size: int, crop: int, audio_track: int | str | None = None,
                 audio_lead_sec: float = 0.0, follow: bool = False, timeout_sec: float = 5.0,
                 keep_sec: float = 60.0, ahead_sec: float = 20.0):
        self.source, self.size, self.crop, self.audio_track = source, size, crop, audio_track
        self.lead = Fraction(round(audio_lead_sec * AUDIO_SR), AUDIO_SR)
        self.follow, self.timeout = follow, timeout_sec
        self.url = is_url(source)
        self.live = self.url or follow
        self.keep_ticks, self.ahead_ticks = round(keep_sec * VIDEO_FPS), round(ahead_sec * VIDEO_FPS)
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._events: deque[SourceEvent] = deque()
        self._timeline: _Timeline | None = None
        self._count = 0
        self._released = 0  # ticks of the current timeline the analysis no longer needs
        self._pending_audio: deque = deque(maxlen=400)  # sound frames waiting for their timeline's first picture
        self._thread = threading.Thread(target=self._run, name="synchformer-live", daemon=True)
        self._lost = False
        self._has_audio = self._got_data = False
        self.ended = False

    # ------------------------------------------------------------------ the analysis' side

    def start(self) -> LiveReader:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def wait(self, timeout: float) -> None:
        """Until something new is decoded or happens (at most ``timeout`` s)."""
        with self._cond:
            self._cond.wait(timeout)

    def events(self) -> list[SourceEvent]:
        with self._cond:
            out = list(self._events)
            self._events.clear()
            return out

    @property
    def lost(self) -> bool:
        """Whether the input is lost now (nothing more is coming until it is back)."""
        return self._lost

    def current(self) -> int | None:
        """The index of the timeline being decoded now (None before the first picture)."""
        with self._cond:
            return None if self._timeline is None else self._timeline.index

    def complete_segments(self, timeline: int) -> int:
        """How many whole segments of ``timeline`` (from its tick 0) can be had now: their pictures final and
        their sound come (or awaited in vain for ``AUDIO_WAIT_SEC``)."""
        with self._cond:
            tl = self._timeline
            if tl is None or tl.index != timeline:
                return 0
            ticks = tl.next_tick
            if self._has_audio:
                heard = (tl.sound.end or 0) // SAMPLES_PER_FRAME
                ticks = min(ticks, max(heard, tl.next_tick - round(AUDIO_WAIT_SEC * VIDEO_FPS)))
            return max(0, (ticks - SEGMENT_FRAMES) // SEGMENT_STRIDE_FRAMES + 1)

    def newest_sec(self, timeline: int) -> float | None:
        """How far ``timeline`` has been decoded (s from its first picture)."""
        with self._cond:
            tl = self._timeline
            return None if tl is None or tl.index != timeline else tl.next_tick / VIDEO_FPS

    def span(self, timeline: int, k_first: int, k_stop: int):
        """``(frames uint8 (T, 3, crop, crop), sound float32 (640 T,))`` of ticks [k_first, k_stop) of
        ``timeline``, or None when they are not all held (a timeline that ended, ticks dropped)."""
        import torch

        with self._cond:
            tl = self._timeline
            if tl is None or tl.index != timeline or k_first < tl.floor_tick or k_stop > tl.next_tick:
                return None
            frames = np.stack([tl.images[k] for k in range(k_first, k_stop)])
            sound = np.clip(tl.sound.slice(k_first * SAMPLES_PER_FRAME, k_stop * SAMPLES_PER_FRAME), -1.0, 1.0)
        return torch.from_numpy(frames), torch.from_numpy(sound)

    def sound(self, timeline: int, k_first: int, k_stop: int) -> tuple[int, np.ndarray] | None:
        """``(first tick, 16 kHz sound)`` of the ticks of [k_first, k_stop) that are held (decoded and not yet
        dropped), or None when there are none."""
        with self._cond:
            tl = self._timeline
            if tl is None or tl.index != timeline:
                return None
            lo, hi = max(k_first, tl.floor_tick), min(k_stop, tl.next_tick)
            if lo >= hi:
                return None
            return lo, np.clip(tl.sound.slice(lo * SAMPLES_PER_FRAME, hi * SAMPLES_PER_FRAME), -1.0, 1.0)

    def release(self, timeline: int, tick: int) -> None:
        """The analysis needs nothing of ``timeline`` before ``tick`` any more."""
        with self._cond:
            if self._timeline is not None and self._timeline.index == timeline:
                self._released = max(self._released, tick)
                self._drop(self._timeline, min(tick, self._timeline.next_tick))
                self._cond.notify_all()

    # ------------------------------------------------------------------ the reading thread

    def _say(self, kind: str, reason: str = "", media_sec: float | None = None) -> None:
        with self._cond:
            tl = self._timeline
            self._events.append(SourceEvent(kind, time.time(), None if tl is None else tl.index, reason, media_sec))
            self._cond.notify_all()

    def _lost_now(self, reason: str) -> None:
        if not self._lost:
            self._lost = True
            tl = self._timeline
            self._say("lost", reason, None if tl is None else tl.next_tick / VIDEO_FPS)

    def _back_now(self) -> None:
        if self._lost:
            self._lost = False
            self._say("back")

    def _open(self):
        if self.follow:
            self._file = _GrowingFile(self.source, self.timeout, self._stop, self._lost_now, self._back_now)
            try:
                return av.open(self._file, metadata_errors="ignore")
            except BaseException:
                self._file.close()
                raise
        self._file = None
        kw = {"timeout": (self.timeout, self.timeout)} if self.url else {}
        options = {"overrun_nonfatal": "1"} if self.source.lower().startswith("udp://") else {}
        return av.open(ffmpeg_name(self.source), options=options, metadata_errors="ignore", **kw)

    def _run(self) -> None:
        attempt, seen_once = 0, False
        while not self._stop.is_set():
            try:
                container = self._open()
            except (av.error.FFmpegError, OSError, SynchformerError) as e:
                if not self.live:  # a file that cannot be read now: the analysis ends
                    self._say("end", f"cannot be read ({_reason(e)})")
                    return
                self._lost_now(f"cannot be opened ({_reason(e)})" if seen_once else f"no input yet ({_reason(e)})")
                self._stop.wait(BACKOFF_SEC[min(attempt, len(BACKOFF_SEC) - 1)])
                attempt += 1
                continue
            reason = "the stream ended"
            try:
                self._read(container)
            except (av.error.FFmpegError, OSError, SynchformerError) as e:
                reason = (f"no data for {self.timeout:g} s" if isinstance(e, av.error.ExitError)
                          else f"reading failed ({_reason(e)})")
            finally:
                close_media(container)
                if self._file is not None:
                    self._file.close()
            seen_once = True
            if self._stop.is_set():
                return
            if not self.live:
                self.ended = True
                self._say("end", "the file ended")
                return
            attempt = 0 if self._got_data else attempt + 1
            self._lost_now(reason)
            self._stop.wait(BACKOFF_SEC[min(attempt, len(BACKOFF_SEC) - 1)])

    def _read(self, container) -> None:
        self._got_data = False
        v = media_stream(self.source, container, "video")
        track = choose_track(self.source, container, self.audio_track)
        a = container.streams[track.stream_index] if track is not None else None
        self._has_audio = a is not None
        streams = [v] if a is None else [v, a]
        for s in streams:
            s.codec_context.thread_type = "AUTO"
        self._reformatter = VideoReformatter()
        self._rotation = None
        self._new_timeline_on_next = True  # each opening starts a timeline
        for packet in container.demux(*streams):
            if self._stop.is_set():
                return
            if not self.live:
                self._hold_back()
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:  # damage on the way: skipped, as ffmpeg does
                continue
            for frame in frames:
                if frame.pts is None:
                    continue
                t = Fraction(frame.pts) * frame.time_base
                if not self._got_data:
                    self._got_data = True
                    self._back_now()
                if packet.stream.type == "video":
                    self._video(t, frame)
                else:
                    self._audio(t, frame)
        with self._cond:  # the end: the last picture lasts one frame, the sound's run is flushed
            tl = self._timeline
            if tl is not None and tl.shown is not None:
                self._show_until(tl, tl.next_tick + 1)
                tl.sound.finish()
                self._cond.notify_all()

    def _hold_back(self) -> None:
        """A finished file: wait while the analysis is ``ahead_sec`` behind what is decoded."""
        with self._cond:
            while (not self._stop.is_set() and self._timeline is not None
                   and self._timeline.next_tick - self._released > self.ahead_ticks):
                self._cond.wait(0.5)

    def _start_timeline(self, t0: Fraction, reason: str) -> _Timeline:
        with self._cond:
            self._count += 1
            tl = _Timeline(self._count, t0, AudioTimeline(t0 + self.lead, 0))
            self._timeline, self._released = tl, 0
            self._events.append(SourceEvent("timeline", time.time(), tl.index, reason, origin_sec=float(t0)))
            self._cond.notify_all()
        pending = list(self._pending_audio)
        self._pending_audio.clear()
        for ta, frame in pending:
            self._audio(ta, frame)
        return tl

    def _video(self, t: Fraction, frame) -> None:
        tl = self._timeline
        if self._new_timeline_on_next or tl is None:
            self._new_timeline_on_next = False
            tl = self._start_timeline(t, "first picture" if self._count == 0 else "the input opened again")
        elif t < tl.last_t - JUMP_BACK_SEC or t > tl.last_t + JUMP_AHEAD_SEC:
            tl = self._start_timeline(t, f"the timestamps jumped by {float(t - tl.last_t):+.1f} s (a restarted "
                                         "stream): a new timeline")
        if self._rotation is None:
            self._rotation = frame_rotation(frame)
            frame_sizes(self.source, frame, self._rotation, self.size, self.crop)
        tick = nearest_tick(t, tl.t0)  # tick n shows the last frame whose rounded time is <= n
        with self._cond:
            if tl.shown is not None:
                self._show_until(tl, tick)
            tl.shown, tl.shown_image = frame, None
            tl.last_t = t
            self._cond.notify_all()

    def _show_until(self, tl: _Timeline, tick: int) -> None:
        for k in range(tl.next_tick, tick):
            if tl.shown_image is None:
                tl.shown_image = frame_image(tl.shown, self.size, self.crop, self._rotation, self._reformatter)
            tl.images[k] = tl.shown_image
        tl.next_tick = max(tl.next_tick, tick)
        self._drop(tl, tl.next_tick - self.keep_ticks)

    def _drop(self, tl: _Timeline, below: int) -> None:
        if below <= tl.floor_tick:
            return
        for k in range(tl.floor_tick, below):
            tl.images.pop(k, None)
        tl.floor_tick = below
        if below * SAMPLES_PER_FRAME - tl.sound.base >= TRIM_SAMPLES:  # (a trim copies what is kept: not per frame)
            tl.sound.trim(below * SAMPLES_PER_FRAME)

    def _audio(self, t: Fraction, frame) -> None:
        tl = self._timeline
        if tl is None or tl.last_t is None or t < tl.t0 - JUMP_BACK_SEC or t > tl.last_t + JUMP_AHEAD_SEC:
            self._pending_audio.append((t, frame))  # before its timeline's first picture (or a new timeline's)
            return
        with self._cond:
            tl.sound.add(t, frame)
            self._cond.notify_all()


def _reason(e: BaseException) -> str:
    if isinstance(e, SynchformerError):
        return e.problem
    text = getattr(e, "strerror", None) or str(e)
    return str(text).strip() or type(e).__name__


__all__ = ["LiveReader", "SourceEvent", "UNFOLLOWABLE", "check_live_input", "supported_protocols"]
