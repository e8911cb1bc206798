"""The result of a whole-video analysis (``analyze``), and its one path to a Summary: the windows pooled, a fine
pass where a fine-offset model is given, then the verdict on the final numbers."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from synchformer.constants import WINDOW_SEC
from synchformer.inference.fine import FineSource, fine_pass
from synchformer.inference.pooling import Pooled, Summary, conclude, pool_windows
from synchformer.io.decode import AudioEvent, AudioTrack
from synchformer.model import Synchformer


@dataclass
class Analysis:
    path: str
    hop_sec: float  # the hop actually used (a multiple of 0.32 s)
    window_starts: np.ndarray  # (W,) seconds from the file's first video frame
    logits: np.ndarray  # (W, classes) of the offset model
    grid: np.ndarray  # (classes,) offset of each class in seconds
    sync_probs: np.ndarray | None = None  # (W,) P(synchronizable) from a stage III model
    segments_encoded: int = 0  # encoder passes spent (per model)
    segments_total: int = 0  # whole segments in the file
    warnings: list[str] = field(default_factory=list)
    # (W,) per window: why no offset can be read off it whatever the model says (silence, a still picture);
    # see synchformer.inference.checks. Empty lists: nothing found.
    problems: list[list[str]] = field(default_factory=list)
    model_caveat: str | None = None  # about the model itself, added to an unreliable verdict's reasons
    timing: str = "true"  # how the audio was placed against the frames (io.decode.load_av)
    audio_lead_sec: float = 0.0  # timing="authors": the audio was taken this much early, as the weights learned
    # a sampled analysis (max_windows): windows spread over the file rather than every one; the file's whole
    # segments by its header (segments_total is then what was read)
    sampled: bool = False
    file_segments: int | None = None
    # analyze(keep_visual=True): the visual features of every segment the windows used, by segment index, and
    # each window's first segment; a fine-offset model reuses them (inference.fine), and the sound read
    # (stream.py's kept audio)
    visual_features: dict | None = field(default=None, repr=False)
    visual_model: Synchformer | None = field(default=None, repr=False)  # whose encoder made them
    first_segments: np.ndarray | None = None
    read_args: dict = field(default_factory=dict)  # how the file was read (first_frame, size, audio, max_windows,
    # audio_track)
    origin_sec: float = 0.0  # the first video frame's timestamp in the container's timeline
    audio_track: AudioTrack | None = None  # the file's track measured (None: an external track)
    # the track's gaps, overlaps and format changes in what was read (io.decode.AudioEvent, times from the
    # first video frame)
    audio_events: list[AudioEvent] = field(default_factory=list)
    kept_audio: object | None = field(default=None, repr=False)
    audio_shift_sec: float = 0.0  # a wide search (inference.search): the windows' sound taken this much later
    # with keep_visual: per segment, the model-free checks' four numbers (checks.segment_signals), so that a
    # search can judge its windows' shifted sound
    segment_signals: dict | None = field(default=None, repr=False)

    @property
    def seen(self) -> list[tuple[float, float]]:
        """The spans of the file the windows saw (s), overlapping windows merged."""
        spans: list[list[float]] = []
        for s in np.sort(self.window_starts):
            if spans and s <= spans[-1][1] + 1e-6:
                spans[-1][1] = max(spans[-1][1], s + WINDOW_SEC)
            else:
                spans.append([float(s), float(s) + WINDOW_SEC])
        return [(round(float(a), 3), round(float(b), 3)) for a, b in spans]

    def pool(self, min_sync_prob: float = 0.5) -> Pooled:
        """The windows pooled (``pooling.pool_windows``), no verdict on the whole yet."""
        return pool_windows(self.window_starts, self.probs, self.grid, sync_probs=self.sync_probs,
                            min_sync_prob=min_sync_prob, problems=self.problems or None,
                            audio_events=self.window_audio_events())

    def summarize(self, min_sync_prob: float = 0.5, fine_model: Synchformer | None = None,
                  search_reasons: tuple[str, ...] = (), pooled: Pooled | None = None) -> Summary:
        """The whole file's offset, its windows and its verdict, built once: the windows pooled
        (``pooling.pool_windows``), then where ``fine_model`` is given a fine pass below the class grid over the
        pooled windows (``inference.fine``: it reuses the visual features and the sound of an
        ``analyze(keep_visual=True)``, or reads the file again), then the verdict on the final numbers.
        ``search_reasons``: why a wide search's choice cannot be trusted (``inference.search``). ``pooled``: this
        analysis's ``pool(min_sync_prob)`` where it is already made."""
        pooled = pooled or self.pool(min_sync_prob)
        fine = None
        if fine_model is not None and pooled.coarse_offset_sec is not None:
            fine = fine_pass(fine_model, self.fine_source(), pooled.used, pooled.coarse_offset_sec,
                             timing=self.timing)
        return conclude(pooled, fine=fine, model_caveat=self.model_caveat, search_reasons=search_reasons)

    def fine_source(self) -> FineSource:
        """What a fine pass needs of this analysis to read its windows again."""
        return FineSource(path=self.path, first_segments=np.asarray(self.first_segments), read_args=self.read_args,
                          timing=self.timing, visual_features=self.visual_features, visual_model=self.visual_model,
                          kept_audio=self.kept_audio)

    def window_audio_events(self) -> list[list[AudioEvent]]:
        """Per window, the audio events inside it (a gap that reaches into it counts)."""
        out = []
        for s in self.window_starts:
            out.append([e for e in self.audio_events if e.at_sec < s + WINDOW_SEC
                        and e.at_sec + (e.duration_sec if e.kind == "gap" else 0.0) > s])
        return out

    @property
    def probs(self) -> np.ndarray:
        return torch.from_numpy(self.logits).softmax(-1).numpy()

    @property
    def window_sec(self) -> float:
        return WINDOW_SEC


__all__ = ["Analysis"]
