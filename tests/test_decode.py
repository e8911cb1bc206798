"""Tests of synchformer.io.decode: timestamps honoured, every shared clip decodes, parity with the reference."""

from __future__ import annotations

import csv
import os
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

import synchformer.io.decode as decode_mod
from _shared import MEDIA
from _shared import PARITY as PARITY_DIR
from synchformer.errors import SynchformerError
from synchformer.io import AVClip, load_av, probe

PARITY = PARITY_DIR / "clip_pen_hits_coin.npz"
PEN = MEDIA / "pen_hits_coin__node-opencv_motion.mov"
needs_media = pytest.mark.skipif(
    not MEDIA.is_dir(), reason=f"shared test media not found ({MEDIA}; set SYNCHFORMER_SHARED)")


def write_media(path, *, frame_times=(), flash_times=(), size=(320, 240), gop=12, video=True, rotation=0,
                audio=True, audio_rate=48000, audio_sec=None, audio_start=0.0, click_times=(), acodec="aac",
                layout="mono"):
    """Write a test file: dark frames at `frame_times` (s), white at `flash_times`, a red marker top-left;
    faint noise audio from `audio_start` with one loud sample at each of `click_times` (file time, s)."""
    frame_times = list(frame_times)
    with av.open(str(path), "w") as container:
        if video:
            vs = container.add_stream("mpeg4", rate=1000)
            vs.width, vs.height, vs.pix_fmt, vs.gop_size = size[0], size[1], "yuv420p", gop
            vs.codec_context.time_base = Fraction(1, 1000)
            vs.options = {"qscale": "2"}
            if rotation:
                vs.set_display_rotation(rotation)
        if audio:
            aus = container.add_stream(acodec, rate=audio_rate, layout=layout)
        if video:
            durations = {}

            def mux_video(packet):  # give packets durations, else the mp4 muxer makes the last frame 1 ms long
                packet.duration = durations[packet.pts]
                container.mux(packet)

            ends = frame_times[1:] + [2 * frame_times[-1] - frame_times[-2]] if len(frame_times) > 1 else []
            for t, end in zip(frame_times, ends):
                flash = any(abs(t - f) < 1e-9 for f in flash_times)
                img = np.full((size[1], size[0], 3), 255 if flash else 40, np.uint8)
                img[: size[1] // 8, : size[0] // 8] = (255, 0, 0)
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                frame.pts, frame.time_base = round(t * 1000), Fraction(1, 1000)
                durations[frame.pts] = round(end * 1000) - frame.pts
                for packet in vs.encode(frame):
                    mux_video(packet)
            for packet in vs.encode(None):
                mux_video(packet)
        if audio:
            n = round((audio_sec if audio_sec is not None else frame_times[-1] + 0.04) * audio_rate)
            sig = (np.random.default_rng(0).standard_normal(n) * 1e-3).astype(np.float32)
            for t in click_times:
                sig[round((t - audio_start) * audio_rate)] = 0.9
            n_channels = len(av.AudioLayout(layout).channels)
            for i in range(0, n, 1024):
                frame = av.AudioFrame.from_ndarray(np.tile(sig[None, i : i + 1024], (n_channels, 1)), format="fltp",
                                                   layout=layout)
                frame.sample_rate, frame.time_base = audio_rate, Fraction(1, audio_rate)
                frame.pts = round(audio_start * audio_rate) + i
                for packet in aus.encode(frame):
                    container.mux(packet)
            for packet in aus.encode(None):
                container.mux(packet)
    return path


def flash_frames(clip: AVClip) -> list[int]:
    return np.nonzero(clip.frames.float().mean(dim=(1, 2, 3)).numpy() > 200)[0].tolist()


def click_sample(clip: AVClip) -> int:
    return int(clip.audio.abs().argmax())


def check_clip(clip: AVClip) -> None:
    t = clip.frames.shape[0]
    assert clip.frames.dtype == torch.uint8 and clip.frames.shape[1] == 3
    assert clip.audio.dtype == torch.float32
    assert clip.audio.shape == (t * 640,)
    assert bool(clip.audio.isfinite().all()) and float(clip.audio.abs().max()) <= 1.0
    assert clip.duration_sec == pytest.approx(t / 25)


# ---------------------------------------------------------------- synthetic files: timestamps honoured


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    rng = np.random.default_rng(1)
    vfr = np.round(np.cumsum(rng.uniform(0.01, 0.08, 60)), 3).tolist()
    vfr = sorted({0.0, 1.0, 1.05} | {t for t in vfr if not 1.0 < t < 1.05})  # the flash at 1.0 lasts 50 ms
    return {
        # flash at frame 10 (0.4 s) and a click at 0.5 s
        "mp4": write_media(d / "flash.mp4", frame_times=[i / 25 for i in range(50)], flash_times=[0.4],
                           click_times=[0.5]),
        # 30 fps: source frame 12 (0.4 s) has rounded pts 10 and frame 13 rounds to 11, so it shows at tick 10
        "30fps": write_media(d / "f30.mp4", frame_times=[i / 30 for i in range(60)], flash_times=[12 / 30],
                             click_times=[0.4]),
        "vfr": write_media(d / "vfr.mp4", frame_times=vfr, flash_times=[1.0], click_times=[1.0]),
        "late_aac": write_media(d / "late.mp4", frame_times=[i / 25 for i in range(50)], flash_times=[1.0],
                                click_times=[1.0], audio_start=0.5, audio_sec=1.5),
        "late_pcm": write_media(d / "late.mkv", frame_times=[i / 25 for i in range(50)], flash_times=[1.0],
                                click_times=[1.0], audio_start=0.5, audio_sec=1.5, acodec="pcm_s16le"),
        # 40 s at 10 fps, keyframe every 2 s: long enough that decoding a late span seeks in both streams
        "long": write_media(d / "long.mp4", frame_times=[i / 10 for i in range(400)], flash_times=[35.0],
                            click_times=[35.0], size=(64, 48), gop=20, audio_rate=16000),
        "rotated": write_media(d / "rot.mp4", frame_times=[i / 25 for i in range(5)], size=(64, 32), rotation=90),
        "stereo44k": write_media(d / "st.mkv", frame_times=[i / 25 for i in range(25)], click_times=[0.3],
                                 audio_rate=44100, layout="stereo", acodec="pcm_s16le"),
        "no_audio": write_media(d / "noaudio.mp4", frame_times=[i / 25 for i in range(10)], audio=False),
        "no_video": write_media(d / "novideo.m4a", video=False, audio_sec=1.0),
        "no_frames": write_media(d / "noframes.mkv", frame_times=[], audio_sec=1.0),
    }


def test_flash_and_click_land_where_expected_mp4_aac(media):
    clip = load_av(media["mp4"])
    check_clip(clip)
    assert clip.frames.shape == (50, 3, 224, 224)
    assert clip.start_sec == 0.0
    assert flash_frames(clip) == [10]
    assert abs(click_sample(clip) - 8000) <= 32  # 2 ms: AAC priming is removed, not left as a delay
    assert clip.audio_pad_start_sec == 0.0 and not clip.warnings


def test_30fps_resampled_like_ffmpeg_fps_filter(media):
    clip = load_av(media["30fps"])
    check_clip(clip)
    assert clip.frames.shape[0] == 50  # 2 s
    assert flash_frames(clip) == [10]
    assert abs(click_sample(clip) - 6400) <= 32
    assert clip.source_fps == pytest.approx(30)


def test_variable_frame_rate(media):
    clip = load_av(media["vfr"])
    check_clip(clip)
    assert flash_frames(clip) == [25]  # shown from 1.00 s to 1.05 s: only the 1.00 s tick
    assert abs(click_sample(clip) - 16000) <= 32


@pytest.mark.parametrize("kind", ["late_pcm", "late_aac"])
def test_audio_starting_after_video_is_preceded_by_zeros(media, kind):
    clip = load_av(media[kind])
    check_clip(clip)
    assert flash_frames(clip) == [25]
    assert abs(click_sample(clip) - 16000) <= 32
    assert clip.audio_pad_start_sec == pytest.approx(0.5, abs=0.03)  # AAC's priming frame is timed before 0.5 s
    assert float(clip.audio[: int(clip.audio_pad_start_sec * 16000)].abs().max()) == 0.0
    assert clip.audio_shorter_than_video and clip.warnings


def test_span_seeks_and_matches_the_full_decode(media, monkeypatch):
    full = load_av(media["long"], size=None, crop=None)
    assert full.frames.shape == (1000, 3, 48, 64)
    assert flash_frames(full) == [875, 876, 877]  # 10 fps frame at 35.0 s (ticks 875..877.5)

    decoded = []
    timed = decode_mod._timed

    def counting(frames, stream):
        for item in timed(frames, stream):
            decoded.append(stream.type)
            yield item

    monkeypatch.setattr(decode_mod, "_timed", counting)
    part = load_av(media["long"], start_sec=34.0, end_sec=36.0, size=None, crop=None)
    assert decoded.count("video") < 60  # seeked: not the 340 frames before 34 s
    assert decoded.count("audio") < 100  # nor the 530 AAC frames
    assert part.start_sec == pytest.approx(34.0)
    assert part.frames.shape[0] == 50
    assert flash_frames(part) == [25, 26, 27]
    assert np.array_equal(part.frames.numpy(), full.frames[850:900].numpy())
    assert click_sample(part) == click_sample(full) - 850 * 640 == 16000
    ref = full.audio[850 * 640 : 900 * 640].numpy()
    assert np.corrcoef(part.audio.numpy(), ref)[0, 1] > 0.99


@pytest.mark.parametrize("delay", [0.0123, -0.25, 0.6])
def test_audio_delay_takes_the_sound_later_to_the_sample(media, delay):
    """audio_delay_sec (the fine pass of inference.refine): the frames are untouched, and the sound at frame time
    t is the file's at t - delay, to the sample: silence before the stream where the delay reaches past it."""
    full = load_av(media["mp4"], size=None, crop=None)
    moved = load_av(media["mp4"], size=None, crop=None, audio_delay_sec=delay)
    assert torch.equal(moved.frames, full.frames)
    d = round(delay * 16000)
    a, b = full.audio.numpy(), moved.audio.numpy()
    if d > 0:
        assert not b[:d].any()
        np.testing.assert_allclose(b[d:], a[:len(a) - d], atol=1e-6)
    else:
        np.testing.assert_allclose(b[:len(b) + d], a[-d:], atol=1e-6)
    assert abs(click_sample(moved) - (8000 + d)) <= 32


def test_start_between_grid_ticks_rounds_up(media):
    clip = load_av(media["mp4"], start_sec=0.41, end_sec=1.0)
    assert clip.start_sec == pytest.approx(0.44)
    assert clip.frames.shape[0] == 14  # ticks 11 .. 24
    assert abs(click_sample(clip) - round((0.5 - 0.44) * 16000)) <= 32


def test_rotation_is_applied(media):
    clip = load_av(media["rotated"], size=None, crop=None)
    assert clip.rotation == 90
    assert clip.frames.shape == (5, 3, 64, 32) and clip.source_size == (32, 64)
    red = clip.frames[0, 0].float() - clip.frames[0, 1].float()
    assert red[-2, 1] > 150 and red[1, 1] < 50  # the top-left marker is bottom-left after a 90° turn to the left
    assert probe(media["rotated"])["video"]["rotation"] == 90


def test_sizes(media):
    assert load_av(media["mp4"], crop=None).frames.shape[2:] == (256, 340)  # 341.33 -> 341 -> even 340
    assert load_av(media["mp4"], size=None, crop=None).frames.shape[2:] == (240, 320)
    assert load_av(media["mp4"], size=300, crop=None).frames.shape[2:] == (300, 400)


def test_stereo_pcm_is_averaged_and_resampled(media):
    clip = load_av(media["stereo44k"])
    check_clip(clip)
    assert clip.source_sample_rate == 44100 and clip.source_channels == 2
    assert abs(click_sample(clip) - 4800) <= 2


def test_damaged_packet_is_skipped(tmp_path):
    path = tmp_path / "damaged.mkv"
    with av.open(str(path), "w") as container:
        vs = container.add_stream("mjpeg", rate=25)
        vs.width, vs.height, vs.pix_fmt = 320, 240, "yuvj420p"
        aus = container.add_stream("pcm_s16le", rate=16000, layout="mono")
        for i in range(25):
            frame = av.VideoFrame.from_ndarray(np.full((240, 320, 3), 10 * i, np.uint8), format="rgb24")
            frame.pts = i
            for packet in vs.encode(frame):
                if i == 10:  # replace this frame's JPEG by junk
                    packet = av.Packet(b"\xff\xd8" + b"junk" * 200)
                    packet.stream, packet.pts, packet.dts, packet.time_base = vs, 10, 10, Fraction(1, 25)
                container.mux(packet)
        samples = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.int16), format="s16", layout="mono")
        samples.sample_rate, samples.pts = 16000, 0
        for packet in [*aus.encode(samples), *aus.encode(None)]:
            container.mux(packet)
    clip = load_av(path, size=None, crop=None)
    assert clip.frames.shape[0] == 25 and "damaged" in clip.warnings[0]
    levels = clip.frames.float().mean(dim=(1, 2, 3)).round().tolist()
    assert levels[9] == levels[10] != levels[11]  # the frame before the damaged one is shown in its place


