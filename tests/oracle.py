"""A stand-in for a trained model that can see the synthetic clips' cue: it lines up flashes with clicks.

It has the interface the analysis code uses (``cfg``, ``device``, ``extract_vfeats``, ``extract_afeats``,
``compare_v_a``) and works on the real model inputs, so decoding, segmenting, windows and pooling are all
exercised for real; its "features" carry each segment's brightness per frame and loudness per mel frame.
"""

import torch
import torch.nn.functional as F
from torch import nn

from synchformer.model import ModelConfig

MEL_HOP_SEC = 0.01
SEG_MEL = 64  # mel frames of a segment's first 0.64 s


class OracleSync(nn.Module):
    has_sync_head = True

    def __init__(self):
        super().__init__()
        self.cfg = ModelConfig(v_width=16, a_width=SEG_MEL + 2)
        self.anchor = nn.Parameter(torch.zeros(1))

    @property
    def device(self):
        return self.anchor.device

    def extract_vfeats(self, video):  # (B, S, 16, 3, H, W) -> (B, S, 8, 16): token 0 = brightness of the frames
        b, s = video.shape[:2]
        out = video.new_zeros(b, s, 8, 16)
        out[:, :, 0] = video.mean(dim=(3, 4, 5))
        return out

    def extract_afeats(self, audio):  # (B, S, 1, 128, 66) -> (B, S, 6, 66): token 0 = loudness per mel frame
        b, s = audio.shape[:2]
        out = audio.new_zeros(b, s, 6, SEG_MEL + 2)
        out[:, :, 0] = audio[:, :, 0].mean(dim=2)
        return out

    @staticmethod
    def _curve(tokens, stride):  # per-segment curves of overlapping segments -> one curve for the window
        first = tokens[:, :-1, :stride].flatten(1)
        return torch.cat([first, tokens[:, -1]], dim=1)

    def compare_v_a(self, vfeats, afeats):
        bright = self._curve(vfeats[:, :, 0, :16], 8)  # (B, 120) at 25 fps
        loud = self._curve(afeats[:, :, 0, :SEG_MEL], 32)  # (B, 480) at 100 Hz
        # onsets at 100 Hz, blurred by +-100 ms (half a class: offsets between classes still line up)
        kernel = torch.bartlett_window(21, periodic=False, dtype=bright.dtype, device=bright.device)
        blur = lambda x: F.conv1d(x[:, None], kernel[None, None], padding=10)[:, 0]  # noqa: E731
        v_on = blur(F.relu(bright.diff(dim=1)).repeat_interleave(4, dim=1))
        a_on = blur(F.relu(loud.diff(dim=1)))
        n = min(v_on.shape[1], a_on.shape[1])
        v_on, a_on = v_on[:, :n], a_on[:, :n]
        scores = []
        for off in self.cfg.offset_grid().tolist():  # audio leads by `off`: the click is at t - off
            lag = round(off / MEL_HOP_SEC)
            if lag >= 0:
                scores.append((v_on[:, lag:] * a_on[:, :n - lag]).sum(1))
            else:
                scores.append((v_on[:, :n + lag] * a_on[:, -lag:]).sum(1))
        scores = torch.stack(scores, dim=1)
        return 8 * scores / (scores.amax(dim=1, keepdim=True) + 1e-6)
