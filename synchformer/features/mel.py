"""Log-mel features of the audio encoder, as the reference computes them (without torchaudio).

The reference applies ``torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_fft=1024, win_length=400,
hop_length=160, n_mels=128)`` to each 0.64-s segment separately, then ``log(x + 1e-6)``, right-pads the time
axis 65 -> 66 with 0.0 and normalises with the AST AudioSet statistics as ``(x - mean) / (2 * std)``.
Everything here is that chain in plain torch: ``torch.stft`` with the same arguments torchaudio passes, and
the filterbank of ``torchaudio.functional.melscale_fbanks(..., norm=None, mel_scale='htk')`` computed with
the same float32 operations, so the result agrees with torchaudio to float32 rounding.
"""

from __future__ import annotations

import math

import torch

from ..constants import (
    AST_MEAN,
    AST_STD,
    AUDIO_SR,
    HOP_LENGTH,
    LOG_EPS,
    MEL_FRAMES,
    N_FFT,
    N_MELS,
    WIN_LENGTH,
)

N_FREQS = N_FFT // 2 + 1  # 513 one-sided bins
F_MAX = AUDIO_SR / 2  # torchaudio's default f_max (None -> sample_rate // 2)


def hz_to_mel(freq: float) -> float:
    """HTK mel scale (torchaudio ``mel_scale='htk'``)."""
    return 2595.0 * math.log10(1.0 + freq / 700.0)


def mel_to_hz(mels: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)


def mel_filterbank(
    n_freqs: int = N_FREQS,
    f_min: float = 0.0,
    f_max: float = F_MAX,
    n_mels: int = N_MELS,
    sample_rate: int = AUDIO_SR,
) -> torch.Tensor:
    """Triangular filters on HTK mel points, shape ``(n_freqs, n_mels)``, unnormalised (peak 1).

    Same float32 operations, in the same order, as torchaudio's ``melscale_fbanks`` /
    ``_create_triangular_filterbank`` so that the weights match it bit for bit (in practice).
    """
    all_freqs = torch.linspace(0, sample_rate // 2, n_freqs, dtype=torch.float32)
    m_pts = torch.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2, dtype=torch.float32)
    f_pts = mel_to_hz(m_pts)  # filter edges/centres in Hz: filter m rises on [f_m, f_m+1], falls on [f_m+1, f_m+2]
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)  # (n_freqs, n_mels + 2)
    down = (-1.0 * slopes[:, :-2]) / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return torch.max(torch.zeros(1), torch.min(down, up))


_CACHE: dict[tuple[str, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}


def _window_and_fbank(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    key = (str(device), dtype)
    if key not in _CACHE:
        # torchaudio uses torch.hann_window(win_length) (periodic); torch.stft zero-pads it, centred, to n_fft.
        window = torch.hann_window(WIN_LENGTH, periodic=True, dtype=torch.float32)
        # Built once in float32 on the CPU (as torchaudio does), then moved: identical weights on every device.
        _CACHE[key] = (window.to(device, dtype), mel_filterbank().to(device, dtype))
    return _CACHE[key]


def power_mel(wave: torch.Tensor) -> torch.Tensor:
    """Power mel spectrogram ``(..., n_mels, 1 + L // hop)`` of waveforms ``(..., L)``: torchaudio's
    ``MelSpectrogram`` (centre=True, reflect padding at both ends of each waveform, power 2, onesided)."""
    if not wave.is_floating_point():
        raise TypeError(f"expected a floating-point waveform, got {wave.dtype}")
    dtype = torch.float64 if wave.dtype == torch.float64 else torch.float32  # stft has no half on CPU
    window, fbank = _window_and_fbank(wave.device, dtype)
    lead, length = wave.shape[:-1], wave.shape[-1]
    spec = torch.stft(
        wave.reshape(-1, length).to(dtype),
        n_fft=N_FFT,
        hop_length=HOP_LENGTH,
        win_length=WIN_LENGTH,
        window=window,
        center=True,
        pad_mode="reflect",
        normalized=False,
        onesided=True,
        return_complex=True,
    )  # (N, n_freqs, frames)
    power = spec.abs().pow(2.0)  # as torchaudio (abs then pow), not re^2 + im^2
    mel = torch.matmul(power.transpose(-1, -2), fbank).transpose(-1, -2)  # (N, n_mels, frames)
    return mel.reshape(*lead, *mel.shape[-2:])


def log_mel(wave: torch.Tensor) -> torch.Tensor:
    """Audio-encoder input for each segment: ``(..., 10240)`` samples -> ``(..., 128, 66)``.

    Each waveform on the last axis is one segment and gets its own reflect padding, exactly as the reference
    (which runs the transform per segment); do not compute one spectrogram of the whole clip and slice it.
    Other lengths are accepted and padded/truncated to 66 frames like the reference's ``PadOrTruncate``.
    The pad is 0.0 in the log domain *before* normalisation, so the pad column is ``-AST_MEAN / (2*AST_STD)``.
    """
    x = torch.log(power_mel(wave) + LOG_EPS)
    t = x.shape[-1]
    x = torch.nn.functional.pad(x, (0, MEL_FRAMES - t), value=0.0) if t < MEL_FRAMES else x[..., :MEL_FRAMES]
    return (x - AST_MEAN) / (2 * AST_STD)
