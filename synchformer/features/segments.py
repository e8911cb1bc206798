"""Cut frames and audio into the model's 0.64-s segments, as the reference's test transform does.

Reference chain (configs/sync.yaml, ``transform_sequence_test``) for ``start_sec`` and ``offset_sec``:
5-s crop of video from frame ``int(start_sec * 25)`` and of audio from sample
``int((start_sec + round(offset_sec, 2)) * 16000)``; 14 segments of 16 frames / 10,240 samples, stride
8 frames / 5,120 samples, starting 2 frames / 1,280 samples into the crop (the 4.8-s span centred in the
5-s crop); RGB ``uint8 -> half -> /255 -> (x - 0.5) / 0.5``; per-segment log-mel (see ``mel.py``).

Differences from the reference, all on purpose (none changes a value the reference would produce):
- Only the span the segments use must exist (``LEAD_FRAMES + span`` frames, ``LEAD_SAMPLES + span`` samples),
  not the whole 5-s crop; the reference asserts on the 3 trailing frames / 1,920 samples it never reads.
- No 10-s cap and no trimming of the audio to the video's length (``EqualifyFromRight``): a window that fits
  the arrays given is accepted.
- Bad requests raise ``SynchformerError`` instead of ``assert``.
"""

from __future__ import annotations

import math
import numbers

import torch

from ..constants import (
    AUDIO_SR,
    CROP_SIZE,
    N_SEGMENTS,
    SAMPLES_PER_FRAME,
    SEGMENT_FRAMES,
    SEGMENT_SAMPLES,
    SEGMENT_STRIDE_FRAMES,
    SEGMENT_STRIDE_SAMPLES,
    VIDEO_FPS,
)
from ..errors import SynchformerError
from .mel import log_mel

CROP_FRAMES = 5 * VIDEO_FPS  # the reference's 5-s crop (125 frames)
# The 14 segments span 120 frames; the reference centres them in the 125-frame crop: (125 - 120) // 2 = 2.
# Kept at 2 for any n_segments, so that fewer segments are a prefix of the 14 (the layout of the stage-III
# fixture: the first 13 of the 14). The reference would re-centre in a 5-s crop ((125 - 112) // 2 = 6 for 13)
# and its stage-III transform uses a 4.48-s crop with no lead at all; use segment_* directly for those.
LEAD_FRAMES = (CROP_FRAMES - (SEGMENT_FRAMES + (N_SEGMENTS - 1) * SEGMENT_STRIDE_FRAMES)) // 2  # 2
LEAD_SAMPLES = LEAD_FRAMES * SAMPLES_PER_FRAME  # 1,280 (= int(2 / 25 * 16000))


def decode_size(crop: int = CROP_SIZE) -> int:
    """Short side to decode at for a ``crop`` px model input: the reference's 256/224 proportion, even."""
    return int(round(crop * 256 / 224 / 2)) * 2


def span_frames(n_segments: int) -> int:
    """Frames covered by ``n_segments`` consecutive segments (120 for 14)."""
    return SEGMENT_FRAMES + (n_segments - 1) * SEGMENT_STRIDE_FRAMES


def token_times(n_segments: int, per_segment: int) -> torch.Tensor:
    """Centres (seconds from the window start, float64) of a stream's tokens: ``per_segment`` evenly
    spaced over each 0.64 s segment, segments 0.32 s apart, flattened segment by segment."""
    k = torch.arange(per_segment, dtype=torch.float64)
    starts = torch.arange(n_segments, dtype=torch.float64)[:, None] * (SEGMENT_STRIDE_FRAMES / VIDEO_FPS)
    return (starts + (k + 0.5) * (SEGMENT_FRAMES / VIDEO_FPS) / per_segment).flatten()


def span_samples(n_segments: int) -> int:
    """Audio samples covered by ``n_segments`` consecutive segments (76,800 for 14)."""
    return SEGMENT_SAMPLES + (n_segments - 1) * SEGMENT_STRIDE_SAMPLES


