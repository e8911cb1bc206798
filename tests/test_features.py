"""Model inputs: log-mel, segmenting, RGB scaling, and parity with the reference's stored inputs."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from synchformer.constants import AST_MEAN, AST_STD, AUDIO_SR, N_MELS
from synchformer.errors import SynchformerError
from synchformer.features import (
    center_crop,
    crop_starts,
    frames_to_model,
    log_mel,
    make_inputs,
    mel_filterbank,
    segment_audio,
    segment_video,
)

PARITY = Path("/work/shared/parity")
BIN_HZ = AUDIO_SR / 1024  # 15.625 Hz between STFT bins


def htk_centres() -> np.ndarray:
    """Centre frequencies of the 128 filters, in float64, from the HTK formula."""
    mel_max = 2595.0 * math.log10(1.0 + 8000.0 / 700.0)
    m = np.linspace(0.0, mel_max, N_MELS + 2)
    return (700.0 * (10.0 ** (m / 2595.0) - 1.0))[1:-1]


# ------------------------------------------------------------------------------------------------ parity


@pytest.fixture(scope="module")
def parity():
    if not (PARITY / "clip_pen_hits_coin.npz").exists():
        pytest.skip(f"parity fixtures not available ({PARITY} is absent)")
    clip = np.load(PARITY / "clip_pen_hits_coin.npz")
    expected = np.load(PARITY / "sync_expected.npz")
    return clip["video"], clip["audio"], expected["video_input"][0], expected["audio_input"][0]


def test_make_inputs_matches_reference(parity):
    frames, audio, exp_video, exp_audio = parity
    video, aud = make_inputs(frames, audio, start_sec=1.0, offset_sec=0.6)
    assert video.shape == (14, 16, 3, 224, 224) and video.dtype == torch.float32
    assert aud.shape == (14, 1, 128, 66) and aud.dtype == torch.float32
    # Measured: both 0.0 (the float16 RGB steps are reproduced exactly; the mel matches torchaudio bitwise).
    np.testing.assert_allclose(video.numpy(), exp_video, rtol=0, atol=2e-3)
    np.testing.assert_allclose(aud.numpy(), exp_audio, rtol=0, atol=1e-3)
    assert np.abs(video.numpy() - exp_video).max() < 1e-6
    assert np.abs(aud.numpy() - exp_audio).max() < 1e-4


# ------------------------------------------------------------------------------------------------ mel


def test_filterbank_triangles_on_htk_points():
    fb = mel_filterbank().double().numpy()
    assert fb.shape == (513, N_MELS) and fb.min() >= 0 and fb.max() <= 1 + 1e-6
    freqs = np.arange(513) * BIN_HZ
    centres = htk_centres()
    # each filter peaks at one of the two STFT bins either side of its HTK centre
    peak = fb.argmax(0)
    assert (peak >= np.floor(centres / BIN_HZ)).all() and (peak <= np.ceil(centres / BIN_HZ)).all()
    # overlapping triangles sum to 1 between the first and the last centre; nothing at f_max
    inside = (freqs >= centres[0]) & (freqs <= centres[-1])
    np.testing.assert_allclose(fb[inside].sum(1), 1.0, atol=1e-5)
    assert fb[-1].sum() == 0  # 8000 Hz is the upper edge of the last filter
    # every weight is the linear interpolation on its triangle (float64 formula; the float32 mel points
    # torchaudio uses, and so do we, move the weights by ~1e-5)
    edges = np.concatenate([[0.0], centres, [8000.0]])
    lo, c, hi = edges[:-2], edges[1:-1], edges[2:]
    f = freqs[:, None]
    expected = np.clip(np.minimum((f - lo) / (c - lo), (hi - f) / (hi - c)), 0, None)
    np.testing.assert_allclose(fb, expected, atol=1e-4)


def numpy_log_mel(wave: np.ndarray) -> np.ndarray:
    """Independent float64 implementation of the reference's per-segment log-mel."""
    padded = np.pad(wave, 512, mode="reflect")
    window = np.zeros(1024)
    window[312:712] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(400) / 400)  # periodic Hann, centred
    frames = np.stack([padded[i * 160 : i * 160 + 1024] * window for i in range(1 + len(wave) // 160)])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # (65, 513)
    mel = np.log(power @ mel_filterbank().double().numpy() + 1e-6).T  # (128, 65)
    mel = np.pad(mel, ((0, 0), (0, 1)))
    return (mel - AST_MEAN) / (2 * AST_STD)


def test_log_mel_matches_numpy_and_is_batched():
    g = torch.Generator().manual_seed(0)
    waves = torch.randn(2, 3, 10240, generator=g) * 0.1
    out = log_mel(waves)
    assert out.shape == (2, 3, 128, 66) and out.dtype == torch.float32
    np.testing.assert_allclose(out[1, 2].double().numpy(), numpy_log_mel(waves[1, 2].double().numpy()), atol=1e-4)
    torch.testing.assert_close(log_mel(waves[1, 2]), out[1, 2])  # batching does not change a segment
    np.testing.assert_allclose(out[..., -1].numpy(), -AST_MEAN / (2 * AST_STD), rtol=1e-6)  # pad column


def test_log_mel_pure_tone_peaks_in_its_mel_bin():
    for hz in (440.0, 1000.0, 3000.0):
        t = torch.arange(10240, dtype=torch.float64) / AUDIO_SR
        wave = (0.5 * torch.sin(2 * math.pi * hz * t)).float()
        mel = log_mel(wave)[:, :65]
        expected_bin = int(np.argmin(np.abs(htk_centres() - hz)))
        assert abs(int(mel.mean(1).argmax()) - expected_bin) <= 1, hz
        # in every frame away from the edges (the reflect padding smears the first and last two)
        assert (mel[:, 2:-2].argmax(0) - expected_bin).abs().max() <= 1


def test_silence_is_log_eps():
    out = log_mel(torch.zeros(10240))
    np.testing.assert_allclose(out[:, :65].numpy(), (math.log(1e-6) - AST_MEAN) / (2 * AST_STD), rtol=1e-6)


# ------------------------------------------------------------------------------------------------ segments


def ramp_clip(n_frames=200, size=(224, 224)):
    """Frame i is filled with i % 256; sample k of the audio is k / 1e6 (so contents name their index)."""
    frames = (torch.arange(n_frames) % 256).to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 3, *size).contiguous()
    audio = torch.arange(n_frames * 640, dtype=torch.float64) / 1e6
    return frames, audio


def test_segment_indices():
    frames, audio = ramp_clip()
    seg = segment_video(frames, 5, 14)
    assert seg.shape == (14, 16, 3, 224, 224)
    assert seg[:, :, 0, 0, 0].tolist() == [[5 + 8 * s + k for k in range(16)] for s in range(14)]
    aseg = segment_audio(audio, 1000, 3)
    assert aseg.shape == (3, 10240)
    assert (aseg[:, 0] * 1e6).round().tolist() == [1000, 6120, 11240]
    assert round(float(aseg[2, -1]) * 1e6) == 11240 + 10239


def test_make_inputs_window_placement():
    # start 1.0 s, offset +0.6 s: video frames from 25 + 2, audio samples from 25600 + 1280
    frames, _ = ramp_clip()
    audio = torch.randn(200 * 640, generator=torch.Generator().manual_seed(1)) * 0.1
    video, aud = make_inputs(frames, audio, start_sec=1.0, offset_sec=0.6)
    first = torch.round((video[:, 0, 0, 0, 0] + 1) / 2 * 255).int()
    assert first.tolist() == [27 + 8 * s for s in range(14)]
    for s in (0, 5, 13):
        a0 = 25600 + 1280 + 5120 * s
        torch.testing.assert_close(aud[s, 0], log_mel(audio[a0 : a0 + 10240]), rtol=0, atol=0)


def test_rgb_scaling_is_float16_exact():
    x = torch.arange(256, dtype=torch.uint8)
    reference = x.half().div(255.0).sub(0.5).div(0.5).float()
    torch.testing.assert_close(frames_to_model(x), reference, rtol=0, atol=0)
    assert frames_to_model(x)[0] == -1 and frames_to_model(x)[255] == 1
    assert (frames_to_model(x) - (x.float() / 127.5 - 1)).abs().max() > 1e-4  # float32 would not match


def test_center_crop_offsets_round_half_even():
    frames = torch.zeros(1, 3, 256, 341, dtype=torch.uint8)
    frames[..., 16, 58] = 1  # (256-224)/2 = 16; (341-224)/2 = 58.5 -> round() -> 58
    assert center_crop(frames)[0, 0, 0, 0] == 1 and center_crop(frames).shape[-2:] == (224, 224)
    video, _ = make_inputs(torch.zeros(130, 3, 256, 341, dtype=torch.uint8), torch.zeros(80000))
    assert video.shape == (14, 16, 3, 224, 224)


def test_crop_starts_reproduce_reference_truncation():
    assert crop_starts(1.0, 0.6) == (25, 25600)
    assert crop_starts(4.6, 0.0) == (114, 73600)  # int(4.6 * 25) = int(114.99999999999999): reference value
    assert crop_starts(0.06, 0.6) == (1, 10559)  # (0.06 + 0.6) * 16000 = 10559.999999999998
    assert crop_starts(0.0, 0.604) == (0, 9600)  # offset rounded to 2 decimals, as the reference does


def test_only_the_used_span_is_required():
    # 14 segments from start 0 use frames 2..121 and samples 1280..78079: 122 frames / 78080 samples suffice
    frames, audio = ramp_clip(122)
    make_inputs(frames, audio[:78080].float())
    with pytest.raises(SynchformerError, match="121 frames"):
        make_inputs(frames[:121], audio.float())
    with pytest.raises(SynchformerError, match="78079 samples"):
        make_inputs(frames, audio[:78079].float())
    video, aud = make_inputs(frames[:2 + 16], audio[:1280 + 10240].float(), n_segments=1)
    assert video.shape == (1, 16, 3, 224, 224) and aud.shape == (1, 1, 128, 66)


def test_errors_say_what_was_asked():
    frames, audio = ramp_clip(200)
    audio = audio.float()
    with pytest.raises(SynchformerError, match=r"start_sec=6\.0.*200 frames \(8\.00 s.*6\.08-10\.88 s"):
        make_inputs(frames, audio, start_sec=6.0)
    with pytest.raises(SynchformerError, match=r"offset_sec=2\.0.*128000 samples \(8\.00 s"):
        make_inputs(frames, audio, start_sec=3.0, offset_sec=2.0)
    with pytest.raises(SynchformerError, match="start_sec must be at least 2"):
        make_inputs(frames, audio, start_sec=1.0, offset_sec=-2.0)
    with pytest.raises(SynchformerError, match="start_sec must be >= 0"):
        make_inputs(frames, audio, start_sec=-0.5)
    with pytest.raises(SynchformerError, match="uint8"):
        make_inputs(frames.float(), audio)
    with pytest.raises(SynchformerError, match="mono"):
        make_inputs(frames, audio.view(2, -1))
    with pytest.raises(SynchformerError, match="at least 224x224"):
        make_inputs(frames[..., :200, :], audio)
    # a tiny negative audio start (float rounding, <= one frame) is clamped to 0 like the reference
    video, aud = make_inputs(frames, audio, start_sec=0.0, offset_sec=-0.02)
    torch.testing.assert_close(aud, make_inputs(frames, audio)[1])
