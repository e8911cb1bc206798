"""Offsets beyond +-2 s (inference.search): the windows read again with their sound at coarse shifts, and a
separately recorded sound found on its video's timeline."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
from scipy.io import wavfile

import synchformer
from synchformer.cli import main
from synchformer.inference import search as wide
from synchformer.io.decode import load_audio
from synchformer.io.reader import KeptAudio
from synchformer.training.synth import make_sparse_clip


@pytest.fixture(scope="module")
def models():
    return synchformer.load_models("bundled")


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("far")
    out = {}
    for seed, offset in ((777, 5.0), (778, -4.3)):
        path = d / f"far{seed}.mp4"
        make_sparse_clip(path, seed, duration=30.0, offset_sec=offset)
        out[offset] = path
    return out


def test_the_shifts_cover_the_range_asked_for():
    assert wide.shift_segments(2.0, 2.0) == [0]
    assert wide.shift_segments(1.0, 2.0) == [0]
    shifts = wide.shift_segments(8.0, 2.0)
    assert shifts == [-24, -18, -12, -6, 0, 6, 12, 18, 24]  # 1.92 s apart: neighbours overlap by half
    assert max(shifts) * 0.32 + 2.0 >= 8.0
    with pytest.raises(ValueError):
        wide.shift_segments(0.0, 2.0)


def test_kept_audio_knows_where_the_sound_is():
    kept = KeptAudio.of_track(np.ones(16000 * 10, np.float32), margin_sec=6.0)
    assert kept.sound_fraction(range(0, 14), 0.0) == 1.0
    assert kept.sound_fraction(range(0, 14), 5.0) == pytest.approx(0.0, abs=0.05)  # the sound taken from before it
    assert 0.0 < kept.sound_fraction(range(0, 14), 1.0) < 1.0
    assert kept.segments([0], 5.0) is not None  # the margin holds silence, kept


@pytest.mark.parametrize("truth", [5.0, -4.3])
def test_an_offset_beyond_the_grid_is_found(truth, clips, models):
    narrow = synchformer.predict(clips[truth], models=models, max_offset_sec=2.0)
    assert narrow.search is None and abs(narrow.refined_offset_sec - truth) > 2.0  # out of the model's reach
    p = synchformer.predict(clips[truth], models=models, max_offset_sec=8.0)
    assert p.refined_offset_sec == pytest.approx(truth, abs=0.2)
    assert p.reliable, p.reasons
    d = p.to_dict()
    assert d["search"]["max_offset_sec"] == 8.0 and abs(d["search"]["chosen_shift_sec"]) >= 1.92
    assert d["search"]["ran"] and d["search"]["reach_sec"] == [-9.68, 9.68]
    assert d["offset_sec"] == pytest.approx(truth, abs=0.2) and d["windows"][0]["offset_sec"] is not None


def test_the_command_prints_what_the_library_finds(clips, models, capsys):
    main(["predict", str(clips[5.0]), "-w", "bundled", "--json", "--max-offset", "8"])
    cli = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert cli == synchformer.predict(clips[5.0], models=models, max_offset_sec=8.0).to_dict()
    assert main(["predict", str(clips[5.0]), "-w", "bundled", "--max-offset", "8"]) == 0
    out = capsys.readouterr().out
    assert "found with the sound shifted by" in out and "reliable" in out


def test_a_reading_inside_the_grid_settles_it_at_no_cost(models, tmp_path):
    clip = tmp_path / "near.mp4"
    make_sparse_clip(clip, 21, duration=12.0, offset_sec=-0.4)
    p = synchformer.predict(clip, models=models)  # the default search
    q = synchformer.predict(clip, models=models, max_offset_sec=2.0)
    assert p.search.settled and not p.to_dict()["search"]["ran"] and len(p.search.shifts) == 1
    assert {k: v for k, v in p.to_dict().items() if k not in ("search", "max_offset_sec")} == \
        {k: v for k, v in q.to_dict().items() if k not in ("search", "max_offset_sec")}


def _shift(sec, offset, evidence, n=10):
    return wide.Shift(sec, np.arange(n), np.zeros((n, 21), np.float32), np.full(n, evidence), offset, evidence,
                      evidence, llr=10 * evidence)


def test_two_shifts_that_explain_the_evidence_alike_are_ambiguous():
    shifts = (_shift(-1.92, -1.6, 0.70), _shift(0.0, 0.1, 0.2), _shift(3.84, 3.2, 0.72))
    for kind in ("llr", "sync"):  # 7.0 and 7.2 nats; 0.70 and 0.72
        s = wide.choose(shifts, 8.0, kind)
        assert s.chosen.offset_sec == 3.2 and s.ambiguous
        assert s.reasons()[0].startswith("ambiguous: +3.20 s and -1.60 s fit")
        clear = wide.choose((_shift(-1.92, -1.6, 0.3), _shift(0.0, 0.1, 0.2), _shift(3.84, 3.2, 0.72)), 8.0, kind)
        assert not clear.ambiguous and clear.reasons() == []
        # neighbouring shifts that read the same offset are one answer, not two
        same = wide.choose((_shift(0.0, 0.1, 0.1), _shift(1.92, 3.1, 0.70), _shift(3.84, 3.2, 0.72)), 8.0, kind)
        assert not same.ambiguous and same.chosen.offset_sec == 3.2
    # the model's own range has a head start; a shift with too few windows is no candidate
    near = wide.choose((_shift(0.0, 0.4, 0.65), _shift(3.84, 5.0, 0.7)), 8.0, "llr")
    assert near.chosen.offset_sec == 0.4
    few = wide.choose((_shift(0.0, 0.4, 0.2), _shift(5.76, 6.5, 0.9, n=wide.MIN_WINDOWS - 1)), 8.0, "llr")
    assert few.chosen.offset_sec == 0.4
    assert few.reach_sec == (-2.0, 2.0) and not few.reached_all
    # a shift beyond the grid with little evidence is no candidate: the model's own reading stands
    weak = wide.choose((_shift(0.0, 0.1, -0.15), _shift(3.84, 3.2, 0.35)), 8.0, "llr")
    assert weak.chosen.offset_sec == 0.1 and not weak.ambiguous


@pytest.fixture(scope="module")
def separate(tmp_path_factory):
    d = tmp_path_factory.mktemp("separate")
    video = d / "camera.mp4"
    make_sparse_clip(video, 4242, duration=40.0)
    start = 12.4  # the recorder's sound is the video's sound from 12.4 s on, for 20 s
    sound = load_audio(video)[int(start * 16000):int((start + 20.0) * 16000)]
    wav = d / "recorder.wav"
    wavfile.write(wav, 16000, (np.clip(sound, -1, 1) * 32767).astype(np.int16))
    return video, wav, start


def test_a_separate_sound_is_found_on_the_video_timeline(separate, models):
    video, wav, start = separate
    p = synchformer.predict(video, models=models, audio=wav, max_offset_sec=20.0)
    assert p.refined_offset_sec == pytest.approx(start, abs=0.2) and p.reliable, p.reasons
    d = p.to_dict()
    assert d["audio_file"]["path"] == str(wav) and d["audio_file"]["duration_sec"] == pytest.approx(20.0, abs=0.01)
    assert d["audio_file"]["starts_at_sec"] == pytest.approx(start, abs=0.2)
    assert d["audio_track"] is None  # not the video's own track


def test_fix_puts_the_separate_sound_in_place(separate, tmp_path, models, capsys):
    video, wav, start = separate
    out = tmp_path / "joined.mp4"
    assert main(["fix", str(video), "--audio", str(wav), "-o", str(out), "-w", "bundled", "--max-offset", "20",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["measured"]["offset_sec"] == pytest.approx(start, abs=0.2)
    with av.open(str(out)) as c:
        assert len(c.streams.video) == 1 and len(c.streams.audio) == 1
    again = synchformer.predict(out, models=models, max_offset_sec=2.0)  # now the file's own sound, in sync
    assert abs(again.refined_offset_sec) < 0.1, again.refined_offset_sec


def test_separate_sound_mistakes_are_one_line(separate, tmp_path, capsys):
    video, wav, _ = separate
    assert main(["predict", str(video), str(video), "--audio", str(wav), "-w", "bundled"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--audio measures one sound file against one VIDEO" in err[0]
    silent = tmp_path / "picture_only.mp4"
    with av.open(str(silent), "w") as c:  # a file without sound
        s = c.add_stream("mpeg4", rate=25)
        s.width = s.height = 64
        for i in range(10):
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            for pkt in s.encode(frame):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    assert main(["predict", str(video), "--audio", str(silent), "-w", "bundled"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "picture_only.mp4" in err[0] and "audio" in err[0]


def test_score_searches_as_predict_does(clips, models):
    from synchformer.inference.score import score_files

    rows = list(score_files(models.offset, [str(clips[5.0])], metric="offset", hop_sec=0.64, max_offset_sec=8.0,
                            fine_model=models.fine))
    assert rows[0]["status"] == "ok" and rows[0]["max_offset_sec"] == 8.0
    assert rows[0]["refined_offset_sec"] == pytest.approx(5.0, abs=0.2)
    narrow = list(score_files(models.offset, [str(clips[5.0])], metric="offset", hop_sec=0.64, max_offset_sec=2.0))
    assert abs(narrow[0]["offset_sec"] - 5.0) > 2.0


def test_a_recorder_started_before_the_camera_is_placed_before_it(tmp_path, models):
    video = tmp_path / "camera.mp4"
    make_sparse_clip(video, 77, duration=30.0)
    sound = load_audio(video)
    lead = np.random.default_rng(0).normal(0, 0.01, 6 * 16000).astype(np.float32)  # 6 s of room tone first
    wav = tmp_path / "recorder.wav"
    wavfile.write(wav, 16000, (np.clip(np.concatenate([lead, sound]), -1, 1) * 32767).astype(np.int16))
    p = synchformer.predict(video, models=models, audio=wav, max_offset_sec=10.0)
    assert p.to_dict()["audio_file"]["starts_at_sec"] == pytest.approx(-6.0, abs=0.2) and p.reliable, p.reasons
    out = tmp_path / "joined.mkv"
    assert main(["fix", str(video), "--audio", str(wav), "-o", str(out), "-w", "bundled", "--max-offset", "10"]) == 0
    assert abs(synchformer.predict(out, models=models, max_offset_sec=2.0).refined_offset_sec) < 0.1
