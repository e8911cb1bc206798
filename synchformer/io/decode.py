"""Decode a media file into 25 fps RGB frames and 16 kHz mono audio on one timeline.

This does in-process, with PyAV, what the reference gets from
``ffmpeg -vf fps=25,scale=<short side 256>,crop=<even> -ar 16000`` followed by torchvision's ``read_video``
and ``audio.mean(dim=0)``, but without the lossy re-encode, and with every audio frame placed on the video's clock
by its timestamp, as a player that honours timestamps plays it (ffmpeg's ``aresample=async=1``): a gap in the
audio is silence of its length, an overlap is trimmed, and the gaps and overlaps are reported
(``AVClip.audio_events``). The reference joins the audio frames end to end from the first one.

Times given to and returned by ``load_av`` count from the file's first video frame (0 there, whatever the
container's timestamps say: an MPEG-TS starts its video seconds into its timeline), as a player's clock does.
A local path is always a local file, whatever characters it holds; a URL (``http://`` ...) is read as a stream.

``load_av`` opens the file for each call, right for a one-off read. A pass that reads a file piece by piece (every
chunk of ``inference.stream.read_segments``) reads it through ``io.reader.MediaReader``, which opens it once and
places frames and samples by the rules here: the pieces it shares with this module are named without an underscore
(``AudioPlacer``, ``frame_image``, ``choose_track``, ``SEEK_MIN_SEC`` ...).
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

# Seek only when this far into a stream (io.reader: this far ahead of where it is): nearer, decoding from the start
# (on) costs little. Audio decodes fast, and from the start its timeline is exactly a full decode's; after a seek it
# hangs on one frame's pts, which some files get wrong by a codec frame (Vorbis in WebM: up to 19 ms).
SEEK_MIN_SEC = {"video": 2.0, "audio": 30.0}
PREROLL_SEC = Fraction(1, 2)  # decode this much before a seek target: audio decoders need warm-up frames
AUDIO_TAIL_SEC = Fraction(1, 10)  # decode past the clip end so the resampler's filter sees real samples
_JUMP_MAX_SEC = Fraction(1, 10)  # a timestamp this far from the running time always moves the audio (AudioPlacer)
_PAD_WARN_SEC = 0.1  # shorter pads are normal: audio frame granularity, the last video frame rounded up

# The released weights' stack (PyAV 8.1/9.0 wheels: FFmpeg 4.3, on ffmpeg-CLI re-encoded AAC mp4s) dropped this
# many real samples after torchvision's seek to 0 (libavformat/mov.c mov_read_seek sets skip_samples =
# start_pad when the seek lands on sample time <= 0) whenever the re-encoded audio starts with the file, i.e.
# when the source's first audio sample is at or before its first video frame. Measured on
# ../shared/parity/authors_stack (64 ms on pen_hits_coin and bigbuckbunny, none on the lego clips, whose sound
# starts 21 ms and 3 ms after the picture).
AUTHORS_DROPPED_SAMPLES = 1024


@dataclass(frozen=True)
class AudioTrack:
    """One audio stream of a file, as a user names it: ``number`` 1 is the file's first audio track."""

    number: int
    stream_index: int  # the container's stream index
    codec: str
    channels: int
    sample_rate: int
    language: str | None = None  # as tagged (ISO 639-2 in most files); None when untagged or "und"
    title: str | None = None
    default: bool = False  # the default disposition: players pick the first such track

    def describe(self) -> str:
        """``track 2 (deu, aac, 2 ch, 48 kHz)``"""
        facts = [self.language] if self.language else []
        facts += [self.codec, f"{self.channels} ch", f"{self.sample_rate / 1000:g} kHz"]
        return f"track {self.number} ({', '.join(facts)})"

    def to_dict(self) -> dict:
        return {"number": self.number, "stream_index": self.stream_index, "language": self.language,
                "codec": self.codec, "channels": self.channels, "sample_rate": self.sample_rate,
                "title": self.title, "default": self.default}


