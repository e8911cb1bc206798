"""Write a copy of a media file with its audio moved in time, so that a measured offset becomes 0.

The video is never decoded: its packets go into the new container unchanged, and so do subtitles, data and
attachments, with the container's and every stream's metadata. The audio is moved by rewriting its packet
timestamps (a remux). Only where the output container cannot place audio by timestamps (AVI lays audio out as one
run from the file start, whatever its packets say) or cannot hold the audio codec is the audio decoded, padded with
silence or cut by the exact number of samples, and encoded again (same codec, rate and layout where possible).
"""

from __future__ import annotations

import os
import secrets
from fractions import Fraction

import av
import numpy as np

from synchformer.errors import SynchformerError

# Muxers that ignore audio timestamps: AVI plays the audio chunks back to back from the file start (with PCM and
# MP3 alike, a remuxed shift came back as 0), so there the audio is re-encoded.
_PTS_IGNORED = {"avi"}
_MOV_FAMILY = {"mov", "mp4", "ipod", "ismv", "3gp", "3g2", "psp", "f4v"}
_AVFMT_TS_NEGATIVE = 0x40000  # the muxer stores negative timestamps (mp4/mov: with an edit list; ogg)
_TOLERANCE_SEC = Fraction(1, 1000)  # how far a written packet may land from its timestamp (plus one tick)
_CHECKED_PACKETS = 8  # per stream, read back from the written file to check the muxer kept their timestamps
_CHUNK = 8192  # samples per frame fed to an encoder


def shift_audio(src: str | os.PathLike, dst: str | os.PathLike, offset_sec: float, *, overwrite: bool = False) -> dict:
    """Write ``src`` to ``dst`` with every audio stream moved so that a measured ``offset_sec`` becomes 0.

    ``offset_sec > 0`` means the audio leads the video, so the audio is delayed by ``offset_sec``; ``< 0`` means it
    lags, so the audio is advanced by ``|offset_sec|`` (audio that would then end before the file start is cut).
    The output format follows ``dst``'s extension (none: ``src``'s). ``dst`` appears only when complete (written to
    a temporary file beside it, then renamed); ``src`` is never written to.

    Returns ``{"method": "remux" | "reencode-audio", "audio_shift_sec": the shift applied (positive = delayed;
    the asked one rounded to the audio's time base, or to a sample where re-encoded), "video_packets": n,
    "audio_packets_dropped": n, "streams": [{"index", "type", "codec", "action"}, ...], "format": the muxer,
    "src", "dst"}``, plus ``"reason"`` when the audio was re-encoded.
    """
    src, dst = os.fspath(src), os.fspath(dst)
    try:
        offset = Fraction(offset_sec)
    except (TypeError, ValueError, OverflowError) as e:
        raise SynchformerError(src, f"the offset must be a finite number of seconds, got {offset_sec!r}") from e
    _check_input(src, dst, overwrite, offset)
    ext = os.path.splitext(dst)[1] or os.path.splitext(src)[1]
    try:
        with av.open(f"x{ext}", "w") as c:  # picks the muxer by the extension; creates no file
            fmt = c.format.name
    except ValueError as e:
        raise SynchformerError(dst, f"no output format for the extension {ext!r}") from e
    folder, name = os.path.split(os.path.abspath(dst))
    tmp = os.path.join(folder, f".{name}.tmp{secrets.token_hex(4)}{ext}")  # the same extension: the same muxer
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # reserve the name (umask applies)
    except OSError as e:
        raise SynchformerError(dst, f"cannot write there ({_reason(e)})") from e
    try:
        report, why = None, f"{fmt} ignores audio timestamps"
        if fmt not in _PTS_IGNORED or offset == 0:  # nothing to move: a remux copies everything as it is
            try:
                report = _write(src, tmp, fmt, offset)
                if report["moved"] == {"audio"}:
                    report, why = None, "the muxer did not keep the audio timestamps"
            except (_AudioNotCopyable, av.error.FFmpegError) as e:
                why = f"remuxing failed ({_reason(e)})"
        if report is None:
            try:
                report = _write(src, tmp, fmt, offset, reencode=True)
            except av.error.FFmpegError:  # some muxers (ogg) take any codec until the header is written
                report = _write(src, tmp, fmt, offset, reencode=True, same_codec=False)
            report["reason"] = why
        if "video" in report.pop("moved"):  # nothing that re-encoding the audio could mend
            raise SynchformerError(dst, f"the {fmt} muxer did not keep the video's timestamps; pick another format")
        os.replace(tmp, dst)
    except SynchformerError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise SynchformerError(src, f"could not write {dst} ({_reason(e)})") from e
    finally:
        if os.path.lexists(tmp):
            os.remove(tmp)
    report.update(src=src, dst=dst)
    return report


