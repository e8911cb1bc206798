"""One pass, one open (io.reader.MediaReader): read_segments opens a file once, decodes it in order from one demux,
gives what load_av gives, and keeps its sound for the fine pass (SegmentGrid.kept_audio)."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
import torch

import synchformer.io.decode as decode
import synchformer.io.reader as reader_mod
from _shared import MEDIA
from synchformer.errors import SynchformerError
from synchformer.features import segment_audio, segment_video
from synchformer.inference.stream import read_segments
from synchformer.io import load_av
from synchformer.io.reader import MediaReader
from synchformer.training.synth import make_sparse_clip
from timeline_media import decode_mono, joined, remux, ts_part, video_frames

SMALL = {"size": 64, "crop": 64}


def write_long(path, seconds: int = 80) -> None:
    """``seconds`` of 64x48 video (a frame counter in its grey level, a keyframe every 2 s) and 44.1 kHz stereo AAC
    (tones, a click every second, and noise, which AAC codes partly as noise substitution): long enough that a
    sampled read seeks, and a sound that the resampler's phase and the decoder's state can change."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as c:
        vs = c.add_stream("mpeg4", rate=25)
        vs.width, vs.height, vs.pix_fmt, vs.gop_size = 64, 48, "yuv420p", 50
        aus = c.add_stream("aac", rate=44100, layout="stereo")
        for i in range(seconds * 25):
            img = np.full((48, 64, 3), (i * 7) % 200 + 20, np.uint8)
            img[:8, : 1 + i % 64] = 255
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            for p in vs.encode(frame):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        t = np.arange(seconds * 44100) / 44100
        sig = (0.2 * np.sin(2 * np.pi * 330 * t) * np.sin(2 * np.pi * 0.7 * t) + 0.1 * np.sin(2 * np.pi * 1250 * t)
               + rng.standard_normal(len(t)) * 0.03).astype(np.float32)
        sig[::44100] = 0.9
        for s in range(0, len(sig), 1024):
            frame = av.AudioFrame.from_ndarray(np.stack([sig[s:s + 1024]] * 2), format="fltp", layout="stereo")
            frame.sample_rate, frame.pts, frame.time_base = 44100, s, Fraction(1, 44100)
            for p in aus.encode(frame):
                c.mux(p)
        for p in aus.encode():
            c.mux(p)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("reader")
    sync = d / "sync.mp4"
    make_sparse_clip(sync, 11, duration=12.0)
    wave, frames = decode_mono(sync), video_frames(sync)
    write_long(d / "long.mp4")
    return {
        "sync": sync,
        "long": d / "long.mp4",
        "gap": remux(sync, d / "gap.mp4", drop=lambda t: 1.0 <= t < 1.6),
        "frag": remux(sync, d / "frag.mp4", shift={"audio": 0.6}, options={"movflags": "frag_keyframe+empty_moov"}),
        "ts": remux(sync, d / "late_start.ts", shift={"audio": 1.4, "video": 1.4}),
        "formats": joined(d / "formats.ts", ts_part(d / "a.ts", frames[:150], 0, wave[:96000], 16000, "mono"),
                          ts_part(d / "b.ts", frames[150:], 150, wave[96000:192000], 48000, "stereo")),
        "overlap": joined(d / "overlap.ts", ts_part(d / "c.ts", frames[:150], 0, wave[:96000], 16000, "mono"),
                          ts_part(d / "e.ts", frames[150:], 150, wave[88000:192000], 16000, "mono",
                                  audio_start_sec=5.5)),
    }


@pytest.fixture
def opens(monkeypatch):
    """The number of files av.open opened for reading since the test started."""
    count = [0]
    real = av.open

    def counting(*args, **kwargs):
        mode = args[1] if len(args) > 1 else kwargs.get("mode", "r")
        count[0] += mode == "r"
        return real(*args, **kwargs)

    monkeypatch.setattr(decode.av, "open", counting)  # (the av module: io.decode's and io.reader's)
    return count


def segments_of(grid, chunks) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    return {c.first + i: (c.video[i], c.audio[i]) for c in chunks for i in range(len(c))}


