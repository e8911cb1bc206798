"""Write a copy of a media file with its audio moved in time, so that a measured offset becomes 0.

The video is never decoded: its packets go into the new container unchanged (only put, by a bitstream filter, in the
form AVI and MPEG-TS want: H.264/HEVC with start codes, MPEG-4 with its headers in its keyframes), and so do
subtitles, data and attachments the container takes, with the container's and every stream's metadata (QuickTime's
own keys too) and dispositions. The audio is moved by rewriting its packet timestamps (a remux). Only where the
output container cannot place audio by timestamps (AVI lays audio out as one run from the file start, whatever its
packets say) or cannot hold the audio codec is the audio decoded, padded with silence or cut by the exact number of
samples, and encoded again (same codec, rate and layout where possible). ``audio_stream`` moves one track only.

Each stream is first tried alone in a file written to memory: a video the container cannot hold is refused before
anything is written, as is video with B-frames into AVI (which stores no display times). The written file is read
back: a muxer may move every stream alike (MPEG-TS starts at 1.4 s; FLV, NUT and AVI make the first timestamps
non-negative), which keeps the streams' relative timing; a stream it moved against the video, or wrote so that it
cannot be read back, is caught (audio: re-encoded; video: refused).
"""

from __future__ import annotations

import io
import operator
import os
import secrets
from dataclasses import dataclass
from fractions import Fraction

import av
import av.bitstream
import numpy as np

from synchformer.errors import SynchformerError
from synchformer.io.decode import ffmpeg_name  # (a colon in a file name is no protocol)

# Muxers that ignore audio timestamps: AVI plays the audio chunks back to back from the file start (with PCM and
# MP3 alike, a remuxed shift came back as 0), so there the audio is re-encoded.
_PTS_IGNORED = {"avi"}
_MOV_FAMILY = {"mov", "mp4", "ipod", "ismv", "3gp", "3g2", "psp", "f4v"}
# Muxers that want H.264/HEVC/VVC with start codes (Annex B), which MP4 and Matroska store length-prefixed. (The
# mpegts muxer would insert the filter itself; the avi muxer writes what it gets. The other way, mov, matroska and
# flv convert start codes themselves.)
_ANNEX_B = {"avi", "mpegts"}
_TO_ANNEX_B = {"h264": "h264_mp4toannexb", "hevc": "hevc_mp4toannexb", "vvc": "vvc_mp4toannexb"}
# Muxers with no global headers: a decoder finds the stream's headers in its keyframes only, so MPEG-4 part 2 from
# MP4 or MOV (its headers in the extradata) needs them put there (without, its MPEG-TS copy did not decode)
_IN_BAND = {"mpegts"}
_HEADERS_IN_BAND = {"mpeg4", "mpeg1video", "mpeg2video"}
_FTYP_KEYS = {"major_brand", "minor_version", "compatible_brands"}  # the input's file type; mov writes its own
# .mov stores a language as a Macintosh code, and FFmpeg maps only one of the two ISO 639-2 codes of these languages
# to it (the other was dropped): the same language by the code it maps
_MOV_LANGUAGE = {"deu": "ger", "fre": "fra", "nld": "dut", "zho": "chi", "ell": "gre", "isl": "ice", "cze": "ces",
                 "slo": "slk", "rum": "ron", "fas": "per", "sqi": "alb", "hye": "arm", "eus": "baq", "mya": "bur",
                 "bod": "tib", "cym": "wel", "kat": "geo", "mkd": "mac", "msa": "may"}
_AVFMT_TS_NEGATIVE = 0x40000  # the muxer stores negative timestamps (mp4/mov: with an edit list; ogg)
_TOLERANCE_SEC = Fraction(1, 1000)  # how far a written packet may land from its timestamp (plus one tick)
_RELATIVE_TOLERANCE_SEC = Fraction(3, 2000)  # how far two streams may move apart (ms containers round each 0.5 ms)
_CHECKED_PACKETS = 8  # per stream, read back from the written file to check the muxer kept their timestamps
_CHUNK = 8192  # samples per frame fed to an encoder
_ATTEMPTS = 5  # writes, each mending what the last one's read-back found


