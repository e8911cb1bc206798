"""Tests of synchformer.io.fix.shift_audio: the audio really moves by the asked amount, nothing else changes."""

from __future__ import annotations

import hashlib
import os
from fractions import Fraction

import av
import numpy as np
import pytest

from _shared import MEDIA
import synchformer.io.fix as fix
from synchformer.errors import SynchformerError
from synchformer.io import load_av
from synchformer.io.fix import shift_audio

EVENTS = (1.0, 2.6, 4.2)  # s: a white frame and a noise burst at each
SHIFTS = (0.6, -0.4, 1.2)
MS = 1e-3

# (extension, video encoder, audio encoder(s), method, tolerance of the measured shift in s)
# Matroska stores times in whole ms, and Opus starts 6.5 ms early there (its codec delay): when the start is cut, the
# decoder's first frame gets a timestamp rounded to 1 ms, so 1 ms + one tick.
CASES = [
    ("mp4", "libx264", ("aac",), "remux", MS),
    ("mov", "mpeg4", ("aac",), "remux", MS),
    ("mkv", "libx264", ("libopus", "flac"), "remux", 2 * MS + 1e-6),
    ("webm", "libvpx", ("libopus",), "remux", 2 * MS + 1e-6),
    ("webm", "libvpx-vp9", ("vorbis",), "remux", 2 * MS + 1e-6),
    ("ogv", "libvpx", ("libopus",), "remux", MS),  # no Theora encoder in PyAV's FFmpeg: VP8 in Ogg
    ("avi", "mpeg4", ("pcm_s16le",), "reencode-audio", MS),  # AVI plays audio from 0 whatever its timestamps
    ("avi", "mpeg4", ("libmp3lame",), "reencode-audio", MS),
]


def _has_encoder(name: str) -> bool:
    try:
        av.Codec(name, "w")
        return True
    except Exception:
        return False


def require(*encoders: str) -> None:
    missing = [e for e in encoders if not _has_encoder(e)]
    if missing:
        pytest.skip(f"this PyAV has no {', '.join(missing)} encoder")


def _case_id(case) -> str:
    return f"{case[0]}-{case[1]}-{'+'.join(case[2])}"


