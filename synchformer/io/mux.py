"""A video with a separately recorded sound put in place of its own (``fix VIDEO --audio FILE``).

The video's packets and the sound file's packets are first put, unchanged, into one Matroska file beside the output
(Matroska holds nearly every codec), the sound's first sample at the video's first frame; that file is then moved
into place by ``io.fix.shift_audio``, which writes the output's container, re-encodes the sound only where that
container cannot hold it, and reads the result back to check the timestamps. The video's own sound, subtitles and
data are left out: the output holds the picture and the new sound.
"""

from __future__ import annotations

import heapq
import os
import secrets
from fractions import Fraction

import av

from synchformer.errors import SynchformerError
from synchformer.io.decode import choose_track, ffmpeg_name, media_stream
from synchformer.io.fix import shift_audio


def replace_audio(video: str | os.PathLike, sound: str | os.PathLike, dst: str | os.PathLike, offset_sec: float, *,
                  sound_track: int | str | None = None, overwrite: bool = False) -> dict:
    """Write ``dst``: ``video``'s picture with ``sound`` (its track ``sound_track``) as its only audio, the sound's
    first sample placed at the video's first frame and then moved by ``offset_sec`` (positive: later; as
    ``predict VIDEO --audio SOUND`` reports it, so that the measured offset becomes 0). Returns shift_audio's report
    with ``"sound"`` (the file) and ``"video"`` (the picture's source) added."""
    video, sound, dst = os.fspath(video), os.fspath(sound), os.fspath(dst)
    if os.path.exists(dst) and not overwrite:
        raise SynchformerError(dst, "already exists: pass --overwrite to replace it")
    folder, name = os.path.split(os.path.abspath(dst))
    joined = os.path.join(folder, f".{name}.joined{secrets.token_hex(4)}.mkv")
    try:
        os.close(os.open(joined, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as e:
        raise SynchformerError(dst, f"cannot write there ({e.strerror or e})") from e
    try:
        audio_index = _join(video, sound, sound_track, joined)
        report = shift_audio(joined, dst, offset_sec, overwrite=overwrite, audio_stream=audio_index)
    finally:
        if os.path.lexists(joined):
            os.remove(joined)
    report.update(src=video, video=video, sound=sound)
    return report


def _join(video: str, sound: str, sound_track, out_path: str) -> int:
    """Put ``video``'s first video stream and ``sound``'s track into ``out_path`` (Matroska), the sound starting at
    the video's first frame; the output's index of the sound."""
    try:
        with av.open(ffmpeg_name(video), metadata_errors="ignore") as vin, \
                av.open(ffmpeg_name(sound), metadata_errors="ignore") as ain, \
                av.open(out_path, "w", format="matroska") as out:
            vs = media_stream(video, vin, "video")
            track = choose_track(sound, ain, sound_track)
            a_s = ain.streams[track.stream_index]
            ov = out.add_stream_from_template(vs, opaque=True)
            oa = out.add_stream_from_template(a_s, opaque=True)
            v0 = _first_time(ffmpeg_name(video), vs.index)
            a0 = _first_time(ffmpeg_name(sound), a_s.index)
            if v0 is None or a0 is None:
                raise SynchformerError(video if v0 is None else sound, "has no timed packets to place")
            # sound time t plays at video time v0 + (t - a0): packets merged in time order for the muxer
            streams = [_timed(vin.demux(vs), ov, Fraction(0)), _timed(ain.demux(a_s), oa, v0 - a0)]
            for _, _, pkt in heapq.merge(*streams, key=lambda x: (x[0], x[1])):
                out.mux(pkt)
            return oa.index
    except SynchformerError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise SynchformerError(sound, f"could not be put beside {video}'s picture ({e})") from e


def _first_time(name: str, index: int) -> Fraction | None:
    with av.open(name, metadata_errors="ignore") as c:
        s = c.streams[index]
        for k, pkt in enumerate(c.demux(s)):
            t = pkt.pts if pkt.pts is not None else pkt.dts
            if t is not None:
                return Fraction(t) * s.time_base
            if k > 64:
                break
    return None


def _timed(packets, ostream, move: Fraction):
    """(time, order, packet) of each packet, its timestamps moved by ``move`` seconds and set on ``ostream``."""
    for k, pkt in enumerate(packets):
        if pkt.dts is None and pkt.pts is None:  # the demuxer's flush packet
            continue
        tb = pkt.time_base
        step = round(move / tb)
        if pkt.pts is not None:
            pkt.pts += step
        if pkt.dts is not None:
            pkt.dts += step
        pkt.stream = ostream
        t = (pkt.dts if pkt.dts is not None else pkt.pts) * tb
        yield t, k, pkt


__all__ = ["replace_audio"]