@dataclass
class AVClip:
    """A decoded clip: ``frames[k]`` is shown at ``start_sec + k / fps``; ``audio[n]`` plays at
    ``start_sec + n / sample_rate``; ``len(audio) == len(frames) * sample_rate / fps``. Times count from the
    file's first video frame, which its container's timeline puts at ``origin_sec``."""

    frames: torch.Tensor  # uint8 (T, 3, H, W), RGB
    audio: torch.Tensor  # float32 (T * 640,), mono, in [-1, 1]
    path: str
    start_sec: float  # time of frames[0] and audio[0], from the first video frame
    fps: float = float(VIDEO_FPS)
    sample_rate: int = AUDIO_SR
    origin_sec: float = 0.0  # the first video frame's timestamp in the container's timeline
    source_fps: float | None = None  # average frame rate of the video stream
    source_size: tuple[int, int] | None = None  # (width, height) as displayed, i.e. after rotation
    rotation: int = 0  # degrees counter-clockwise applied to the stored frames (display matrix)
    source_sample_rate: int | None = None
    source_channels: int | None = None
    source_duration_sec: float | None = None
    audio_pad_start_sec: float = 0.0  # zeros put before the audio: its stream starts after frames[0]
    audio_pad_end_sec: float = 0.0  # zeros put after it: the audio stream ends before the last frame
    audio_lead_sec: float = 0.0  # timing="authors": audio[0] is the sound of start_sec + this (see load_av)
    audio_track: AudioTrack | None = None  # the track decoded (None: with_audio=False)
    # where the audio's timestamps leave a hole (filled with silence) or overlap (trimmed), or its format changes,
    # inside the decoded span: AudioEvent, times from the first video frame
    audio_events: list[AudioEvent] = field(default_factory=list)
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


@dataclass(frozen=True)
class AudioEvent:
    """A place where the audio's timestamps are not one continuous run: ``kind`` "gap" (no audio for
    ``duration_sec`` from ``at_sec``: silence is put there), "overlap" (the audio from ``at_sec`` repeats the
    last ``duration_sec`` of time: that much of it is trimmed) or "format" (the stream changes its sample rate,
    layout or sample format there: ``detail``)."""

    kind: str
    at_sec: float  # from the first video frame
    duration_sec: float = 0.0
    detail: str = ""

    def to_dict(self) -> dict:
        out = {"kind": self.kind, "at_sec": round(self.at_sec, 3), "duration_sec": round(self.duration_sec, 3)}
        if self.detail:
            out["detail"] = self.detail
        return out

    def moved(self, by: float) -> AudioEvent:
        return AudioEvent(self.kind, self.at_sec + by, self.duration_sec, self.detail)

    def describe(self) -> str:
        if self.kind == "format":
            return f"the audio format changes at {self.at_sec:.2f} s ({self.detail})"
        what = "no audio" if self.kind == "gap" else "audio that overlaps the audio before it"
        return f"{self.kind} at {self.at_sec:.2f} s: {self.duration_sec:.3f} s of {what}"


def _user_errors(fn):
    """For the public functions: a PyAV/OS failure anywhere (demuxing, decoding, scaling, resampling) becomes a
    one-line SynchformerError naming the file."""

    @functools.wraps(fn)
    def wrapper(path, *args, **kwargs):
        with decoding_errors(path):
            return fn(path, *args, **kwargs)

    return wrapper


@contextmanager
def decoding_errors(path: str | os.PathLike):
    """A PyAV/OS failure inside (demuxing, decoding, scaling, resampling) becomes a one-line SynchformerError
    naming ``path``; a ValueError that PyAV did not raise is a caller's mistake (an argument), and stays one."""
    try:
        yield
    except (av.error.FFmpegError, OSError) as e:
        raise SynchformerError(path, f"decoding failed ({_reason(e)})") from e
    except ValueError as e:
        if not _raised_in_pyav(e):
            raise
        raise SynchformerError(path, f"decoding failed ({_reason(e)})") from e