def shift_audio(src: str | os.PathLike, dst: str | os.PathLike, offset_sec: float, *, overwrite: bool = False,
                audio_stream: int | None = None) -> dict:
    """Write ``src`` to ``dst`` with its audio moved so that a measured ``offset_sec`` becomes 0.

    ``offset_sec > 0`` means the audio leads the video, so the audio is delayed by ``offset_sec``; ``< 0`` means it
    lags, so the audio is advanced by ``|offset_sec|`` (audio that would then end before the file start is cut).
    ``audio_stream``: the container index (``stream.index``) of the one audio stream to move; the other audio
    streams are copied as they are (re-encoded, not moved, only where the container cannot hold them). ``None``:
    every audio stream is moved. The output format follows ``dst``'s extension (none: ``src``'s). ``dst`` appears
    only when complete (written to a temporary file beside it, then renamed); ``src`` is never written to.

    Returns ``{"method": "remux" | "reencode-audio" (how the moved audio was moved), "audio_shift_sec": the shift
    applied (positive = delayed; the asked one rounded to the audio's time base, or to a sample where re-encoded),
    "video_packets": n, "audio_packets_dropped": n, "streams": [{"index", "type", "codec", "action"}, ...] (what was
    done with each input stream), "format": the muxer, "src", "dst"}``, plus ``"reason"`` when the moved audio was
    re-encoded.
    """
    src, dst = os.fspath(src), os.fspath(dst)
    try:
        offset = Fraction(offset_sec)
    except (TypeError, ValueError, OverflowError) as e:
        raise SynchformerError(src, f"the offset must be a finite number of seconds, got {offset_sec!r}") from e
    _check_input(src, dst, overwrite, offset, audio_stream)
    ext = os.path.splitext(dst)[1] or os.path.splitext(src)[1]
    try:
        with av.open(f"x{ext}", "w") as c:  # picks the muxer by the extension; creates no file
            fmt = c.format.name
    except ValueError as e:
        raise SynchformerError(dst, f"no output format for the extension {ext!r}") from e
    try:
        plan, options = _plan(src, fmt, offset, audio_stream)  # refuses what cannot be written, writing nothing
    except (av.error.FFmpegError, OSError) as e:
        raise SynchformerError(src, f"not a readable media file ({_reason(e)})") from e
    folder, name = os.path.split(os.path.abspath(dst))
    tmp = os.path.join(folder, f".{name}.tmp{secrets.token_hex(4)}{ext}")  # the same extension: the same muxer
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # reserve the name (umask applies)
    except OSError as e:
        raise SynchformerError(dst, f"cannot write there ({_reason(e)})") from e
    try:
        report = _write_checked(src, dst, tmp, fmt, options, offset, plan)
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


@dataclass
class _Step:
    """What is done with one input stream: ``"copy"`` (its packets as they are), ``"shift"`` (audio: its packet
    timestamps moved), ``"reencode"`` (audio: decoded, moved if ``moved``, encoded again, in its own codec if
    ``same_codec`` and the container takes it) or ``"leave"`` (not written); ``bsf``: the bitstream filter its
    packets go through; ``why``: why re-encoded or left out; ``kind``: the stream's type."""

    do: str
    moved: bool = False
    bsf: str | None = None
    why: str | None = None
    kind: str = ""
    same_codec: bool = True
    time_base: Fraction | None = None  # the output stream's, where the muxer needs one (AVI: a frame's duration)


def _check_input(src: str, dst: str, overwrite: bool, offset: Fraction, audio_stream) -> None:
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
        with av.open(ffmpeg_name(src), metadata_errors="ignore") as c:
            kinds = {s.type for s in c.streams}
            audio = [f"#{s.index} ({_codec_name(s)})" for s in c.streams if s.type == "audio"]
            audio_index = {s.index for s in c.streams if s.type == "audio"}
            duration = c.duration / av.time_base if c.duration else None
    except (av.error.FFmpegError, OSError) as e:
        raise SynchformerError(src, f"not a readable media file ({_reason(e)})") from e
    for kind in ("video", "audio"):
        if kind not in kinds:
            raise SynchformerError(src, f"has no {kind} stream")
    if audio_stream is not None:
        try:
            index = None if isinstance(audio_stream, bool) else operator.index(audio_stream)
        except TypeError:
            index = None
        if index not in audio_index:
            raise SynchformerError(src, f"audio_stream={audio_stream!r} is not one of its audio streams (by stream "
                                        f"index: {', '.join(audio)})")
    if duration and abs(offset) > duration:  # surely a mistake (in seconds? in frames?)
        raise SynchformerError(src, f"an offset of {float(offset):+.3f} s is longer than the file ({duration:.3f} s)")