def test_probe(media):
    info = probe(media["mp4"])
    assert info["has_video"] and info["has_audio"]
    assert info["video"]["width"] == 320 and info["video"]["height"] == 240
    assert info["audio"]["sample_rate"] == 48000 and info["audio"]["codec"] == "aac"
    assert info["duration_sec"] == pytest.approx(2.0, abs=0.05)
    info = probe(media["no_video"])
    assert not info["has_video"] and info["video"] is None and info["has_audio"]


# ---------------------------------------------------------------- errors: one line, naming the file


def bad_file(tmp_path, media, name):
    """A path that load_av must refuse."""
    if name == "missing":
        return tmp_path / "missing.mp4"
    if name == "directory":
        return tmp_path
    path = tmp_path / f"{name}.mp4"
    if name == "empty":
        path.write_bytes(b"")
    elif name == "text":
        path.write_text("not a video\n" * 100)
    elif name == "truncated":
        data = media["mp4"].read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif name == "fifo":
        path = tmp_path / "pipe.mp4"
        os.mkfifo(path)  # no writer: opening it for reading would block forever
    else:
        return media[name]
    return path


@pytest.mark.parametrize(
    "name, kwargs, problem",
    [
        ("missing", {}, "file not found"),
        ("directory", {}, "is a directory"),
        ("empty", {}, "empty (0 bytes)"),
        ("text", {}, "not a readable media file"),
        ("fifo", {}, "is a named pipe (FIFO), not a regular media file"),
        ("truncated", {}, "not a readable media file"),
        ("no_audio", {}, "has no audio stream"),
        ("no_video", {}, "has no video stream"),
        ("no_frames", {}, "no video frames"),
        ("mp4", {"start_sec": 2.5}, "the video ends at 2.000 s"),
        ("mp4", {"start_sec": 1.0, "end_sec": 0.5}, "end_sec"),
        ("mp4", {"start_sec": -1.0}, "start_sec must be >= 0"),
        ("mp4", {"size": 200}, "smaller than the 224 px crop"),
    ],
)
def test_errors(tmp_path, media, name, kwargs, problem):
    path = bad_file(tmp_path, media, name)
    with pytest.raises(SynchformerError) as info:
        load_av(path, **kwargs)
    message = str(info.value)
    assert problem in message and str(path) in message and "\n" not in message


