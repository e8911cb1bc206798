"""A whole file as a stream of segments on one 0.32 s grid, each decoded once and encoded once.

Windows of 14 segments that overlap share their segments, and the encoders (97 % of the compute) are
independent per segment: so a file is cut into segments ``k = 0, 1, 2, ...`` (frames
``[first + 8k, first + 8k + 16)``, the audio samples of the same span), every segment goes through the
encoders once, and windows are assembled from the cached features. Decoding runs in a background thread,
a chunk ahead of the model, and only a chunk of frames is held in memory at a time (films of any length).
The file is opened once per pass: one ``io.reader.MediaReader`` makes the first look and decodes every chunk (or
sampled window) from one demux, each going on where the last stopped; with ``keep_audio`` the sound it decoded
stays in ``SegmentGrid.kept_audio``, for the fine pass to take its delayed segments from without a second read.
"""

from __future__ import annotations

import math
import os
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from synchformer.constants import (
    AUDIO_SR,
    CROP_SIZE,
    N_SEGMENTS,
    SAMPLES_PER_FRAME,
    SEGMENT_FRAMES,
    SEGMENT_SAMPLES,
    SEGMENT_STRIDE_FRAMES,
    SEGMENT_STRIDE_SAMPLES,
    VIDEO_FPS,
)
from synchformer.errors import SynchformerError
from synchformer.features import audio_to_model, frames_to_model, segment_audio, segment_video
from synchformer.io.decode import AudioEvent, AudioTrack, declared_duration
from synchformer.io.reader import KEEP_MARGIN_SEC, KeptAudio, MediaReader


@dataclass
class SegmentChunk:
    first: int  # index of the first segment in this chunk
    video: torch.Tensor  # uint8 (n, 16, 3, 224, 224)
    audio: torch.Tensor  # float32 (n, 10240)

    def __len__(self) -> int:
        return len(self.video)

    def select(self, rows: list[int]) -> "SegmentChunk":
        """The chunk of only these segments (itself when that is all of them: no copy of its frames)."""
        if len(rows) == len(self):
            return self
        idx = torch.tensor(rows)
        return SegmentChunk(self.first, self.video.index_select(0, idx), self.audio.index_select(0, idx))


@dataclass
class SegmentGrid:
    """Where segment k lies in the file: it starts at ``start_sec + k * 0.32`` and lasts 0.64 s (seconds from
    the file's first video frame)."""

    path: str
    start_sec: float  # time of the first frame of segment 0, from the file's first video frame
    warnings: list[str]
    timing: str = "true"  # how the audio was placed (io.decode.load_av)
    audio_lead_sec: float = 0.0  # timing="authors": how much early the audio was taken
    # a sampled read (read_segments' max_windows): the first segment of each window read, and the segments the
    # whole file has by its header; None: every segment is read
    windows: list[int] | None = None
    file_segments: int | None = None
    origin_sec: float = 0.0  # the first video frame's timestamp in the container's timeline
    audio_track: AudioTrack | None = None  # the file's track decoded (None: an external track, or no audio)
    # gaps, overlaps and format changes of the track in what was decoded (filled in as the chunks are read)
    audio_events: list[AudioEvent] = field(default_factory=list)
    # read_segments(keep_audio=True): the sound the pass decoded (filled in as the chunks are read), to take delayed
    # segments from (KeptAudio.segments); None when not asked for, or without sound
    kept_audio: KeptAudio | None = None
    duration_sec: float | None = None  # the header's duration (None: it states none)

    def add_events(self, events) -> None:
        """Events of one decoded piece; pieces overlap, so an event already seen is not added again."""
        seen = {(e.kind, round(e.at_sec, 3)) for e in self.audio_events}
        for e in events:
            if (e.kind, round(e.at_sec, 3)) not in seen:
                self.audio_events.append(e)
                seen.add((e.kind, round(e.at_sec, 3)))
        self.audio_events.sort(key=lambda e: e.at_sec)

    def time(self, k) -> float | np.ndarray:
        return self.start_sec + np.asarray(k) * SEGMENT_STRIDE_FRAMES / VIDEO_FPS