def _plan(src: str, fmt: str, offset: Fraction, audio_stream: int | None) -> tuple[dict, dict]:
    """What to do with each stream of ``src`` ({index: _Step}), and the muxer's options. Each stream is tried alone
    in a header written to memory; a video the muxer refuses is refused here, before anything is written."""
    with av.open(ffmpeg_name(src), metadata_errors="ignore") as inp:
        options = {}
        if fmt in _MOV_FAMILY:
            # mov stores a late track's delay as an edit in the movie time scale, by default in ms rounded down
            # (AAC delayed by 0.6 s, starting 1024 samples early, came out 0.67 ms short); the audio's rate is exact
            rates = [s.codec_context.sample_rate for s in inp.streams.audio if s.codec_context is not None]
            options["movie_timescale"] = str(max(rates + [1000]))
            if _metadata_tags_needed(inp, fmt):
                options["movflags"] = "+".join(["use_metadata_tags"])  # (with any other movflags, joined by +)
        plan = {}
        for s in inp.streams:
            codec = _codec_name(s)
            moved = s.type == "audio" and audio_stream in (None, s.index)
            bsf = _bitstream_filter(fmt, src, s)
            if moved and fmt in _PTS_IGNORED and offset != 0:  # (moving nothing, a remux copies everything)
                plan[s.index] = _Step("reencode", moved, why=f"{fmt} ignores audio timestamps")
                continue
            if codec == "skeleton" or _timecode_track(inp, s) and fmt in _MOV_FAMILY:  # (see _left_out)
                plan[s.index] = _Step("leave", why=_left_out(fmt, inp, s))
                continue
            refused = _refused(src, fmt, options, s, bsf)
            if s.type == "video" and refused:
                raise SynchformerError(src, f"the {fmt} format cannot hold its {codec} video; pick an output "
                                            "extension whose container can (.mkv holds almost any)")
            if s.type == "video" and fmt in _PTS_IGNORED and fmt not in inp.format.name.split(",") and \
                    getattr(s.codec_context, "has_b_frames", False):
                # AVI stores frames in decoding order and no display times: readers guess them, differently (PyAV
                # gives its frames times out of order), so the video's timing against the audio would be a guess
                raise SynchformerError(src, f"its {codec} video has B-frames (shown in another order than stored), "
                                            f"whose display times {fmt} cannot store; pick .mkv, .mp4 or .mov")
            if s.type == "audio":
                plan[s.index] = (_Step("reencode", moved, why=f"{fmt} cannot hold {codec} audio", same_codec=False)
                                 if refused
                                 else _Step("shift" if moved else "copy", moved))
            elif refused:
                plan[s.index] = _Step("leave", why=_left_out(fmt, inp, s))
            else:
                rate = s.base_rate or s.average_rate or s.guessed_rate if s.type == "video" else None
                if rate and s.average_rate and rate > 2 * s.average_rate:  # (a variable frame rate)
                    rate = s.average_rate
                # AVI gives each frame one tick: by default the tick came out 1/600 s, and 23 empty frames between
                plan[s.index] = _Step("copy", bsf=bsf, time_base=1 / rate if fmt in _PTS_IGNORED and rate else None)
        for s in inp.streams:
            plan[s.index].kind = s.type
    return plan, options


def _write_checked(src: str, dst: str, tmp: str, fmt: str, options: dict, offset: Fraction, plan: dict) -> dict:
    """Write ``tmp`` by the plan, read it back, and write it again, mended, until the muxer kept every stream's
    timing: an audio stream it moved or wrote unreadably is re-encoded; where audio plays from the file start (AVI),
    re-encoded audio is padded to where the video landed (a reader guesses AVI's display times: H.264 came out one
    frame late). Moves the muxer applied to every stream alike are no fault (see ``_read_back``)."""
    same_codec, video_delay = True, Fraction(0)
    if fmt in _PTS_IGNORED and any(st.do == "reencode" for st in plan.values()):
        video_delay = _video_delay(src, fmt, options, plan)  # (checked below, on the file written)
    for _ in range(_ATTEMPTS):
        try:
            report, missing, moved, delay = _write_once(src, tmp, fmt, options, offset, plan, same_codec, video_delay)
        except av.error.FFmpegError as e:  # the muxer failed on writing the header or a packet
            extras = [st for st in plan.values() if st.do == "copy" and st.kind not in ("video", "audio")]
            if same_codec and any(st.do == "reencode" for st in plan.values()):
                same_codec = False  # some muxers (ogg) take any codec until the header is written
            elif extras:
                for st in extras:
                    st.do, st.why = "leave", f"the {fmt} muxer refused it"
            elif any(st.do == "shift" for st in plan.values()):
                for st in plan.values():
                    if st.do == "shift":
                        st.do, st.why = "reencode", f"remuxing failed ({_reason(e)})"
            else:
                raise
            continue
        kinds = {i: plan[i].kind for i in missing | moved}
        for i in sorted(i for i, k in kinds.items() if k == "video"):  # nothing that re-encoding audio could mend
            codec = next(s["codec"] for s in report["streams"] if s["index"] == i)
            problem = (f"wrote its {codec} video so that it cannot be read back" if i in missing
                       else "did not keep the video's timestamps")
            raise SynchformerError(dst, f"the {fmt} muxer {problem}; pick another format")
        redo = False
        for i, kind in kinds.items():
            st = plan[i]
            if kind == "audio" and st.do in ("shift", "copy"):
                codec = next(s["codec"] for s in report["streams"] if s["index"] == i)
                st.do, st.why = "reencode", (f"the {fmt} muxer wrote {codec} audio that cannot be read back"
                                             if i in missing else f"the {fmt} muxer did not keep the audio timestamps")
                st.same_codec = i not in missing
            elif kind != "audio" and i in missing and st.do == "copy":
                st.do, st.why = "leave", f"the {fmt} muxer wrote it so that it cannot be read back"
            else:
                raise SynchformerError(dst, f"the {fmt} muxer did not keep the timing of its {kind} stream #{i}")
            redo = True
        if fmt in _PTS_IGNORED and any(st.do == "reencode" for st in plan.values()) and delay is not None \
                and abs(delay - video_delay) > _TOLERANCE_SEC:
            video_delay, redo = delay, True  # the audio plays from the file start: pad it to where the video is
        if not redo:
            return report
    raise SynchformerError(dst, f"the {fmt} muxer did not keep the streams' timing; pick another format")