# ------------------------------------------------------------------------------------------------ one open


def test_a_pass_opens_the_file_once(media, opens):
    grid, chunks = read_segments(media["sync"], **SMALL)
    assert len(list(chunks)) == 1 and opens[0] == 1  # was 8: probe (2), and load_av's 4, and declared_duration
    opens[0] = 0
    grid, chunks = read_segments(media["long"], max_windows=3, window_segments=4, **SMALL)
    assert len(list(chunks)) == 3 and opens[0] == 1  # windows 39 s apart: each by a seek in the same container
    opens[0] = 0
    grid, chunks = read_segments(media["long"], chunk_segments=16, **SMALL)
    assert sum(len(c) for c in chunks) == (2000 - 16) // 8 + 1 and opens[0] == 1  # in 16 chunks


def test_check_media_and_an_analysis_open_it_twice(media, opens):
    from synchformer.inference.analyze import analyze
    from synchformer.model import ModelConfig, Synchformer

    torch.manual_seed(0)
    model = Synchformer(ModelConfig.tiny(image_size=32)).eval()
    decode.check_media(media["sync"])
    analyze(model, media["sync"], progress=True)  # (the bar asks for the header's duration: what the pass saw)
    assert opens[0] == 2
    short = MEDIA / "talking_head__kphotoalbum_movie.avi"
    if short.is_file():  # too short: said without opening it again for its header
        opens[0] = 0
        with pytest.raises(SynchformerError, match="too short"):
            analyze(model, short)
        assert opens[0] == 1


def test_the_file_is_closed_however_the_chunks_end(media, monkeypatch):
    closed = []
    real = reader_mod.close_media
    monkeypatch.setattr(reader_mod, "close_media", lambda c: (closed.append(c), real(c)))
    grid, chunks = read_segments(media["long"], chunk_segments=16, **SMALL)
    list(chunks)
    assert len(closed) == 1  # read to the end
    grid, chunks = read_segments(media["long"], chunk_segments=16, **SMALL)
    next(chunks)
    next(chunks)  # (a read of the next chunk is under way in the decoding thread)
    chunks.close()
    assert len(closed) == 2  # left early, after the read in flight
    grid, chunks = read_segments(media["long"], chunk_segments=16, **SMALL)
    del chunks  # never started
    assert len(closed) == 3


# ------------------------------------------------------------------------------------------ the same frames and sound


@pytest.mark.parametrize("name", ["sync", "gap", "frag", "ts", "formats", "overlap"])
@pytest.mark.parametrize("timing", ["true", "authors"])
def test_reads_in_order_are_load_avs_bit_for_bit(media, name, timing):
    """Chunks that overlap, read from one demux, are the whole file's load_av: its frames and its samples, bit for
    bit, and its gaps, overlaps and format changes."""
    full = load_av(media[name], timing=timing, **SMALL)
    events, at = [], 0
    with MediaReader(media[name], timing=timing, **SMALL) as r:
        while at < len(full.frames):
            clip = r.read(at, at + 57)
            n = len(clip.frames)
            assert torch.equal(clip.frames, full.frames[at:at + n]), (name, at)
            assert torch.equal(clip.audio, full.audio[at * 640:(at + n) * 640]), (name, at)
            assert clip.audio_lead_sec == full.audio_lead_sec and clip.origin_sec == full.origin_sec
            events += [e for e in clip.audio_events if e not in events]
            at += 50  # 7 frames again: the reader keeps them
    assert sorted(events, key=lambda e: e.at_sec) == full.audio_events


def test_read_segments_is_the_full_decode_past_30_s(media):
    """load_av seeks a piece that starts 30 s in (its sound then starts a new run); decoding on, the reader's
    sound stays the full decode's, to the sample."""
    full = load_av(media["long"], **SMALL)
    n = (len(full.frames) - 16) // 8 + 1
    grid, chunks = read_segments(media["long"], chunk_segments=32, **SMALL)
    got = segments_of(grid, chunks)
    assert sorted(got) == list(range(n))
    video, audio = segment_video(full.frames, 0, n), segment_audio(full.audio, 0, n)
    for k in range(n):
        assert torch.equal(got[k][0], video[k]) and torch.equal(got[k][1], audio[k]), k