class _AudioNotCopyable(ValueError):
    """The output container cannot take an audio stream as it is."""


def _check_input(src: str, dst: str, overwrite: bool, offset: Fraction) -> None:
    """Refuse a missing or non-media input, writing over the input, and an existing output unless asked."""
    if not os.path.exists(src):
        raise SynchformerError(src, "file not found")
    if os.path.isdir(src):
        raise SynchformerError(src, "is a directory, not a media file")
    # samefile also catches a hard link to the input, which comparing paths cannot
    if os.path.realpath(src) == os.path.realpath(dst) or os.path.exists(dst) and os.path.samefile(src, dst):
        raise SynchformerError(dst, "is the input file (or a link to it); write the fixed copy elsewhere")
    if os.path.isdir(dst):
        raise SynchformerError(dst, "is a directory; give a file name for the output")
    if os.path.lexists(dst) and not overwrite:
        raise SynchformerError(dst, "already exists (pass overwrite=True to replace it)")
    if not os.path.isdir(os.path.dirname(os.path.abspath(dst))):
        raise SynchformerError(dst, "its folder does not exist")
    from synchformer.io.decode import refuse_special_file

    refuse_special_file(src)  # before the size: a pipe's is 0, and opening it waits for a writer
    if os.path.getsize(src) == 0:
        raise SynchformerError(src, "file is empty (0 bytes)")
    try:
        with av.open(src, metadata_errors="ignore") as c:
            kinds = {s.type for s in c.streams}
            duration = c.duration / av.time_base if c.duration else None
    except (av.error.FFmpegError, OSError) as e:
        raise SynchformerError(src, f"not a readable media file ({_reason(e)})") from e
    for kind in ("video", "audio"):
        if kind not in kinds:
            raise SynchformerError(src, f"has no {kind} stream")
    if duration and abs(offset) > duration:  # surely a mistake (in seconds? in frames?)
        raise SynchformerError(src, f"an offset of {float(offset):+.3f} s is longer than the file ({duration:.3f} s)")


def _write(src: str, tmp: str, fmt: str, offset: Fraction, *, reencode: bool = False, same_codec: bool = True,
           extras: bool = True) -> dict:
    """Mux ``src`` into ``tmp`` with the audio moved: by its timestamps, or (``reencode``) by re-encoding it.

    Subtitle, data and attachment streams go along where the muxer takes them (``extras``). Some muxers take a
    stream and fail only on writing the header (an Ogg skeleton track into Ogg): then the file is written again
    without them."""
    try:
        return _write_once(src, tmp, fmt, offset, reencode, same_codec, extras)
    except av.error.FFmpegError:
        if not extras:
            raise
        report = _write_once(src, tmp, fmt, offset, reencode, same_codec, False)
        for info in report["streams"]:
            if info["action"] == "left out":
                info["action"] = f"left out (the {fmt} muxer refused it)"
        return report