def _write_once(src: str, tmp: str, fmt: str, options: dict, offset: Fraction, plan: dict, same_codec: bool,
                video_delay: Fraction):
    """Write ``tmp`` by the plan; (report, missing, moved, video delay) as ``_read_back`` finds them.

    Where the container ignores audio timestamps (AVI), it also has no start time: every stream's timestamps are
    moved by the same amount (``origin``), so that the video starts at 0 (the avi muxer fills a late start with
    empty frames, before the second frame), and the re-encoded audio is padded to where the video landed."""
    with av.open(ffmpeg_name(src), metadata_errors="ignore") as inp:
        with av.open(ffmpeg_name(tmp), "w", format=fmt, container_options=options) as out:
            out.metadata.update({k: v for k, v in inp.metadata.items()
                                 if not (fmt in _MOV_FAMILY and k in _FTYP_KEYS)})
            floor = _file_start(inp)
            origin = _video_origin(src) if fmt in _PTS_IGNORED else Fraction(0)
            streams, handlers = [], {}
            for s in inp.streams:
                st = plan[s.index]
                info = {"index": s.index, "type": s.type, "codec": _codec_name(s), "action": f"left out ({st.why})"}
                streams.append(info)
                if st.do == "leave":
                    continue
                if st.do == "reencode":
                    h = _Reencode(src, out, s, offset if st.moved else Fraction(0), floor,
                                  same_codec and st.same_codec, fmt in _PTS_IGNORED, video_delay - origin)
                    h.action = h.action if st.moved else f"{h.action.split(',')[0]}, not moved ({st.why})"
                elif st.do == "shift":
                    h = _Shift(out, s, offset, floor - origin, bool(out.format.flags & _AVFMT_TS_NEGATIVE), -origin)
                else:
                    h = _Copy(out.add_stream_from_template(s, opaque=True), s, st.bsf, -origin)  # opaque: no codec
                    if st.time_base is not None:
                        h.ostream.time_base = st.time_base
                h.moves = st.moved
                info["action"] = h.action
                h.ostream.metadata.update({k: v for k, v in s.metadata.items() if k.upper() != "DURATION"})
                if fmt == "mov" and s.metadata.get("language") in _MOV_LANGUAGE:
                    h.ostream.metadata["language"] = _MOV_LANGUAGE[s.metadata["language"]]
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
    moved = [h for h in handlers.values() if h.moves]
    if not all(h.written for h in moved):
        raise SynchformerError(src, f"moving the audio by {float(offset):+.3f} s leaves none of it")
    report = {
        "method": "reencode-audio" if any(isinstance(h, _Reencode) for h in moved) else "remux",
        "audio_shift_sec": float(moved[0].applied),
        "video_packets": n_video,
        "audio_packets_dropped": sum(h.dropped for h in moved),
        "streams": streams,
        "format": fmt,
    }
    why = [plan[i].why for i, h in handlers.items() if h.moves and isinstance(h, _Reencode)]
    if why:
        report["reason"] = why[0]
    return (report, *_read_back(tmp, fmt, handlers))


