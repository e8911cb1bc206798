"""Write a copy of a media file with its audio moved in time, so that a measured offset becomes 0.

The video is never decoded: its packets are copied into the new container unchanged. The audio is moved by
rewriting its packet timestamps (a remux); only when the output container cannot place audio by timestamps (AVI
plays audio as one contiguous run from the start, whatever the packets say) or cannot hold the audio codec, the
audio is decoded, padded with silence or trimmed by the exact number of samples, and encoded again.
"""

from __future__ import annotations

import math
import os
import tempfile
from fractions import Fraction

import av
import numpy as np

from synchformer.errors import SynchformerError

# Muxers that lay audio out as one contiguous run from the file start and ignore its timestamps (checked with
# this PyAV build: AVI, PCM and MP3 alike, puts the first audio sample at 0 whatever its pts).
_PTS_IGNORED = {"avi"}
# Muxers that store a negative start exactly (an edit list skips the first samples): a packet that straddles the
# file start is kept there. Elsewhere it is dropped, since clamping its timestamp would move all audio after it.
_NEGATIVE_TS_OK = {"mp4", "mov", "ipod", "ismv", "3gp", "3g2", "psp", "f4v"}
_TOLERANCE_SEC = 1e-3  # a remux must place the first audio packet this close to where it was asked


def shift_audio(src: str | os.PathLike, dst: str | os.PathLike, offset_sec: float, *, overwrite: bool = False) -> dict:
    """Write ``src`` to ``dst`` with every audio stream moved so that a measured ``offset_sec`` becomes 0.

    ``offset_sec > 0`` means the audio leads the video, so the audio is delayed by ``offset_sec``; ``< 0`` means it
    lags, so the audio is advanced by ``|offset_sec|`` (audio that would then play before the file start is cut).
    The output format follows ``dst``'s extension (no extension: ``src``'s format). Video and other streams are
    copied bit for bit with their metadata. ``dst`` is written atomically; ``src`` is never written to.

    Returns a report: ``method`` ("remux" or "reencode-audio"), ``audio_shift_sec`` (the shift applied, positive =
    delayed; the requested one rounded to the audio time base), ``video_packets``, ``audio_packets_dropped``,
    ``streams`` (one dict per input stream: index, type, codec, what was done with it), ``format``, ``src``, ``dst``.
    """
    src, dst = os.fspath(src), os.fspath(dst)
    if not math.isfinite(offset_sec):
        raise SynchformerError(src, f"offset must be a finite number of seconds, got {offset_sec}")
    _check_paths(src, dst, overwrite)
    ext = os.path.splitext(dst)[1] or os.path.splitext(src)[1]
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(dst)}.tmp", suffix=ext, dir=os.path.dirname(os.path.abspath(dst)))
    os.close(fd)
    try:
        try:
            report = _remux(src, tmp, offset_sec)
            if report["format"] in _PTS_IGNORED or not report["audio_placed"]:
                report = _reencode(src, tmp, offset_sec, report)
        except (av.error.FFmpegError, ValueError) as e:  # the container cannot take the audio as it is
            if isinstance(e, _VideoNotCopyable):
                raise
            report = _reencode(src, tmp, offset_sec, {"reason": _reason(e)})
        os.replace(tmp, dst)
    except SynchformerError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise SynchformerError(src, f"could not write {dst} ({_reason(e)})") from e
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    report.pop("audio_placed", None)
    report.update(src=src, dst=dst)
    return report


class _VideoNotCopyable(ValueError):
    pass


