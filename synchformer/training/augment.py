"""Training-time augmentations of the reference, driven by an explicit ``torch.Generator``.

Video functions take uint8 RGB frames ``(T, 3, H, W)`` (before ``frames_to_model``) and return uint8; audio
functions take float waveforms ``(..., L)`` in [-1, 1]. Each augmentation draws its coin and parameters from
``gen`` only, so a DataLoader worker that seeds one generator per sample gets the same augmented sample on
every run. Random numbers are drawn on the generator's device (the CPU in a DataLoader worker) and moved.

One clip gets one set of parameters (one crop, one jitter, one flip for all its frames), as in the reference,
where the torchvision transforms see the whole ``(T, 3, H, W)`` clip at once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import SynchformerError
from ..features.segments import center_crop

# ITU-R 601-2 luma, as torchvision's rgb_to_grayscale
LUMA = (0.299, 0.587, 0.114)
# the reference's RGBSpatialCropSometimesUpscale: a 192-pixel crop upscaled to 224
UPSCALE_CROP_RATIO = 192 / 224


def _rand(gen: torch.Generator) -> float:
    return torch.rand((), generator=gen, device=gen.device).item()


def _uniform(lo: float, hi: float, gen: torch.Generator) -> float:
    return lo + (hi - lo) * _rand(gen)


def _coin(p: float, gen: torch.Generator) -> bool:
    # always draws, so the stream of later draws does not depend on the probabilities
    return _rand(gen) < p


def _crop(frames: torch.Tensor, size: int, gen: torch.Generator, random: bool) -> torch.Tensor:
    if not random:
        return center_crop(frames, size)
    h, w = frames.shape[-2:]
    if h < size or w < size:
        raise SynchformerError(None, f"frames are {h}x{w} pixels; the crop needs at least {size}x{size}")
    i = int(torch.randint(0, h - size + 1, (), generator=gen, device=gen.device))
    j = int(torch.randint(0, w - size + 1, (), generator=gen, device=gen.device))
    return frames[..., i : i + size, j : j + size]


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.round().clamp(0, 255).to(torch.uint8)


def random_crop(frames: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """The same random ``size x size`` crop of every frame (a view), like ``RGBSpatialCrop(is_random=True)``."""
    return _crop(frames, size, gen, random=True)


def sometimes_upscale(frames: torch.Tensor, size: int, p: float, gen: torch.Generator,
                      random: bool = True) -> torch.Tensor:
    """Crop to ``size x size``; with probability ``p`` crop ``size * 192/224`` pixels instead and resize that
    bilinearly (no antialiasing) to ``size`` -- the reference's ``RGBSpatialCropSometimesUpscale``.

    Either crop is random (``random=True``) or central. On frames that are already ``size x size`` this is
    "zoom into a random part and scale it back"; with ``p=0`` it is ``random_crop``.
    """
    if not _coin(p, gen):
        return _crop(frames, size, gen, random)
    small = _crop(frames, round(size * UPSCALE_CROP_RATIO), gen, random)
    big = F.interpolate(small.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=False)
    return _to_uint8(big)


def horizontal_flip(frames: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    return frames.flip(-1) if _coin(p, gen) else frames


def _gray(x: torch.Tensor) -> torch.Tensor:
    """Luma ``(..., 1, H, W)`` of float RGB ``(..., 3, H, W)``."""
    r, g, b = x.unbind(-3)
    return (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b).unsqueeze(-3)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: float) -> torch.Tensor:
    # torchvision's _blend: clamped after every adjustment, so the order of the adjustments matters
    return (factor * x + (1 - factor) * other).clamp(0, 255)


def _shift_hue(x: torch.Tensor, shift: float) -> torch.Tensor:
    """Rotate the hue of float RGB in [0, 255] by ``shift`` turns (RGB -> HSV -> RGB, all pixels at once)."""
    maxc, minc = x.amax(-3), x.amin(-3)
    chroma = maxc - minc
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))  # grey pixels: any hue, chroma 0 keeps them grey
    r, g, b = x.unbind(-3)
    h = torch.where(maxc == r, (g - b) / safe,
                    torch.where(maxc == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    h = torch.remainder(h / 6.0 + shift, 1.0)
    s = chroma / torch.where(maxc > 0, maxc, torch.ones_like(maxc))
    # HSV -> RGB: channel n (5, 3, 1 for R, G, B) is v - v*s*clamp(min(k, 4-k), 0, 1), k = (n + 6h) mod 6
    n = torch.tensor([5.0, 3.0, 1.0], device=x.device).view(3, 1, 1)
    k = torch.remainder(n + 6.0 * h.unsqueeze(-3), 6.0)
    v, s = maxc.unsqueeze(-3), s.unsqueeze(-3)
    return v - v * s * torch.minimum(k, 4.0 - k).clamp(0, 1)


def color_jitter(frames: torch.Tensor, p: float, gen: torch.Generator, brightness: float = 0.8,
                 contrast: float = 0.8, saturation: float = 0.8, hue: float = 0.2) -> torch.Tensor:
    """With probability ``p``, torchvision's ``ColorJitter(brightness, contrast, saturation, hue)``.

    Factors are uniform in ``[max(0, 1 - x), 1 + x]``, the hue shift in ``[-hue, hue]`` turns, and the four
    adjustments are applied in a random order (the reference's SimCLR values are the defaults). Computed in
    float and rounded to uint8 once at the end (torchvision truncates to uint8 after every step). The contrast
    mean is per frame, as torchvision computes it over the last three dimensions.
    """
    if not _coin(p, gen):
        return frames
    order = torch.randperm(4, generator=gen, device=gen.device).tolist()
    b = _uniform(max(0.0, 1 - brightness), 1 + brightness, gen)
    c = _uniform(max(0.0, 1 - contrast), 1 + contrast, gen)
    s = _uniform(max(0.0, 1 - saturation), 1 + saturation, gen)
    h = _uniform(-hue, hue, gen)
    x = frames.float()
    for op in order:
        if op == 0:
            x = _blend(x, torch.zeros_like(x), b)
        elif op == 1:
            x = _blend(x, _gray(x).mean(dim=(-3, -2, -1), keepdim=True), c)
        elif op == 2:
            x = _blend(x, _gray(x), s)
        elif h != 0:  # a zero shift is skipped so that it is exactly the identity
            x = _shift_hue(x, h)
    return _to_uint8(x)


def grayscale(frames: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """With probability ``p``, ITU-R 601-2 luma in all three channels (``RandomGrayscale``)."""
    if not _coin(p, gen):
        return frames
    return _to_uint8(_gray(frames.float())).expand_as(frames).contiguous()


def audio_gain(wave: torch.Tensor, p: float, gen: torch.Generator, max_gain: float = 2.0) -> torch.Tensor:
    """With probability ``p``, multiply by a gain uniform in ``[1/max_gain, max_gain]`` and clamp to [-1, 1].

    The reference's ``AudioRandomVolume`` is torchaudio's ``Vol(gain=2.0, gain_type='amplitude')`` applied
    with probability p, i.e. always x2 (then clamped); a random gain also covers quieter recordings.
    """
    if not _coin(p, gen):
        return wave
    return (wave * _uniform(1 / max_gain, max_gain, gen)).clamp(-1.0, 1.0)


def audio_noise(wave: torch.Tensor, p: float, gen: torch.Generator, std: float = 0.01) -> torch.Tensor:
    """With probability ``p``, add Gaussian noise of standard deviation ``std`` (``AudioRandomGaussNoise``)."""
    if not _coin(p, gen):
        return wave
    noise = torch.randn(wave.shape, generator=gen, device=gen.device, dtype=wave.dtype)
    return wave + std * noise.to(wave.device)


@dataclass
class Augment:
    """Probabilities of the augmentations. The defaults are the reference's stage II; its stage I used 0.2 for
    colour jitter, grayscale, upscale, audio gain and audio noise."""

    p_horizontal_flip: float = 0.5
    p_color_jitter: float = 0.0
    p_gray_scale: float = 0.0
    p_upscale: float = 0.0
    p_audio_gain: float = 0.0
    p_audio_noise: float = 0.0

    def video(self, frames: torch.Tensor, size: int, gen: torch.Generator, random_crop: bool = True) -> torch.Tensor:
        """uint8 ``(T, 3, H, W)`` -> uint8 ``(T, 3, size, size)``: crop (sometimes upscaled), colour jitter,
        grayscale, flip -- the reference's order. ``random_crop=False`` crops (and zooms) centrally."""
        frames = sometimes_upscale(frames, size, self.p_upscale, gen, random=random_crop)
        frames = color_jitter(frames, self.p_color_jitter, gen)
        frames = grayscale(frames, self.p_gray_scale, gen)
        return horizontal_flip(frames, self.p_horizontal_flip, gen)

    def audio(self, wave: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Float waveform -> same shape: gain, then noise."""
        return audio_noise(audio_gain(wave, self.p_audio_gain, gen), self.p_audio_noise, gen)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Augment":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
