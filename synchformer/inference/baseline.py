"""A non-learned baseline: cross-correlate audio onsets with visual motion onsets.

Visual side: motion energy per frame (mean absolute difference to the previous frame), its rises (the positive
part of its change: sustained motion makes no sound onsets), upsampled from 25 to 100 Hz. Audio side: positive
spectral flux of the log-mel (100 Hz). Both are smoothed with a triangle of +-50 ms, so that events that land
within about 50 ms of each other still overlap, and each offset class is scored with the Pearson correlation
of the two curves at that lag. Anything that moves or sounds counts as an event, so distractor motion and
off-screen sounds lower the scores; there is nothing to learn and nothing special-cased.

It has the model's interface where the inference code uses it (``cfg``, ``device``, ``has_sync_head``,
``forward``, and ``extract_vfeats``/``extract_afeats``/``compare_v_a`` splitting the same work per segment), so
it runs through ``predict_window`` and the windowed analysis unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..constants import (
    CROP_SIZE,
    HOP_LENGTH,
    N_SEGMENTS,
    SAMPLES_PER_FRAME,
    SEGMENT_FRAMES,
    SEGMENT_STRIDE_FRAMES,
)
from ..model import ModelConfig

CURVE_HZ = 100  # the mel frame rate (hop 160 samples at 16 kHz)
UPSAMPLE = SAMPLES_PER_FRAME // HOP_LENGTH  # 4 mel frames per video frame
SEG_MEL = SEGMENT_FRAMES * UPSAMPLE  # 64 mel frames of a segment's 0.64 s (the 65th and the pad are not used)
STRIDE_MEL = SEGMENT_STRIDE_FRAMES * UPSAMPLE  # 32
TOLERANCE_SEC = 0.05
LOGIT_SCALE = 10.0  # correlations are in [-1, 1]; x10 makes the softmax about as peaked as the model's


def _stitch(curves: torch.Tensor, stride: int) -> torch.Tensor:
    """Per-segment curves ``(B, S, L)`` of segments starting ``stride`` apart -> one curve ``(B, L + (S-1)*stride)``.

    The first segment is taken whole and every later one adds its second part (its new samples), so the start
    of a segment, where a frame difference or a flux has no previous frame, is used only in the first one.
    """
    return torch.cat([curves[:, 0], curves[:, 1:, curves.shape[-1] - stride:].flatten(1)], dim=1)


def _pearson(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Correlation of each row of ``x`` with the same row of ``y`` (0 where either is constant)."""
    x = x - x.mean(dim=1, keepdim=True)
    y = y - y.mean(dim=1, keepdim=True)
    return (x * y).sum(1) / ((x.square().sum(1) * y.square().sum(1)).sqrt() + 1e-8)


class OnsetCorrelation(nn.Module):
    has_sync_head = True

    def __init__(self, n_segments: int = N_SEGMENTS, image_size: int = CROP_SIZE):
        super().__init__()
        # features have the model's token layout, (B, S, 8, 16) and (B, S, 6, 66), with the curve in token 0
        self.cfg = ModelConfig(n_segments=n_segments, image_size=image_size, v_width=SEGMENT_FRAMES,
                               a_width=ModelConfig().mel_frames)
        half = round(TOLERANCE_SEC * CURVE_HZ)
        self.register_buffer("kernel", torch.bartlett_window(2 * half + 1, periodic=False), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.kernel.device

    def extract_vfeats(self, video: torch.Tensor) -> torch.Tensor:
        """``(B, S, 16, 3, H, W)`` -> ``(B, S, 8, 16)``: token 0 is the motion energy going into each frame."""
        b, s = video.shape[:2]
        motion = (video[:, :, 1:] - video[:, :, :-1]).abs().mean(dim=(3, 4, 5))  # (B, S, 15)
        # frame 0 has no previous frame: repeat frame 1's value rather than invent a rise from 0
        motion = F.pad(motion, (1, 0), mode="replicate")
        out = motion.new_zeros(b, s, self.cfg.v_tokens, self.cfg.v_width)
        out[:, :, 0] = motion
        return out

    def extract_afeats(self, audio: torch.Tensor) -> torch.Tensor:
        """``(B, S, 1, 128, 66)`` -> ``(B, S, 6, 66)``: token 0 is the spectral flux going into each mel frame."""
        b, s = audio.shape[:2]
        flux = F.relu(audio[:, :, 0].diff(dim=-1)).sum(dim=2)  # (B, S, 65): into mel frames 1..65
        out = flux.new_zeros(b, s, self.cfg.a_tokens, self.cfg.a_width)
        out[:, :, 0, 1:] = flux
        return out

    def _smooth(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel.to(x.dtype)
        return F.conv1d(x[:, None], k[None, None], padding=len(k) // 2)[:, 0]

    def compare_v_a(self, vfeats: torch.Tensor, afeats: torch.Tensor) -> torch.Tensor:
        """Features of the same ``S`` segments -> offset logits ``(B, 21)``: 10 x the correlation of the onset
        curves when the audio is shifted by each offset (positive: the audio leads)."""
        motion = _stitch(vfeats[:, :, 0], SEGMENT_STRIDE_FRAMES)  # (B, 120) at 25 fps
        rises = F.relu(motion.diff(dim=1, prepend=motion[:, :1]))
        n_v = rises.shape[1]
        # linear interpolation with video frame k at time k/25 s, i.e. at mel frame 4k
        v = F.interpolate(rises[:, None], size=UPSAMPLE * (n_v - 1) + 1, mode="linear", align_corners=True)[:, 0]
        a = _stitch(afeats[:, :, 0, :SEG_MEL], STRIDE_MEL)  # (B, 480) at 100 Hz
        n = min(v.shape[1], a.shape[1])
        v, a = self._smooth(v[:, :n]), self._smooth(a[:, :n])
        scores = []
        for off in self.cfg.offset_grid().tolist():  # audio leads by `off`: the sound of a frame at t is at t - off
            lag = round(off * CURVE_HZ)
            if lag >= 0:
                scores.append(_pearson(v[:, lag:], a[:, :n - lag]))
            else:
                scores.append(_pearson(v[:, :n + lag], a[:, -lag:]))
        return LOGIT_SCALE * torch.stack(scores, dim=1)

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        return self.compare_v_a(self.extract_vfeats(video), self.extract_afeats(audio))