def sample_windows(n_file: int, n_segments: int, max_windows: int) -> list[int] | None:
    """First segments of ``max_windows`` windows of ``n_segments`` spread evenly over ``n_file`` segments (the
    first at the start, the last a little before the header's end, which may be optimistic), or None when
    reading every segment costs no more encoder work than that (the budget is ``max_windows * n_segments``
    segments) or ``max_windows`` is 0 (no budget)."""
    if max_windows <= 0 or n_file <= max_windows * n_segments:
        return None
    last = n_file - n_segments - END_MARGIN_SEGMENTS
    return sorted({round(k) for k in np.linspace(0, last, max_windows)})


END_MARGIN_SEGMENTS = 2  # the last sampled window ends 0.64 s before the header's end


def read_segments(path: str | os.PathLike, *, first_frame: int = 0, size: int = 256, crop: int = CROP_SIZE,
                  chunk_segments: int = 64, audio: np.ndarray | torch.Tensor | None = None,
                  with_audio: bool = True, timing: str = "true", max_windows: int = 0,
                  window_segments: int = N_SEGMENTS, audio_delay_sec: float = 0.0,
                  audio_track: int | str | None = None,
                  keep_audio: bool = False, keep_margin_sec: float = KEEP_MARGIN_SEC,
                  pad_audio: bool = False) -> tuple[SegmentGrid, Iterator[SegmentChunk]]:
    """Cut ``path`` into 16-frame segments at stride 8 starting at frame ``first_frame`` of its 25 fps grid
    (frame 0: the file's first video frame).

    ``size`` is the short side before the ``crop`` (224) centre crop (256: the reference's inputs; 224:
    av-benchmark's and MMAudio's). ``audio``: a 16 kHz mono waveform to use instead of the file's own sound (a separately generated
    track); sample 0 is aligned with the first video frame. ``with_audio=False``: the file's sound is neither
    decoded nor required (visual features only; the chunks' audio is silence). ``timing``: of the file's own
    sound, as ``load_av`` (an external track is taken as it is). ``max_windows``: when the file (by its
    header) has more than ``max_windows * window_segments`` segments, read only ``max_windows`` windows of
    ``window_segments`` spread evenly over it, each decoded by seeking to it: one chunk per window, its starts
    in ``grid.windows`` (a window the file turns out not to have is not yielded). ``audio_delay_sec``: every
    segment's sound is taken that much later than its frames (``load_av``; an external track likewise, silence
    before its start). ``audio_track``: which of the file's audio tracks (``io.decode.pick_audio_track``).
    ``keep_audio``: keep the sound read (``grid.kept_audio``, filled in as the chunks are read: every segment's,
    or each sampled window's, with ``keep_margin_sec`` on both sides), so that ``grid.kept_audio.segments(ks,
    delay)`` gives what a read with ``audio_delay_sec=delay`` would, without one. ``pad_audio``: an external track
    shorter than the picture is followed by silence to the picture's end (a separate recording searched for its
    place, inference.search) instead of ending the file.
    Returns the grid (known once
    the first chunk is decoded, so this call decodes it) and an iterator over chunks of whole segments, decoded
    one chunk ahead. The file is opened once, here, and closed when the iterator is done with (or dropped).
    """
    path = os.fspath(path)
    span = SEGMENT_FRAMES + (chunk_segments - 1) * SEGMENT_STRIDE_FRAMES  # frames of one chunk
    step = chunk_segments * SEGMENT_STRIDE_FRAMES
    external = None
    if audio is not None:
        external = np.asarray(audio, dtype=np.float32)
        audio = torch.as_tensor(external)
        delay = round(audio_delay_sec * AUDIO_SR)
        if delay > 0:  # the track taken later: silence before its start
            audio = torch.cat([torch.zeros(delay), audio])
        elif delay < 0:
            audio = audio[-delay:]
    own_audio = with_audio and audio is None

    reader = MediaReader(path, size=size, crop=crop, with_audio=own_audio, timing=timing, audio_track=audio_track,
                         audio_delay_sec=audio_delay_sec, keep_audio=keep_audio and own_audio,
                         keep_margin_sec=keep_margin_sec)
    try:
        n_file = _header_segments(reader.header, first_frame)
        if audio is not None and n_file is not None and pad_audio:  # silence to the picture's end
            need = (first_frame * SAMPLES_PER_FRAME + (n_file - 1) * SEGMENT_STRIDE_SAMPLES + SEGMENT_SAMPLES
                    + round(keep_margin_sec * AUDIO_SR))
            audio = torch.cat([audio, torch.zeros(max(0, need - len(audio)))])
        elif audio is not None and n_file is not None:  # an external track shorter than the picture ends the file
            n_file = min(n_file, (len(audio) - SEGMENT_SAMPLES) // SEGMENT_STRIDE_SAMPLES + 1)
        windows = sample_windows(n_file, window_segments, max_windows) if n_file is not None else None
        if windows is not None:  # one chunk per window, starting at its first segment
            chunk_segments = window_segments
            span = SEGMENT_FRAMES + (window_segments - 1) * SEGMENT_STRIDE_FRAMES
            reader.keep_frames = span + 1  # (the windows of a file just over the budget overlap)
        # one frame more than the chunk needs: if it exists, the next chunk starts inside the file (a start past
        # the end reads nothing: too_short says so)
        first_clip = reader.read(first_frame, first_frame + span + 1, empty_ok=first_frame > 0)
    except BaseException:
        reader.close()
        raise
    kept = None
    if keep_audio and reader.kept is not None:
        kept = reader.kept
        kept.first_frame = first_frame
    elif keep_audio and external is not None and with_audio:
        kept = KeptAudio.of_track(external, first_frame, keep_margin_sec)
    grid = SegmentGrid(path=path, start_sec=first_frame / VIDEO_FPS, warnings=list(first_clip.warnings),
                       timing=timing if own_audio else "true", audio_lead_sec=first_clip.audio_lead_sec,
                       windows=windows, file_segments=n_file if windows is not None else None,
                       origin_sec=first_clip.origin_sec, audio_track=first_clip.audio_track, kept_audio=kept,
                       duration_sec=reader.source_duration)
    grid.add_events(first_clip.audio_events)
    if audio is not None:
        grid.warnings = [w for w in grid.warnings if not w.startswith("audio covers")]

    def decode(f0: int):
        # in the decoding thread, one read at a time: the reader goes on where the last read stopped
        clip = reader.read(f0, f0 + span + 1)
        grid.add_events(clip.audio_events)
        return clip

    def chunk_of(clip, f0: int, k0: int) -> tuple[SegmentChunk | None, bool]:
        """Segments of the chunk starting at frame f0 (clip.frames[0] is frame `offset`); and whether more follow."""
        offset = round(clip.start_sec * VIDEO_FPS)
        frames = clip.frames[f0 - offset:]
        wave = clip.audio[(f0 - offset) * SAMPLES_PER_FRAME:]
        if audio is not None:  # the external track, on the same timeline
            a0 = f0 * SAMPLES_PER_FRAME
            wave = audio[a0:a0 + len(frames) * SAMPLES_PER_FRAME]
        n = min((len(frames) - SEGMENT_FRAMES) // SEGMENT_STRIDE_FRAMES + 1,
                (len(wave) - SEGMENT_SAMPLES) // (SEGMENT_STRIDE_FRAMES * SAMPLES_PER_FRAME) + 1, chunk_segments)
        more = len(frames) > span and (audio is None or len(audio) >= (f0 + step) * SAMPLES_PER_FRAME + SEGMENT_SAMPLES)
        if n <= 0:
            return None, False
        return SegmentChunk(k0, segment_video(frames, 0, n), segment_audio(wave, 0, n)), more

    def sampled() -> Iterator[SegmentChunk]:
        with ThreadPoolExecutor(max_workers=1) as pool:
            starts = [first_frame + k0 * SEGMENT_STRIDE_FRAMES for k0 in windows]
            # the first window starts at segment 0, inside the clip already decoded
            pending = pool.submit(lambda: first_clip)
            for j, k0 in enumerate(windows):
                try:
                    clip = pending.result()
                except SynchformerError:  # past the end (the header promised more), or damage: the windows
                    return  # read so far stand, and the analysis says how many were not there
                if j + 1 < len(windows):
                    pending = pool.submit(decode, starts[j + 1])
                chunk, _ = chunk_of(clip, starts[j], k0)
                if chunk is None or len(chunk) < window_segments:  # the header promised more than there is
                    return
                yield chunk

    started = []

    def chunks() -> Iterator[SegmentChunk]:
        started.append(True)
        try:
            if windows is not None:
                yield from sampled()
                return
            with ThreadPoolExecutor(max_workers=1) as pool:
                clip, f0, k0 = first_clip, first_frame, 0
                while True:
                    chunk, more = chunk_of(clip, f0, k0)
                    pending = pool.submit(decode, f0 + step) if more else None
                    if chunk is not None:
                        yield chunk
                    if pending is None:
                        return
                    clip, f0, k0 = pending.result(), f0 + step, k0 + chunk_segments
        finally:  # (after the pool: no read is running)
            reader.close()

    it = chunks()
    # an iterator dropped before it started closes the file too (once started, its own `finally` does, after any
    # read in flight: this callback runs first when a generator is freed)
    weakref.finalize(it, lambda: None if started else reader.close())
    return grid, it


def _header_segments(info: dict, first_frame: int) -> int | None:
    """Whole segments from ``first_frame`` by the header's video duration (or the container's), or None."""
    video = info.get("video") or {}
    end = None
    if video.get("duration_sec"):
        end = (video.get("start_sec") or 0.0) + video["duration_sec"]
    elif info.get("duration_sec"):
        end = (info.get("start_sec") or 0.0) + info["duration_sec"]
    if end is None:
        return None
    frames = math.floor((end - (video.get("start_sec") or info.get("start_sec") or 0.0)) * VIDEO_FPS + 1e-6)
    return max(0, (frames - first_frame - SEGMENT_FRAMES) // SEGMENT_STRIDE_FRAMES + 1)


def encode_chunk(model, chunk: SegmentChunk, *, video: bool = True, audio: bool = True,
                 batch: int = 16) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Encoder features of every segment of ``chunk``: ``(n, 8, D)`` and ``(n, 6, D)`` (on the model's device)."""
    device = model.device
    vf, af = [], []
    with torch.inference_mode():
        for s in range(0, len(chunk), batch):
            if video:
                v = frames_to_model(chunk.video[s:s + batch].to(device))
                vf.append(model.extract_vfeats(v[None])[0])
            if audio:
                a = audio_to_model(chunk.audio[s:s + batch].to(device).float())
                af.append(model.extract_afeats(a[None])[0])
    return (torch.cat(vf) if video else None), (torch.cat(af) if audio else None)


def too_short(path: str, n_segments: int, have: int) -> SynchformerError:
    need = (SEGMENT_FRAMES + (n_segments - 1) * SEGMENT_STRIDE_FRAMES) / VIDEO_FPS
    have_sec = 0.0 if have <= 0 else (SEGMENT_FRAMES + (have - 1) * SEGMENT_STRIDE_FRAMES) / VIDEO_FPS
    declared = declared_duration(path)
    if declared is not None and declared >= need + 0.5:  # long enough by its header: what is missing is damage
        return SynchformerError(path, f"truncated or damaged: its header says {declared:.2f} s, but only "
                                      f"{have_sec:.2f} s of whole segments could be decoded (a window needs {need:.2f} s)")
    return SynchformerError(path, f"too short: one window needs {need:.2f} s of video and audio, "
                                  f"the file has {have_sec:.2f} s of whole segments")


__all__ = ["SegmentChunk", "SegmentGrid", "encode_chunk", "read_segments", "sample_windows", "too_short"]
