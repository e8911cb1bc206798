"""Model inputs from decoded frames and audio: segmenting, RGB scaling and log-mel, as the reference does."""

from .mel import log_mel, mel_filterbank, power_mel
from .segments import (
    LEAD_FRAMES,
    LEAD_SAMPLES,
    audio_to_model,
    center_crop,
    crop_starts,
    frames_to_model,
    make_inputs,
    segment_audio,
    segment_video,
    span_frames,
    span_samples,
)

__all__ = [
    "LEAD_FRAMES",
    "LEAD_SAMPLES",
    "audio_to_model",
    "center_crop",
    "crop_starts",
    "frames_to_model",
    "log_mel",
    "make_inputs",
    "mel_filterbank",
    "power_mel",
    "segment_audio",
    "segment_video",
    "span_frames",
    "span_samples",
]