def _raised_in_pyav(e: BaseException) -> bool:
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    name = tb.tb_frame.f_code.co_filename.replace(os.sep, "/") if tb is not None else ""
    return name.startswith("av/") or "/av/" in name


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
    audio_track: int | str | None = None,
) -> AVClip:
    """Decode ``[start_sec, end_sec)`` of ``path`` (seconds from its first video frame; ``None`` = to the end).

    ``frames[0]`` is the first frame of the 25 fps grid at or after ``start_sec`` (``AVClip.start_sec``).

    Frames: resampled to 25 fps like ffmpeg's ``fps`` filter on a grid anchored at the first video frame,
    short side scaled to ``size`` (bicubic, dims made even; ``None`` keeps the source size), then centre
    cropped to ``crop`` (``None``: no crop). Audio: one track (``audio_track``: see ``pick_audio_track``; by
    default the one a player picks), resampled to 16 kHz, channels averaged, each of its frames placed by its
    timestamp (a gap is silence, an overlap trimmed: ``AVClip.audio_events``; zeros where the stream has none),
    exactly 640 samples per frame. ``with_audio=False``: the sound is not decoded (nor required): ``AVClip.audio``
    is silence.

    ``timing="authors"``: the audio the released weights were trained on for this file, which is the true
    audio 1024 samples (64 ms) early where the authors' stack dropped them (``authors_audio_lead``);
    ``AVClip.audio_lead_sec`` says by how much. The frames are the same either way.

    ``audio_delay_sec``: the sound is taken this much later than the frames (to the sample): the audio at frame
    time t is the file's at t - delay, silence where that is before the stream (a file whose audio leads by d,
    read with delay d, plays in sync; inference.fine reads what is left of an offset so).
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
        vstream = media_stream(path, container, "video")
        track = choose_track(path, container, audio_track) if with_audio else None  # before decoding any video
        source_fps = float(vstream.average_rate or vstream.guessed_rate or 0) or None
        source_duration = container.duration / av.time_base if container.duration else None
    first = _first_frame(path)
    if first is None:
        raise SynchformerError(path, "no video frames could be decoded")
    t0, first_frame = first
    rotation = frame_rotation(first_frame)
    source_size, out_size = frame_sizes(path, first_frame, rotation, size, crop)

    def tick(t: Fraction) -> int:
        return nearest_tick(t, t0)

    k_first = max(0, math.ceil(Fraction(start_sec) * VIDEO_FPS - Fraction(1, 10**6)))
    k_stop = None if end_sec is None else math.ceil(Fraction(end_sec) * VIDEO_FPS - Fraction(1, 10**6))
    clip_start = t0 + Fraction(k_first, VIDEO_FPS)  # in the container's timeline

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
            img = frame_image(cur, size, crop, rotation, reformatter) if img is None else img
            images.extend([img] * (until - k))
            k = until

    prev_t = last_t = video_end = None
    damaged: list = []
    with closing(_decode(path, "video", clip_start, damaged)) as decoded:  # closed now, not by the GC (close_media)
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
        ends = f" (the video ends at {float(video_end - t0):.3f} s)" if video_end is not None else ""
        raise SynchformerError(path, f"no 25 fps frame at or after {start_sec} s from the first frame{ends}")

    n_samples = len(images) * SAMPLES_PER_FRAME
    lead = _authors_lead(path, t0, track.stream_index) if track is not None and timing == "authors" else Fraction(0)
    events: list[AudioEvent] = []
    if track is not None:
        delay = Fraction(round(audio_delay_sec * AUDIO_SR), AUDIO_SR)
        start = clip_start + lead - delay  # the container time of audio[0]
        placed = _load_audio(path, track.stream_index, start, n_samples, damaged)
        audio, pad_start, pad_end = placed.audio, placed.pad_start, placed.pad_end
        src_rate, src_channels = placed.source_rate, placed.source_channels
        # on the clip's clock (from the first video frame): where the sound is heard, after the delay
        events = [e.moved(float(delay - t0)) for e in placed.events]
    else:
        audio, pad_start, pad_end, src_rate, src_channels = np.zeros(n_samples, np.float32), 0, 0, None, None
    warnings = clip_warnings(len(damaged), pad_start, pad_end, getattr(first_frame, "rotation", 0))
    return AVClip(
        frames=_torch().from_numpy(np.stack(images)),
        audio=_torch().from_numpy(audio),
        path=path,
        start_sec=k_first / VIDEO_FPS,
        origin_sec=float(t0),
        source_fps=source_fps,
        source_size=source_size,
        rotation=rotation,
        source_sample_rate=src_rate,
        source_channels=src_channels,
        source_duration_sec=source_duration,
        audio_pad_start_sec=pad_start / AUDIO_SR,
        audio_pad_end_sec=pad_end / AUDIO_SR,
        audio_lead_sec=float(lead),
        audio_track=track,
        audio_events=events,
        warnings=warnings,
    )


def clip_warnings(n_damaged: int, pad_start: int, pad_end: int, rotation: float) -> list[str]:
    """What a decoded clip warns of: packets the decoder rejected, silence added where the audio stream has none
    (``pad_start``, ``pad_end``: samples), a display rotation (the first frame's) that is not a multiple of 90."""
    warnings = [f"skipped {n_damaged} damaged packet(s) the decoder rejected"] if n_damaged else []
    if pad_start + pad_end > _PAD_WARN_SEC * AUDIO_SR:
        warnings.append(
            f"audio covers less than the video: {pad_start / AUDIO_SR:.3f} s of silence added before it, "
            f"{pad_end / AUDIO_SR:.3f} s after it"
        )
    if rotation % 90:
        warnings.append(f"rotation of {rotation} degrees is not a multiple of 90; ignored")
    return warnings


def _torch():
    import torch  # here, not at the top: checking a file (check_media, probe) must not wait for torch to load

    return torch


@_user_errors
def authors_audio_lead(path: str | os.PathLike, audio_track: int | str | None = None) -> float:
    """Seconds by which the authors' stack took this file's audio early: 1024 samples at 16 kHz (0.064 s) when
    its first audio sample is at or before its first video frame, else 0 (see AUTHORS_DROPPED_SAMPLES)."""
    path = os.fspath(path)
    with _open(path) as container:
        track = choose_track(path, container, audio_track)
    first = _first_frame(path)
    if first is None:
        raise SynchformerError(path, "no video frames could be decoded")
    return float(_authors_lead(path, first[0], track.stream_index))


def _authors_lead(path: str, t0: Fraction, stream_index: int) -> Fraction:
    # read_segments decodes a file in many pieces (a sampled film: one per window): its first audio frame is
    # decoded once per version of the file, not once per piece
    if is_url(path):
        return _authors_lead_of(path, 0, 0, t0, stream_index)
    st = os.stat(path)
    return _authors_lead_of(path, st.st_mtime_ns, st.st_size, t0, stream_index)


@functools.lru_cache(maxsize=64)
def _authors_lead_of(path: str, mtime_ns: int, size: int, t0: Fraction, stream_index: int) -> Fraction:
    with closing(_decode(path, stream_index)) as frames:  # closed now (see close_media)
        first = next(frames, None)
    if first is None or first[0] - t0 > Fraction(1, 2 * AUDIO_SR):
        return Fraction(0)
    return Fraction(AUTHORS_DROPPED_SAMPLES, AUDIO_SR)


@_user_errors
def check_media(path: str | os.PathLike, audio: bool = True, audio_track: int | str | None = None) -> None:
    """A one-line SynchformerError unless ``path`` is a readable media file with a decodable video stream (and
    the audio track ``audio_track`` names: ``pick_audio_track``): what a command checks before it spends seconds
    loading a model."""
    path = os.fspath(path)
    with _open(path) as container:
        media_stream(path, container, "video")
        if audio:
            choose_track(path, container, audio_track)


@_user_errors
def audio_tracks(path: str | os.PathLike) -> list[AudioTrack]:
    """The file's audio tracks, in the file's order (``number`` 1 = the first)."""
    path = os.fspath(path)
    with _open(path) as container:
        return _tracks(container)


@_user_errors
def pick_audio_track(path: str | os.PathLike, choice: int | str | None = None) -> AudioTrack:
    """The audio track ``choice`` names: a number (1 = the file's first audio track), a language code as the
    file tags it (``deu``; case ignored; the first track in it), or None: the first track with the default
    disposition, else the first track (what players pick). A one-line SynchformerError, listing the tracks
    there are, when there is none such."""
    path = os.fspath(path)
    with _open(path) as container:
        return choose_track(path, container, choice)


def _tracks(container) -> list[AudioTrack]:
    out = []
    for s in container.streams.audio:
        cc = s.codec_context
        lang = (s.metadata.get("language") or "").strip() or None
        out.append(AudioTrack(
            number=len(out) + 1, stream_index=s.index, codec=cc.name if cc is not None else "unknown",
            channels=(cc.channels if cc is not None else 0) or 0, sample_rate=(cc.sample_rate if cc is not None
                                                                                else 0) or 0,
            language=None if lang in (None, "und") else lang, title=s.metadata.get("title") or None,
            default=bool(s.disposition & av.stream.Disposition.default)))
    return out


def choose_track(path: str, container, choice: int | str | None) -> AudioTrack:
    """``pick_audio_track`` in a container already open (see there)."""
    tracks = _tracks(container)
    if not tracks:
        raise SynchformerError(path, "has no audio stream")
    if isinstance(choice, str) and choice.strip().isdigit():
        choice = int(choice)
    if choice is None or choice == "default":
        track = next((t for t in tracks if t.default), tracks[0])
    elif isinstance(choice, int):
        if not 1 <= choice <= len(tracks):
            raise SynchformerError(path, f"has no audio track {choice} (it has {len(tracks)}: "
                                         f"{'; '.join(t.describe() for t in tracks)})")
        track = tracks[choice - 1]
    else:
        track = next((t for t in tracks if t.language and t.language.lower() == choice.strip().lower()), None)
        if track is None:
            raise SynchformerError(path, f"has no audio track in the language {choice!r} (its audio tracks: "
                                         f"{'; '.join(t.describe() for t in tracks)})")
    if container.streams[track.stream_index].codec_context is None:
        raise SynchformerError(path, f"no decoder for its audio {track.describe()}")
    return track


@_user_errors
def probe(path: str | os.PathLike) -> dict:
    """Container and stream facts (decodes one video frame, for its rotation). ``audio``: the track a player
    picks; ``audio_tracks``: every one."""
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
            "audio_tracks": [t.to_dict() for t in _tracks(container)],
        }
        vstream = container.streams.best("video")
        tracks = _tracks(container)
        astream = container.streams[choose_track(path, container, None).stream_index] if tracks else None
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
                "rotation": frame_rotation(first[1]) if first else 0,
                **stream_span(vstream),
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
                **stream_span(astream),
            }
    return info


