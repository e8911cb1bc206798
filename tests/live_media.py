"""Test media for live monitoring: a synthetic clip (as `synchformer synth` makes them, which the bundled model
reads well) written as MPEG-TS whose sound is in sync up to ``shift_at_sec`` and ``shift_sec`` early after it, and
senders that play such a file to a local UDP port or into a growing file at a multiple of real time."""

from __future__ import annotations

import socket
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from scipy.signal import resample_poly

from synchformer.constants import AUDIO_SR, VIDEO_FPS
from synchformer.training.synth import sparse_clip_arrays


def make_shifting_ts(path: Path, duration: float = 50.0, shift_at_sec: float = 30.0, shift_sec: float = 0.6,
                     channels: int = 1, sample_rate: int = 48000, seed: int = 7, size: int = 96) -> Path:
    """Write an MPEG-TS (H.264 with a keyframe every second, AAC at ``sample_rate``, ``channels`` channels): the
    sound is in sync until ``shift_at_sec``, then ``shift_sec`` early (it leads: from there on the sound of time
    t + shift_sec plays at t, as if that much of it had been cut out; a negative ``shift_sec``: late). ``size``: the
    picture's side (96, as the bundled model was trained; 256 for the full-size model's 224 crop)."""
    frames, audio, _ = sparse_clip_arrays(seed, duration=duration + abs(shift_sec) + 1.0, size=size)
    frames = frames[:round(duration * VIDEO_FPS)]
    cut = round(shift_at_sec * AUDIO_SR)
    sound = np.concatenate([audio[:cut], audio[cut + round(shift_sec * AUDIO_SR):]])[:round(duration * AUDIO_SR)]
    sound = resample_poly(sound, sample_rate, AUDIO_SR).astype(np.float32)
    planes = np.stack([sound] * channels) if channels == 1 else np.stack([sound, 0.8 * sound])
    layout = "mono" if channels == 1 else "stereo"
    with av.open(str(path), "w", format="mpegts") as out:
        vs = out.add_stream("libx264", rate=VIDEO_FPS)
        vs.width = vs.height = frames.shape[1]
        vs.pix_fmt = "yuv420p"
        vs.options = {"preset": "veryfast", "crf": "23", "g": "25", "threads": "1"}
        as_ = out.add_stream("aac", rate=sample_rate, layout=layout)
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=sample_rate, frame_size=1024)
        a = av.AudioFrame.from_ndarray(np.ascontiguousarray(planes), format="fltp", layout=layout)
        a.sample_rate, a.pts, a.time_base = sample_rate, 0, Fraction(1, sample_rate)
        audio_frames = resampler.resample(a) + resampler.resample(None)
        per_video = len(audio_frames) / len(frames)
        j = 0
        for k, img in enumerate(frames):  # interleaved, as a live encoder writes them
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = k, Fraction(1, VIDEO_FPS)
            out.mux(vs.encode(frame))
            while j < min(len(audio_frames), (k + 1) * per_video):
                out.mux(as_.encode(audio_frames[j]))
                j += 1
        out.mux(vs.encode(None))
        for f in audio_frames[j:]:
            out.mux(as_.encode(f))
        out.mux(as_.encode(None))
    return path


class Sender(threading.Thread):
    """Plays an MPEG-TS file to ``udp://127.0.0.1:port`` (188-byte packets, 7 to a datagram), paced by the
    file's own timestamps (its PCR-bearing packets' position) at ``speed`` times real time; ``stop()`` stops
    it (the receiver then sees the input lost)."""

    def __init__(self, ts_path: Path, port: int, speed: float = 1.0, start_after: float = 0.0):
        super().__init__(daemon=True)
        self.data = Path(ts_path).read_bytes()
        self.port, self.speed, self.start_after = port, speed, start_after
        self.stopped = threading.Event()
        self.times = packet_times(ts_path, len(self.data))
        self.done = False

    def run(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            if self.stopped.wait(self.start_after):
                return
            t0 = time.monotonic()
            step = 188 * 7
            for at in range(0, len(self.data), step):
                due = t0 + self.times[at // 188] / self.speed
                delay = due - time.monotonic()
                if delay > 0 and self.stopped.wait(delay):
                    return
                sock.sendto(self.data[at:at + step], ("127.0.0.1", self.port))
            self.done = True
        finally:
            sock.close()

    def stop(self):
        self.stopped.set()


def packet_times(ts_path: Path, size: int) -> np.ndarray:
    """Per 188-byte TS packet, the media time (s from the first) to send it at: each demuxed packet's dts placed
    at its byte position, interpolated between (a sender paced by the stream's own clock)."""
    pos, ts = [], []
    with av.open(str(ts_path)) as c:
        for p in c.demux():
            if p.pos is not None and p.pos >= 0 and p.dts is not None:
                pos.append(p.pos // 188)
                ts.append(float(p.dts * p.time_base))
    order = np.argsort(pos)
    pos, ts = np.asarray(pos)[order], np.maximum.accumulate(np.asarray(ts)[order])
    t = np.interp(np.arange(size // 188 + 1), pos, ts)
    return t - t[0]


class GrowingFile(threading.Thread):
    """Copies an MPEG-TS file into ``out`` in pieces, at ``speed`` times the pace of its timestamps (a recorder
    writing a file as the stream comes in); ``stop()`` stops the writing (the file no longer grows)."""

    def __init__(self, ts_path: Path, out: Path, speed: float = 1.0, piece_sec: float = 0.2):
        super().__init__(daemon=True)
        self.data = Path(ts_path).read_bytes()
        self.out, self.speed, self.piece = Path(out), speed, piece_sec
        self.times = packet_times(ts_path, len(self.data))
        self.stopped = threading.Event()
        self.done = False
        self.out.write_bytes(self.data[:188 * 7 * 40])  # a first piece: the reader finds a file to open

    def run(self):
        t0 = time.monotonic()
        at = 188 * 7 * 40
        start = self.times[at // 188]
        with open(self.out, "ab") as f:
            while at < len(self.data):
                now = (time.monotonic() - t0) * self.speed + start
                end = int(np.searchsorted(self.times, now + self.piece)) * 188
                end = max(end, at + 188)
                f.write(self.data[at:end])
                f.flush()
                at = end
                if self.stopped.wait(self.piece / self.speed):
                    return
        self.done = True

    def stop(self):
        self.stopped.set()