def _write_once(src: str, tmp: str, fmt: str, offset: Fraction, reencode: bool, same_codec: bool, extras: bool):
    with av.open(src, metadata_errors="ignore") as inp:
        options = {}
        if fmt in _MOV_FAMILY:
            # mov stores a late track's delay as an edit in the movie time scale, by default in ms rounded down
            # (AAC delayed by 0.6 s, starting 1024 samples early, came out 0.67 ms short); the audio's rate is exact
            rates = [s.codec_context.sample_rate for s in inp.streams.audio if s.codec_context is not None]
            options["movie_timescale"] = str(max(rates + [1000]))
        with av.open(tmp, "w", format=fmt, container_options=options) as out:
            out.metadata.update(inp.metadata)
            floor = _file_start(inp)
            streams, handlers = [], {}
            for s in inp.streams:
                info = {"index": s.index, "type": s.type, "codec": _codec_name(s), "action": "left out"}
                streams.append(info)
                if s.type == "audio" and reencode:
                    h = _Reencode(src, out, s, offset, floor, same_codec, ignores_pts=fmt in _PTS_IGNORED)
                elif s.type == "audio":
                    h = _Shift(out, s, offset, floor, negative_ok=bool(out.format.flags & _AVFMT_TS_NEGATIVE))
                elif s.type == "video" or extras:
                    try:
                        h = _Copy(out.add_stream_from_template(s, opaque=True))  # opaque: needs no encoder
                    except ValueError as e:
                        if s.type == "video":
                            raise SynchformerError(src, f"the {fmt} format cannot hold its {info['codec']} video;"
                                                        " pick an output extension whose container can") from e
                        info["action"] = f"left out ({fmt} cannot hold it)"
                        continue
                else:
                    continue
                info["action"] = h.action
                h.ostream.metadata.update({k: v for k, v in s.metadata.items() if k.upper() != "DURATION"})
                h.ostream.disposition = s.disposition  # (rotation travels in the codec parameters copied)
                handlers[s.index] = h
            n_video = 0
            for pkt in inp.demux():
                h = handlers.get(pkt.stream.index)
                if h is None or pkt.size == 0 and pkt.pts is None and pkt.dts is None:  # PyAV's end-of-stream
                    continue
                n_video += pkt.stream.type == "video"
                out.mux(h.feed(pkt))
            for h in handlers.values():
                out.mux(h.flush())
    audio = [h for h in handlers.values() if not isinstance(h, _Copy)]
    if not all(h.written for h in audio):
        raise SynchformerError(src, f"moving the audio by {float(offset):+.3f} s leaves none of it")
    # Did the muxer keep the timestamps it was given? (A muxer that cannot store a timestamp may move every stream.)
    # Re-encoded audio is not checked: its timestamps are the encoder's, and where ignored, it was padded instead.
    checked = {h.ostream.index: h.written for h in handlers.values() if isinstance(h, _Copy) or not reencode}
    return {
        "method": "reencode-audio" if reencode else "remux",
        "audio_shift_sec": float(audio[0].applied),
        "video_packets": n_video,
        "audio_packets_dropped": sum(h.dropped for h in audio),
        "streams": streams,
        "format": fmt,
        "moved": _moved(tmp, checked),
    }


class _Handler:
    """One output stream: ``feed`` takes an input packet and gives the packets to mux (``flush`` the last ones);
    ``written`` keeps the times of the first packets written, to check them in the file."""

    action, dropped = "copied", 0

    def __init__(self, ostream):
        self.ostream, self.written = ostream, []

    def _note(self, packets: list) -> list:
        for p in packets:
            if len(self.written) < _CHECKED_PACKETS and p.pts is not None:
                self.written.append(p.pts * p.time_base)
        return packets

    def flush(self) -> list:
        return []


class _Copy(_Handler):
    """A stream copied as it is."""

    def feed(self, pkt):
        pkt.stream = self.ostream
        return self._note([pkt]) if pkt.stream.type == "video" else [pkt]


