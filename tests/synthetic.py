"""Test media: a clip whose only content is white flashes and clicks at known times, shifted by a known offset."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

FORMATS = {  # name: (extension, video codec, audio codec, pixel format)
    "mp4-h264-aac": (".mp4", "libx264", "aac", "yuv420p"),
    "mkv-mpeg4-flac": (".mkv", "mpeg4", "flac", "yuv420p"),
    "webm-vp8-opus": (".webm", "libvpx", "libopus", "yuv420p"),
    "mov-mjpeg-pcm": (".mov", "mjpeg", "pcm_s16le", "yuvj420p"),
    "avi-mjpeg-mp3": (".avi", "mjpeg", "libmp3lame", "yuvj420p"),
}


def event_times(duration: float, seed: int = 0, gap: float = 1.3) -> np.ndarray:
    """Irregular event times (irregular so that no other lag lines flashes up with clicks)."""
    rng = np.random.default_rng(seed)
    times, t = [], 0.7
    while t < duration - 0.5:
        times.append(t)
        t += gap * rng.uniform(0.7, 1.6)
    return np.array(times)


def make_clip(path: Path, offset_sec: float, duration: float = 12.0, fmt: str = "mp4-h264-aac", seed: int = 0,
              fps: int = 25, size: tuple[int, int] = (96, 64), sample_rate: int = 48000,
              drift_per_min: float = 0.0, gap: float = 1.3) -> np.ndarray:
    """Write a clip with a white flash (2 frames) at each event and a click whose sound is ``offset_sec`` early
    (positive: the audio leads), plus ``drift_per_min`` seconds more per minute. Returns the flash times."""
    ext, vcodec, acodec, pix_fmt = FORMATS[fmt]
    path = Path(path).with_suffix(ext)
    events = event_times(duration, seed, gap)
    w, h = size
    with av.open(str(path), "w") as out:
        vs = out.add_stream(vcodec, rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
        as_ = out.add_stream(acodec, rate=sample_rate, layout="mono")
        for i in range(int(duration * fps)):
            lit = any(0 <= i / fps - e < 2 / fps for e in events)
            img = np.full((h, w, 3), 235 if lit else 20, np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))

        n = int(duration * sample_rate)
        wave = np.random.default_rng(seed + 1).normal(0, 0.003, n).astype(np.float32)
        burst = (0.8 * np.sin(2 * np.pi * 1000 * np.arange(int(0.03 * sample_rate)) / sample_rate)).astype(np.float32)
        for e in events - offset_sec - drift_per_min * events / 60:
            s = int(round(e * sample_rate))
            if 0 <= s < n - len(burst):
                wave[s:s + len(burst)] += burst
        # float samples converted to whatever the encoder takes, in frames of the encoder's size
        resampler = av.AudioResampler(format=as_.codec_context.codec.audio_formats[0].name, layout="mono",
                                      rate=sample_rate, frame_size=as_.codec_context.frame_size or 1024)
        frame = av.AudioFrame.from_ndarray(wave[None], format="flt", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = sample_rate, 0, Fraction(1, sample_rate)
        for f in resampler.resample(frame) + resampler.resample(None):
            out.mux(as_.encode(f))
        out.mux(as_.encode(None))
    return events
