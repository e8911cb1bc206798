"""One pass over a media file: opened once, decoded in order (``MediaReader``), its sound kept when asked
(``KeptAudio``).

``load_av`` opens a file for every call and decodes each stream in a container of its own, which is all a one-off
read needs. An analysis pass reads a file in chunks, or in windows spread over a film, and through ``load_av`` it
opened a 12 s clip eight times, decoded its first frame three times, and for every chunk decoded the video again
from a keyframe and the sound again from the start of its stream. A ``MediaReader`` opens the file once. Its first
look (the streams, the audio track, the start times, the first video frame with its rotation and size, the header's
duration, and for ``timing="authors"`` the first sound) is made once and kept, and its reads decode the video and
the sound from one demux, in order, each going on from where the last one stopped: the frames and the sound a read
decoded past its end are there for the next one.

Every frame and sample is placed by ``load_av``'s rules (``io.decode``: the 25 fps grid anchored at the first video
frame, the sound placed by its timestamps with ``AudioPlacer``), so that a read from the start of the file gives what
``load_av`` gives for the same span, bit for bit. A read far ahead seeks (in the same container) by the same rules:
only when the target is ``SEEK_MIN_SEC`` ahead (the sound's 30 s when it is decoded: nearer, decoding on keeps it
exactly a full decode's), from a keyframe at least ``PREROLL_SEC`` before the target, the sound's first frames
after a seek dropped as warm-up. Between reads, the video packets the target does not need (those before its last
keyframe) are skipped without being decoded.
"""

from __future__ import annotations

import bisect
import functools
import math
import os
from collections import deque
from fractions import Fraction
from typing import Sequence

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from synchformer.constants import (
    AUDIO_SR,
    CROP_SIZE,
    RESIZE_SHORT_SIDE,
    SAMPLES_PER_FRAME,
    SEGMENT_FRAMES,
    SEGMENT_SAMPLES,
    SEGMENT_STRIDE_FRAMES,
    TIMINGS,
    VIDEO_FPS,
)
from synchformer.errors import SynchformerError
from synchformer.io.decode import (
    AUDIO_TAIL_SEC,
    AUTHORS_DROPPED_SAMPLES,
    PREROLL_SEC,
    SEEK_MIN_SEC,
    AudioEvent,
    AudioPlacer,
    AVClip,
    choose_track,
    clip_warnings,
    close_media,
    decoding_errors,
    frame_image,
    frame_rotation,
    frame_seconds,
    frame_sizes,
    media_stream,
    nearest_tick,
    note_declared_duration,
    open_media,
    stream_span,
)

# Sound kept around each window a pass read (KeptAudio), and the seek margin of the sound: a delayed read of the same
# window (the fine pass: up to the offset classes' 2 s) then takes its sound from the same decoded run.
KEEP_MARGIN_SEC = 2.5
KEEP_MAX_SEC = 3600  # the most sound one pass keeps (16 kHz float32: 230 MB an hour); later spans are not kept
# How far ahead of the sound the video's packets may lie in the file (and the other way) before the sound is taken to
# have none there: muxers interleave within 1 s (FFmpeg's max_interleave_delta is 10 s), and a stream that has ended
# must not make the reader hold the rest of the file.
_INTERLEAVE_MAX_SEC = 10


class _SeekMissed(Exception):
    """A seek landed after its target (an inexact index, a demuxer that cannot seek a stream): decode from the
    start instead, as load_av does."""


def _errors(fn):
    """A PyAV/OS failure while reading becomes a one-line SynchformerError naming the file (io.decode's rule)."""

    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        with decoding_errors(self.path):
            return fn(self, *args, **kwargs)

    return wrapper


class _Clock:
    """``io.decode's _timed`` one frame at a time: exact presentation times; a frame without pts follows the last."""

    def __init__(self, stream):
        self.tb = stream.time_base
        self.t, self.step = Fraction(stream.start_time or 0) * stream.time_base, Fraction(0)
        self.audio = stream.type == "audio"
        self.video_step = None if self.audio else 1 / Fraction(stream.average_rate or stream.guessed_rate or VIDEO_FPS)

    def __call__(self, frame) -> Fraction:
        self.t = self.t + self.step if frame.pts is None else Fraction(frame.pts) * self.tb
        self.step = frame_seconds(frame) if self.audio else self.video_step
        return self.t