def declared_duration(path: str | os.PathLike) -> float | None:
    """The duration the container's header states (s), without decoding; None if it states none or cannot be
    opened. Set beside what could be decoded, it tells a truncated file from a short one. What a reader of this
    version of the file has seen already (``note_declared_duration``) is not opened again."""
    key = _file_version(path)
    if key is not None and key in _DECLARED:
        return _DECLARED[key]
    try:
        with _open(os.fspath(path)) as container:
            return container.duration / av.time_base if container.duration else None
    except (SynchformerError, av.error.FFmpegError, OSError):
        return None


# Header durations that readers (io.reader.MediaReader) saw, by file version: a pass asks for it again when it tells a
# truncated file from a short one, or sizes its progress bar, and must not open the file for that.
_DECLARED: dict[tuple, float | None] = {}


def _file_version(path: str | os.PathLike) -> tuple | None:
    path = os.fspath(path)
    if is_url(path):
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return os.path.abspath(path), st.st_mtime_ns, st.st_size


def note_declared_duration(path: str | os.PathLike, duration: float | None) -> None:
    """Remember the header's duration of this version of ``path`` for ``declared_duration``."""
    key = _file_version(path)
    if key is not None:
        if len(_DECLARED) >= 256:
            _DECLARED.pop(next(iter(_DECLARED)))
        _DECLARED[key] = duration