def _video_delay(src: str, fmt: str, options: dict, plan: dict) -> Fraction:
    """How much later than written the first video stream reads back (AVI: a reader guesses display times from the
    decoding order; H.264 comes out one frame late): its first packets written alone, to memory, and read back."""
    with av.open(ffmpeg_name(src), metadata_errors="ignore") as inp:
        s, origin, buf = inp.streams.video[0], _video_origin(src), io.BytesIO()
        with av.open(buf, "w", format=fmt, container_options=options) as o:
            h = _Copy(o.add_stream_from_template(s, opaque=True), s, plan[s.index].bsf, -origin)
            if plan[s.index].time_base is not None:
                h.ostream.time_base = plan[s.index].time_base
            for k, pkt in enumerate(inp.demux(s)):
                if k == 4 * _CHECKED_PACKETS:
                    break
                if pkt.size or pkt.pts is not None or pkt.dts is not None:
                    o.mux(h.feed(pkt))
            o.mux(h.flush())
    buf.seek(0)
    return _read_back(buf, fmt, {s.index: h})[2] or Fraction(0)


def _read_back(tmp, fmt: str, handlers: dict) -> tuple[set, set, Fraction | None]:
    """What the muxer did to the streams written (``handlers``: input index -> handler): (the input indices of those
    missing from ``tmp``, or not of their type and codec; of those whose first packets are not where they were
    written, relative to the first video; how much later than written the video plays).

    A muxer may move every stream alike (MPEG-TS starts at 1.4 s; others make timestamps non-negative): that keeps
    their relative timing. Re-encoded audio is not timed: its timestamps are the encoder's, and where the container
    ignores them (AVI), it was padded instead. AVI stores no pts: there a stream is checked by its dts, and the
    video's delay is its first pts as a reader guesses it."""
    dts = fmt in _PTS_IGNORED
    with av.open(ffmpeg_name(tmp) if isinstance(tmp, str) else tmp, metadata_errors="ignore") as c:
        found = {}
        for same_codec in (True, False):  # (mp2 in mp4 reads back as mp3)
            for i, h in sorted(handlers.items(), key=lambda ih: ih[1].ostream.index):
                b = next((b for b in c.streams if i not in found and b.type == h.ostream.type
                          and (_codec_id(b) == _codec_id(h.ostream) or not same_codec)
                          and b.index not in {f.index for f in found.values()}), None)
                if b is not None:
                    found[i] = b
        timed = {found[i].index: i for i, h in handlers.items() if i in found and h.checked and h.written}
        got = {i: [] for i in timed.values()}
        if timed:
            for pkt in c.demux([c.streams[j] for j in timed]):
                i = timed.get(pkt.stream.index)
                t = _times(pkt)
                if i is None or t is None or len(got[i]) >= len(handlers[i].written):
                    continue
                got[i].append(t)
                if all(len(got[k]) == len(handlers[k].written) for k in got):
                    break
        tol = {i: _TOLERANCE_SEC + b.time_base for i, b in found.items()}
    missing, moved, delay = set(handlers) - set(found), set(), {}
    for i, times in got.items():
        written = handlers[i].written
        if not times:
            moved.add(i)
            continue
        delay[i] = min(b[0] for b in times) - min(a[0] for a in written)  # where the stream starts
        if [a[2] for a in written] == [b[2] for b in times]:  # the same packets (PCM may come back in others)
            d = [(b[1] - a[1]) if dts else (b[0] - a[0]) for a, b in zip(written, times)
                 if not dts or a[1] is not None and b[1] is not None] or [0]
            if max(d) - min(d) > 2 * tol[i]:  # each packet moved alike
                moved.add(i)
    videos = [i for i in sorted(got, key=lambda i: handlers[i].ostream.index) if handlers[i].ostream.type == "video"]
    ref = videos[0] if videos else None
    if ref is None or ref not in delay:
        return missing, moved, None
    for i, d in delay.items():  # (what a stream's own ticks round is in its delay: a 1/25 s tick is no tolerance)
        if abs(d - delay[ref]) > _RELATIVE_TOLERANCE_SEC:
            moved.add(i)
    return missing, moved, delay[ref]


def _times(pkt) -> tuple[Fraction, Fraction | None, int] | None:
    """(pts, dts) of a packet in s, its dts standing in for a missing pts, and its size; None without both."""
    pts = pkt.pts if pkt.pts is not None else pkt.dts
    if pts is None:
        return None
    return pts * pkt.time_base, None if pkt.dts is None else pkt.dts * pkt.time_base, pkt.size


