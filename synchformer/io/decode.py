"""Decode a media file into 25 fps RGB frames and 16 kHz mono audio on one timeline.

This does in-process, with PyAV, what the reference gets from
``ffmpeg -vf fps=25,scale=<short side 256>,crop=<even> -ar 16000`` followed by torchvision's ``read_video``
and ``audio.mean(dim=0)``, but without the lossy re-encode, and with the audio placed on the video's timeline by
its start timestamp (the reference assumes both streams start together).
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import stat
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Iterator

import av
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter

from synchformer.constants import AUDIO_SR, CROP_SIZE, RESIZE_SHORT_SIDE, SAMPLES_PER_FRAME, TIMINGS, VIDEO_FPS
from synchformer.errors import SynchformerError

if TYPE_CHECKING:
    import torch

# Seek only when this far into a stream: nearer, decoding from the start costs little. Audio decodes fast, and
# from the start its timeline is exactly a full decode's; after a seek it hangs on one frame's pts, which some
# files get wrong by a codec frame (Vorbis in WebM: up to 19 ms).
_SEEK_MIN_SEC = {"video": 2.0, "audio": 30.0}
_PREROLL_SEC = Fraction(1, 2)  # decode this much before a seek target: audio decoders need warm-up frames
_AUDIO_TAIL_SEC = Fraction(1, 10)  # decode past the clip end so the resampler's filter sees real samples
_PAD_WARN_SEC = 0.1  # shorter pads are normal: audio frame granularity, the last video frame rounded up

# The released weights' stack (PyAV 8.1/9.0 wheels: FFmpeg 4.3, on ffmpeg-CLI re-encoded AAC mp4s) dropped this
# many real samples after torchvision's seek to 0 (libavformat/mov.c mov_read_seek sets skip_samples =
# start_pad when the seek lands on sample time <= 0) whenever the re-encoded audio starts with the file, i.e.
# when the source's first audio sample is at or before its first video frame. Measured on
# ../shared/parity/authors_stack (64 ms on pen_hits_coin and bigbuckbunny, none on the lego clips, whose sound
# starts 21 ms and 3 ms after the picture).
AUTHORS_DROPPED_SAMPLES = 1024


@dataclass
class AVClip:
    """A decoded clip: ``frames[k]`` is shown at ``start_sec + k / fps``; ``audio[n]`` plays at
    ``start_sec + n / sample_rate``; ``len(audio) == len(frames) * sample_rate / fps``."""

    frames: torch.Tensor  # uint8 (T, 3, H, W), RGB
    audio: torch.Tensor  # float32 (T * 640,), mono, in [-1, 1]
    path: str
    start_sec: float  # time of frames[0] and audio[0] in the file's timeline
    fps: float = float(VIDEO_FPS)
    sample_rate: int = AUDIO_SR
    source_fps: float | None = None  # average frame rate of the video stream
    source_size: tuple[int, int] | None = None  # (width, height) as displayed, i.e. after rotation
    rotation: int = 0  # degrees counter-clockwise applied to the stored frames (display matrix)
    source_sample_rate: int | None = None
    source_channels: int | None = None
    source_duration_sec: float | None = None
    audio_pad_start_sec: float = 0.0  # zeros put before the audio: its stream starts after frames[0]
    audio_pad_end_sec: float = 0.0  # zeros put after it: the audio stream ends before the last frame
    audio_lead_sec: float = 0.0  # timing="authors": audio[0] is the sound of start_sec + this (see load_av)
    warnings: list[str] = field(default_factory=list)

    @property
    def duration_sec(self) -> float:
        return self.frames.shape[0] / self.fps

    @property
    def end_sec(self) -> float:
        return self.start_sec + self.duration_sec

    @property
    def audio_shorter_than_video(self) -> bool:
        return self.audio_pad_start_sec + self.audio_pad_end_sec > 0


def _user_errors(fn):
    """For the public functions: a PyAV/OS failure anywhere (demuxing, decoding, scaling, resampling) becomes a
    one-line SynchformerError naming the file."""

    @functools.wraps(fn)
    def wrapper(path, *args, **kwargs):
        try:
            return fn(path, *args, **kwargs)
        except (av.error.FFmpegError, OSError) as e:
            raise SynchformerError(path, f"decoding failed ({_reason(e)})") from e

    return wrapper


@_user_errors
def load_av(
    path: str | os.PathLike,
    start_sec: float = 0.0,
    end_sec: float | None = None,
    size: int | None = RESIZE_SHORT_SIDE,
    crop: int | None = CROP_SIZE,
    with_audio: bool = True,
    timing: str = "true",
    audio_delay_sec: float = 0.0,
) -> AVClip:
    """Decode ``[start_sec, end_sec)`` of ``path`` (seconds in the file's timeline; ``None`` = to the end).

    ``frames[0]`` is the first frame of the 25 fps grid at or after ``start_sec`` (``AVClip.start_sec``).

    Frames: resampled to 25 fps like ffmpeg's ``fps`` filter on a grid anchored at the first video frame,
    short side scaled to ``size`` (bicubic, dims made even; ``None`` keeps the source size), then centre
    cropped to ``crop`` (``None``: no crop). Audio: resampled to 16 kHz, channels averaged, placed by the
    timestamp of its first frame (zeros where the stream has none), exactly 640 samples per frame.
    ``with_audio=False``: the sound is not decoded (nor required): ``AVClip.audio`` is silence.

    ``timing="authors"``: the audio the released weights were trained on for this file, which is the true
    audio 1024 samples (64 ms) early where the authors' stack dropped them (``authors_audio_lead``);
    ``AVClip.audio_lead_sec`` says by how much. The frames are the same either way.

    ``audio_delay_sec``: the sound is taken this much later than the frames (to the sample): the audio at frame
    time t is the file's at t - delay, silence where that is before the stream (a file whose audio leads by d,
    read with delay d, plays in sync; inference.refine reads what is left of an offset so).
    """
    path = os.fspath(path)
    if not start_sec >= 0:
        raise SynchformerError(path, f"start_sec must be >= 0, got {start_sec}")
    if end_sec is not None and not end_sec > start_sec:
        raise SynchformerError(path, f"end_sec ({end_sec}) must be greater than start_sec ({start_sec})")
    if size is not None and size <= 0 or crop is not None and crop <= 0:
        raise SynchformerError(path, f"size and crop must be positive, got size={size}, crop={crop}")
    if timing not in TIMINGS:
        raise ValueError(f"timing must be one of {', '.join(TIMINGS)}, not {timing!r}")

    with _open(path) as container:
        vstream = _stream(path, container, "video")
        if with_audio:
            _stream(path, container, "audio")  # fail early, before decoding any video
        source_fps = float(vstream.average_rate or vstream.guessed_rate or 0) or None
        source_duration = container.duration / av.time_base if container.duration else None
    first = _first_frame(path)
    if first is None:
        raise SynchformerError(path, "no video frames could be decoded")
    t0, first_frame = first
    rotation = _rotation(first_frame)
    source_size = (first_frame.width, first_frame.height)
    if rotation % 180:
        source_size = source_size[::-1]
    out_size = _out_size(source_size, size)
    if crop is not None and min(out_size) < crop:
        raise SynchformerError(path, f"frames are {out_size[0]}x{out_size[1]}, smaller than the {crop} px crop")

    def tick(t: Fraction) -> int:
        # ffmpeg's fps filter rounds each input pts to the nearest output tick (half away from zero)
        return math.floor((t - t0) * VIDEO_FPS + Fraction(1, 2))

    k_first = max(0, math.ceil((Fraction(start_sec) - t0) * VIDEO_FPS - Fraction(1, 10**6)))
    k_stop = None if end_sec is None else math.ceil((Fraction(end_sec) - t0) * VIDEO_FPS - Fraction(1, 10**6))
    clip_start = t0 + Fraction(k_first, VIDEO_FPS)

    if k_stop is not None and k_stop <= k_first:
        raise SynchformerError(path, f"[{start_sec}, {end_sec}) s holds no frame of the 25 fps grid")

    images: list[np.ndarray] = []
    k, cur, img = k_first, None, None  # next output tick; the frame shown there (so far); its image
    reformatter = VideoReformatter()

    def show_until(until: int) -> None:
        """Repeat the current frame for ticks k .. until-1 (converted once, only if shown at all)."""
        nonlocal k, img
        until = until if k_stop is None else min(until, k_stop)
        if cur is not None and k < until:
            img = _to_image(cur, size, crop, rotation, reformatter) if img is None else img
            images.extend([img] * (until - k))
            k = until

    prev_t = last_t = video_end = None
    damaged: list = []
    with closing(_decode(path, "video", clip_start, damaged)) as decoded:  # closed now, not by the GC (_close)
        for t, frame in decoded:
            show_until(tick(t))  # as ffmpeg: tick n shows the last frame whose rounded pts is <= n
            if k_stop is not None and k >= k_stop:
                break
            prev_t, last_t, cur, img = last_t, t, frame, None
        else:  # end of stream: the last frame lasts its duration; ffmpeg rounds that end to a tick too
            if cur is not None:
                dur = Fraction(cur.duration) * cur.time_base if getattr(cur, "duration", None) else None
                dur = dur or (last_t - prev_t if prev_t is not None else 1 / Fraction(source_fps or VIDEO_FPS))
                video_end = last_t + dur
                show_until(tick(video_end))
    if not images:
        ends = f" (the video ends at {float(video_end):.3f} s)" if video_end is not None else ""
        raise SynchformerError(path, f"no 25 fps frame at or after start_sec={start_sec}{ends}")

    n_samples = len(images) * SAMPLES_PER_FRAME
    lead = _authors_lead(path, t0) if with_audio and timing == "authors" else Fraction(0)
    if with_audio:
        delay = Fraction(round(audio_delay_sec * AUDIO_SR), AUDIO_SR)
        audio, pad_start, pad_end, src_rate, src_channels = _load_audio(path, clip_start + lead - delay, n_samples,
                                                                        damaged)
    else:
        audio, pad_start, pad_end, src_rate, src_channels = np.zeros(n_samples, np.float32), 0, 0, None, None
    warnings = [f"skipped {len(damaged)} damaged packet(s) the decoder rejected"] if damaged else []
    if pad_start + pad_end > _PAD_WARN_SEC * AUDIO_SR:
        warnings.append(
            f"audio covers less than the video: {pad_start / AUDIO_SR:.3f} s of silence added before it, "
            f"{pad_end / AUDIO_SR:.3f} s after it"
        )
    if getattr(first_frame, "rotation", 0) % 90:
        warnings.append(f"rotation of {first_frame.rotation} degrees is not a multiple of 90; ignored")
    return AVClip(
        frames=_torch().from_numpy(np.stack(images)),
        audio=_torch().from_numpy(audio),
        path=path,
        start_sec=float(clip_start),
        source_fps=source_fps,
        source_size=source_size,
        rotation=rotation,
        source_sample_rate=src_rate,
        source_channels=src_channels,
        source_duration_sec=source_duration,
        audio_pad_start_sec=pad_start / AUDIO_SR,
        audio_pad_end_sec=pad_end / AUDIO_SR,
        audio_lead_sec=float(lead),
        warnings=warnings,
    )


def _torch():
    import torch  # here, not at the top: checking a file (check_media, probe) must not wait for torch to load

    return torch


@_user_errors
def authors_audio_lead(path: str | os.PathLike) -> float:
    """Seconds by which the authors' stack took this file's audio early: 1024 samples at 16 kHz (0.064 s) when
    its first audio sample is at or before its first video frame, else 0 (see AUTHORS_DROPPED_SAMPLES)."""
    path = os.fspath(path)
    first = _first_frame(path)
    if first is None:
        raise SynchformerError(path, "no video frames could be decoded")
    return float(_authors_lead(path, first[0]))


def _authors_lead(path: str, t0: Fraction) -> Fraction:
    # read_segments decodes a file in many pieces (a sampled film: one per window): its first audio frame is
    # decoded once per version of the file, not once per piece
    st = os.stat(path)
    return _authors_lead_of(path, st.st_mtime_ns, st.st_size, t0)


@functools.lru_cache(maxsize=64)
def _authors_lead_of(path: str, mtime_ns: int, size: int, t0: Fraction) -> Fraction:
    with closing(_decode(path, "audio")) as frames:  # closed now (see _close)
        first = next(frames, None)
    if first is None or first[0] - t0 > Fraction(1, 2 * AUDIO_SR):
        return Fraction(0)
    return Fraction(AUTHORS_DROPPED_SAMPLES, AUDIO_SR)


@_user_errors
def check_media(path: str | os.PathLike, audio: bool = True) -> None:
    """A one-line SynchformerError unless ``path`` is a readable media file with a decodable video stream (and
    audio stream): what a command checks before it spends seconds loading a model."""
    path = os.fspath(path)
    with _open(path) as container:
        _stream(path, container, "video")
        if audio:
            _stream(path, container, "audio")


@_user_errors
def probe(path: str | os.PathLike) -> dict:
    """Container and stream facts (decodes one video frame, for its rotation)."""
    path = os.fspath(path)
    with _open(path) as container:
        info: dict = {
            "path": path,
            "format": container.format.name,
            "duration_sec": container.duration / av.time_base if container.duration else None,
            "start_sec": container.start_time / av.time_base if container.start_time is not None else None,
            "has_video": False,
            "has_audio": False,
            "video": None,
            "audio": None,
        }
        vstream = container.streams.best("video")
        astream = container.streams.best("audio", related=vstream)
        if vstream is not None and vstream.codec_context is not None:
            first = _first_frame(path)
            cc = vstream.codec_context
            info["has_video"] = True
            info["video"] = {
                "codec": cc.name,
                "width": cc.width,
                "height": cc.height,
                "pix_fmt": cc.pix_fmt,
                "fps": float(vstream.average_rate or vstream.guessed_rate or 0) or None,
                "frames": vstream.frames or None,
                "rotation": _rotation(first[1]) if first else 0,
                **_stream_span(vstream),
            }
        if astream is not None and astream.codec_context is not None:
            cc = astream.codec_context
            info["has_audio"] = True
            info["audio"] = {
                "codec": cc.name,
                "sample_rate": cc.sample_rate,
                "channels": cc.channels,
                "layout": cc.layout.name,
                "sample_fmt": cc.format.name if cc.format else None,
                **_stream_span(astream),
            }
    return info


def declared_duration(path: str | os.PathLike) -> float | None:
    """The duration the container's header states (s), without decoding; None if it states none or cannot be
    opened. Set beside what could be decoded, it tells a truncated file from a short one."""
    try:
        with _open(os.fspath(path)) as container:
            return container.duration / av.time_base if container.duration else None
    except (SynchformerError, av.error.FFmpegError, OSError):
        return None


def mean_channels(frame: av.AudioFrame) -> np.ndarray:
    """float32 mono samples of a packed ("flt") frame: the mean of its channels, as the reference downmixes.

    Packed, not planar: PyAV reads at most 8 planes (a 7.1 fltp frame crashed in ``to_ndarray``); one interleaved
    plane holds any number of channels."""
    n = len(frame.layout.channels)
    return frame.to_ndarray().reshape(-1, n).mean(axis=1, dtype=np.float32)


def _load_audio(
    path: str, clip_start: Fraction, n_samples: int, damaged: list
) -> tuple[np.ndarray, int, int, int, int]:
    """Mono 16 kHz audio for ``[clip_start, clip_start + n_samples / 16 kHz)``, zero-padded where the stream has
    none. Returns (audio, zeros before, zeros after, source rate, source channels)."""
    clip_end = clip_start + Fraction(n_samples, AUDIO_SR)
    # every channel is kept through the resampler (as ffmpeg's -ar 16000 does); the reference averages them after
    resampler = av.AudioResampler(format="flt", rate=AUDIO_SR)
    chunks: list[np.ndarray] = []
    a_first = src_rate = src_channels = None
    with closing(_decode(path, "audio", clip_start, damaged)) as decoded:
        for t, frame in decoded:
            if t > clip_end + _AUDIO_TAIL_SEC:
                break
            if a_first is None:
                a_first, src_rate, src_channels = t, frame.sample_rate, len(frame.layout.channels)
            # later frames are taken as contiguous (as ffmpeg's aresample and torchvision do), not placed by pts
            chunks += [mean_channels(f) for f in resampler.resample(frame)]
    if a_first is not None:
        # the resampler compensates its own delay, so the first output sample plays at a_first
        chunks += [mean_channels(f) for f in resampler.resample(None)]
    mono = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    offset = round((a_first - clip_start) * AUDIO_SR) if a_first is not None else 0
    pad_start = min(max(offset, 0), n_samples)
    mono = mono[max(-offset, 0) :][: n_samples - pad_start]
    pad_end = n_samples - pad_start - len(mono)
    audio = np.concatenate([np.zeros(pad_start, np.float32), mono, np.zeros(pad_end, np.float32)])
    return np.clip(audio, -1.0, 1.0).astype(np.float32, copy=False), pad_start, pad_end, src_rate, src_channels


def _decode(
    path: str, kind: str, at: Fraction | None = None, damaged: list | None = None
) -> Iterator[tuple[Fraction, av.frame.Frame]]:
    """Yield (presentation time in s, frame) of the file's main ``kind`` stream, from the start or, when ``at``
    is far enough in, from a seek point at or before ``at``. If the seek fails or lands after ``at`` (some
    demuxers cannot seek some streams, or have inexact indexes), decode from the start instead.
    Packets the decoder rejects are skipped, as ffmpeg does, and counted in ``damaged``."""
    damaged = [] if damaged is None else damaged
    if at is not None:
        with _open(path) as container:
            stream = _stream(path, container, kind)
            if at - Fraction(stream.start_time or 0) * stream.time_base > _SEEK_MIN_SEC[kind]:
                stream.codec_context.thread_type = "AUTO"
                try:
                    # by the container's default stream, in AV_TIME_BASE: every demuxer moves all streams
                    container.seek(math.floor((at - _PREROLL_SEC) * av.time_base), backward=True)
                    frames = _timed(_decoded(container, stream, damaged), stream)
                    first = next(frames, None)
                except av.error.FFmpegError:
                    first = None
                if first is not None and first[0] <= at:
                    frames = itertools.chain([first], frames)
                    if kind == "audio":  # the first frames after a seek only prime the decoder: can be mistimed
                        warm = at - _PREROLL_SEC / 2
                        frames = itertools.dropwhile(lambda tf: tf[0] + _frame_sec(tf[1]) < warm, frames)
                    yield from frames
                    return
    with _open(path) as container:
        stream = _stream(path, container, kind)
        stream.codec_context.thread_type = "AUTO"
        yield from _timed(_decoded(container, stream, damaged), stream)


def _first_frame(path: str) -> tuple[Fraction, av.VideoFrame] | None:
    # closed here, not whenever the garbage collector gets to the generator (see _close)
    with closing(_decode(path, "video")) as frames:
        return next(frames, None)


def _decoded(container, stream, damaged: list) -> Iterator[av.frame.Frame]:
    for packet in container.demux(stream):
        try:
            yield from packet.decode()
        except av.error.InvalidDataError:
            damaged.append(packet.pts)


def _frame_sec(frame: av.AudioFrame) -> Fraction:
    return Fraction(frame.samples, frame.sample_rate)


def _timed(frames, stream) -> Iterator[tuple[Fraction, av.frame.Frame]]:
    """Attach exact presentation times; a frame without pts follows the previous one."""
    t, step = Fraction(stream.start_time or 0) * stream.time_base, Fraction(0)
    for frame in frames:
        t = t + step if frame.pts is None else Fraction(frame.pts) * stream.time_base
        if stream.type == "audio":
            step = _frame_sec(frame)
        else:
            step = 1 / Fraction(stream.average_rate or stream.guessed_rate or VIDEO_FPS)
        yield t, frame


def _rotation(frame: av.VideoFrame) -> int:
    """Counter-clockwise degrees (0, 90, 180, 270) that make the frame upright, from its display matrix."""
    rotation = getattr(frame, "rotation", 0)  # PyAV >= 13
    return int(rotation) % 360 if rotation % 90 == 0 else 0


def _scaled_size(display_size: tuple[int, int], size: int | None) -> tuple[int, int]:
    """(width, height) as ffmpeg evaluates ``scale=iw*S/min(iw,ih):ih*S/min(iw,ih)`` (truncated to int)."""
    w, h = display_size
    return (w, h) if size is None else (w * size // min(w, h), h * size // min(w, h))


def _out_size(display_size: tuple[int, int], size: int | None) -> tuple[int, int]:
    """Frame size before the centre crop: scaled, then ``crop=trunc(iw/2)*2:trunc(ih/2)*2`` when scaling."""
    w, h = _scaled_size(display_size, size)
    return (w, h) if size is None else (w // 2 * 2, h // 2 * 2)


def _to_image(
    frame: av.VideoFrame, size: int | None, crop: int | None, rotation: int, reformatter: VideoReformatter
) -> np.ndarray:
    """uint8 (3, H, W) RGB: scaled (bicubic, ffmpeg's default), turned upright, centre-cropped.

    ``reformatter`` is shared across frames: it keeps its swscale context (``frame.reformat`` builds one per call,
    which costs as much as the scaling)."""
    display = (frame.height, frame.width) if rotation % 180 else (frame.width, frame.height)
    w, h = _scaled_size(display, size)
    sw, sh = (h, w) if rotation % 180 else (w, h)  # scale in storage orientation, rotate the small image
    img = reformatter.reformat(frame, width=sw, height=sh, format="rgb24", interpolation=Interpolation.BICUBIC)
    img = img.to_ndarray()
    img = np.rot90(img, k=rotation // 90)
    ow, oh = _out_size(display, size)
    img = img[:oh, :ow]  # ffmpeg's even-dims crop keeps the top-left (its x=(iw-ow)/2 truncates to 0)
    if crop is not None:
        i, j = int(round((oh - crop) / 2)), int(round((ow - crop) / 2))  # as the reference's RGBSpatialCrop
        img = img[i : i + crop, j : j + crop]
    return np.ascontiguousarray(img.transpose(2, 0, 1))


def _stream_span(stream) -> dict:
    tb = stream.time_base
    return {
        "start_sec": float(stream.start_time * tb) if stream.start_time is not None else None,
        "duration_sec": float(stream.duration * tb) if stream.duration else None,
    }


def _stream(path: str, container, kind: str):
    """The stream ffmpeg would pick (for audio: the one that goes with the picked video stream)."""
    related = container.streams.best("video") if kind == "audio" else None
    stream = container.streams.best(kind, related=related)
    if stream is None:
        raise SynchformerError(path, f"has no {kind} stream")
    if stream.codec_context is None:
        raise SynchformerError(path, f"no decoder for its {kind} stream")
    return stream


def refuse_special_file(path: str | os.PathLike) -> None:
    """A FIFO, socket or device is refused in one line: reading it could block forever, and seeking fails."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        kind = "a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise SynchformerError(path, f"is {kind}, not a regular media file; save the stream to a file first")


@contextmanager
def _open(path: str):
    """Open ``path`` for reading, refusing what is not a readable media file with a one-line SynchformerError."""
    if not os.path.exists(path):
        raise SynchformerError(path, "file not found")
    if os.path.isdir(path):
        raise SynchformerError(path, "is a directory, not a media file")
    refuse_special_file(path)
    if os.path.getsize(path) == 0:
        raise SynchformerError(path, "file is empty (0 bytes)")
    try:
        container = av.open(path, metadata_errors="ignore")
    except (av.error.FFmpegError, OSError) as e:
        raise SynchformerError(path, f"not a readable media file ({_reason(e)})") from e
    try:
        yield container
    finally:
        _close(container)


def _close(container) -> None:
    """Close ``container`` so that no decoder thread is left running.

    Freeing a threaded decoder joins its frame threads while holding the GIL; a frame thread still decoding may
    be waiting for the GIL inside PyAV's log callback (installed by any ``av.logging.set_level`` call, e.g. by
    torchvision.io), which deadlocks (PyAV issues #751, #909). Flushing first (it releases the GIL) waits for
    those threads to finish their work, so the free that follows has nothing to wait for."""
    try:
        for stream in container.streams:
            cc = stream.codec_context
            if cc is not None and cc.is_open:
                cc.flush_buffers()
    finally:
        container.close()


def _reason(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e) or type(e).__name__