def test_a_sound_that_stops_early_ends_its_run_as_load_avs_does(media, tmp_path):
    """The reader stops looking for sound 10 s of picture past where it needs it (a stream that has ended must not
    make it hold the rest of the file); its run then ends there, flushed, as at the end of a file."""
    short = remux(media["long"], tmp_path / "short_sound.mp4", drop=lambda t: t > 10)
    full = load_av(short, **SMALL)
    n = (len(full.frames) - 16) // 8 + 1
    grid, chunks = read_segments(short, chunk_segments=32, **SMALL)
    got = segments_of(grid, chunks)
    video, audio = segment_video(full.frames, 0, n), segment_audio(full.audio, 0, n)
    for k in range(n):
        assert torch.equal(got[k][0], video[k]) and torch.equal(got[k][1], audio[k]), k
    first = load_av(short, end_sec=(16 + 31 * 8 + 1) / 25, **SMALL)  # the first chunk's span
    assert grid.warnings == first.warnings and "audio covers less than the video" in grid.warnings[0]


def test_sampled_windows_seek_and_keep_the_clock(media, monkeypatch):
    """Windows far apart are read by seeking in the same container: the frames are the full decode's, the sound
    lines up with it (it starts a new run there, as load_av's seek does), and the video between is not decoded."""
    decoded = []
    real = MediaReader._decode
    monkeypatch.setattr(MediaReader, "_decode",
                        lambda self, p: (decoded.append(p.stream.type), real(self, p))[1])
    grid, chunks = read_segments(media["long"], max_windows=3, window_segments=4, **SMALL)
    got = list(chunks)
    assert grid.windows == [0, 122, 243] and [c.first for c in got] == grid.windows  # 0, 39 and 78 s
    assert decoded.count("video") < 400  # of 2000 packets: each window from its keyframe
    full = load_av(media["long"], **SMALL)
    n = (len(full.frames) - 16) // 8 + 1
    video, audio = segment_video(full.frames, 0, n), segment_audio(full.audio, 0, n)
    for c in got:
        for i in range(len(c)):
            k = c.first + i
            assert torch.equal(c.video[i], video[k]), k
            a, b = c.audio[i].double().numpy(), audio[k].double().numpy()
            lags = range(-32, 33)
            best = max(lags, key=lambda lag: float(np.dot(a[32 + lag:len(a) - 32 + lag], b[32:len(b) - 32])))
            assert best == 0 and np.corrcoef(a, b)[0, 1] > 0.99, (k, best)


def test_reads_in_any_order(media):
    """Far ahead: a seek; near ahead: decoding on; behind what is kept: from the start again. Each read is the
    frames load_av gives for its span."""
    full = load_av(media["long"], with_audio=False, **SMALL)
    with MediaReader(media["long"], with_audio=False, **SMALL) as r:
        for k in (1500, 1510, 1560, 40, 1000, 0, 1990):
            clip = r.read(k, k + 30)
            assert torch.equal(clip.frames, full.frames[k:k + 30]), k
        with pytest.raises(SynchformerError, match=r"no 25 fps frame at or after 80.2 s from the first frame "
                                                   r"\(the video ends at 80.000 s\)"):
            r.read(2005, 2010)


@pytest.mark.parametrize("how", ["fails", "lands late"])
def test_a_seek_that_fails_or_misses_reads_from_the_start(media, monkeypatch, opens, how):
    """As load_av: where a seek fails, or lands after its target (an inexact index), decode from the start; the
    reader opens the file again for that (its own seeks cannot be trusted), then decodes on for the rest."""
    real = MediaReader._seek

    def bad_seek(self, k):
        if how == "fails":
            raise av.error.FFmpegError(1, "Operation not permitted")
        real(self, k)
        self._check_video = self.t0 - 1  # as if its first packet came after the target

    monkeypatch.setattr(MediaReader, "_seek", bad_seek)
    full = load_av(media["long"], **SMALL)
    opens[0] = 0
    with MediaReader(media["long"], **SMALL) as r:
        for k in (1500, 1900):  # (38 s ahead, then 16 s: decoding on)
            clip = r.read(k, k + 40)
            assert torch.equal(clip.frames, full.frames[k:k + 40])
            assert torch.equal(clip.audio, full.audio[k * 640:(k + 40) * 640])  # the full decode's: from the start
    assert opens[0] == 2


