"""Frame-accurate offsets: the fine pass (inference.fine) reads what the coarse offset leaves, on the file read
again with its sound delayed, reusing the coarse pass's visual features."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from synchformer.cli import main
from synchformer.inference.analyze import analyze
from synchformer.inference.fine import fine_pass, is_fine_model
from synchformer.inference.stream import read_segments
from synchformer.model import Synchformer, same_encoders
from synchformer.model.bundled import SYNTHETIC_TINY, synthetic_tiny
from synchformer.training import synth


def fine_of(coarse: Synchformer, seed: int = 0) -> Synchformer:
    """A fine-offset model sharing ``coarse``'s weights but for a fresh head over +-0.2 s (untrained)."""
    cfg = dataclasses.replace(coarse.cfg, max_offset_sec=0.2, n_offset_classes=21)
    torch.manual_seed(seed)
    fine = Synchformer(cfg)
    own = fine.state_dict()
    fine.load_state_dict({k: v for k, v in coarse.state_dict().items() if own[k].shape == v.shape}, strict=False)
    return fine.eval()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("refine") / "clip.mp4"
    synth.make_sparse_clip(path, 961_000, duration=9.0, offset_sec=0.53)
    return path


def test_a_delayed_external_track_is_the_track_shifted(clip):
    rng = np.random.default_rng(0)
    wave = rng.normal(0, 0.1, 16000 * 9).astype(np.float32)
    for delay in (0.0131, -0.4):
        _, plain = read_segments(clip, size=36, crop=32, audio=wave)
        _, moved = read_segments(clip, size=36, crop=32, audio=wave, audio_delay_sec=delay)
        a, b = next(plain), next(moved)
        d = round(delay * 16000)
        shifted = np.concatenate([np.zeros(d, np.float32), wave]) if d > 0 else wave[-d:]
        _, expect = read_segments(clip, size=36, crop=32, audio=shifted)
        c = next(expect)
        n = len(b)  # a track taken later ends sooner: maybe fewer whole segments
        assert len(c) == n and n >= len(a) - 2
        assert torch.equal(a.video[:n], b.video) and torch.equal(b.audio, c.audio)
        assert not torch.equal(a.audio[:n], b.audio)


def test_the_fine_pass_reuses_the_visual_features_and_equals_recomputing_them(clip):
    coarse = synthetic_tiny()
    fine = fine_of(coarse)
    assert is_fine_model(fine) and not is_fine_model(coarse) and same_encoders(coarse, fine, ("vfeat_extractor.",))
    kept = analyze(coarse, clip, hop_sec=0.64, keep_visual=True)
    plain = analyze(coarse, clip, hop_sec=0.64)
    assert kept.visual_features and plain.visual_features is None
    np.testing.assert_allclose(kept.logits, plain.logits, atol=1e-6)  # keeping them changes nothing
    used = np.ones(len(kept.window_starts), dtype=bool)
    used[1] = False  # a window the summary left out is not scored again
    a = fine_pass(fine, kept.fine_source(), used, 0.5)
    b = fine_pass(fine, plain.fine_source(), used, 0.5)
    np.testing.assert_allclose(a.distribution, b.distribution, atol=1e-5)
    assert a.windows == b.windows == used.sum()
    assert b.segments_encoded == 2 * a.segments_encoded  # visual and audio, against audio only
    assert a.offset_sec == pytest.approx(0.5 + a.residual_sec)
    assert abs(a.residual_sec) <= 0.2 and a.interval_sec[0] <= a.offset_sec <= a.interval_sec[1]
    other = fine_pass(fine, kept.fine_source(), used, 0.3)  # another delay: other audio, another distribution
    assert np.abs(other.distribution - a.distribution).max() > 1e-3
    with pytest.raises(ValueError, match="fine-offset model"):
        fine_pass(coarse, kept.fine_source(), used, 0.5)


def test_summarize_with_a_fine_model_reports_its_offset_as_the_refined_one(clip):
    coarse = synthetic_tiny()
    fine = fine_of(coarse, seed=1)
    result = analyze(coarse, clip, hop_sec=0.64, keep_visual=True)
    plain = result.summarize()
    s = result.summarize(fine_model=fine)
    assert plain.fine is None and s.fine is not None
    assert s.refined_offset_sec == s.fine.offset_sec and s.refined_interval_sec == s.fine.interval_sec
    assert s.fine.coarse_sec == pytest.approx(plain.refined_offset_sec)
    assert s.offset_sec == plain.offset_sec and s.reported.refined_offset_sec == plain.refined_offset_sec
    d = s.to_dict(windows=False)
    assert d["fine"]["offset_sec"] == pytest.approx(d["refined_offset_sec"], abs=6e-4)  # JSON: to the ms
    assert plain.to_dict(windows=False)["fine"] is None
    json.dumps(d)


