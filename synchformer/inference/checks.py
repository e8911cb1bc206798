"""Checks that need no model: windows whose sound is (digital) silence or whose picture does not move.

No offset can be read off such a window, whatever a model says about it: a model still puts its probability
somewhere, and that is noise. So these windows are left out of the overall offset, as windows that a stage III
model calls unsynchronizable are, and the result says why. Measured per segment while the file streams (four
numbers per 0.64 s segment), judged per window over its 14 segments.
"""

from __future__ import annotations

import math

import numpy as np
import torch

# Digital silence: no sample beyond 2 steps of 16-bit PCM (dither-free silence, or the zeros that pad a track
# shorter than the video). Near silence: the whole window below -60 dBFS RMS, about the noise floor of a
# quiet room recorded at normal gain; nothing in it stands out enough to time.
SILENCE_PEAK = 2.0 / 32768
QUIET_RMS_DBFS = -60.0
# A still picture: consecutive frames differ by less than half a grey level on average (0-255 scale), which
# lossy coding noise of a still scene stays under; blank: still, and the frame's own spread is under 2 levels.
STATIC_MOTION = 0.5
BLANK_SPREAD = 2.0


def segment_signals(video: torch.Tensor, audio: torch.Tensor) -> np.ndarray:
    """Per segment of a chunk (video uint8 (n, T, 3, H, W), audio float (n, S)): columns audio peak, audio RMS,
    picture motion (mean |frame t+1 - frame t|, grey levels) and picture spread (std of the pixels)."""
    with torch.inference_mode():
        a = audio.float()
        peak = a.abs().amax(dim=1)
        rms = a.square().mean(dim=1).sqrt()
        step = max(1, video.shape[-1] // 56)  # every 4th pixel of a 224 crop is plenty; all of a small one
        grey = video[:, :, :, ::step, ::step].float().mean(dim=2)  # (n, T, H', W')
        motion = (grey[:, 1:] - grey[:, :-1]).abs().mean(dim=(1, 2, 3))
        spread = grey.std(dim=(2, 3)).mean(dim=1)
    return torch.stack([peak, rms, motion, spread], dim=1).cpu().numpy().astype(np.float64)


def window_problems(signals: np.ndarray) -> list[str]:
    """Why the window made of these segments' signals (rows of :func:`segment_signals`) cannot be timed."""
    out = []
    peak, rms, motion, spread = signals[:, 0], signals[:, 1], signals[:, 2], signals[:, 3]
    if peak.max() <= SILENCE_PEAK:
        out.append("audio is digital silence")
    else:
        level = 20 * math.log10(max(float(np.sqrt(np.mean(rms ** 2))), 1e-12))
        if level < QUIET_RMS_DBFS:
            out.append(f"audio is near silence ({level:.0f} dBFS)")
    if motion.max() < STATIC_MOTION:  # (a full-frame flash has no spread but is an event: blank means still too)
        out.append("picture is blank" if spread.max() < BLANK_SPREAD else "picture is static")
    return out


__all__ = ["segment_signals", "window_problems", "SILENCE_PEAK", "QUIET_RMS_DBFS", "STATIC_MOTION", "BLANK_SPREAD"]