def mean_channels(frame: av.AudioFrame) -> np.ndarray:
    """float32 mono samples of a packed ("flt") frame: the mean of its channels, as the reference downmixes.

    Packed, not planar: PyAV reads at most 8 planes (a 7.1 fltp frame crashed in ``to_ndarray``); one interleaved
    plane holds any number of channels."""
    n = len(frame.layout.channels)
    return frame.to_ndarray().reshape(-1, n).mean(axis=1, dtype=np.float32)


@_user_errors
def load_audio(path: str | os.PathLike, audio_track: int | str | None = None) -> np.ndarray:
    """A whole audio track (of an audio file, or a video's sound) as float32 16 kHz mono, channels averaged, from
    its first decoded sample (as av-benchmark reads generated audio), every frame placed by its timestamp (gaps
    silent, overlaps trimmed)."""
    path = os.fspath(path)
    with _open(path) as container:
        track = choose_track(path, container, audio_track)
    damaged: list = []
    placed = AudioPlacer(None, None)
    with closing(_decode(path, track.stream_index, damaged=damaged)) as decoded:
        for t, frame in decoded:
            placed.add(t, frame)
    placed.finish()
    if placed.first is None:
        raise SynchformerError(path, "no audio samples could be decoded")
    return placed.audio[placed.first:placed.end]


@dataclass
class _Placed:
    audio: np.ndarray
    pad_start: int
    pad_end: int
    source_rate: int | None
    source_channels: int | None
    events: list[AudioEvent]


def _load_audio(path: str, stream_index: int, clip_start: Fraction, n_samples: int, damaged: list) -> _Placed:
    """Mono 16 kHz audio of stream ``stream_index`` for ``[clip_start, clip_start + n_samples / 16 kHz)`` (the
    container's timeline), every frame placed by its timestamp, zeros where the stream has none."""
    clip_end = clip_start + Fraction(n_samples, AUDIO_SR)
    placer = AudioPlacer(clip_start, n_samples)
    with closing(_decode(path, stream_index, clip_start, damaged)) as decoded:
        for t, frame in decoded:
            if t > clip_end + AUDIO_TAIL_SEC:
                break
            placer.add(t, frame)
    placer.finish()
    first = n_samples if placer.first is None else placer.first
    end = first if placer.end is None else placer.end
    audio = np.clip(placer.audio, -1.0, 1.0).astype(np.float32, copy=False)
    # what the clip holds (a gap that starts in the tail decoded past its end is the next clip's)
    events = [e for e in placer.events
              if e.at_sec < clip_end and e.at_sec + Fraction(e.duration_sec if e.kind == "gap" else 0) > clip_start]
    return _Placed(audio, first, n_samples - end, placer.source_rate, placer.source_channels,
                   [AudioEvent(e.kind, float(e.at_sec), e.duration_sec, e.detail) for e in events])