def _check_paths(src: str, dst: str, overwrite: bool) -> None:
    """Refuse what would write over the input, an existing file (unless asked), or read a non-media file."""
    if not os.path.exists(src):
        raise SynchformerError(src, "file not found")
    if os.path.isdir(src):
        raise SynchformerError(src, "is a directory, not a media file")
    if os.path.realpath(src) == os.path.realpath(dst) or os.path.exists(dst) and os.path.samefile(src, dst):
        raise SynchformerError(dst, "is the input file (or a link to it); write the fixed copy elsewhere")
    if os.path.isdir(dst):
        raise SynchformerError(dst, "is a directory; give a file name for the output")
    if os.path.lexists(dst) and not overwrite:
        raise SynchformerError(dst, "already exists (pass overwrite=True to replace it)")
    if not os.path.isdir(os.path.dirname(os.path.abspath(dst))):
        raise SynchformerError(dst, "its folder does not exist")
    if os.path.getsize(src) == 0:
        raise SynchformerError(src, "file is empty (0 bytes)")
    try:
        with av.open(src, metadata_errors="ignore") as c:
            kinds = {s.type for s in c.streams}
    except (av.error.FFmpegError, OSError) as e:
        raise SynchformerError(src, f"not a readable media file ({_reason(e)})") from e
    for kind in ("video", "audio"):
        if kind not in kinds:
            raise SynchformerError(src, f"has no {kind} stream")


def _remux(src: str, tmp: str, offset_sec: float) -> dict:
    with av.open(src, metadata_errors="ignore") as inp, av.open(tmp, "w") as out:
        fmt = out.format.name
        out.metadata.update(inp.metadata)
        streams, mapping, shifts, applied = [], {}, {}, {}
        floor = _file_start(inp)
        for s in inp.streams:
            info = {"index": s.index, "type": s.type, "codec": _codec_name(s)}
            streams.append(info)
            try:
                o = out.add_stream_from_template(s, opaque=True)
            except ValueError as e:
                if s.type == "video":
                    raise _VideoNotCopyable(f"the {fmt} format cannot hold {info['codec']} video") from e
                if s.type == "audio":
                    raise
                info["action"] = f"dropped ({fmt} cannot hold it)"
                continue
            o.metadata.update(s.metadata)
            o.disposition = s.disposition
            mapping[s.index] = o
            if s.type == "audio":
                shifts[s.index] = round(Fraction(offset_sec) / s.time_base)  # in the stream's own time base
                applied[s.index] = float(shifts[s.index] * s.time_base)
                info["action"] = f"shifted by {applied[s.index]:+.6f} s"
            else:
                info["action"] = "copied"
        counts = {"video": 0, "dropped": 0}
        first_audio = {}
        for pkt in inp.demux():
            s = pkt.stream
            if pkt.size == 0 or s.index not in mapping:  # end-of-stream markers, streams left out
                continue
            if s.index in shifts:
                n = shifts[s.index]
                pkt.pts = None if pkt.pts is None else pkt.pts + n
                pkt.dts = None if pkt.dts is None else pkt.dts + n
                t = pkt.pts if pkt.pts is not None else pkt.dts
                if t is not None:
                    start = t * s.time_base
                    end = (t + (pkt.duration or 0)) * s.time_base
                    if end <= floor or start < floor and fmt not in _NEGATIVE_TS_OK:
                        counts["dropped"] += 1
                        continue
                    first_audio.setdefault(s.index, start)
            elif s.type == "video":
                counts["video"] += 1
            pkt.stream = mapping[s.index]
            out.mux(pkt)
    return {
        "method": "remux",
        "format": fmt,
        "audio_shift_sec": applied[min(applied)],
        "video_packets": counts["video"],
        "audio_packets_dropped": counts["dropped"],
        "streams": streams,
        "audio_placed": True,
    }


def _file_start(container) -> Fraction:
    """Where the file's timeline starts: 0, or earlier if a non-audio stream starts before 0."""
    starts = [Fraction(s.start_time) * s.time_base for s in container.streams
              if s.type != "audio" and s.start_time is not None]
    return min([Fraction(0)] + starts)


def _reencode(src: str, tmp: str, offset_sec: float, why: dict) -> dict:
    raise NotImplementedError


def _codec_name(stream) -> str:
    cc = stream.codec_context
    return cc.name if cc is not None else (stream.ptr_codec_name if hasattr(stream, "ptr_codec_name") else stream.type)


def _reason(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e) or type(e).__name__