def write_media(path, vcodec: str, acodecs=("aac",), *, duration=6.0, rate=48000, rotation=0, metadata=None,
                video_options=None, languages=("eng", "fra"), container_options=None):
    """A `duration` s, 25 fps, 64x64 clip: dark frames, white at EVENTS; each audio track faint noise with a loud
    20 ms noise burst at EVENTS (every track different noise, so cross-correlation has one sharp peak)."""
    with av.open(str(path), "w", container_options=container_options or {}) as c:
        c.metadata.update(metadata or {})
        vs = c.add_stream(vcodec, rate=25, options=video_options or {})
        vs.width = vs.height = 64
        vs.pix_fmt = "yuv420p"
        if rotation:
            vs.set_display_rotation(rotation)
        streams = []
        for k, acodec in enumerate(acodecs):
            layout = "stereo" if acodec == "vorbis" else "mono"
            opts = {"strict": "experimental"} if av.Codec(acodec, "w").experimental else {}
            a = c.add_stream(acodec, rate=rate, layout=layout, options=opts)
            a.metadata.update({"language": languages[k % len(languages)], "title": f"track {k}"})
            streams.append(a)
        flashes = {round(t * 25) for t in EVENTS}
        for i in range(round(duration * 25)):
            img = np.full((64, 64, 3), 255 if i in flashes else 30, np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            c.mux(vs.encode(frame))
        c.mux(vs.encode(None))
        n = round(duration * rate)
        for k, a in enumerate(streams):
            rng = np.random.default_rng(k)
            sig = (rng.standard_normal(n) * 0.02).astype(np.float32)
            for t in EVENTS:
                i = round(t * rate)
                if i + rate // 50 <= n:
                    sig[i : i + rate // 50] = rng.standard_normal(rate // 50) * 0.4
            channels = len(a.layout.channels)
            for i in range(0, n, 1024):
                frame = av.AudioFrame.from_ndarray(np.tile(sig[None, i : i + 1024], (channels, 1)), format="fltp",
                                                   layout=a.layout.name)
                frame.sample_rate, frame.pts, frame.time_base = rate, i, Fraction(1, rate)
                c.mux(a.encode(frame))
            c.mux(a.encode(None))
    return path


def measured_shift(src, dst, clips=None) -> float:
    """How much later (s) the decoded audio of `dst` plays than that of `src`, on the video's timeline: the peak of
    their cross-correlation (16 kHz, refined by a parabola). `clips`: the two already decoded by load_av."""
    a, b = clips or [load_av(p, size=None, crop=None) for p in (src, dst)]
    # the same video timeline (the output may show one frame more at the end: an mp4 edit list that hides the last
    # frame, as in the shared .mov, is not written again by FFmpeg's muxer; the packets are the same)
    assert a.start_sec == b.start_sec and 0 <= len(b.frames) - len(a.frames) <= 1
    return lag_sec(a.audio.double().numpy(), b.audio.double().numpy(), a.sample_rate)


def lag_sec(x: np.ndarray, y: np.ndarray, rate: int) -> float:
    """How much later (s) signal y is than x: the peak of their cross-correlation, refined by a parabola."""
    nfft = 1 << (len(x) + len(y)).bit_length()
    c = np.fft.irfft(np.fft.rfft(y, nfft) * np.conj(np.fft.rfft(x, nfft)), nfft)
    k = int(np.argmax(c))
    y0, y1, y2 = c[k - 1], c[k], c[(k + 1) % nfft]
    return ((k if k < nfft // 2 else k - nfft) + 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2)) / rate


def track_audio(path, index: int, rate: int = 16000) -> np.ndarray:
    """Audio stream `index` (its container index) decoded, mono at `rate`, placed on the timeline of the first video
    frame: sample 0 is the first frame's time (load_av reads one audio stream only)."""
    with av.open(str(path)) as c:
        first_frame = next(f.time for f in c.decode(video=0))
    with av.open(str(path)) as c:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks, start = [], None
        for frame in c.decode(c.streams[index]):
            start = frame.time if start is None else start
            chunks += [f.to_ndarray()[0] for f in resampler.resample(frame)]
        chunks += [f.to_ndarray()[0] for f in resampler.resample(None)]
    x, lead = np.concatenate(chunks).astype(np.float64), round((start - first_frame) * rate)
    return np.concatenate([np.zeros(lead), x]) if lead >= 0 else x[-lead:]


def stream_packets(path, index: int) -> list[tuple[bytes, int | None, int | None]]:
    """(bytes, pts, dts) of every packet of stream `index` (its container index), in file order."""
    with av.open(str(path)) as c:
        return [(bytes(p), p.pts, p.dts) for p in c.demux(c.streams[index]) if p.size]


def packets(path, kind: str, index: int = 0) -> list[tuple[bytes, Fraction | None]]:
    """(bytes, pts in s) of every packet of the `index`-th stream of that kind, in file order."""
    with av.open(str(path)) as c:
        s = getattr(c.streams, kind)[index]
        return [(bytes(p), None if p.pts is None else p.pts * p.time_base) for p in c.demux(s) if p.size]


def sha256(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def leftovers(folder) -> list[str]:
    return [n for n in os.listdir(folder) if ".tmp" in n]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Each case's input clip, made once."""
    made = {}

    def get(case):
        ext, vcodec, acodecs = case[:3]
        require(vcodec, *acodecs)
        if case not in made:
            made[case] = write_media(tmp_path_factory.mktemp("in") / f"clip.{ext}", vcodec, acodecs)
        return made[case]

    return get


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_shift_moves_the_audio_and_nothing_else(media, tmp_path, case):
    ext, _, acodecs, method, tol = case
    src = media(case)
    before = sha256(src)
    video_in = packets(src, "video")
    for shift in SHIFTS:
        dst = tmp_path / f"out{shift:+.1f}.{ext}"
        report = shift_audio(src, dst, shift)
        assert report["method"] == method
        assert abs(report["audio_shift_sec"] - shift) < 1e-6
        assert report["video_packets"] == len(video_in)
        assert (report["audio_packets_dropped"] > 0) == (shift < 0 and method == "remux")
        # (1) the audio moved by the asked amount relative to the video
        err = measured_shift(src, dst) - shift
        assert abs(err) <= tol, f"{ext} shift {shift:+.1f}: off by {err * 1000:+.3f} ms"
        # (2) the video is the same packets, bytes and times
        assert packets(dst, "video") == video_in
        # every audio track moved, by timestamps where remuxed
        if method == "remux":
            for k in range(len(acodecs)):
                a_in, a_out = packets(src, "audio", k), packets(dst, "audio", k)
                tail = min(len(a_in), len(a_out)) - 5  # the last packets agree in any case; compare times there
                assert [b for b, _ in a_out[-tail:]] == [b for b, _ in a_in[-tail:]]
                moved = {round(float(t_out - t_in), 6) for (_, t_in), (_, t_out) in zip(a_in[-tail:], a_out[-tail:])}
                assert moved == {round(report["audio_shift_sec"], 6)}
    # (3) the input is untouched, no temporary file is left
    assert sha256(src) == before
    assert leftovers(tmp_path) == [] and leftovers(src.parent) == []


@pytest.mark.parametrize("case", [c for c in CASES if c[0] in ("mp4", "mkv", "avi")], ids=_case_id)
def test_shift_zero_is_an_identical_copy(media, tmp_path, case):
    src = media(case)
    dst = tmp_path / f"same.{case[0]}"
    report = shift_audio(src, dst, 0.0)
    assert report["method"] == "remux" and report["audio_packets_dropped"] == 0
    for kind in ("video", "audio"):
        assert packets(dst, kind) == packets(src, kind)
    a, b = load_av(src, size=None, crop=None), load_av(dst, size=None, crop=None)
    assert a.start_sec == b.start_sec
    assert np.array_equal(a.frames.numpy(), b.frames.numpy()) and np.array_equal(a.audio.numpy(), b.audio.numpy())


def test_events_line_up_after_the_fix(tmp_path):
    """A file whose audio leads by 0.4 s: after shift_audio(+0.4) each burst is heard where its flash is seen."""
    src = tmp_path / "leads.mp4"
    write_media(src, "mpeg4", ("aac",))
    fixed = tmp_path / "fixed.mp4"
    # make the audio lead: advance it by 0.4 s (the fix of an offset of -0.4), then fix that file
    shift_audio(src, tmp_path / "leading.mp4", -0.4)
    shift_audio(tmp_path / "leading.mp4", fixed, +0.4)
    clip = load_av(fixed, size=None, crop=None)
    flashes = np.nonzero(clip.frames.float().mean(dim=(1, 2, 3)).numpy() > 200)[0] / 25
    env = np.convolve(np.abs(clip.audio.numpy()), np.ones(160) / 160, mode="same")
    bursts = np.nonzero(np.diff((env > 0.1).astype(int)) == 1)[0] / 16000
    assert np.allclose(flashes, EVENTS) and len(bursts) == len(EVENTS)
    assert np.allclose(bursts, EVENTS, atol=0.012)  # onset of a 20 ms burst through a 10 ms moving average


@pytest.mark.parametrize("ext", ["mp4", "mov", "mkv"])
def test_metadata_rotation_and_extra_tracks_are_kept(tmp_path, ext):
    src = tmp_path / f"meta.{ext}"
    meta = {"title": "a title", "creation_time": "2020-01-02T03:04:05.000000Z"}
    write_media(src, "mpeg4", ("aac", "aac"), rotation=90, metadata=meta)
    dst = tmp_path / f"fixed.{ext}"
    report = shift_audio(src, dst, 0.6)
    assert [s["type"] for s in report["streams"]] == ["video", "audio", "audio"]
    with av.open(str(src)) as a, av.open(str(dst)) as b:
        for key, value in meta.items():
            assert b.metadata.get(key) == value
        for sa, sb in zip(a.streams, b.streams):
            assert sa.type == sb.type and sb.disposition == sa.disposition
            for key in ("language", "handler_name", "title"):
                assert sb.metadata.get(key) == sa.metadata.get(key)
            assert sb.metadata.get("language") in ("eng", "fra", "und", None)
    assert load_av(dst, size=None, crop=None).rotation == load_av(src, size=None, crop=None).rotation == 90
    for k in (0, 1):  # both audio tracks moved
        a_in, a_out = packets(src, "audio", k), packets(dst, "audio", k)
        assert [b for b, _ in a_out] == [b for b, _ in a_in]
        assert {round(float(o - i), 6) for (_, i), (_, o) in zip(a_in, a_out)} == {0.6}


def test_extra_streams_go_where_the_container_takes_them(tmp_path):
    plain = write_media(tmp_path / "plain.mkv", "mpeg4", ("aac",))
    src = tmp_path / "attached.mkv"
    with av.open(str(plain)) as i, av.open(str(src), "w") as o:  # the same file with a font-like attachment
        streams = {s.index: o.add_stream_from_template(s, opaque=True) for s in i.streams}
        o.add_attachment("notes.txt", "text/plain", b"hello")
        for p in i.demux():
            if p.size:
                p.stream = streams[p.stream.index]
                o.mux(p)
    report = shift_audio(src, tmp_path / "out.mkv", 0.6)
    assert [s["action"] for s in report["streams"]][2] == "copied"
    with av.open(str(tmp_path / "out.mkv")) as c:
        att = c.streams[2]
        assert att.type == "attachment" and att.data == b"hello" and att.metadata["filename"] == "notes.txt"
    report = shift_audio(src, tmp_path / "out.mp4", 0.6)  # mp4 has no attachments: left out, said so
    assert report["streams"][2]["action"].startswith("left out")


def test_output_format_follows_the_extension(tmp_path):
    require("libx264", "libopus")
    src = write_media(tmp_path / "in.mkv", "libx264", ("libopus",))
    dst = tmp_path / "out.mp4"
    report = shift_audio(src, dst, 0.6)
    assert report["format"] == "mp4"
    with av.open(str(dst)) as c:
        assert c.format.name.startswith("mov,mp4")
    assert abs(measured_shift(src, dst) - 0.6) <= 2 * MS  # Matroska's ms timestamps of the input
    assert shift_audio(src, tmp_path / "noext", 0.6)["format"] == "matroska"  # no extension: the input's format


def test_audio_the_container_cannot_hold_is_reencoded(tmp_path):
    require("libvpx", "libopus")
    src = write_media(tmp_path / "in.mkv", "libvpx", ("pcm_s16le",))
    report = shift_audio(src, tmp_path / "out.webm", -0.4)
    assert report["method"] == "reencode-audio" and "webm cannot hold pcm_s16le" in report["reason"]
    assert abs(measured_shift(src, tmp_path / "out.webm") + 0.4) <= MS


def test_refusals(tmp_path):
    src = write_media(tmp_path / "in.mp4", "mpeg4", ("aac",))
    before = sha256(src)
    with pytest.raises(SynchformerError, match="is the input file"):
        shift_audio(src, tmp_path / "sub" / ".." / "in.mp4", 0.6, overwrite=True)
    os.link(src, tmp_path / "hardlink.mp4")
    with pytest.raises(SynchformerError, match="is the input file"):
        shift_audio(src, tmp_path / "hardlink.mp4", 0.6, overwrite=True)
    os.symlink(src, tmp_path / "symlink.mp4")
    with pytest.raises(SynchformerError, match="is the input file"):
        shift_audio(src, tmp_path / "symlink.mp4", 0.6, overwrite=True)

    existing = tmp_path / "existing.mp4"
    existing.write_bytes(b"keep me")
    with pytest.raises(SynchformerError, match="already exists"):
        shift_audio(src, existing, 0.6)
    assert existing.read_bytes() == b"keep me"
    with pytest.raises(SynchformerError, match="cannot hold its mpeg4 video"):  # fails while writing
        shift_audio(src, tmp_path / "existing.webm", 0.6)
    (tmp_path / "existing.webm").write_bytes(b"keep me too")
    with pytest.raises(SynchformerError, match="cannot hold its mpeg4 video"):
        shift_audio(src, tmp_path / "existing.webm", 0.6, overwrite=True)
    assert (tmp_path / "existing.webm").read_bytes() == b"keep me too"
    shift_audio(src, existing, 0.6, overwrite=True)
    assert packets(existing, "video") == packets(src, "video")

    with pytest.raises(SynchformerError, match="no output format"):
        shift_audio(src, tmp_path / "out.notaformat", 0.6)
    with pytest.raises(SynchformerError, match="longer than the file"):
        shift_audio(src, tmp_path / "far.mp4", -60)
    with pytest.raises(SynchformerError, match="finite"):
        shift_audio(src, tmp_path / "nan.mp4", float("nan"))

    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    video_only = write_media(tmp_path / "video_only.mp4", "mpeg4", ())
    audio_only = tmp_path / "audio_only.m4a"
    with av.open(str(audio_only), "w") as c:
        a = c.add_stream("aac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        c.mux(a.encode(frame) + a.encode(None))
    fifo = tmp_path / "stream.mp4"
    os.mkfifo(fifo)  # no writer: opening it would wait forever (its size reads as 0 bytes)
    for bad, problem in [(tmp_path / "missing.mp4", "file not found"), (text, "not a readable media file"),
                         (video_only, "has no audio stream"), (audio_only, "has no video stream"),
                         (tmp_path, "is a directory"), (fifo, "is a named pipe")]:
        with pytest.raises(SynchformerError, match=problem) as err:
            shift_audio(bad, tmp_path / "bad_out.mp4", 0.6)
        assert "\n" not in str(err.value) and str(bad) in str(err.value)
    assert sha256(src) == before
    assert not (tmp_path / "bad_out.mp4").exists() and not (tmp_path / "far.mp4").exists()
    assert leftovers(tmp_path) == []


SHARED_CLIPS = [("pen_hits_coin__node-opencv_motion.mov", MS),
                # WebM/Vorbis from an old muxer: each block's timestamp marks the end of the audio it decodes to
                # (1024 samples for long blocks, 128 for the short ones at the start), so a decoder that anchors
                # the first frame's timestamp and counts samples (as load_av does) places a file whose start was
                # cut one long block (21.3 ms at 48 kHz) later than the packet timestamps say
                ("lego_robot__techslides_small.webm", 1024 / 48000 + MS)]


@pytest.mark.parametrize("name, tol", SHARED_CLIPS, ids=[c[0] for c in SHARED_CLIPS])
def test_shared_clips(tmp_path, name, tol):
    src = MEDIA / name
    if not src.is_file():
        pytest.skip(f"shared test media not found ({src}; set SYNCHFORMER_SHARED)")
    before = sha256(src)
    video_in = packets(src, "video")
    for shift in (0.6, -0.4):
        dst = tmp_path / f"fixed{shift:+.1f}{src.suffix}"
        report = shift_audio(src, dst, shift)
        assert report["method"] == "remux"
        err = measured_shift(src, dst) - shift
        assert abs(err) <= (tol if shift < 0 else MS), f"shift {shift:+.1f}: off by {err * 1000:+.3f} ms"
        assert packets(dst, "video") == video_in
    assert sha256(src) == before
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_fixed_file_gets_the_umask_permissions_of_an_ordinary_file(tmp_path, umask):
    src = write_media(tmp_path / "in.mp4", "mpeg4", ("aac",))
    old = os.umask(umask)
    try:
        shift_audio(src, tmp_path / "out.mp4", 0.2)
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "out.mp4").st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("ext, vcodec, acodec, action", [
    ("mp4", "libx264", "aac", "timestamps moved by +0.600000 s"),
    ("avi", "mpeg4", "libmp3lame", "re-encoded as libmp3lame, moved by +0.600000 s"),  # AVI: only that one
])
def test_only_the_chosen_audio_stream_is_moved(tmp_path, ext, vcodec, acodec, action):
    require(vcodec, acodec)
    src = write_media(tmp_path / f"two.{ext}", vcodec, (acodec, acodec), duration=5.0, languages=("eng", "deu"))
    dst = tmp_path / f"fixed.{ext}"
    with av.open(str(src)) as c:
        second = c.streams.audio[1].index
    report = shift_audio(src, dst, 0.6, audio_stream=second)
    assert [s["action"] for s in report["streams"]] == ["copied", "copied", action]
    assert report["audio_shift_sec"] == pytest.approx(0.6)
    # the first track: the same packets, bytes and timestamps; it plays where it did
    first = second - 1
    assert stream_packets(dst, first) == stream_packets(src, first)
    assert abs(lag_sec(track_audio(src, first), track_audio(dst, first), 16000)) <= MS
    # the second: moved by 0.6 s against the video (and the first track)
    err = lag_sec(track_audio(src, second), track_audio(dst, second), 16000) - 0.6
    assert abs(err) <= MS, f"off by {err * 1000:+.3f} ms"
    assert packets(dst, "video") == packets(src, "video")
    if ext == "mp4":  # (AVI keeps no languages)
        with av.open(str(dst)) as c:
            assert [s.language for s in c.streams.audio] == ["eng", "deu"]


def test_audio_stream_must_name_an_audio_stream(tmp_path):
    src = write_media(tmp_path / "in.mp4", "mpeg4", ("aac", "aac"), duration=5.0)
    for bad in (0, 3, -1, "2", 1.0, True):  # the video, none, none, a string, a float, a bool
        with pytest.raises(SynchformerError, match="not one of its audio streams") as err:
            shift_audio(src, tmp_path / "out.mp4", 0.6, audio_stream=bad)
        assert str(err.value).startswith(str(src)) and "\n" not in str(err.value)
        assert "#1 (aac), #2 (aac)" in str(err.value)
    assert not (tmp_path / "out.mp4").exists() and leftovers(tmp_path) == []


def test_quicktime_metadata_is_kept(tmp_path):
    """A phone's .mov keeps its com.apple.quicktime.* keys (mov/mp4: written as QuickTime metadata keys, which the
    muxer does only when asked); a file with only the usual tags keeps them where players look (iTunes atoms)."""
    meta = {"com.apple.quicktime.make": "Apple", "com.apple.quicktime.model": "iPhone 12",
            "com.apple.quicktime.location.ISO6709": "+37.7899-122.4221+081.120/", "title": "a title"}
    src = write_media(tmp_path / "phone.mov", "mpeg4", ("aac",), duration=5.0, metadata=meta,
                      container_options={"movflags": "use_metadata_tags"})
    for ext in ("mov", "mp4", "mkv"):
        shift_audio(src, tmp_path / f"fixed.{ext}", 0.6)
        with av.open(str(tmp_path / f"fixed.{ext}")) as c:
            got = {k.lower(): v for k, v in c.metadata.items()}  # (Matroska's tags are upper case)
            brand = c.metadata.get("major_brand")
        assert {k: got.get(k.lower()) for k in meta} == meta, ext
        if ext == "mp4":  # the muxer's own file type, not the input's written as a tag
            assert brand == "isom"
    plain = write_media(tmp_path / "plain.mp4", "mpeg4", ("aac",), duration=5.0,
                        metadata={"title": "a title", "artist": "someone"})
    shift_audio(plain, tmp_path / "plain_fixed.mp4", 0.6)
    assert b"\xa9nam" in (tmp_path / "plain_fixed.mp4").read_bytes()  # iTunes' title atom, as in the input
    with av.open(str(tmp_path / "plain_fixed.mp4")) as c:
        assert c.metadata["title"] == "a title" and c.metadata["artist"] == "someone"


def test_dispositions_languages_and_timecode_are_kept(tmp_path):
    require("libx264")
    made = write_media(tmp_path / "made.mp4", "libx264", ("aac", "aac"), duration=5.0, languages=("eng", "deu"))
    src = tmp_path / "in.mkv"
    with av.open(str(made)) as i, av.open(str(src), "w") as o:  # dispositions and a timecode, as a camera's
        streams = {s.index: o.add_stream_from_template(s, opaque=True) for s in i.streams}
        for s in i.streams:
            streams[s.index].metadata.update(s.metadata)
        streams[0].metadata["timecode"] = "01:02:03:04"
        streams[1].disposition = av.stream.Disposition.default | av.stream.Disposition.original
        streams[2].disposition = av.stream.Disposition.comment | av.stream.Disposition.visual_impaired
        for p in i.demux():
            if p.size:
                p.stream = streams[p.stream.index]
                o.mux(p)
    shift_audio(src, tmp_path / "fixed.mkv", 0.6)
    with av.open(str(src)) as a, av.open(str(tmp_path / "fixed.mkv")) as b:
        assert [s.disposition for s in b.streams] == [s.disposition for s in a.streams]
        assert [s.language for s in b.streams.audio] == ["eng", "deu"]
        assert b.streams[0].metadata["TIMECODE"] == "01:02:03:04"  # (Matroska's tags are upper case)
    shift_audio(src, tmp_path / "fixed.mov", 0.6)  # .mov: its own codes for languages; a timecode track
    with av.open(str(tmp_path / "fixed.mov")) as c:
        assert [s.language for s in c.streams.audio] == ["eng", "ger"]  # (German by its other ISO 639-2 code)
        assert [s.type for s in c.streams] == ["video", "audio", "audio", "data"]
        assert c.streams[0].metadata["timecode"] == c.streams[3].metadata["timecode"] == "01:02:03:04"
    report = shift_audio(tmp_path / "fixed.mov", tmp_path / "again.mov", -0.6)  # the timecode track: made again
    assert report["streams"][3]["action"].startswith("left out (a timecode track: the mov muxer writes it again")
    with av.open(str(tmp_path / "again.mov")) as c:
        assert [s.type for s in c.streams] == ["video", "audio", "audio", "data"]
        assert c.streams[3].metadata["timecode"] == "01:02:03:04"


def test_an_ogg_skeleton_is_left_out_and_said_why(tmp_path):
    src = MEDIA / "lego_robot__techslides_small.ogv"  # theora + vorbis + a skeleton (PyAV cannot write one)
    if not src.is_file():
        pytest.skip(f"shared test media not found ({src}; set SYNCHFORMER_SHARED)")
    for ext in ("ogv", "mkv"):
        report = shift_audio(src, tmp_path / f"fixed.{ext}", 0.6)
        assert report["streams"][0]["codec"] == "skeleton"
        assert report["streams"][0]["action"] == ("left out (an Ogg skeleton: an index of the Ogg file's own pages, "
                                                  "which FFmpeg's muxers do not write)")
        with av.open(str(tmp_path / f"fixed.{ext}")) as c:
            assert [s.type for s in c.streams] == ["video", "audio"]
        assert abs(measured_shift(src, tmp_path / f"fixed.{ext}") - 0.6) <= MS


def test_audio_the_muxer_moved_against_the_video_is_caught(tmp_path):
    """AVI plays audio from the file start: copied there unchanged (offset 0), audio that starts 0.5 s into the file
    came back at 0. The read-back check sees that stream moved against the video, and the audio is re-encoded."""
    require("libmp3lame")
    src = write_media(tmp_path / "in.mkv", "mpeg4", ("libmp3lame",), duration=5.0)
    shift_audio(src, tmp_path / "late.mkv", 0.5)
    report = shift_audio(tmp_path / "late.mkv", tmp_path / "same.avi", 0.0)
    assert report["method"] == "reencode-audio" and "did not keep the audio timestamps" in report["reason"]
    assert abs(measured_shift(tmp_path / "late.mkv", tmp_path / "same.avi")) <= MS
    assert packets(tmp_path / "same.avi", "video") == packets(src, "video")


# Every output container from every input container: the audio moves by the asked amount against the video, the
# video packets are the input's (bit for bit, where no bitstream filter and no muxer changed their framing), or the
# pair is refused in one line before anything is written. Input: (extension, video encoder, its options, audio).
MATRIX_INPUTS = {
    "mp4-h264-aac": ("mp4", "libx264", None, "aac"),  # (libx264's default: B-frames)
    "mov-h264-aac": ("mov", "libx264", None, "aac"),
    "mkv-h264-aac": ("mkv", "libx264", None, "aac"),
    "ts-h264-aac": ("ts", "libx264", None, "aac"),
    "mkv-h264noB-pcm": ("mkv", "libx264", {"bf": "0"}, "pcm_s16le"),
    "avi-mpeg4-mp3": ("avi", "mpeg4", None, "libmp3lame"),
    "avi-mpeg4-pcm": ("avi", "mpeg4", None, "pcm_s16le"),
    "mp4-h264noB-aac": ("mp4", "libx264", {"bf": "0"}, "aac"),
    "ts-h264noB-aac": ("ts", "libx264", {"bf": "0"}, "aac"),
    "mov-mpeg4-aac": ("mov", "mpeg4", None, "aac"),  # (its headers in the extradata only)
}
MATRIX_OUTPUTS = ("avi", "ts", "mkv", "mov", "mp4", "flv", "nut")
MATRIX = [(i, o) for i in list(MATRIX_INPUTS)[:7] for o in MATRIX_OUTPUTS] + [
    ("mp4-h264noB-aac", "avi"), ("ts-h264noB-aac", "avi"), ("mov-mpeg4-aac", "avi"), ("mov-mpeg4-aac", "ts")]


def matrix_expected(name: str, out: str) -> str:
    """'remux', 'reencode-audio', or the words of the refusal."""
    _, vcodec, vopts, acodec = MATRIX_INPUTS[name]
    if out == "avi" and vcodec == "libx264" and not vopts:
        return "its h264 video has B-frames"  # AVI stores no display times
    if out == "flv" and vcodec == "mpeg4":
        return "the flv format cannot hold its mpeg4 video"
    if out == "avi" or acodec == "pcm_s16le" and out in ("ts", "flv"):
        return "reencode-audio"  # AVI ignores audio timestamps; MPEG-TS and FLV hold no 48 kHz PCM
    return "remux"


@pytest.fixture(scope="module")
def matrix_input(tmp_path_factory):
    made = {}

    def get(name):
        ext, vcodec, vopts, acodec = MATRIX_INPUTS[name]
        require(vcodec, acodec)
        if name not in made:
            made[name] = write_media(tmp_path_factory.mktemp("matrix") / f"{name}.{ext}", vcodec, (acodec,),
                                     duration=5.0, video_options=vopts)
        return made[name]

    return get


@pytest.mark.parametrize("name, out", MATRIX, ids=[f"{i}-to-{o}" for i, o in MATRIX])
def test_every_output_container_from_every_input(matrix_input, tmp_path, monkeypatch, name, out):
    src, ext = matrix_input(name), MATRIX_INPUTS[name][0]
    shift = 0.6 if MATRIX.index((name, out)) % 2 == 0 else -0.4
    dst, expected = tmp_path / f"fixed.{out}", matrix_expected(name, out)
    if expected not in ("remux", "reencode-audio"):
        def written(*args, **kwargs):
            raise AssertionError("wrote something before refusing")

        monkeypatch.setattr(fix, "_write_checked", written)
        with pytest.raises(SynchformerError, match=expected) as err:
            shift_audio(src, dst, shift)
        assert str(err.value).startswith(f"{src}: ") and "\n" not in str(err.value)
        assert not dst.exists() and leftovers(tmp_path) == []
        return
    report = shift_audio(src, dst, shift)
    assert report["method"] == expected and abs(report["audio_shift_sec"] - shift) < 1e-6
    # the audio moved by the asked amount against the video (Matroska and FLV count in ms)
    a, b = load_av(src, size=None, crop=None), load_av(dst, size=None, crop=None)
    err = measured_shift(src, dst, (a, b)) - shift
    assert abs(err) <= (2 * MS if {ext, out} & {"mkv", "flv"} else MS), f"off by {err * 1000:+.3f} ms"
    # the video: the same frames; the same packets, all their times moved alike (MPEG-TS starts at 1.4 s, ...)
    assert np.array_equal(a.frames.numpy(), b.frames.numpy()[: len(a.frames)])
    vcodec = MATRIX_INPUTS[name][1]
    filtered = ("h264_mp4toannexb" if vcodec == "libx264" and ext != "ts" and out in ("avi", "ts")
                else "dump_extra" if vcodec == "mpeg4" and ext == "mov" and out == "ts" else None)  # (headers put in)
    assert report["streams"][0]["action"] == (f"copied through {filtered}" if filtered else "copied")
    v_in, v_out = packets(src, "video"), packets(dst, "video")
    assert len(v_in) == len(v_out) == report["video_packets"]
    assert len({round(float(o - i), 6) for (_, i), (_, o) in zip(v_in, v_out)}) == 1
    # bit for bit, but where start codes or headers were put in (AVI, TS) or taken out (MP4, MOV, MKV, FLV from TS)
    if not filtered and not (ext == "ts" and out in ("mp4", "mov", "mkv", "flv")):
        assert [p for p, _ in v_out] == [p for p, _ in v_in]
    assert leftovers(tmp_path) == []