def test_probe_error_is_synchformer_error(tmp_path):
    (tmp_path / "x.mp4").write_text("hello")
    with pytest.raises(SynchformerError, match="not a readable media file"):
        probe(tmp_path / "x.mp4")


# ---------------------------------------------------------------- shared media


def manifest_rows():
    if not MEDIA.is_dir():
        return []
    with open(MEDIA / "manifest.tsv") as f:
        return list(csv.DictReader(f, delimiter="\t"))


@needs_media
@pytest.mark.parametrize("row", manifest_rows(), ids=lambda r: r["file"].split("__")[0])
def test_every_shared_clip_decodes(row):
    clip = load_av(MEDIA / row["file"])
    check_clip(clip)
    assert clip.frames.shape[1:] == (3, 224, 224)
    assert abs(clip.frames.shape[0] - float(row["duration_s"]) * 25) <= 2
    assert clip.source_sample_rate == int(row["audio_rate_hz"]) or row["audio"] == "pcm_u8"  # avi says 11024
    assert clip.source_channels == int(row["audio_channels"])
    rms = float(clip.audio.pow(2).mean().sqrt())
    if "SILENT_AUDIO" in row["file"]:
        assert rms == 0.0
    else:
        assert rms > 1e-3


@needs_media
@pytest.mark.skipif(not PARITY.is_file(), reason="parity fixture clip_pen_hits_coin.npz not present")
def test_parity_with_reference_decode():
    ref = np.load(PARITY)
    clip = load_av(PEN, end_sec=8.0)
    video, ref_video = clip.frames.numpy().astype(np.float32), ref["video"].astype(np.float32)
    audio, ref_audio = clip.audio.numpy(), ref["audio"]
    assert video.shape == ref_video.shape == (200, 3, 224, 224)
    assert audio.shape == ref_audio.shape == (128000,)

    assert np.abs(video - ref_video).mean() < 1.0  # measured 0.07 (scaler/colour rounding)
    # each frame is closest to the stored frame with the same index: 25 fps resampling picks the same frames
    for i in range(len(video)):
        near = range(max(0, i - 3), min(len(video), i + 4))
        assert min(near, key=lambda j: np.abs(video[i] - ref_video[j]).mean()) == i

    assert np.corrcoef(audio, ref_audio)[0, 1] > 0.999
    assert np.abs(audio - ref_audio).max() < 0.05
    lags = np.arange(-1000, 1001)
    xcorr = [np.dot(audio[max(lag, 0) : len(audio) + min(lag, 0)], ref_audio[max(-lag, 0) : len(audio) - max(lag, 0)])
             for lag in lags]
    assert lags[int(np.argmax(xcorr))] == 0  # no AAC priming delay left in


