"""The onset-correlation baseline: finds the offset of flashes and clicks, and has no opinion on noise."""

import pytest
import torch

from synchformer.constants import AST_MEAN, AST_STD
from synchformer.inference import predict_window
from synchformer.inference.baseline import OnsetCorrelation
from synthetic import make_clip

S = 14
FLASH_FRAMES = (15, 47, 100)  # irregular, so that no other lag lines up two of them
GRID = [round(x, 1) for x in OnsetCorrelation().cfg.offset_grid().tolist()]


def flashes(frames=FLASH_FRAMES, size=8, seed=0):
    """Model-input video (1, S, 16, 3, size, size): dark noisy frames, 2 bright frames at each flash."""
    gen = torch.Generator().manual_seed(seed)
    clip = -0.8 + 0.02 * torch.randn(16 + 8 * (S - 1), 3, size, size, generator=gen)
    for f in frames:
        clip[f:f + 2] = 0.9
    return clip.unfold(0, 16, 8).movedim(-1, 1)[None]


def clicks(times_sec=(), seed=0):
    """Model-input audio (1, S, 1, 128, 66): a noisy log-mel floor with a broadband onset (decaying over
    30 ms) at each time; each segment is its 65 mel frames of a 100 Hz timeline plus the pad column."""
    gen = torch.Generator().manual_seed(seed)
    mel = -1.0 + 0.1 * torch.randn(128, 65 + 32 * (S - 1), generator=gen)
    for t in times_sec:
        c = round(t * 100)
        if 0 <= c < mel.shape[1] - 3:
            mel[:, c:c + 3] += torch.tensor([2.0, 1.5, 1.0])
    segs = mel.unfold(1, 65, 32).movedim(1, 0)  # (S, 128, 65)
    pad = torch.full((S, 128, 1), -AST_MEAN / (2 * AST_STD))
    return torch.cat([segs, pad], dim=2)[None, :, None]


@pytest.fixture(scope="module")
def model():
    return OnsetCorrelation()


@pytest.mark.parametrize("offset", [0.6, -1.0, 0.0, 1.4, -0.2])
def test_finds_the_offset(model, offset):
    times = [f / 25 - offset for f in FLASH_FRAMES]  # the audio leads by `offset`
    logits = model(flashes(), clicks(times))
    assert logits.shape == (1, 21)
    assert GRID[logits.argmax().item()] == offset


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noise_audio_gives_no_confident_offset(model, seed):
    """Correlation is scale-free, so noise still correlates a little (|r| up to ~0.3 with 3 flashes, against
    ~0.66 at the true lag of real onsets): what must hold is that no offset stands out."""
    video = flashes(seed=seed)
    events = model(video, clicks([f / 25 for f in FLASH_FRAMES], seed=seed))[0]
    noise = model(video, clicks(seed=seed + 100))[0]
    assert events.softmax(0).max() > 0.9
    assert noise.softmax(0).max() < 0.3
    assert noise.max() < 0.6 * events.max()


def test_static_video_gives_zero_scores(model):
    still = torch.zeros(1, S, 16, 3, 8, 8)
    logits = model(still, clicks([1.0, 2.5]))
    assert torch.isfinite(logits).all() and logits.abs().max() < 1e-3


def test_features_split_by_segment(model):
    """The windowed analysis encodes segments in chunks and compares them later: same logits as forward."""
    video, audio = flashes(), clicks([0.4, 1.7, 3.9])
    vf = torch.cat([model.extract_vfeats(video[:, i:i + 5]) for i in range(0, S, 5)], dim=1)
    af = torch.cat([model.extract_afeats(audio[:, i:i + 3]) for i in range(0, S, 3)], dim=1)
    assert vf.shape == (1, S, model.cfg.v_tokens, model.cfg.v_width)
    assert af.shape == (1, S, model.cfg.a_tokens, model.cfg.a_width)
    assert torch.allclose(model.compare_v_a(vf, af), model(video, audio))


def test_batch_and_interface(model):
    video = torch.cat([flashes(), flashes(seed=1)])
    audio = torch.cat([clicks([f / 25 - 0.6 for f in FLASH_FRAMES]), clicks([f / 25 + 0.4 for f in FLASH_FRAMES])])
    pred = model(video, audio).argmax(1).tolist()
    assert [GRID[i] for i in pred] == [0.6, -0.4]
    assert model.has_sync_head and model.device.type == "cpu"
    assert model.cfg.n_segments == 14 and model.cfg.image_size == 224 and model.cfg.head == "offset"
    assert OnsetCorrelation(n_segments=13, image_size=192).cfg.n_segments == 13


def test_predicts_a_decoded_clip(tmp_path, model):
    make_clip(tmp_path / "clip", 0.6, duration=6.0, seed=3, size=(48, 32))
    pred = predict_window(model, tmp_path / "clip.mp4", start_sec=0.5)
    assert pred.offset_sec == pytest.approx(0.6, abs=1e-6)