class AudioPlacer:
    """Audio frames onto a 16 kHz mono timeline (sample 0 at ``origin``, a container time; None: the first
    frame's time) by their timestamps, as a player that honours them plays them.

    A run of frames whose timestamps follow on from one another goes through one resampler (kept across frames:
    its filter needs the samples around each frame) and is written from the time of its first frame. A frame
    whose timestamp is a whole frame or more away from where the run has got to starts a new run there: the hole
    before it stays silent, or the overlap is trimmed off its start. Less than that is taken as the codec's own
    timing and ignored: Vorbis in WebM stamps its long blocks 18 ms late against the samples before them (a
    1024-sample block: 21 ms), and the samples, not the stamps, are then right. Long frames (PCM packed a second
    to a packet) count as 0.1 s, ffmpeg's threshold for padding or trimming (aresample's min_hard_comp). A change of sample rate, layout
    or format starts a new run (and a new resampler) at the running time."""

    def __init__(self, origin: Fraction | None, n_samples: int | None):
        self.origin, self.n = origin, n_samples
        self.audio = np.zeros(n_samples or 0, np.float32)
        self.first = self.end = None  # the written span of ``audio``
        self.events: list[_Event] = []
        self.source_rate = self.source_channels = None
        self.resampler = self.fmt = self.cursor = None
        self.pos = self.floor = 0
        self.last_sec = Fraction(0)  # the last frame's duration

    def add(self, t: Fraction, frame: av.AudioFrame) -> None:
        fmt = (frame.format.name, frame.layout.name, frame.sample_rate)
        dur = Fraction(frame.samples, frame.sample_rate)
        if self.cursor is None:
            if self.origin is None:
                self.origin = t
            self.source_rate, self.source_channels = frame.sample_rate, len(frame.layout.channels)
            self._start(t, fmt)
        else:
            d = t - self.cursor
            # the frame's own timing resolution: its stream's tick, and 0.5 ms of rounding in the muxer
            tol = (Fraction(frame.time_base) if frame.time_base else Fraction(0)) + Fraction(1, 2000)
            jump = abs(d) >= min(max(self.last_sec, dur), _JUMP_MAX_SEC) - tol
            if jump:
                self.events.append(_Event("gap" if d > 0 else "overlap", self.cursor, float(abs(d))))
            if fmt != self.fmt:
                self.events.append(_Event("format", t if jump else self.cursor, 0.0,
                                          f"{_fmt_name(self.fmt)} -> {_fmt_name(fmt)}"))
            if jump or fmt != self.fmt or self.resampler is None:  # (None: finished, and the stream goes on)
                self.finish()
                self._start(t if jump else self.cursor, fmt)
        self.cursor += dur
        self.last_sec = dur
        for f in self.resampler.resample(frame):
            self._write(mean_channels(f))

    def finish(self) -> None:
        """Flush the run: its last samples are written. A frame added after starts a new run (io.reader finishes
        a run where the stream has nothing more for a while)."""
        if self.resampler is not None:
            self._finish_run()

    def _start(self, t: Fraction, fmt) -> None:
        # every channel is kept through the resampler (as ffmpeg's -ar 16000 does); the reference averages them
        # after. The resampler compensates its own delay, so a run's first output sample plays at ``t``.
        self.resampler, self.fmt, self.cursor = av.AudioResampler(format="flt", rate=AUDIO_SR), fmt, t
        self.pos = round((t - self.origin) * AUDIO_SR)
        self.floor = self.end if self.end is not None else self.pos  # an overlap: keep what is written

    def _finish_run(self) -> None:
        for f in self.resampler.resample(None):
            self._write(mean_channels(f))
        self.resampler = None

    def _write(self, x: np.ndarray) -> None:
        lo, hi = max(self.pos, self.floor, 0), self.pos + len(x)
        if self.n is not None:
            hi = min(hi, self.n)
        elif hi > len(self.audio):  # a whole track: grow
            self.audio = np.concatenate([self.audio, np.zeros(max(hi - len(self.audio), len(self.audio)),
                                                              np.float32)])
        if lo < hi:
            self.audio[lo:hi] = x[lo - self.pos:hi - self.pos]
            self.first = lo if self.first is None else min(self.first, lo)
            self.end = hi if self.end is None else max(self.end, hi)
        self.pos += len(x)


@dataclass(frozen=True)
class _Event:
    kind: str
    at_sec: Fraction  # container time
    duration_sec: float
    detail: str = ""


def _fmt_name(fmt) -> str:
    sample_fmt, layout, rate = fmt
    return f"{rate / 1000:g} kHz {layout} {sample_fmt}"


