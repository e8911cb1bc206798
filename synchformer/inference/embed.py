"""Segment features for downstream models (MMAudio-style video-to-audio generators condition on them).

A clip of T frames at 25 fps gives ``S = (T - 16) // 8 + 1`` segments (16 frames, stride 8, from frame 0) and
``S * 8`` visual tokens of 768 dims (one per 2-frame tubelet, 80 ms), before the model's ``vproj``: exactly the
tensor MMAudio's ``encode_video_with_sync`` returns (192 x 768 for 8 s).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from synchformer.constants import (CROP_SIZE, SEGMENT_FRAMES, SEGMENT_SAMPLES, SEGMENT_STRIDE_FRAMES,
                                   SEGMENT_STRIDE_SAMPLES)
from synchformer.features import audio_to_model, frames_to_model
from synchformer.inference.stream import encode_chunk, read_segments, too_short
from synchformer.model import Synchformer
from synchformer.model.precision import using


def _chunked(model, encode, x: torch.Tensor, batch: int) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([encode(x[i:i + batch].to(model.device)[None])[0] for i in range(0, len(x), batch)])


def encode_video(model: Synchformer, frames: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """``(B, T, 3, 224, 224)`` in [-1, 1] (or uint8 ``(T, 3, 224, 224)``) at 25 fps -> ``(B, S*8, 768)``."""
    if frames.dtype == torch.uint8:
        frames = frames[None]
    b, t = frames.shape[:2]
    if t < SEGMENT_FRAMES:
        raise ValueError(f"need at least {SEGMENT_FRAMES} frames, got {t}")
    segs = frames.unfold(1, SEGMENT_FRAMES, SEGMENT_STRIDE_FRAMES).movedim(-1, 2)  # (B, S, 16, 3, H, W)
    segs = segs.reshape(-1, *segs.shape[2:])
    to_model = frames_to_model if segs.dtype == torch.uint8 else (lambda x: x.float())
    out = _chunked(model, lambda x: model.extract_vfeats(to_model(x)), segs, batch_size)
    return out.reshape(b, -1, out.shape[-1]).cpu()


def encode_audio(model: Synchformer, wave: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """16 kHz mono ``(B, N)`` (or ``(N,)``) -> ``(B, S, 6, 768)``, segments of 10,240 samples at stride 5,120."""
    wave = wave[None] if wave.dim() == 1 else wave
    b = wave.shape[0]
    if wave.shape[1] < SEGMENT_SAMPLES:
        raise ValueError(f"need at least {SEGMENT_SAMPLES} samples, got {wave.shape[1]}")
    segs = wave.float().unfold(1, SEGMENT_SAMPLES, SEGMENT_STRIDE_SAMPLES).reshape(-1, SEGMENT_SAMPLES)
    out = _chunked(model, lambda x: model.extract_afeats(audio_to_model(x)), segs, batch_size)
    return out.reshape(b, -1, *out.shape[1:]).cpu()


def extract_features(model: Synchformer, path: str | os.PathLike, *, audio: bool = False, size: int = 224,
                     sound: np.ndarray | None = None, timing: str | None = None,
                     precision: str | None = None, audio_track: int | str | None = None) -> dict[str, np.ndarray]:
    """Visual (and audio) segment features of a whole file, any length, decoded and encoded chunk by chunk.

    Returns ``vfeats`` (S*8, 768), with ``audio=True`` also ``afeats`` (S*6, 768), and ``segment_start_sec``
    (S,) from the file's first video frame. ``size=224``: short side 224 then centre crop, as MMAudio prepares frames (a
    model with smaller inputs, as the bundled one, gets both scaled in proportion).
    ``timing``: of the file's audio (``load_av``; default the model's, ``ModelConfig.timing``). ``precision``:
    fp32, bf16, fp16 or auto (default: ``model.precision``); the features are returned in float32 either way.
    ``audio_track``: which of the file's audio tracks (``io.decode.pick_audio_track``); ``sound``: a 16 kHz mono
    waveform to use instead (sample 0 at the first video frame).
    """
    path = os.fspath(path)
    crop = int(model.cfg.image_size)
    if crop != CROP_SIZE:
        size = max(crop, int(round(size * crop / CROP_SIZE / 2)) * 2)
    grid, chunks = read_segments(path, first_frame=0, size=size, crop=crop, audio=sound, with_audio=audio,
                                 timing=timing or model.cfg.timing, audio_track=audio_track)
    vf, af = [], []
    with using(precision, model):
        for chunk in chunks:
            v, a = encode_chunk(model, chunk, audio=audio)
            vf.append(v.flatten(0, 1).float().cpu())
            if audio:
                af.append(a.flatten(0, 1).float().cpu())
    if not vf:
        raise too_short(path, 1, 0)
    out = {"vfeats": torch.cat(vf).numpy()}
    if audio:
        out["afeats"] = torch.cat(af).numpy()
    out["segment_start_sec"] = np.asarray(grid.time(np.arange(len(out["vfeats"]) // model.cfg.v_tokens)))
    return out