def crop_starts(start_sec: float, offset_sec: float = 0.0) -> tuple[int, int]:
    """First video frame and audio sample of the reference's 5-s crop, computed exactly as it does.

    The reference truncates the float product, so values that are not exact in binary can land one index
    low: ``int(4.6 * 25) == 114`` (4.6 * 25 = 114.99999999999999), ``int((0.06 + 0.6) * 16000) == 10559``.
    Those are the indices the released model was evaluated with, so they are reproduced, not "fixed"; callers
    that need exact indices should pass them to ``segment_video``/``segment_audio`` directly.
    ``offset_sec`` is rounded to 2 decimals first (reference). The audio start may be negative; the caller
    applies the reference's clamp (``-640 <= a < 0`` -> 0).
    """
    v_start = int(start_sec * VIDEO_FPS)
    a_start = int((start_sec + round(offset_sec, 2)) * AUDIO_SR)
    return v_start, a_start


def center_crop(frames: torch.Tensor, size: int = CROP_SIZE) -> torch.Tensor:
    """Centre ``size x size`` crop of ``(..., H, W)`` (a view), with the reference's offsets
    ``int(round((H - size) / 2))`` (Python's round: halves go to even)."""
    h, w = frames.shape[-2:]
    if h < size or w < size:
        raise SynchformerError(
            None, f"frames are {h}x{w} pixels; the model needs at least {size}x{size} (no resizing is done)"
        )
    i, j = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return frames[..., i : i + size, j : j + size]


_LUT: dict[str, torch.Tensor] = {}


def frames_to_model(frames: torch.Tensor) -> torch.Tensor:
    """uint8 RGB -> float32 in [-1, 1], bit-identical to the reference's float16 values.

    The reference does ``video.half().div(255)`` and then torchvision's ``Normalize(0.5, 0.5)`` on that
    float16 tensor, so both the ``/255`` and the ``- 0.5`` are rounded to float16 (float32 ``x/127.5 - 1``
    differs by up to ~5e-4). Since the input has only 256 values, the float16 ops are run once on all of them
    and the result used as a lookup table: exact on every device, and no float16 arithmetic at inference.
    """
    if frames.dtype != torch.uint8:
        raise TypeError(f"expected uint8 frames, got {frames.dtype}")
    key = str(frames.device)
    if key not in _LUT:
        half = torch.arange(256, dtype=torch.uint8).half().div(255.0)
        half = half.sub(torch.tensor(0.5, dtype=torch.half)).div(torch.tensor(0.5, dtype=torch.half))
        _LUT[key] = half.float().to(frames.device)
    # int32 indices: a quarter of the memory of int64 ones for a (14, 16, 3, 224, 224) window
    return _LUT[key].index_select(0, frames.reshape(-1).int()).view(frames.shape)


def segment_video(frames: torch.Tensor, first_frame: int, n_segments: int = N_SEGMENTS) -> torch.Tensor:
    """``(T, ...)`` -> ``(n_segments, 16, ...)``: segment s holds frames ``[first + 8s, first + 8s + 16)``.

    A strided view of ``frames`` (no copy, any dtype). Raises ``SynchformerError`` if the frames run out.
    """
    end = first_frame + span_frames(n_segments)
    if first_frame < 0 or end > frames.shape[0]:
        raise SynchformerError(
            None,
            f"the video has {frames.shape[0]} frames ({frames.shape[0] / VIDEO_FPS:.2f} s at {VIDEO_FPS} fps) "
            f"but {n_segments} segments need frames {first_frame}..{end - 1} "
            f"({first_frame / VIDEO_FPS:.2f}-{end / VIDEO_FPS:.2f} s)",
        )
    seg = frames[first_frame:end].unfold(0, SEGMENT_FRAMES, SEGMENT_STRIDE_FRAMES)  # (S, ..., 16)
    return seg.movedim(-1, 1)