def _decode(
    path: str, which: str | int, at: Fraction | None = None, damaged: list | None = None
) -> Iterator[tuple[Fraction, av.frame.Frame]]:
    """Yield (presentation time in s, frame) of the file's main video stream (``which="video"``) or of the
    stream with index ``which``, from the start or, when ``at`` is far enough in, from a seek point at or before
    ``at``. If the seek fails or lands after ``at`` (some demuxers cannot seek some streams, or have inexact
    indexes), decode from the start instead. Packets the decoder rejects are skipped, as ffmpeg does, and
    counted in ``damaged``."""
    damaged = [] if damaged is None else damaged
    kind = "video" if which == "video" else "audio"
    if at is not None:
        with _open(path) as container:
            stream = media_stream(path, container, which)
            if at - Fraction(stream.start_time or 0) * stream.time_base > SEEK_MIN_SEC[kind]:
                stream.codec_context.thread_type = "AUTO"
                try:
                    # by the container's default stream, in AV_TIME_BASE: every demuxer moves all streams
                    container.seek(math.floor((at - PREROLL_SEC) * av.time_base), backward=True)
                    frames = _timed(_decoded(container, stream, damaged), stream)
                    first = next(frames, None)
                except av.error.FFmpegError:
                    first = None
                if first is not None and first[0] <= at:
                    frames = itertools.chain([first], frames)
                    if kind == "audio":  # the first frames after a seek only prime the decoder: can be mistimed
                        warm = at - PREROLL_SEC / 2
                        frames = itertools.dropwhile(lambda tf: tf[0] + frame_seconds(tf[1]) < warm, frames)
                    yield from frames
                    return
    with _open(path) as container:
        stream = media_stream(path, container, which)
        stream.codec_context.thread_type = "AUTO"
        yield from _timed(_decoded(container, stream, damaged), stream)


def _first_frame(path: str) -> tuple[Fraction, av.VideoFrame] | None:
    # closed here, not whenever the garbage collector gets to the generator (see close_media)
    with closing(_decode(path, "video")) as frames:
        return next(frames, None)


def _decoded(container, stream, damaged: list) -> Iterator[av.frame.Frame]:
    for packet in container.demux(stream):
        try:
            yield from packet.decode()
        except av.error.InvalidDataError:
            damaged.append(packet.pts)


def frame_seconds(frame: av.AudioFrame) -> Fraction:
    """How long an audio frame plays."""
    return Fraction(frame.samples, frame.sample_rate)


def _timed(frames, stream) -> Iterator[tuple[Fraction, av.frame.Frame]]:
    """Attach exact presentation times; a frame without pts follows the previous one."""
    t, step = Fraction(stream.start_time or 0) * stream.time_base, Fraction(0)
    for frame in frames:
        t = t + step if frame.pts is None else Fraction(frame.pts) * stream.time_base
        if stream.type == "audio":
            step = frame_seconds(frame)
        else:
            step = 1 / Fraction(stream.average_rate or stream.guessed_rate or VIDEO_FPS)
        yield t, frame


def frame_rotation(frame: av.VideoFrame) -> int:
    """Counter-clockwise degrees (0, 90, 180, 270) that make the frame upright, from its display matrix."""
    rotation = getattr(frame, "rotation", 0)  # PyAV >= 13
    return int(rotation) % 360 if rotation % 90 == 0 else 0