class _Shift(_Handler):
    """An audio stream with its packet timestamps moved by ``offset``, exactly, in its own time base.

    When advancing, packets that end up before the file start are dropped. Where the muxer stores negative
    timestamps (mp4/mov with an edit list, ogg), the packet across the start is kept, and the one before it as the
    decoder's pre-roll: players skip what lies before the start, as they skip an encoder's priming. Elsewhere (mkv,
    webm) the packet across the start is dropped too: the muxer would move every stream to make its timestamp
    non-negative, and moving just its timestamp up to the start would move all audio decoded after it. (Without its
    first packet, a decoder skips its codec delay on the first one it gets, and moves that frame's timestamp to
    match: those few ms of audio are lost, the timing is kept.)"""

    def __init__(self, out, s, offset: Fraction, floor: Fraction, negative_ok: bool):
        try:
            super().__init__(out.add_stream_from_template(s, opaque=True))
        except ValueError as e:
            raise _AudioNotCopyable(f"{out.format.name} cannot hold {_codec_name(s)} audio") from e
        self.tb = s.time_base
        self.ticks = round(offset / self.tb)
        self.applied = self.ticks * self.tb
        self.floor, self.negative_ok = floor, negative_ok
        self.cutting = self.ticks < 0  # only advancing can push packets before the start
        self.held = None  # the last packet before the start (negative_ok): pre-roll
        self.action = f"timestamps moved by {float(self.applied):+.6f} s"

    def feed(self, pkt):
        pkt.pts = None if pkt.pts is None else pkt.pts + self.ticks
        pkt.dts = None if pkt.dts is None else pkt.dts + self.ticks
        if self.cutting:
            t = pkt.pts if pkt.pts is not None else pkt.dts
            start = None if t is None else t * self.tb
            end = None if t is None else (t + (pkt.duration or 0)) * self.tb
            if start is None or (end <= self.floor if self.negative_ok else start < self.floor):
                if self.negative_ok and start is not None:
                    self.dropped += self.held is not None
                    self.held = pkt
                else:
                    self.dropped += 1
                return []
            self.cutting = False
        packets = [pkt] if self.held is None else [self.held, pkt]
        self.held = None
        for p in packets:
            p.stream = self.ostream
        return self._note(packets)

    def flush(self):
        self.dropped += self.held is not None
        return []


class _Reencode(_Handler):
    """An audio stream decoded, moved by a whole number of samples, and encoded again: from the file start, with
    silence before it (delay) or its start cut (advance). The same codec where this FFmpeg has an encoder for it
    that the container takes (``same_codec``), else the container's default; the same rate and layout.

    Where the container ``ignores_pts``, players do not skip an encoder's priming either (AVI): the start is cut by
    the priming too, and the packets' timestamps made non-negative (else the muxer delays every stream)."""

    def __init__(self, src: str, out, s, offset: Fraction, floor: Fraction, same_codec: bool, ignores_pts: bool):
        dec = s.codec_context
        if dec is None:
            raise SynchformerError(src, f"no decoder for its audio stream #{s.index}")
        dec.thread_type = "AUTO"
        self.dec, self.tb, self.rate, self.layout = dec, s.time_base, dec.sample_rate, dec.layout.name
        codec, ostream, opts = _add_encoder(out, dec if same_codec else None, self.rate, self.layout)
        super().__init__(ostream)
        if dec.format is not None and dec.format.name in [f.name for f in codec.audio_formats or []]:
            ostream.format = dec.format.name  # e.g. keep 24-bit FLAC in s32, PCM in s16
        if codec.id == dec.codec.id and codec.lossy and dec.bit_rate:
            ostream.bit_rate = dec.bit_rate  # the input's quality
        ostream.time_base = Fraction(1, self.rate)
        self.priming = _priming(codec, self.rate, self.layout, ostream.format.name, opts) if ignores_pts else 0
        self.applied = Fraction(round(offset * self.rate), self.rate)
        self.floor = floor
        self.pad = None  # samples of silence to put first (< 0: samples to cut); set by the first decoded frame
        self.n_out = 0
        # decoded audio as planar doubles: lossless for every sample format, and easy to cut by samples
        self.resampler = av.AudioResampler(format="dblp", layout=self.layout, rate=self.rate)
        self.action = f"re-encoded as {codec.name}, moved by {float(self.applied):+.6f} s"

    def feed(self, pkt):
        try:
            return self._decoded(self.dec.decode(pkt))
        except av.error.InvalidDataError:  # a damaged packet: skipped, as players do
            return []

    def flush(self):
        packets = self._decoded(self.dec.decode(None))
        if self.pad is not None:  # (else nothing was decoded)
            packets += self._encode([f.to_ndarray() for f in self.resampler.resample(None)])
            packets += self._rebased(self.ostream.encode(None))
        return self._note(packets)

    def _decoded(self, frames):
        packets = []
        for frame in frames:
            if self.pad is None:  # the audio's start, on the file's timeline, moved; less what the encoder adds
                start = Fraction(frame.pts) * self.tb if frame.pts is not None else Fraction(0)
                self.pad = round((start - self.floor) * self.rate) + round(self.applied * self.rate) - self.priming
                if self.pad > 0:
                    packets += self._encode([np.zeros((self.ostream.layout.nb_channels, self.pad))])
            packets += self._encode([f.to_ndarray() for f in self.resampler.resample(frame)])
        return self._note(packets)

    def _encode(self, arrays):
        packets = []
        for a in arrays:
            if self.pad < 0:  # cut the start
                cut = min(-self.pad, a.shape[1])
                a, self.pad = a[:, cut:], self.pad + cut
            for i in range(0, a.shape[1], _CHUNK):
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(a[:, i : i + _CHUNK]), format="dblp",
                                                   layout=self.layout)
                frame.sample_rate, frame.time_base = self.rate, Fraction(1, self.rate)
                frame.pts = round(self.floor * self.rate) + self.n_out
                self.n_out += frame.samples
                packets += self._rebased(self.ostream.encode(frame))
        return packets

    def _rebased(self, packets):
        for p in packets:  # (in the encoder's time base, 1 / rate)
            p.pts = None if p.pts is None else p.pts + self.priming
            p.dts = None if p.dts is None else p.dts + self.priming
        return packets