# ------------------------------------------------------------------------------------------------ the sound kept


def _kept_and_delayed(path, delay, **kw):
    grid, chunks = read_segments(path, keep_audio=True, **SMALL, **kw)
    ks = sorted(segments_of(grid, chunks))
    _, delayed = read_segments(path, audio_delay_sec=delay, **SMALL, **kw)
    want = segments_of(None, delayed)
    return grid.kept_audio, ks, want


@pytest.mark.parametrize("delay", [0.3, -0.45, 2.0, -2.0])
@pytest.mark.parametrize("timing", ["true", "authors"])
@pytest.mark.parametrize("kind", ["short", "sampled"])
def test_kept_audio_is_the_delayed_reads_sound(media, kind, timing, delay):
    """What the fine pass takes from the first pass's memory is what reading the file again with the sound
    delayed gives: for a clip read whole, and for a film sampled in windows read by seeking."""
    path, kw = (media["sync"], {}) if kind == "short" else (media["long"], {"max_windows": 3, "window_segments": 4})
    kept, ks, want = _kept_and_delayed(path, delay, timing=timing, **kw)
    assert sorted(want) == ks
    got = kept.segments(ks, delay)
    assert got.shape == (len(ks), 10240) and got.dtype == torch.float32
    assert max(float((got[i] - want[k][1]).abs().max()) for i, k in enumerate(ks)) <= 1e-5
    assert float(got.abs().max()) > 0.01  # (not silence)


def test_kept_audio_says_what_it_does_not_hold(media):
    grid, chunks = read_segments(media["sync"], keep_audio=True, **SMALL)
    list(chunks)
    kept = grid.kept_audio
    assert kept.segments([0], 2.5) is not None and kept.segments([0], 2.6) is None  # before its 2.5 s margin
    assert kept.segments([35], -2.5) is not None and kept.segments([35], -2.7) is None  # past the end's
    assert kept.segments([10], 4.0) is not None  # inside what was read
    grid, chunks = read_segments(media["long"], keep_audio=True, max_windows=3, window_segments=4, **SMALL)
    list(chunks)
    kept = grid.kept_audio
    assert grid.windows == [0, 122, 243]
    assert kept.segments([0, 1, 2, 3, 122, 243, 246], 2.5) is not None
    assert kept.segments([122], 2.6) is None  # a delayed read would seek elsewhere
    assert kept.segments([142], 0.0) is None  # between windows: never decoded
    grid, chunks = read_segments(media["sync"], **SMALL)
    assert grid.kept_audio is None  # not asked for


def test_kept_audio_of_an_external_track(media):
    wave = decode_mono(media["sync"])
    grid, chunks = read_segments(media["sync"], audio=wave, keep_audio=True, **SMALL)
    ks = sorted(segments_of(grid, chunks))
    for delay in (0.7, -0.3):
        _, delayed = read_segments(media["sync"], audio=wave, audio_delay_sec=delay, **SMALL)
        want = segments_of(None, delayed)
        got = grid.kept_audio.segments([k for k in ks if k in want], delay)
        assert torch.equal(got, torch.stack([want[k][1] for k in ks if k in want]))


# ------------------------------------------------------------------------------------------------ errors


def test_unreadable_files_are_one_line(media, tmp_path):
    (tmp_path / "text.mp4").write_text("not a video\n" * 100)
    data = media["sync"].read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    for path, problem in [(tmp_path / "text.mp4", "not a readable media file"),
                          (tmp_path / "cut.mp4", "not a readable media file"),
                          (tmp_path / "none.mp4", "file not found")]:
        with pytest.raises(SynchformerError) as info:
            read_segments(path)
        assert problem in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)