def _scaled_size(display_size: tuple[int, int], size: int | None) -> tuple[int, int]:
    """(width, height) as ffmpeg evaluates ``scale=iw*S/min(iw,ih):ih*S/min(iw,ih)`` (truncated to int)."""
    w, h = display_size
    return (w, h) if size is None else (w * size // min(w, h), h * size // min(w, h))


def output_size(display_size: tuple[int, int], size: int | None) -> tuple[int, int]:
    """Frame size before the centre crop: scaled, then ``crop=trunc(iw/2)*2:trunc(ih/2)*2`` when scaling."""
    w, h = _scaled_size(display_size, size)
    return (w, h) if size is None else (w // 2 * 2, h // 2 * 2)


def frame_sizes(path, frame: av.VideoFrame, rotation: int, size: int | None,
                crop: int | None) -> tuple[tuple[int, int], tuple[int, int]]:
    """((width, height) as displayed, after rotation; the size before the centre crop) of ``frame``, or a one-line
    error naming ``path`` when that is smaller than ``crop``."""
    source_size = (frame.height, frame.width) if rotation % 180 else (frame.width, frame.height)
    out_size = output_size(source_size, size)
    if crop is not None and min(out_size) < crop:
        raise SynchformerError(path, f"frames are {out_size[0]}x{out_size[1]}, smaller than the {crop} px crop")
    return source_size, out_size


def nearest_tick(t: Fraction, t0: Fraction) -> int:
    """The 25 fps tick a frame at time ``t`` lands on, counted from ``t0``: ffmpeg's fps filter rounds each input
    pts to the nearest output tick (half away from zero)."""
    return math.floor((t - t0) * VIDEO_FPS + Fraction(1, 2))


def frame_image(
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
    ow, oh = output_size(display, size)
    img = img[:oh, :ow]  # ffmpeg's even-dims crop keeps the top-left (its x=(iw-ow)/2 truncates to 0)
    if crop is not None:
        i, j = int(round((oh - crop) / 2)), int(round((ow - crop) / 2))  # as the reference's RGBSpatialCrop
        img = img[i : i + crop, j : j + crop]
    return np.ascontiguousarray(img.transpose(2, 0, 1))


def stream_span(stream) -> dict:
    """The stream's start and duration as its header states them (s; None where it states none)."""
    tb = stream.time_base
    return {
        "start_sec": float(stream.start_time * tb) if stream.start_time is not None else None,
        "duration_sec": float(stream.duration * tb) if stream.duration else None,
    }


def media_stream(path: str, container, which: str | int):
    """The video stream ffmpeg would pick (``which="video"``), or the stream of index ``which``."""
    if which == "video":
        stream = container.streams.best("video")
        if stream is None:
            raise SynchformerError(path, "has no video stream")
    else:
        stream = container.streams[which]
    if stream.codec_context is None:
        raise SynchformerError(path, f"no decoder for its {stream.type} stream")
    return stream


def refuse_special_file(path: str | os.PathLike) -> None:
    """A FIFO, socket or device is refused in one line: reading it could block forever, and seeking fails."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        kind = "a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise SynchformerError(path, f"is {kind}, not a regular media file; save the stream to a file first")


# Schemes read as network streams. Anything else is a local path, whatever it holds (``take:2.mp4``, ``12:30.mp4``
# and ``file:x.mp4`` are files of those names).
STREAM_SCHEMES = ("http", "https", "rtmp", "rtmps", "rtsp", "rtsps", "srt", "udp", "rtp", "tcp", "ftp", "sftp")
NETWORK_TIMEOUT_SEC = 15  # opening a URL, and each read from it


def is_url(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a network stream: ``scheme://...`` with a scheme of STREAM_SCHEMES."""
    scheme, sep, _ = os.fspath(path).partition("://")
    return bool(sep) and scheme.lower() in STREAM_SCHEMES


def check_local_input(path: str | os.PathLike) -> None:
    """A one-line SynchformerError unless ``path`` is a regular file that can be read, or a URL (checked when
    opened): what every reader and writer checks before opening."""
    path = os.fspath(path)
    if is_url(path):
        return
    if path == "-":
        raise SynchformerError(path, "reading standard input is not supported; save the stream to a file and "
                                     "give its name")
    if not os.path.exists(path):
        raise SynchformerError(path, "file not found")
    if os.path.isdir(path):
        raise SynchformerError(path, "is a directory, not a media file")
    refuse_special_file(path)
    if os.path.getsize(path) == 0:
        raise SynchformerError(path, "file is empty (0 bytes)")


def ffmpeg_name(path: str | os.PathLike) -> str:
    """The name to give FFmpeg for ``path``: a URL as it is, a local path behind ``file:`` so that FFmpeg never
    reads a colon in it as a protocol (``take:2.mp4``, or ``file:x.mp4``, which it would read as ``x.mp4``)."""
    path = os.fspath(path)
    return path if is_url(path) else "file:" + os.path.abspath(path)


def open_media(path: str | os.PathLike, **kwargs):
    """``av.open`` for reading ``path`` (a local file, or a URL with NETWORK_TIMEOUT_SEC timeouts), with a
    one-line SynchformerError naming it when it cannot be opened."""
    path = os.fspath(path)
    check_local_input(path)
    kwargs.setdefault("metadata_errors", "ignore")
    if is_url(path):
        kwargs.setdefault("timeout", (NETWORK_TIMEOUT_SEC, NETWORK_TIMEOUT_SEC))
    try:
        return av.open(ffmpeg_name(path), **kwargs)
    except (av.error.FFmpegError, OSError) as e:
        if is_url(path):
            why = (f"no answer within {NETWORK_TIMEOUT_SEC:g} s" if isinstance(e, av.error.ExitError)
                   else _reason(e))  # (PyAV's timeout interrupts FFmpeg, which calls that an exit)
            raise SynchformerError(path, f"the URL cannot be read ({why})") from e
        raise SynchformerError(path, f"not a readable media file ({_reason(e)})") from e


@contextmanager
def _open(path: str):
    """Open ``path`` for reading, refusing what is not a readable media file with a one-line SynchformerError."""
    container = open_media(path)
    try:
        yield container
    finally:
        close_media(container)


def close_media(container) -> None:
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