_DEADLOCK_SCRIPT = """
import sys, threading
import av
av.logging.set_level(av.logging.ERROR)  # installs PyAV's Python log callback, as importing torchvision.io does
import synchformer
path = sys.argv[1]
for _ in range(4):  # repeated calls: whole-from-start decodes and seeks, each stopping mid-stream
    synchformer.load_av(path, end_sec=1.0, with_audio=False)
    synchformer.load_av(path, start_sec=2.5, end_sec=3.0, with_audio=False)
errors = []
def work():
    try:
        for _ in range(3):
            synchformer.load_av(path, end_sec=1.0, with_audio=False)
    except Exception as e:
        errors.append(repr(e))
threads = [threading.Thread(target=work) for _ in range(2)]
[t.start() for t in threads]
[t.join() for t in threads]
print("done", errors)
"""


def test_no_deadlock_with_pyav_log_callback_installed(tmp_path):
    """Freeing a frame-threaded H.264 decoder used to hang once av.logging's callback was installed."""
    import subprocess
    import sys

    try:
        av.codec.Codec("libx264", "w")
    except Exception:
        pytest.skip("this FFmpeg has no libx264 encoder")
    path = tmp_path / "h264.mp4"
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = 320, 240, "yuv420p"
        rng = np.random.default_rng(0)
        for _ in range(100):
            img = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
            c.mux(vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(vs.encode())
    try:
        run = subprocess.run([sys.executable, "-c", _DEADLOCK_SCRIPT, str(path)], capture_output=True, text=True,
                             timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("load_av deadlocked with PyAV's log callback installed")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "done []" in run.stdout


def test_truncated_file_is_called_truncated_not_short(tmp_path, capsys):
    """A file whose header promises more than can be decoded is damaged, not short (the error said '0.00 s')."""
    from synchformer.cli import main

    src = tmp_path / "long.mkv"
    write_media(src, frame_times=[k / 25 for k in range(250)], audio_sec=10.0)  # mkv: duration in the header
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 10])
    assert decode_mod.declared_duration(cut) > 9.5
    assert main(["predict", str(cut)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert str(cut) in err and "truncated or damaged: its header says" in err and "too short" not in err
    assert main(["predict", str(tmp_path / "long.mkv"), "--json"]) == 0  # the whole file is fine


@pytest.mark.parametrize("layout", ["7.1", "5.1", "stereo"])
def test_many_channel_aac_is_averaged_not_crashed(tmp_path, layout):
    """7.1 AAC died with SIGSEGV in PyAV's planar to_ndarray (it reads at most 8 planes)."""
    from synchformer.inference.score import load_audio

    path = tmp_path / f"{layout}.mp4"
    n = len(av.AudioLayout(layout).channels)
    with av.open(str(path), "w") as c:
        vs = c.add_stream("mpeg4", rate=25)
        vs.width, vs.height, vs.pix_fmt = 320, 240, "yuv420p"
        aus = c.add_stream("aac", rate=48000, layout=layout)
        for i in range(75):
            c.mux(vs.encode(av.VideoFrame.from_ndarray(np.full((240, 320, 3), 3 * i, np.uint8), format="rgb24")))
        to_fltp = av.AudioResampler(format="fltp", layout=layout, rate=48000)
        t = np.arange(3 * 48000) / 48000
        tone = 0.5 * np.sin(2 * np.pi * 440 * t)  # the same tone on channel 0 only: the mean is tone / n
        packed = np.zeros((len(t), n), np.float32)
        packed[:, 0] = tone
        for s in range(0, len(t), 1024):
            frame = av.AudioFrame.from_ndarray(packed[s:s + 1024].reshape(1, -1), format="flt", layout=layout)
            frame.sample_rate, frame.pts = 48000, s
            for f in to_fltp.resample(frame):
                c.mux(aus.encode(f))
        c.mux(aus.encode())
        c.mux(vs.encode())
    clip = load_av(path)
    assert clip.source_channels == n and clip.audio.shape == (75 * 640,)
    rms = float(clip.audio[8000:40000].pow(2).mean().sqrt())
    assert rms == pytest.approx(0.5 / np.sqrt(2) / n, rel=0.1)
    assert load_audio(path).shape[0] > 2.9 * 16000
