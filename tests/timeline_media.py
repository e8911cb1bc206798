"""Files whose timestamps carry the faults that cause desync, made from an in-sync clip with PyAV alone: audio
packets dropped (a gap), a fragmented MP4, several audio tracks, an MPEG-TS that starts late, a stream whose audio
format changes, and streams joined with an overlap."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from synchformer.constants import AUDIO_SR, VIDEO_FPS


def remux(src, dst, *, drop=None, shift=None, fmt=None, options=None) -> Path:
    """Copy ``src``'s packets into ``dst``: audio packets with ``drop(t)`` true (t: their time in s) left out,
    ``shift`` {"audio": s, "video": s} added to the timestamps, ``options`` for the muxer (e.g. movflags)."""
    with av.open(str(src)) as i, av.open(str(dst), "w", format=fmt, options=options or {}) as o:
        out = {s.index: o.add_stream_from_template(s) for s in i.streams}
        for p in i.demux():
            if p.dts is None:
                continue
            if drop is not None and p.stream.type == "audio" and drop(float(p.pts * p.time_base)):
                continue
            if shift and p.stream.type in shift:
                d = round(shift[p.stream.type] / p.time_base)
                p.pts, p.dts = p.pts + d, p.dts + d
            p.stream = out[p.stream.index]
            o.mux(p)
    return Path(dst)


def decode_mono(src) -> np.ndarray:
    """The first audio stream of ``src`` as 16 kHz mono, frames joined end to end (for in-sync sources only)."""
    with av.open(str(src)) as c:
        r = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_SR)
        parts = [f.to_ndarray()[0] for fr in c.decode(audio=0) for f in r.resample(fr)]
        parts += [f.to_ndarray()[0] for f in r.resample(None)]
    return np.concatenate(parts)


def video_frames(src) -> np.ndarray:
    with av.open(str(src)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def _encode_audio(out, stream, wave: np.ndarray, rate: int, layout: str, start_sec: float = 0.0) -> None:
    """16 kHz mono ``wave`` into ``stream`` at ``rate`` / ``layout``, its first sample at ``start_sec``."""
    up = av.AudioResampler(format=stream.codec_context.codec.audio_formats[0].name, layout=layout, rate=rate,
                           frame_size=stream.codec_context.frame_size or 1024)
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[None], dtype=np.float32), format="flt",
                                       layout="mono")
    frame.sample_rate, frame.pts, frame.time_base = AUDIO_SR, round(start_sec * AUDIO_SR), Fraction(1, AUDIO_SR)
    for f in up.resample(frame) + up.resample(None):
        out.mux(stream.encode(f))
    out.mux(stream.encode(None))


def with_tracks(src, dst, tracks, fmt=None) -> Path:
    """``src``'s video with new AAC tracks: ``tracks`` = [(16 kHz mono wave, bit rate, language, default)]."""
    with av.open(str(src)) as i, av.open(str(dst), "w", format=fmt) as o:
        vs = o.add_stream_from_template(i.streams.video[0])
        outs = []
        for wave, bit_rate, lang, default in tracks:
            s = o.add_stream("aac", rate=AUDIO_SR, layout="mono")
            s.bit_rate = bit_rate
            s.metadata["language"] = lang
            s.disposition = av.stream.Disposition.default if default else av.stream.Disposition(0)
            outs.append((s, wave))
        for p in i.demux(i.streams.video[0]):
            if p.dts is not None:
                p.stream = vs
                o.mux(p)
        for s, wave in outs:
            _encode_audio(o, s, wave, AUDIO_SR, "mono")
    return Path(dst)


def ts_part(dst, frames: np.ndarray, first_frame: int, wave: np.ndarray, rate: int, layout: str,
            audio_start_sec: float | None = None, base_sec: float = 1.0) -> Path:
    """An MPEG-TS of ``frames`` (H.264) from frame ``first_frame`` of the 25 fps timeline and ``wave`` (16 kHz
    mono, encoded as AAC at ``rate`` / ``layout``) from ``audio_start_sec`` (default: with the first frame), all
    ``base_sec`` later in the stream's timeline (as broadcast streams start; and then no timestamp is negative,
    which the muxer would mend by moving everything)."""
    with av.open(str(dst), "w", format="mpegts") as o:
        vs = o.add_stream("libx264", rate=VIDEO_FPS)
        vs.width, vs.height, vs.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        a = o.add_stream("aac", rate=rate, layout=layout)
        for k, img in enumerate(frames):
            fr = av.VideoFrame.from_ndarray(img, format="rgb24")
            fr.pts, fr.time_base = first_frame + k + round(base_sec * VIDEO_FPS), Fraction(1, VIDEO_FPS)
            o.mux(vs.encode(fr))
        o.mux(vs.encode(None))
        start = first_frame / VIDEO_FPS if audio_start_sec is None else audio_start_sec
        _encode_audio(o, a, wave, rate, layout, start + base_sec)
    return Path(dst)


def joined(dst, *parts) -> Path:
    """Byte-concatenated transport streams (what ``cat a.ts b.ts`` or a recorder's segment joining gives)."""
    Path(dst).write_bytes(b"".join(Path(p).read_bytes() for p in parts))
    return Path(dst)
