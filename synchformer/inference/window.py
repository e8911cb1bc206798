"""Predict the offset (or synchronizability) of one window of a video file."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from synchformer.constants import CROP_SIZE, VIDEO_FPS
from synchformer.errors import SynchformerError
from synchformer.features import audio_to_model, frames_to_model, segment_audio, segment_video, span_frames
from synchformer.features.segments import decode_size
from synchformer.io import load_av
from synchformer.io.decode import AudioEvent, AudioTrack
from synchformer.model import Synchformer


@dataclass
class WindowPrediction:
    path: str
    start_sec: float  # first frame of the first segment, from the file's first video frame
    end_sec: float
    head: str  # 'offset' or 'synchronizability'
    logits: torch.Tensor  # (classes,)
    classes: torch.Tensor  # offset of each class in seconds (offset head) or [0, 1] (synchronizability)
    audio_track: AudioTrack | None = None  # the file's audio track measured
    audio_events: list[AudioEvent] = field(default_factory=list)  # its timestamps' gaps / overlaps in the window

    @property
    def probs(self) -> torch.Tensor:
        return self.logits.softmax(-1)

    @property
    def offset_sec(self) -> float:
        """The most probable offset; positive: the audio leads the video."""
        return float(self.classes[self.logits.argmax()])

    @property
    def probability(self) -> float:
        """P(offset_sec) for the offset head; P(synchronizable) for the synchronizability head."""
        return float(self.probs.max() if self.head == "offset" else self.probs[1])

    def top(self, k: int = 5) -> list[dict]:
        p, i = self.probs.topk(min(k, len(self.probs)))
        return [{"offset_sec": round(float(self.classes[j]), 3), "probability": float(q),
                 "logit": float(self.logits[j]), "class": int(j)} for q, j in zip(p, i)]

    def to_dict(self) -> dict:
        out = {"file": self.path, "head": self.head,
               "window": {"start_sec": round(self.start_sec, 3), "end_sec": round(self.end_sec, 3)},
               "audio_track": self.audio_track.to_dict() if self.audio_track else None,
               "audio_events": [e.to_dict() for e in self.audio_events]}
        if self.head == "offset":
            out.update(offset_sec=round(self.offset_sec, 3), probability=self.probability, top5=self.top(5))
        else:
            out.update(synchronizable_probability=self.probability)
        return out


def load_window(path: str | os.PathLike, start_sec: float, n_segments: int, crop: int = CROP_SIZE,
                timing: str = "true", audio_track: int | str | None = None):
    """Decode the window that starts at ``start_sec`` (seconds from the first video frame; the first frame of the
    25 fps grid at or after it), as predict's analysis reads its windows: the decoded clip and the model inputs
    ``(S, 16, 3, 224, 224)``, ``(S, 1, 128, 66)``; the audio (``audio_track``) timed by ``timing`` (``load_av``).
    (The reference's test transform takes a 5 s crop and starts 0.08 s into it: ``make_inputs`` does that.)"""
    path = os.fspath(path)
    n_frames = span_frames(n_segments)
    # one spare frame: the 25 fps grid of the file need not start exactly at start_sec
    clip = load_av(path, start_sec=start_sec, end_sec=start_sec + (n_frames + 1) / VIDEO_FPS,
                   size=decode_size(crop), crop=crop, timing=timing, audio_track=audio_track)
    if len(clip.frames) < n_frames:
        have = max(0.0, clip.end_sec - start_sec)
        raise SynchformerError(path, f"too short: one window needs {n_frames / VIDEO_FPS:.2f} s of video from "
                                     f"{start_sec:g} s, the file has {have:.2f} s there")
    video = frames_to_model(segment_video(clip.frames, 0, n_segments))
    audio = audio_to_model(segment_audio(clip.audio, 0, n_segments).float())
    return clip, video, audio


def predict_window(model: Synchformer, path: str | os.PathLike, start_sec: float = 0.0,
                   timing: str | None = None, audio_track: int | str | None = None) -> WindowPrediction:
    """Classify the window that starts at ``start_sec`` (seconds from the first video frame), the window that
    predict's analysis reads there; ``timing``: of the audio (default: the model's, ``ModelConfig.timing``);
    ``audio_track``: which of the file's audio tracks (``io.decode.pick_audio_track``)."""
    clip, video, audio = load_window(path, start_sec, model.cfg.n_segments, model.cfg.image_size,
                                     timing or model.cfg.timing, audio_track)
    device = model.device
    with torch.inference_mode():
        logits = model(video[None].to(device), audio[None].to(device))[0].float().cpu()
    classes = model.cfg.offset_grid() if model.cfg.head == "offset" else torch.tensor([0.0, 1.0])
    return WindowPrediction(path=os.fspath(path), start_sec=clip.start_sec,
                            end_sec=clip.start_sec + span_frames(model.cfg.n_segments) / VIDEO_FPS,
                            head=model.cfg.head, logits=logits, classes=classes, audio_track=clip.audio_track,
                            audio_events=clip.audio_events)