def _refused(src: str, fmt: str, options: dict, s, bsf: str | None) -> bool:
    """Whether the muxer refuses stream ``s`` as it is (after ``bsf``): tried alone, in a header written to memory.
    (Some muxers take any stream and fail on the header: flv with MPEG-4 video or 48 kHz PCM, avi with ADTS AAC.)
    A video's first packets are written too, and read back: mpegts writes any codec, and Theora, VP8 or Motion JPEG
    there came back as no video at all."""
    buf = io.BytesIO()
    o = av.open(buf, "w", format=fmt, container_options=options)
    try:
        h = _Copy(o.add_stream_from_template(s, opaque=True), s, bsf)
        o.start_encoding()
        if s.type == "video":
            with av.open(ffmpeg_name(src), metadata_errors="ignore") as inp:
                for k, pkt in enumerate(inp.demux(inp.streams[s.index])):
                    if k == 4 * _CHECKED_PACKETS:
                        break
                    if pkt.size:
                        o.mux(h.feed(pkt))
            o.mux(h.flush())
            o.close()
            buf.seek(0)
            with av.open(buf, metadata_errors="ignore") as c:
                return not any(b.type == "video" for b in c.streams)
        return False
    except (ValueError, av.error.FFmpegError):
        return True
    finally:
        try:
            o.close()
        except (ValueError, av.error.FFmpegError, OSError):
            pass


def _metadata_tags_needed(inp, fmt: str) -> bool:
    """Whether the mov muxer keeps more of the input's tags with ``movflags=use_metadata_tags`` (any key, as the
    com.apple.quicktime.* ones of a phone's video) than without (only the keys it knows, written where players look
    for them: the flag writes even the title as a QuickTime metadata key). Tried on a header written to memory."""
    meta = {k: v for k, v in inp.metadata.items() if k not in _FTYP_KEYS and k != "encoder"}
    video = next((s for s in inp.streams if s.type == "video"), None)
    kept = []
    for flags in ({}, {"movflags": "use_metadata_tags"}) if meta and video is not None else ():
        buf = io.BytesIO()
        try:
            with av.open(buf, "w", format=fmt, container_options=flags) as o:
                o.metadata.update(meta)
                o.add_stream_from_template(video, opaque=True)
                o.start_encoding()
            buf.seek(0)
            with av.open(buf, metadata_errors="ignore") as c:
                kept.append(sum(c.metadata.get(k) == v for k, v in meta.items()))
        except (ValueError, av.error.FFmpegError, OSError):
            return False
    return len(kept) == 2 and kept[1] > kept[0]


def _bitstream_filter(fmt: str, src: str, s) -> str | None:
    """The bitstream filter the video's packets need for the muxer, else None: start-code framing where it wants that
    and they are length-prefixed (their extradata an avcC/hvcC record, version 1); the stream's headers put in its
    keyframes where it has no global headers and the first packet does not begin with them."""
    ctx = s.codec_context if s.type == "video" else None
    codec, extradata = (ctx.codec.name, ctx.extradata or b"") if ctx is not None else ("", b"")
    name = _TO_ANNEX_B.get(codec) if fmt in _ANNEX_B and extradata[:1] == b"\x01" else None
    if fmt in _IN_BAND and codec in _HEADERS_IN_BAND and extradata:
        first = _first_packet(src, s.index)
        name = "dump_extra" if first is None or not bytes(first).startswith(extradata) else None
    return name if name in av.bitstream.bitstream_filters_available else None


def _timecode_track(inp, s) -> bool:
    """Whether ``s`` is a QuickTime timecode track whose timecode the video carries as its tag too."""
    timecode = s.metadata.get("timecode")
    return s.type == "data" and bool(timecode) and any(v.metadata.get("timecode") == timecode
                                                       for v in inp.streams.video)


def _left_out(fmt: str, inp, s) -> str:
    """Why a stream is left out: one the muxer refused, an Ogg skeleton, a timecode track the mov muxer makes."""
    if _codec_name(s) == "skeleton":
        return "an Ogg skeleton: an index of the Ogg file's own pages, which FFmpeg's muxers do not write"
    if _timecode_track(inp, s) and fmt in _MOV_FAMILY:
        return f"a timecode track: the {fmt} muxer writes it again from the video's timecode tag"
    if _timecode_track(inp, s) and fmt == "matroska":
        return "a timecode track: its timecode is kept as the video's tag"
    return f"{fmt} cannot hold it"


