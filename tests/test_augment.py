"""Training augmentations: shapes, probabilities 0 and 1, reproducibility, and the colour maths."""

import pytest
import torch

from synchformer.errors import SynchformerError
from synchformer.training.augment import (
    Augment,
    _shift_hue,
    audio_gain,
    audio_noise,
    color_jitter,
    grayscale,
    horizontal_flip,
    random_crop,
    sometimes_upscale,
)

ALL_ON = Augment(p_horizontal_flip=1.0, p_color_jitter=1.0, p_gray_scale=1.0, p_upscale=1.0,
                 p_audio_gain=1.0, p_audio_noise=1.0)
ALL_OFF = Augment(p_horizontal_flip=0.0)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def frames(t=4, h=40, w=48, seed=0):
    return torch.randint(0, 256, (t, 3, h, w), dtype=torch.uint8, generator=gen(seed))


def solid(rgb, t=2, h=8, w=8):
    return torch.tensor(rgb, dtype=torch.uint8).view(1, 3, 1, 1).expand(t, 3, h, w).contiguous()


def test_video_shapes_and_dtype():
    for aug in (ALL_ON, ALL_OFF, Augment()):
        out = aug.video(frames(), 32, gen())
        assert out.shape == (4, 3, 32, 32) and out.dtype == torch.uint8
        out = aug.video(frames(), 32, gen(), random_crop=False)
        assert out.shape == (4, 3, 32, 32) and out.dtype == torch.uint8


def test_probability_zero_is_identity_but_the_crop():
    x = frames(h=32, w=32)
    assert torch.equal(ALL_OFF.video(x, 32, gen()), x)
    big = frames()
    out = ALL_OFF.video(big, 32, gen(3))
    assert any(torch.equal(out, big[..., i:i + 32, j:j + 32]) for i in range(9) for j in range(17))
    wave = torch.rand(1000, generator=gen()) * 2 - 1
    assert torch.equal(ALL_OFF.audio(wave, gen()), wave)
    for fn in (horizontal_flip, color_jitter, grayscale):
        assert torch.equal(fn(x, 0.0, gen()), x)
    assert torch.equal(sometimes_upscale(x, 32, 0.0, gen()), x)


def test_probability_one_changes():
    x = frames(h=32, w=32)
    for fn in (horizontal_flip, color_jitter, grayscale):
        assert not torch.equal(fn(x, 1.0, gen()), x), fn.__name__
    assert not torch.equal(sometimes_upscale(x, 32, 1.0, gen()), x)
    wave = torch.rand(1000, generator=gen()) - 0.5
    assert not torch.equal(audio_gain(wave, 1.0, gen()), wave)
    assert not torch.equal(audio_noise(wave, 1.0, gen()), wave)


def test_same_seed_same_result():
    x, wave = frames(), torch.rand(1000, generator=gen()) - 0.5
    half = Augment(0.5, 0.5, 0.5, 0.5, 0.5, 0.5)
    for aug in (ALL_ON, half):
        for seed in range(5):
            assert torch.equal(aug.video(x, 32, gen(seed)), aug.video(x, 32, gen(seed)))
            assert torch.equal(aug.audio(wave, gen(seed)), aug.audio(wave, gen(seed)))
    outs = {ALL_ON.video(x, 32, gen(seed)).sum().item() for seed in range(5)}
    assert len(outs) > 1


def test_random_crop_is_the_same_for_all_frames():
    x = torch.arange(40 * 48, dtype=torch.int64).view(1, 1, 40, 48).expand(3, 3, 40, 48)
    out = random_crop(x, 16, gen())
    assert out.shape == (3, 3, 16, 16) and (out == out[:1, :1]).all()
    corners = {random_crop(x, 16, gen(s))[0, 0, 0, 0].item() for s in range(20)}
    assert len(corners) > 1
    with pytest.raises(SynchformerError):
        random_crop(x, 41, gen())


def test_upscale_zooms_in():
    ramp = torch.arange(224, dtype=torch.uint8).view(1, 1, 1, 224).expand(2, 3, 224, 224)
    out = sometimes_upscale(ramp, 224, 1.0, gen())
    assert out.shape == ramp.shape and out.dtype == torch.uint8
    steps = out[0, 0, 0].float().diff()
    assert 0.8 < steps.mean() < 0.9  # 192 columns spread over 224: slope 192/224
    assert torch.equal(sometimes_upscale(solid((7, 8, 9), h=224, w=224), 224, 1.0, gen()),
                       solid((7, 8, 9), h=224, w=224))


def test_grayscale():
    out = grayscale(frames(), 1.0, gen())
    assert (out[:, 0] == out[:, 1]).all() and (out[:, 1] == out[:, 2]).all()
    assert (grayscale(solid((255, 0, 0)), 1.0, gen()) == 76).all()  # round(0.299 * 255)
    assert (grayscale(solid((10, 200, 30)), 1.0, gen()) == round(0.299 * 10 + 0.587 * 200 + 0.114 * 30)).all()


def test_flip_twice_is_identity():
    x = frames()
    once = horizontal_flip(x, 1.0, gen())
    assert torch.equal(once[..., 0], x[..., -1])
    assert torch.equal(horizontal_flip(once, 1.0, gen()), x)


def test_neutral_jitter_is_identity():
    x = frames()
    out = color_jitter(x, 1.0, gen(), brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)
    assert (out.int() - x.int()).abs().max() <= 1


def test_hue_shift():
    x = frames().float()
    assert (_shift_hue(x, 1.0) - x).abs().max() < 1e-3  # a whole turn
    red = solid((255, 0, 0)).float()
    assert torch.allclose(_shift_hue(red, 1 / 3), solid((0, 255, 0)).float(), atol=1e-3)
    assert torch.allclose(_shift_hue(red, -1 / 3), solid((0, 0, 255)).float(), atol=1e-3)
    assert torch.allclose(_shift_hue(solid((200, 100, 50)).float(), 0.5), solid((50, 150, 200)).float(), atol=1e-3)
    grey = solid((90, 90, 90)).float()
    assert torch.equal(_shift_hue(grey, 0.3), grey)


def test_jitter_stays_in_range_and_keeps_grey_grey():
    for seed in range(5):
        out = color_jitter(solid((90, 90, 90)), 1.0, gen(seed))
        assert (out[:, 0] == out[:, 1]).all() and (out[:, 1] == out[:, 2]).all()


def test_audio_gain_bounds():
    wave = torch.linspace(-0.4, 0.4, 101)
    for seed in range(20):
        out = audio_gain(wave, 1.0, gen(seed))
        ratio = out[-1] / wave[-1]
        assert 0.5 - 1e-6 <= ratio <= 2.0 + 1e-6
        assert torch.allclose(out, wave * ratio)
    loud = audio_gain(torch.full((10,), 0.9), 1.0, gen(), max_gain=1000.0)
    assert loud.abs().max() <= 1.0


def test_audio_noise_std():
    out = audio_noise(torch.zeros(20000), 1.0, gen(), std=0.01)
    assert 0.009 < out.std() < 0.011


def test_dict_round_trip():
    aug = Augment(p_color_jitter=0.2, p_upscale=0.2)
    assert Augment.from_dict(aug.to_dict()) == aug
    assert Augment.from_dict({"p_gray_scale": 0.2, "unknown": 1}) == Augment(p_gray_scale=0.2)