class AudioTimeline(AudioPlacer):
    """``AudioPlacer`` over a run of reads: sample p plays at ``origin + p / 16 kHz``; samples below ``base`` are
    dropped as they are placed (as a clip's placer drops what falls before its clip), and ``trim`` raises the base
    as the reads move on. The written spans are recorded, so that each read knows what of it the stream covers.
    (io.live places a live input's sound on one of these per timeline.)"""

    def __init__(self, origin: Fraction, base: int):
        super().__init__(origin, None)
        self.base = base
        self.spans: list[list[int]] = []  # written [lo, hi), in order, merged where they touch

    def _write(self, x: np.ndarray) -> None:
        lo, hi = max(self.pos, self.floor, self.base), self.pos + len(x)
        if lo < hi:
            if hi - self.base > len(self.audio):
                grown = np.zeros(max(hi - self.base, 2 * len(self.audio)), np.float32)
                grown[:len(self.audio)] = self.audio
                self.audio = grown
            self.audio[lo - self.base:hi - self.base] = x[lo - self.pos:hi - self.pos]
            self.first = lo if self.first is None else min(self.first, lo)
            self.end = hi if self.end is None else max(self.end, hi)
            if self.spans and lo <= self.spans[-1][1]:
                self.spans[-1][1] = max(self.spans[-1][1], hi)
            else:
                self.spans.append([lo, hi])
        self.pos += len(x)

    def trim(self, base: int) -> None:
        if base <= self.base:
            return
        self.audio = self.audio[base - self.base:].copy()
        self.base = base
        self.spans = [[max(lo, base), hi] for lo, hi in self.spans if hi > base]
        # events wholly before the base were reported by the reads that covered them
        self.events = [e for e in self.events
                       if self.origin + Fraction(base, AUDIO_SR) <= e.at_sec + Fraction(e.duration_sec)]

    def slice(self, lo: int, hi: int) -> np.ndarray:
        """Samples [lo, hi): zeros where nothing is written (lo >= base)."""
        out = np.zeros(hi - lo, np.float32)
        a, b = max(lo, self.base), min(hi, self.base + len(self.audio))
        if a < b:
            out[a - lo:b - lo] = self.audio[a - self.base:b - self.base]
        return out

    def covered(self, lo: int, hi: int) -> tuple[int, int]:
        """(first, end) of what the stream wrote in [lo, hi), relative to lo: as a clip's placer reports them."""
        inside = [(max(a, lo), min(b, hi)) for a, b in self.spans if a < hi and b > lo]
        if not inside:
            return hi - lo, hi - lo
        return inside[0][0] - lo, inside[-1][1] - lo