class _Handler:
    """One output stream: ``feed`` takes an input packet and gives the packets to mux (``flush`` the last ones);
    ``written`` keeps the (pts, dts) of the first packets written, to check them in the file (if ``checked``);
    ``moves``: an audio stream being moved."""

    action, dropped, checked, moves = "copied", 0, True, False

    def __init__(self, ostream):
        self.ostream, self.written = ostream, []

    def _note(self, packets: list) -> list:
        for p in packets:
            t = _times(p) if len(self.written) < _CHECKED_PACKETS else None
            if t is not None:
                self.written.append(t)
        return packets

    def flush(self) -> list:
        return []


class _Copy(_Handler):
    """A stream copied as it is, through bitstream filter ``bsf`` if one is named (its output parameters, extradata
    in the new framing, go to the output stream). Video and audio are checked, not subtitles and data: a muxer may
    give those new times (mov_text)."""

    def __init__(self, ostream, s, bsf: str | None, move: Fraction = Fraction(0)):
        super().__init__(ostream)
        self.checked = ostream.type in ("video", "audio")
        self.ticks = round(move / s.time_base) if move else 0  # (every stream alike: where AVI has no start time)
        self.bsf = None
        if bsf:
            self.bsf = av.bitstream.BitStreamFilterContext(bsf, s, ostream)
            ostream.codec_tag = "\0\0\0\0"  # the muxer's own tag: the input's (avc1) names the old framing
            self.action = f"copied through {bsf}"

    def feed(self, pkt):
        if self.ticks:
            pkt.pts = None if pkt.pts is None else pkt.pts + self.ticks
            pkt.dts = None if pkt.dts is None else pkt.dts + self.ticks
        return self._out(self.bsf.filter(pkt) if self.bsf is not None else [pkt])

    def flush(self):
        return self._out(self.bsf.filter(None)) if self.bsf is not None else []

    def _out(self, packets):
        for p in packets:
            p.stream = self.ostream
        return self._note(packets) if self.checked else packets