def segment_audio(audio: torch.Tensor, first_sample: int, n_segments: int = N_SEGMENTS) -> torch.Tensor:
    """``(Ta,)`` -> ``(n_segments, 10240)``: segment s holds samples ``[first + 5120s, first + 5120s + 10240)``.

    A strided view of ``audio``. Raises ``SynchformerError`` if the samples run out.
    """
    end = first_sample + span_samples(n_segments)
    if first_sample < 0 or end > audio.shape[-1]:
        raise SynchformerError(
            None,
            f"the audio has {audio.shape[-1]} samples ({audio.shape[-1] / AUDIO_SR:.2f} s at {AUDIO_SR} Hz) "
            f"but {n_segments} segments need samples {first_sample}..{end - 1} "
            f"({first_sample / AUDIO_SR:.2f}-{end / AUDIO_SR:.2f} s)",
        )
    return audio[first_sample:end].unfold(0, SEGMENT_SAMPLES, SEGMENT_STRIDE_SAMPLES)


def audio_to_model(segments: torch.Tensor) -> torch.Tensor:
    """``(S, 10240)`` waveforms -> ``(S, 1, 128, 66)`` audio-encoder input."""
    return log_mel(segments).unsqueeze(-3)


def make_inputs(
    frames, audio, start_sec: float = 0.0, offset_sec: float = 0.0, n_segments: int = N_SEGMENTS,
    crop: int = CROP_SIZE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Model inputs for one window, exactly as the reference's test transform makes them.

    frames: uint8 ``(T, 3, H, W)`` RGB at 25 fps, H and W >= 224 (centre-cropped to 224; no resizing:
        decode with the short side at 256 as the reference does). Tensor or numpy array.
    audio: float ``(Ta,)`` mono at 16 kHz in [-1, 1]. Tensor or numpy array.
    start_sec: where the video crop starts; the first segment starts 2 frames (0.08 s) later.
    offset_sec: audio is taken from ``start_sec + offset_sec``; > 0 means the audio leads the video.
    crop: the model's input size (224 for the released models).
    Returns video ``(S, 16, 3, 224, 224)`` float32 in [-1, 1] and audio ``(S, 1, 128, 66)`` float32
    (add the batch dimension yourself), on the devices the inputs are on.
    """
    frames, audio = torch.as_tensor(frames), torch.as_tensor(audio)
    if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[1] != 3:
        raise SynchformerError(
            None, f"frames must be uint8 (T, 3, H, W) RGB, got {frames.dtype} {tuple(frames.shape)}"
        )
    if audio.ndim != 1 or not audio.is_floating_point():
        raise SynchformerError(
            None, f"audio must be a mono float waveform (Ta,), got {audio.dtype} {tuple(audio.shape)}"
        )
    if isinstance(n_segments, bool) or not (isinstance(n_segments, numbers.Integral) and n_segments >= 1):
        raise SynchformerError(None, f"n_segments must be a positive integer, got {n_segments!r}")
    if not (math.isfinite(start_sec) and math.isfinite(offset_sec)) or start_sec < 0:
        raise SynchformerError(
            None, f"start_sec must be >= 0 and offset_sec finite, got start_sec={start_sec}, offset_sec={offset_sec}"
        )

    v_start, a_start = crop_starts(start_sec, offset_sec)
    if -SAMPLES_PER_FRAME <= a_start < 0:
        a_start = 0  # reference: float rounding can put the audio start up to one frame before 0; clamp it
    if a_start < 0:
        raise SynchformerError(
            None,
            f"the audio would start at {start_sec + offset_sec:.2f} s (start_sec {start_sec} + offset_sec "
            f"{offset_sec}), before the audio begins; with a negative offset, start_sec must be at least "
            f"{-offset_sec:g}",
        )
    frames = center_crop(frames, crop)
    try:
        video = segment_video(frames, v_start + LEAD_FRAMES, n_segments)
        wave = segment_audio(audio, a_start + LEAD_SAMPLES, n_segments)
    except SynchformerError as err:
        raise SynchformerError(
            None, f"cannot take a window at start_sec={start_sec}, offset_sec={offset_sec}: {err.problem}"
        ) from None
    # float32 like the reference's decoded audio (a float64 waveform would give a float64 mel)
    return frames_to_model(video), audio_to_model(wave.float())