def _add_encoder(out, dec, rate: int, layout: str):
    """(codec, output stream, options) encoding the decoder's codec (``dec``; None: skip it) if this FFmpeg has an
    encoder for it that the container takes, else the container's default audio codec."""
    names = [dec.codec.canonical_name] if dec is not None else []
    for name in names + [out.default_audio_codec]:
        try:
            codec = av.Codec(name, "w")  # by codec name: FFmpeg's preferred encoder (mp3 -> libmp3lame)
            opts = {"strict": "experimental"} if codec.experimental else {}  # FFmpeg's own Vorbis encoder
            return codec, out.add_stream(codec.name, rate=rate, layout=layout, options=opts), opts
        except (ValueError, av.error.FFmpegError):  # no such encoder, or the muxer does not take it
            continue
    raise _AudioNotCopyable(f"no audio encoder for the {out.format.name} format")


def _priming(codec, rate: int, layout: str, fmt: str, options: dict) -> int:
    """Samples of priming the encoder puts before the first input sample (its first packet's pts is minus that)."""
    ctx = av.CodecContext.create(codec.name, "w")
    ctx.sample_rate, ctx.layout, ctx.format, ctx.time_base = rate, layout, fmt, Fraction(1, rate)
    ctx.options = dict(options)
    silence = np.zeros((av.AudioLayout(layout).nb_channels, max(ctx.frame_size or 0, 1024)))
    frame = av.AudioFrame.from_ndarray(silence, format="dblp", layout=layout)
    frame.sample_rate, frame.pts, frame.time_base = rate, 0, Fraction(1, rate)
    packets = ctx.encode(frame) + ctx.encode(None)
    return max(-packets[0].pts, 0) if packets and packets[0].pts is not None else 0


def _moved(tmp: str, written: dict) -> set:
    """The types of the streams whose first packets, read back from ``tmp``, are not at the times they were written
    with (``written``: stream index -> [time in s])."""
    got = {i: [] for i in written}
    with av.open(tmp, metadata_errors="ignore") as c:
        for pkt in c.demux():
            times = got.get(pkt.stream.index)
            if times is not None and pkt.pts is not None and len(times) < len(written[pkt.stream.index]):
                times.append(pkt.pts * pkt.time_base)
                if all(len(got[i]) == len(t) for i, t in written.items()):
                    break
        tol = {s.index: _TOLERANCE_SEC + s.time_base for s in c.streams}
        return {c.streams[i].type for i, times in written.items()
                if len(got[i]) != len(times) or any(abs(a - b) > tol[i] for a, b in zip(got[i], times))}


def _file_start(container) -> Fraction:
    """Where the file's timeline starts: 0, or earlier if a non-audio stream starts before 0."""
    starts = [Fraction(s.start_time) * s.time_base for s in container.streams
              if s.type != "audio" and s.start_time is not None]
    return min([Fraction(0)] + starts)


def _codec_name(stream) -> str:
    return stream.codec_context.name if stream.codec_context is not None else stream.type


def _reason(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e) or type(e).__name__