class KeptAudio:
    """The 16 kHz sound a pass decoded, kept so that a second pass can take its segments with the sound delayed
    (inference.fine's fine pass) without reading the file again.

    What is kept: for a pass over every segment, all of it (up to ``KEEP_MAX_SEC``) from ``KEEP_MARGIN_SEC`` before
    its first frame to as long after its last; for a sampled pass, each window with that margin on both sides. The
    sound is the same decoded run as a read with ``audio_delay_sec`` decodes (the reader seeks with the same margin
    whatever the delay), so :meth:`segments` equals what that read gives, to the sample."""

    def __init__(self, delay_samples: int = 0, first_frame: int = 0, limit_samples: int = KEEP_MAX_SEC * AUDIO_SR):
        self.delay = delay_samples  # the pass's own audio_delay_sec, in samples
        self.first_frame = first_frame  # segment 0 starts at this frame (read_segments' first_frame)
        self.limit = limit_samples
        self._starts: list[int] = []  # first sample of each kept piece (position on the pass's timeline:
        self._pieces: list[np.ndarray] = []  # sample 640 f is the sound of frame f), in order, not overlapping
        self.full = False  # the limit was reached: later pieces were not kept
        self._sound: list[list[int]] = []  # [lo, hi) spans the stream itself wrote (the rest of a piece is padding)
        # the pass seeked (a sampled film): a read delayed by more than this decodes a run of its own (MediaReader)
        self.exact_within: int | None = None

    def seeked(self, margin_sec) -> None:
        margin = math.floor(margin_sec * AUDIO_SR)
        self.exact_within = margin if self.exact_within is None else min(self.exact_within, margin)

    @classmethod
    def of_track(cls, track: np.ndarray, first_frame: int = 0, margin_sec: float = KEEP_MARGIN_SEC) -> KeptAudio:
        """An external track (read_segments' ``audio``: sample 0 with the first video frame), with silence for the
        margin before its start, as a delayed read has it, and after its end."""
        margin = round(max(margin_sec, KEEP_MARGIN_SEC) * AUDIO_SR)
        kept = cls(0, first_frame, limit_samples=len(track) + 2 * margin)
        zeros = np.zeros(margin, np.float32)
        kept.add(-margin, np.concatenate([zeros, np.asarray(track, np.float32), zeros]), sound=[(0, len(track))])
        return kept

    def add(self, lo: int, samples: np.ndarray, sound: Sequence[tuple[int, int]] | None = None) -> None:
        """Keep ``samples`` as positions [lo, lo + len); what is kept already (reads overlap) stays as it is.
        ``sound``: the spans of them the stream wrote (None: all of them), the rest being silence put in its
        place."""
        hi = lo + len(samples)
        for a, b in ([(lo, hi)] if sound is None else sound):
            a, b = max(a, lo), min(b, hi)
            if a >= b:
                continue
            if self._sound and a <= self._sound[-1][1]:
                self._sound[-1][1] = max(self._sound[-1][1], b)
            else:
                self._sound.append([a, b])
        if self._pieces:
            end = self._starts[-1] + len(self._pieces[-1])
            if lo < end:
                samples, lo = samples[end - lo:], end
        if not len(samples):
            return
        if sum(map(len, self._pieces)) + len(samples) > self.limit:
            self.full = True
            return
        self._starts.append(lo)
        self._pieces.append(np.array(samples, np.float32))

    def span(self, lo: int, hi: int) -> np.ndarray | None:
        """Samples [lo, hi) of the timeline, or None when not all of them are kept."""
        i = bisect.bisect_right(self._starts, lo) - 1
        if i < 0:
            return None
        parts, at = [], lo
        while at < hi:
            if i >= len(self._pieces) or self._starts[i] > at or self._starts[i] + len(self._pieces[i]) <= at:
                return None
            piece, s = self._pieces[i], self._starts[i]
            parts.append(piece[at - s:min(hi, s + len(piece)) - s])
            at = s + len(piece)
            i += 1
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def sound_fraction(self, ks: Sequence[int], delay_sec: float) -> float:
        """The share of the sound of segments ``ks`` taken ``delay_sec`` later (as :meth:`segments`) that the stream
        itself holds: 0 where it is all silence put in for sound the stream does not have."""
        shift = round(delay_sec * AUDIO_SR) - self.delay
        total = held = 0
        for k in ks:
            lo = (self.first_frame + SEGMENT_STRIDE_FRAMES * int(k)) * SAMPLES_PER_FRAME - shift
            hi = lo + SEGMENT_SAMPLES
            total += SEGMENT_SAMPLES
            i = max(0, bisect.bisect_right([a for a, _ in self._sound], lo) - 1)
            for a, b in self._sound[i:]:
                if a >= hi:
                    break
                held += max(0, min(b, hi) - max(a, lo))
        return held / total if total else 0.0

    def segments(self, ks: Sequence[int], delay_sec: float):
        """``(len(ks), 10240)`` float32 tensor: the sound of segment k (of the pass's grid, ``SegmentChunk.first +
        i``) taken ``delay_sec`` later, i.e. the file's sound at segment time t - delay (silence before its
        stream's start), as ``read_segments(..., audio_delay_sec=delay_sec)`` gives it; None when what is kept does
        not hold all of it (a delayed span that reaches past what was kept; for a pass that seeked, any delay past
        the 2.5 s margin, with which a delayed read would seek to another place)."""
        shift = round(delay_sec * AUDIO_SR) - self.delay
        if self.exact_within is not None and abs(shift) > self.exact_within:
            return None
        rows = []
        for k in ks:
            lo = (self.first_frame + SEGMENT_STRIDE_FRAMES * int(k)) * SAMPLES_PER_FRAME - shift
            row = self.span(lo, lo + SEGMENT_SAMPLES)
            if row is None:
                return None
            rows.append(row)
        import torch

        return torch.from_numpy(np.stack(rows)) if rows else torch.zeros(0, SEGMENT_SAMPLES)