class _Shift(_Handler):
    """An audio stream with its packet timestamps moved by ``offset``, exactly, in its own time base, or in samples
    where its time base is a whole number of them (MP3 in AVI counts in frames of 24 ms); and by ``move``, as every
    other stream.

    When advancing, packets that end up before the file start are dropped. Where the muxer stores negative
    timestamps (mp4/mov with an edit list, ogg), the packet across the start is kept, and the one before it as the
    decoder's pre-roll: players skip what lies before the start, as they skip an encoder's priming. Elsewhere (mkv,
    webm) the packet across the start is dropped too: the muxer would move every stream to make its timestamp
    non-negative, and moving just its timestamp up to the start would move all audio decoded after it. (Without its
    first packet, a decoder skips its codec delay on the first one it gets, and moves that frame's timestamp to
    match: those few ms of audio are lost, the timing is kept.)"""

    def __init__(self, out, s, offset: Fraction, floor: Fraction, negative_ok: bool, move: Fraction = Fraction(0)):
        try:
            super().__init__(out.add_stream_from_template(s, opaque=True))
        except ValueError as e:
            raise _AudioNotCopyable(f"{out.format.name} cannot hold {_codec_name(s)} audio") from e
        self.tb, self.scale = s.time_base, 1
        rate = s.codec_context.sample_rate if s.codec_context is not None else 0
        if rate and (s.time_base * rate).denominator == 1 and s.time_base * rate > 1:
            self.tb, self.scale = Fraction(1, rate), int(s.time_base * rate)
            self.ostream.time_base = self.tb
        self.ticks = round(offset / self.tb)
        self.applied = self.ticks * self.tb
        self.ticks += round(move / self.tb)
        self.floor, self.negative_ok = floor, negative_ok
        self.cutting = self.ticks < 0  # only advancing can push packets before the start
        self.held = None  # the last packet before the start (negative_ok): pre-roll
        self.action = f"timestamps moved by {float(self.applied):+.6f} s"

    def feed(self, pkt):
        if self.scale != 1:
            pkt.pts = None if pkt.pts is None else pkt.pts * self.scale
            pkt.dts = None if pkt.dts is None else pkt.dts * self.scale
            pkt.duration = (pkt.duration or 0) * self.scale
            pkt.time_base = self.tb
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
    that the container takes (``same_codec``), else the container's default; the same rate (where the encoder has
    it) and layout.

    Where the container ``ignores_pts``, players do not skip an encoder's priming either (AVI): the start is cut by
    the priming too, the packets' timestamps start at 0 (else the muxer delays every stream), and the audio is placed
    from the file start by ``anchor``: where the input's time 0 is in the output. Elsewhere the timestamps start at
    ``floor``, where the file starts."""

    checked = False  # (its timestamps are the encoder's; where ignored, it was padded instead)

    def __init__(self, src: str, out, s, offset: Fraction, floor: Fraction, same_codec: bool, ignores_pts: bool,
                 anchor: Fraction = Fraction(0)):
        dec = s.codec_context
        if dec is None:
            raise SynchformerError(src, f"no decoder for its audio stream #{s.index}")
        dec.thread_type = "AUTO"
        self.dec, self.tb, self.rate, self.layout = dec, s.time_base, dec.sample_rate, dec.layout.name
        if self.layout in ("1 channels", "2 channels"):  # no channel order given (PCM in AVI); encoders want one
            self.layout = "mono" if self.layout[0] == "1" else "stereo"
        codec, ostream, opts = _add_encoder(out, dec if same_codec else None, self.rate, self.layout)
        super().__init__(ostream)
        self.rate = ostream.codec_context.sample_rate  # (the encoder's nearest where it lacks the input's)
        if dec.format is not None and dec.format.name in [f.name for f in codec.audio_formats or []]:
            ostream.format = dec.format.name  # e.g. keep 24-bit FLAC in s32, PCM in s16
        if codec.id == dec.codec.id and codec.lossy and dec.bit_rate:
            ostream.bit_rate = dec.bit_rate  # the input's quality
        ostream.time_base = Fraction(1, self.rate)
        self.priming = _priming(codec, self.rate, self.layout, ostream.format.name, opts) if ignores_pts else 0
        self.applied = Fraction(round(offset * self.rate), self.rate)
        self.anchor = anchor if ignores_pts else -floor
        self.first_pts = 0 if ignores_pts else round(floor * self.rate)
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
                self.pad = round((start + self.anchor) * self.rate) + round(self.applied * self.rate) - self.priming
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
                frame.pts = self.first_pts + self.n_out
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
    encoder for it that the container takes, else the container's default audio codec, else AAC; at ``rate`` where
    the encoder has it, else at its nearest (AAC has no 11024 Hz). Each is tried first in a header written to memory:
    some muxers refuse only there (flv: MP3 only at 44.1, 22.05, 11.025 or 48 kHz; ogg: any codec but its own)."""
    names = [dec.codec.canonical_name] if dec is not None else []
    for name in dict.fromkeys(names + [out.default_audio_codec, "aac"]):
        try:
            codec = av.Codec(name, "w")  # by codec name: FFmpeg's preferred encoder (mp3 -> libmp3lame)
        except (ValueError, av.error.FFmpegError):  # no such encoder
            continue
        opts = {"strict": "experimental"} if codec.experimental else {}  # FFmpeg's own Vorbis encoder
        r = rate if not codec.audio_rates or rate in codec.audio_rates else \
            min(codec.audio_rates, key=lambda x: (abs(x - rate), -x))
        probe = av.open(io.BytesIO(), "w", format=out.format.name)
        try:
            probe.add_stream(codec.name, rate=r, layout=layout, options=dict(opts))
            probe.start_encoding()
            return codec, out.add_stream(codec.name, rate=r, layout=layout, options=opts), opts
        except (ValueError, av.error.FFmpegError):  # the muxer or the encoder does not take it
            continue
        finally:
            try:
                probe.close()
            except (ValueError, av.error.FFmpegError, OSError):
                pass
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


def _first_packet(src: str, index: int):
    """The first packet of stream ``index`` of ``src`` that has data, or None."""
    with av.open(ffmpeg_name(src), metadata_errors="ignore") as c:
        return next((p for p in c.demux(c.streams[index]) if p.size), None)


def _video_origin(src: str) -> Fraction:
    """The decoding time of the first video packet (the first video stream's), 0 if it has none."""
    with av.open(ffmpeg_name(src), metadata_errors="ignore") as c:
        pkt = _first_packet(src, c.streams.video[0].index)
    t = None if pkt is None else pkt.dts if pkt.dts is not None else pkt.pts
    return Fraction(0) if t is None else Fraction(t) * pkt.time_base


def _file_start(container) -> Fraction:
    """Where the file's timeline starts: 0, or earlier if a non-audio stream starts before 0."""
    starts = [Fraction(s.start_time) * s.time_base for s in container.streams
              if s.type != "audio" and s.start_time is not None]
    return min([Fraction(0)] + starts)


def _codec_name(stream) -> str:
    if stream.type == "data" and stream.codec_context is None and "ogg" in stream.container.format.name.split(","):
        return "skeleton"  # (the only data stream FFmpeg's ogg demuxer makes)
    return stream.codec_context.name if stream.codec_context is not None else stream.type


def _codec_id(stream) -> int | None:
    return stream.codec_context.codec.id if stream.codec_context is not None else None


def _reason(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e) or type(e).__name__