def test_predict_and_fix_refuse_a_coarse_model_as_the_fine_one(clip, capsys):
    code = main(["predict", str(clip), "--weights", str(SYNTHETIC_TINY), "--fine-weights", str(SYNTHETIC_TINY)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is not a fine-offset model" in err[0]


def test_a_sampled_analysis_is_refined_on_the_same_windows(tmp_path):
    path = tmp_path / "long.mp4"
    synth.make_sparse_clip(path, 961_001, duration=20.0, offset_sec=-0.31)
    coarse = synthetic_tiny()
    fine = fine_of(coarse)
    a = analyze(coarse, path, hop_sec=0.64, max_windows=3, keep_visual=True)
    assert a.sampled and len(a.window_starts) == 3
    f = fine_pass(fine, a.fine_source(), np.ones(3, dtype=bool), -0.3)
    assert f.windows == 3 and f.segments_encoded == 3 * 14  # the audio of the sampled windows only


def test_predict_reports_the_fine_pass_and_fix_applies_it(clip, tmp_path, capsys):
    """The bundled models by default: predict's JSON carries the fine pass and its offset is the refined one;
    --fine-weights none gives the coarse expectation; fix moves the audio by the fine offset."""
    args = ["predict", str(clip), "--weights", str(SYNTHETIC_TINY), "--json"]
    assert main(args) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["fine_weights"] == "synthetic_tiny_fine" and d["fine"]["windows"] == d["n_used"]
    assert d["refined_offset_sec"] == pytest.approx(d["fine"]["offset_sec"], abs=6e-4)
    assert d["fine"]["coarse_sec"] == pytest.approx(d["pools"]["mean"]["refined_offset_sec"], abs=6e-4)
    assert abs(d["refined_offset_sec"] - 0.53) < 0.06, d["fine"]  # the clip's true offset: 530 ms
    assert main(args + ["--fine-weights", "none"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain["fine"] is None and plain["fine_weights"] is None
    assert plain["refined_offset_sec"] == d["pools"]["mean"]["refined_offset_sec"]
    assert main(args[:-1]) == 0
    assert "fine model)" in capsys.readouterr().out  # the text line says where the refined offset comes from
    out = tmp_path / "fixed.mp4"
    assert main(["fix", str(clip), "-o", str(out), "--weights", str(SYNTHETIC_TINY), "--json", "--force"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["measured"]["fine_weights"] == "synthetic_tiny_fine"
    assert rep["measured"]["offset_sec"] == pytest.approx(d["refined_offset_sec"], abs=1.5e-3)


def test_the_bundled_fine_model_is_frame_accurate_on_held_out_clips(tmp_path):
    """Continuous offsets in the files (seeds no training set used), predict's settings: the fine pass against
    the coarse expectation on the same clips."""
    from synchformer.model.bundled import synthetic_tiny_fine, synthetic_tiny_syncability
    from synchformer.training.synth import in_file_offsets

    coarse, fine, gate = synthetic_tiny(), synthetic_tiny_fine(), synthetic_tiny_syncability()
    truth = in_file_offsets(synth.synth(tmp_path / "cont", 24, seed=9600, duration=20.0, offsets="continuous",
                                        progress=False))
    e_coarse, e_fine = [], []
    for path, off in truth.items():
        s = analyze(coarse, path, hop_sec=0.64, sync_model=gate, keep_visual=True).summarize(fine_model=fine)
        e_coarse.append(abs(s.fine.coarse_sec - off) * 1000)
        e_fine.append(abs(s.refined_offset_sec - off) * 1000)
    assert np.median(e_fine) <= 20 and np.percentile(e_fine, 90) <= 45, sorted(e_fine)
    assert np.median(e_fine) < np.median(e_coarse) and np.percentile(e_fine, 90) < np.percentile(e_coarse, 90)


def test_visual_features_of_another_encoder_are_not_reused(clip):
    coarse = synthetic_tiny()
    fine = fine_of(coarse)
    with torch.no_grad():
        next(p for n, p in fine.named_parameters() if n.startswith("vfeat_extractor.")).add_(0.5)
    assert not same_encoders(coarse, fine, ("vfeat_extractor.",))
    kept = analyze(coarse, clip, hop_sec=0.64, keep_visual=True)
    used = np.ones(len(kept.window_starts), dtype=bool)
    shared = fine_pass(fine_of(coarse), kept.fine_source(), used, 0.5)
    f = fine_pass(fine, kept.fine_source(), used, 0.5)
    assert f.segments_encoded == 2 * shared.segments_encoded  # its own visual encoder ran, on the audio's segments