class MediaReader:
    """A media file opened once and read in order: ``read(k_first, k_stop)`` is ``load_av`` of the ticks
    ``[k_first, k_stop)`` of the 25 fps grid anchored at the first video frame (``AVClip``, same arguments).

    Reads go on from where the last one stopped (the last ``keep_frames`` frames stay for a read that starts among
    them); a read far ahead seeks; one behind what is kept starts again. ``keep_audio``: keep the sound of every
    read, with ``keep_margin_sec`` (default ``KEEP_MARGIN_SEC``) on both sides, in ``kept`` (KeptAudio); a wide
    search (inference.search) keeps more. Not thread-safe: one read at a time.
    ``close()`` (or ``with``) closes the file."""

    def __init__(self, path: str | os.PathLike, size: int | None = RESIZE_SHORT_SIDE, crop: int | None = CROP_SIZE,
                 with_audio: bool = True, timing: str = "true", audio_track: int | str | None = None,
                 audio_delay_sec: float = 0.0, keep_audio: bool = False, keep_frames: int = SEGMENT_FRAMES,
                 keep_margin_sec: float = KEEP_MARGIN_SEC):
        self.path = path = os.fspath(path)
        if size is not None and size <= 0 or crop is not None and crop <= 0:
            raise SynchformerError(path, f"size and crop must be positive, got size={size}, crop={crop}")
        if timing not in TIMINGS:
            raise ValueError(f"timing must be one of {', '.join(TIMINGS)}, not {timing!r}")
        self.size, self.crop, self.keep_frames = size, crop, keep_frames
        self._container = self._demux = None
        try:
            self._look(with_audio, timing, audio_track, audio_delay_sec, keep_audio, keep_margin_sec)
        except BaseException:
            self.close()
            raise

    @_errors
    def _look(self, with_audio, timing, audio_track, audio_delay_sec, keep_audio, keep_margin_sec) -> None:
        """The first look, kept for every read: streams, track, start times, the first frame, the first sound."""
        path = self.path
        self._container = c = open_media(path)
        self._v = media_stream(path, c, "video")
        self.track = choose_track(path, c, audio_track) if with_audio else None  # before decoding any video
        self._a = c.streams[self.track.stream_index] if self.track is not None else None
        self.source_fps = float(self._v.average_rate or self._v.guessed_rate or 0) or None
        self.source_duration = c.duration / av.time_base if c.duration else None
        # what probe says of the header (inference.stream._header_segments reads it)
        self.header = {"duration_sec": self.source_duration,
                       "start_sec": c.start_time / av.time_base if c.start_time is not None else None,
                       "video": stream_span(self._v)}
        note_declared_duration(path, self.source_duration)
        for s in self._streams():
            s.codec_context.thread_type = "AUTO"
        self._seek_sec = SEEK_MIN_SEC["audio" if self._a is not None else "video"]
        self._seek_ok = True  # False once a seek has missed: read ahead by decoding on
        self._damaged: list = []
        self._start_demux()
        self._reset_video(0)
        first = self._next_vframe()
        if first is None:
            raise SynchformerError(path, "no video frames could be decoded")
        self._vpush = first
        self.t0, frame = first
        self.origin_sec = float(self.t0)
        self.rotation = frame_rotation(frame)
        self.source_size, self.out_size = frame_sizes(path, frame, self.rotation, self.size, self.crop)
        self._display_rotation = getattr(frame, "rotation", 0)  # (for the warnings: as load_av's)
        self.lead = Fraction(0)
        if self._a is not None and timing == "authors":  # load_av's authors lead, from this demux
            sound = self._next_aframe(starve_after=self.t0)
            if sound is not None:
                self._apush = sound
                if sound[0] - self.t0 <= Fraction(1, 2 * AUDIO_SR):
                    self.lead = Fraction(AUTHORS_DROPPED_SAMPLES, AUDIO_SR)
        self.delay = Fraction(round(audio_delay_sec * AUDIO_SR), AUDIO_SR)
        # sample 640 k of the timeline is the sound of tick k (container time of tick k + lead - delay)
        self.audio_origin = self.t0 + self.lead - self.delay
        self._keep_margin = round(keep_margin_sec * AUDIO_SR) if keep_audio and self._a is not None else 0
        # The sound is decoded from this far before a seek's target and to this far past each read's end, whatever
        # the delay (up to it): a delayed read then decodes the very packets a read with no delay does, in the same
        # order, so its sound is the same run (the resampler's phase, and the decoder's state: AAC's noise
        # substitution draws from a generator that a seek does not reset), and KeptAudio equals it to the sample.
        self._margin = (max(Fraction(KEEP_MARGIN_SEC), abs(self.delay)) if not keep_audio
                        else Fraction(max(keep_margin_sec, KEEP_MARGIN_SEC)).limit_denominator(AUDIO_SR)
                        + abs(self.delay))
        self.kept = KeptAudio(round(self.delay * AUDIO_SR)) if self._keep_margin else None
        self._reformatter = VideoReformatter()
        self._reported_damaged = 0

    # ------------------------------------------------------------------ demux: one container, a queue per stream

    def _streams(self):
        return [self._v] if self._a is None else [self._v, self._a]

    def _start_demux(self) -> None:
        if self._demux is not None:
            self._demux.close()
        self._demux = self._container.demux(*self._streams())
        self._queues = {s.index: deque() for s in self._streams()}
        self._vbuf: deque = deque()  # video packets kept by a skip, decoded before any new one
        self._skip_to: Fraction | None = None
        self._vframes: deque = deque()
        self._aframes: deque = deque()
        self._vpush = self._apush = None
        self._vclock = _Clock(self._v)
        self._aclock = _Clock(self._a) if self._a is not None else None
        self._check_video = self._check_audio = None  # after a seek: the latest a first frame may start
        self._warm = None  # after a seek: sound frames that end before this only prime the decoder
        self._timeline = None

    def _pull(self, index: int, starve_after: Fraction | None = None):
        """The next packet of stream ``index``; None at the end, or when the other stream's packets have run
        ``_INTERLEAVE_MAX_SEC`` past ``starve_after`` in the file (the stream has nothing there)."""
        q = self._queues[index]
        while not q:
            if starve_after is not None and self._beyond(index, starve_after):
                return None
            if self._demux is None:
                return None
            packet = next(self._demux, None)
            if packet is None:
                self._demux = None
                return None
            self._queues[packet.stream.index].append(packet)  # (a flush packet's stream_index is 0)
        return q.popleft()

    def _beyond(self, index: int, t: Fraction) -> bool:
        for other, q in self._queues.items():
            if other != index and q:
                p = q[-1]
                ts = p.dts if p.dts is not None else p.pts
                if ts is not None and ts * p.time_base > t + _INTERLEAVE_MAX_SEC:
                    return True
        return False

    def _decode(self, packet) -> list:
        try:
            return packet.decode()
        except av.error.InvalidDataError:  # as ffmpeg: skip what the decoder rejects, and say so
            self._damaged.append(packet.pts)
            return []

    def _more_video(self) -> bool:
        """Decode one more video packet; False at the end of the stream."""
        if self._skip_to is not None:
            self._skip()
        packet = self._vbuf.popleft() if self._vbuf else self._pull(self._v.index)
        if packet is None:
            return False
        for frame in self._decode(packet):
            t = self._vclock(frame)
            if self._check_video is not None:
                if t > self._check_video:
                    raise _SeekMissed()
                self._check_video = None
            self._vframes.append((t, frame))
        return True

    def _skip(self) -> None:
        """Leave out the video packets before the last keyframe at or before ``_skip_to`` (the target less the
        preroll, where load_av's seek would land): they are demuxed (the sound's packets between are kept for
        it) but not decoded. If any is left out, the decoder starts afresh at that keyframe, as after a seek."""
        until, self._skip_to = self._skip_to, None
        kept, left_out = [], False
        while True:
            packet = self._pull(self._v.index)
            if packet is None:
                break
            ts = packet.pts if packet.pts is not None else packet.dts
            t = None if ts is None else ts * packet.time_base
            if self._check_video is not None and t is not None:  # a seek's first packet: after where it aimed?
                if t > self._check_video:
                    raise _SeekMissed()
                self._check_video = None
            if packet.size and packet.is_keyframe and t is not None and t <= until:
                left_out = left_out or bool(kept)
                kept = [packet]
            else:
                kept.append(packet)
            if not packet.size or t is None or t > until:
                break
        if left_out:
            cc = self._v.codec_context
            if cc.is_open:
                cc.flush_buffers()
            self._vframes.clear()
            self._vclock = _Clock(self._v)
            self._reset_video(self._k_target)
        self._vbuf.extend(kept)

    def _next_vframe(self):
        if self._vpush is not None:
            tf, self._vpush = self._vpush, None
            return tf
        while not self._vframes:
            if not self._more_video():
                return None
        return self._vframes.popleft()

    def _next_aframe(self, starve_after: Fraction | None = None):
        """The next sound frame; None at the end of the stream, or (``starve_after``) when it has none near it."""
        if self._apush is not None:
            tf, self._apush = self._apush, None
            return tf
        while not self._aframes:
            packet = self._pull(self._a.index, starve_after)
            if packet is None:
                return None
            for frame in self._decode(packet):
                t = self._aclock(frame)
                if self._check_audio is not None:
                    a_start = self._a.start_time
                    if t > self._check_audio and (a_start is None or a_start * self._a.time_base <= self._check_audio):
                        raise _SeekMissed()
                    self._check_audio = None
                self._aframes.append((t, frame))
        return self._aframes.popleft()

    # ------------------------------------------------------------------ the video: load_av's tick loop, resumable

    def _reset_video(self, k: int) -> None:
        """The tick loop afresh at tick ``k`` (as load_av's at its first tick): nothing shown yet."""
        self._k = self._k_target = k  # the next tick not yet decided
        self._cur = self._img = None  # the frame shown from tick _k on (so far), and its image
        self._prev_t = self._last_t = None
        self._vend = None  # the end of the last frame, once the stream has ended
        self._vpush = None
        self._imgs, self._img0 = [], k

    def _show_until(self, until: int, k_stop: int | None) -> None:
        """Show the current frame at ticks _k .. until-1 (only from the read's first tick on: converted once, and
        only if shown there at all)."""
        until = until if k_stop is None else min(until, k_stop)
        if self._cur is not None and self._k < until:
            lo = max(self._k, self._img0)
            if lo < until:
                if self._img is None:
                    self._img = frame_image(self._cur, self.size, self.crop, self.rotation, self._reformatter)
                self._imgs.extend([self._img] * (until - lo))
            self._k = until

    def _tick(self, t: Fraction) -> int:
        return nearest_tick(t, self.t0)

    def _fill_video(self, k_stop: int | None) -> None:
        while k_stop is None or self._k < k_stop:
            if self._vend is not None:  # the stream has ended: the last frame lasts its duration
                self._show_until(self._tick(self._vend), k_stop)
                return
            tf = self._next_vframe()
            if tf is None:
                cur = self._cur
                if cur is None:
                    return
                dur = Fraction(cur.duration) * cur.time_base if getattr(cur, "duration", None) else None
                dur = dur or (self._last_t - self._prev_t if self._prev_t is not None
                              else 1 / Fraction(self.source_fps or VIDEO_FPS))
                self._vend = self._last_t + dur
                continue
            t, frame = tf
            self._show_until(self._tick(t), k_stop)  # tick n shows the last frame whose rounded pts is <= n
            if k_stop is not None and self._k >= k_stop:
                self._vpush = tf  # the next read starts with it
                return
            self._prev_t, self._last_t, self._cur, self._img = self._last_t, t, frame, None

    # ------------------------------------------------------------------ the sound: one run of AudioPlacer per demux

    def _fill_audio(self, until: Fraction) -> None:
        """Place sound frames until one that starts after ``until`` is placed (all before it is then final: a gap
        before it has flushed its run), or the stream ends (flushed too)."""
        tl = self._timeline
        while not self._aended and (self._alast is None or self._alast <= until):
            tf = self._next_aframe(starve_after=until)
            if tf is None:  # the end of the stream, or nothing of it near: its run ends here (as at load_av's end)
                tl.finish()
                self._aended = self._demux is None and not self._queues[self._a.index]
                return
            t, frame = tf
            if self._warm is not None:  # after a seek the first frames only prime the decoder: can be mistimed
                if t + frame_seconds(frame) < self._warm:
                    continue
                self._warm = None
            tl.add(t, frame)
            self._alast = t

    def _new_timeline(self, base: int) -> None:
        self._timeline = AudioTimeline(self.audio_origin, base)
        self._alast, self._aended = None, False

    # ------------------------------------------------------------------ positioning

    def _seek(self, k: int) -> None:
        """Seek to tick ``k``: from a keyframe ``PREROLL_SEC`` before it (before the sound's margin, when there
        is sound), the video left out up to the keyframe load_av's seek lands on, the sound's warm-up dropped."""
        target = self.t0 + Fraction(k, VIDEO_FPS)
        at = target
        if self._a is not None:
            at = target + self.lead - self._margin  # not by the delay: a delayed read decodes the same run
        self._container.seek(math.floor((min(at, target) - PREROLL_SEC) * av.time_base), backward=True)
        self._start_demux()
        self._reset_video(k)
        self._skip_to = target - PREROLL_SEC
        self._check_video = target
        if self._a is not None:
            self._check_audio = at
            self._warm = at - PREROLL_SEC / 2
            if self.kept is not None:
                self.kept.seeked(self._margin)
        self._new_timeline(k * SAMPLES_PER_FRAME - self._keep_margin)

    def _restart(self, k: int) -> None:
        """Decode from the start of the file again, on to tick ``k`` (a read behind what is kept; or a seek that
        missed, after which load_av too decodes from the start): by a seek to the start, checked to land on the
        first frame, or where seeks cannot be trusted by opening the file again."""
        reopen = not self._seek_ok
        if not reopen:
            try:
                self._container.seek(self._container.start_time or 0, backward=True)
            except av.error.FFmpegError:
                self._seek_ok, reopen = False, True
        if reopen:
            if self._demux is not None:
                self._demux.close()
                self._demux = None
            v, a = self._v.index, None if self._a is None else self._a.index
            close_media(self._container)
            self._container = open_media(self.path)
            self._v = self._container.streams[v]
            self._a = None if a is None else self._container.streams[a]
            for s in self._streams():
                s.codec_context.thread_type = "AUTO"
        self._start_demux()
        if not reopen:
            self._check_video = self.t0 + PREROLL_SEC  # (the first packet: it may be stamped a little after t0)
        self._reset_video(0)
        self._new_timeline(k * SAMPLES_PER_FRAME - self._keep_margin)
        self._go_on(k)

    def _go_on(self, k: int) -> None:
        """Decode on to tick ``k``: the video packets it does not need are left out."""
        self._k_target = k
        self._imgs, self._img0 = [], k  # (ticks before it are passed over, not shown)
        if k > self._k:
            self._skip_to = self.t0 + Fraction(k, VIDEO_FPS) - PREROLL_SEC

    def _place(self, k_first: int) -> None:
        """Be ready to decode on from tick ``k_first``: go on, decode on to it, seek to it, or start again."""
        if self._timeline is None:
            self._new_timeline(k_first * SAMPLES_PER_FRAME - self._keep_margin)
        if self._img0 <= k_first <= self._k:  # the last read decoded up to it, or past it: keep its frames
            del self._imgs[:k_first - self._img0]
            self._img0 = k_first
        elif k_first > self._k and (not self._seek_ok or (k_first - self._k) / VIDEO_FPS <= self._seek_sec):
            self._go_on(k_first)  # near: decoding on costs less than a seek, and keeps the sound's run
        elif self._seek_ok and (k_first > self._k or k_first / VIDEO_FPS > self._seek_sec):
            try:
                self._seek(k_first)
            except av.error.FFmpegError:  # (some demuxers cannot seek some files)
                self._seek_ok = False
                self._restart(k_first)
        else:  # behind what is kept, and near the start
            self._restart(k_first)

    def _decode_span(self, k_first: int, k_stop: int | None) -> list[np.ndarray]:
        """The images of ticks [k_first, k_stop), the sound decoded to the end of their span (and its margin)."""
        self._place(k_first)
        self._fill_video(k_stop)
        images = self._imgs[:None if k_stop is None else k_stop - self._img0]
        if self._a is not None:
            self._timeline.trim(k_first * SAMPLES_PER_FRAME - self._keep_margin)
            end = self.t0 + Fraction(k_first + len(images), VIDEO_FPS) + self.lead  # the span's end, undelayed
            self._fill_audio(end + self._margin + AUDIO_TAIL_SEC)
        return images

    # ------------------------------------------------------------------ reads

    @_errors
    def read(self, k_first: int, k_stop: int | None = None, empty_ok: bool = False) -> AVClip:
        """``load_av`` of ticks ``[k_first, k_stop)`` (``None``: to the end): frames on the 25 fps grid, the sound of
        the same span (``timing``, ``audio_delay_sec`` as given to the reader), its events and warnings.
        ``empty_ok``: a span past the end gives no frames instead of load_av's error."""
        if k_first < 0 or k_stop is not None and k_stop <= k_first:
            raise SynchformerError(self.path, f"ticks [{k_first}, {k_stop}) hold no frame of the 25 fps grid")
        try:
            images = self._decode_span(k_first, k_stop)
        except _SeekMissed:
            self._seek_ok = False
            self._restart(k_first)
            images = self._decode_span(k_first, k_stop)
        if not images and not empty_ok:
            ends = f" (the video ends at {float(self._vend - self.t0):.3f} s)" if self._vend is not None else ""
            raise SynchformerError(self.path, f"no 25 fps frame at or after {k_first / VIDEO_FPS} s from the first "
                                              f"frame{ends}")
        n = len(images) * SAMPLES_PER_FRAME
        a0 = k_first * SAMPLES_PER_FRAME
        events: list[AudioEvent] = []
        if self._a is not None:
            clip_start = self.audio_origin + Fraction(a0, AUDIO_SR)  # the container time of audio[0]
            clip_end = clip_start + Fraction(n, AUDIO_SR)
            tl = self._timeline
            audio = np.clip(tl.slice(a0, a0 + n), -1.0, 1.0)
            pad_start, end = tl.covered(a0, a0 + n)
            pad_end = n - end
            src_rate, src_channels = tl.source_rate, tl.source_channels
            # what the clip holds (a gap that starts in the tail decoded past its end is the next clip's); on the
            # clip's clock (from the first video frame): where the sound is heard, after the delay
            events = [AudioEvent(e.kind, float(e.at_sec), e.duration_sec, e.detail).moved(float(self.delay - self.t0))
                      for e in tl.events if e.at_sec < clip_end and
                      e.at_sec + Fraction(e.duration_sec if e.kind == "gap" else 0) > clip_start]
            if self.kept is not None and images and not self.kept.full:
                lo = a0 - self._keep_margin
                self.kept.add(lo, np.clip(tl.slice(lo, a0 + n + self._keep_margin), -1.0, 1.0),
                              sound=[(a, b) for a, b in tl.spans])
        else:
            audio, pad_start, pad_end, src_rate, src_channels = np.zeros(n, np.float32), 0, 0, None, None
        damaged = len(self._damaged) - self._reported_damaged
        self._reported_damaged = len(self._damaged)
        warnings = clip_warnings(damaged, pad_start, pad_end, self._display_rotation)
        import torch  # (here, not at the top: as io.decode, checking a file must not wait for torch)

        if images:
            frames = torch.from_numpy(np.stack(images))
        else:
            w, h = self.out_size if self.crop is None else (self.crop, self.crop)
            frames = torch.zeros((0, 3, h, w), dtype=torch.uint8)
        # keep the last frames for a read that starts among them (read_segments' chunks overlap by a segment)
        keep = len(self._imgs) - self.keep_frames
        if keep > 0:
            del self._imgs[:keep]
            self._img0 += keep
        return AVClip(
            frames=frames,
            audio=torch.from_numpy(audio),
            path=self.path,
            start_sec=k_first / VIDEO_FPS,
            origin_sec=self.origin_sec,
            source_fps=self.source_fps,
            source_size=self.source_size,
            rotation=self.rotation,
            source_sample_rate=src_rate,
            source_channels=src_channels,
            source_duration_sec=self.source_duration,
            audio_pad_start_sec=pad_start / AUDIO_SR,
            audio_pad_end_sec=pad_end / AUDIO_SR,
            audio_lead_sec=float(self.lead),
            audio_track=self.track,
            audio_events=events,
            warnings=warnings,
        )

    def close(self) -> None:
        """Close the file (no decoder thread left running: io.decode._close). Safe to call more than once."""
        demux, self._demux = self._demux, None
        if demux is not None:
            demux.close()
        container, self._container = self._container, None
        if container is not None:
            close_media(container)

    def __enter__(self) -> MediaReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["KEEP_MARGIN_SEC", "AudioTimeline", "KeptAudio", "MediaReader"]
