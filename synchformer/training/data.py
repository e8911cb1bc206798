"""Training data: clip lists, checks, a cache of decoded clips, and the samples each stage trains on.

A clip list is a folder of videos or a CSV with a ``path`` column (the reference's fixed-offset CSVs,
``path,offset_sec,vstart_sec``, are read as they are). Every clip is decoded once by the package's own
decoder, at the model's resolution, and kept as memory-mapped ``.npy`` files; bad clips (too short, no
audio, unusable rates, unreadable) are reported, counted and skipped.

Every random choice of a sample comes from a generator seeded by (seed, epoch, index), so a sample is the
same whichever process or DataLoader worker makes it: runs resume exactly and any number of processes see
the same data.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from synchformer.constants import AUDIO_SR, SAMPLES_PER_FRAME, SEGMENT_FRAMES, SEGMENT_SAMPLES, VIDEO_FPS
from synchformer.errors import SynchformerError
from synchformer.features.segments import LEAD_FRAMES, LEAD_SAMPLES, audio_to_model, center_crop, frames_to_model
from synchformer.io.outputs import write_atomic
from synchformer.model import ModelConfig

from .augment import Augment

VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv"}
CACHE_VERSION = 1


@dataclass
class Clip:
    path: str
    offset_sec: float | None = None  # fixed offset for evaluation (the official CSVs)
    vstart_sec: float | None = None
    key: str = ""  # name of its files in the cache
    frames: int = 0  # decoded length at 25 fps


def read_clip_list(source: str | os.PathLike) -> list[Clip]:
    """A folder (searched recursively for video files) or a CSV with a ``path`` column (relative paths are
    taken from the CSV's folder; optional ``offset_sec`` and ``vstart_sec`` columns give fixed offsets)."""
    src = Path(source)
    if src.is_dir():
        clips = [Clip(str(p)) for p in sorted(src.rglob("*")) if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()]
        if not clips:
            raise SynchformerError(src, "holds no video files")
        return clips
    if not src.is_file():
        raise SynchformerError(src, "does not exist (expected a folder of videos or a CSV with a path column)")
    try:
        with open(src, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise SynchformerError(src, f"cannot read it as a CSV ({e})") from None
    if not rows or "path" not in rows[0]:
        raise SynchformerError(src, "is not a CSV with a 'path' column (e.g. path,offset_sec,vstart_sec)")
    if "in_file" in rows[0]:  # synth --offsets continuous: the files are out of sync already
        raise SynchformerError(src, "holds clips whose offset is in the file (synth --offsets continuous): for "
                                    "`synchformer eval` only, not for training")
    clips = []
    for line, row in enumerate(rows, start=2):
        try:
            offset = _optional_float(row.get("offset_sec"))
            vstart = _optional_float(row.get("vstart_sec"))
        except ValueError as e:
            raise SynchformerError(src, f"line {line}: {e}") from None
        path = Path(row["path"])
        clips.append(Clip(str(path if path.is_absolute() else src.parent / path), offset, vstart))
    return clips


def _optional_float(text):
    if text is None or str(text).strip() == "":
        return None
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value


# ------------------------------------------------------------------------------------------------ the cache


def _cache_key(path: str, size: int, max_sec: float, timing: str = "true") -> str:
    st = os.stat(path)
    ident = f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}|{size}|{max_sec}|{CACHE_VERSION}"
    if timing != "true":  # the keys of true-timing caches stay as they were
        ident += f"|{timing}"
    return hashlib.sha1(ident.encode()).hexdigest()[:20]


def save_npy(path: Path, array: np.ndarray) -> None:
    """``array`` as ``.npy``, written atomically (a reader never maps a half-written file)."""
    write_atomic(path, lambda tmp: np.save(tmp, array, allow_pickle=False))


def _decode_one(path: str, cache_dir: str, size: int, max_sec: float, need_sec: float, min_fps: float,
                min_sample_rate: int, timing: str = "true") -> tuple[str, str | None, int]:
    """Decode one clip into the cache. Returns (key, reason it was skipped or None, frames)."""
    from synchformer.io.decode import load_av, probe

    try:
        key = _cache_key(path, size, max_sec, timing)
        meta = Path(cache_dir) / f"{key}.json"
        if meta.exists():
            return key, None, json.loads(meta.read_text())["frames"]
        info = probe(path)
        if not info["has_video"]:
            return key, "no video", 0
        if not info["has_audio"]:
            return key, "no audio", 0
        fps = info["video"]["fps"] or 0
        if fps < min_fps:
            return key, f"wrong rates: {fps:g} fps video (needs >= {min_fps:g})", 0
        if (info["audio"]["sample_rate"] or 0) < min_sample_rate:
            return key, f"wrong rates: {info['audio']['sample_rate']} Hz audio (needs >= {min_sample_rate})", 0
        clip = load_av(path, 0.0, max_sec, size=size, crop=None, timing=timing)
    except SynchformerError as e:
        return "", _reason(e.problem), 0
    except Exception as e:  # a decoder failure on one file must not stop a run over thousands
        return "", f"unreadable: {type(e).__name__}: {e}", 0
    n = len(clip.frames)
    if n / VIDEO_FPS < need_sec:
        return key, f"too short: {n / VIDEO_FPS:.2f} s (needs {need_sec:.2f} s)", n
    save_npy(Path(cache_dir) / f"{key}.video.npy", clip.frames.numpy())
    save_npy(Path(cache_dir) / f"{key}.audio.npy", clip.audio.numpy())
    # written last: a clip is cached only once both arrays are complete
    write_atomic(meta, lambda tmp: Path(tmp).write_text(json.dumps({"path": path, "frames": n, "size": size})))
    return key, None, n


def _reason(problem: str) -> str:
    low = problem.lower()
    for word in ("too short", "no audio", "no video"):
        if word in low:
            return problem if low.startswith(word) else f"{word}: {problem}"
    return problem


@dataclass
class Prepared:
    clips: list[Clip]
    skipped: Counter  # reason (first words) -> count
    problems: list[tuple[str, str]]  # (path, reason)

    def report(self, name: str) -> str:
        line = f"{name}: {len(self.clips)} clips"
        if self.skipped:
            line += "; skipped " + ", ".join(f"{n} {why}" for why, n in self.skipped.most_common())
        return line


def prepare(clips: list[Clip], cache_dir: Path, size: int, max_sec: float, need_sec: float, *,
            min_fps: float = 12.5, min_sample_rate: int = 16000, workers: int = 1, progress: bool = False,
            timing: str = "true") -> Prepared:
    """Decode every clip into the cache (once; audio timed by ``timing``, see ``load_av``) and keep those that
    can be trained on."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    args = [(c.path, str(cache_dir), size, max_sec, need_sec, min_fps, min_sample_rate, timing) for c in clips]
    if workers > 1 and len(clips) > 1:
        with ProcessPoolExecutor(workers, mp_context=torch.multiprocessing.get_context("spawn")) as pool:
            results = pool.map(_decode_one, *zip(*args), chunksize=4)
            results = list(_progress(results, len(clips), progress))
    else:
        results = [_decode_one(*a) for a in _progress(args, len(clips), progress)]
    kept, skipped, problems = [], Counter(), []
    for clip, (key, reason, n) in zip(clips, results):
        if reason is None:
            kept.append(Clip(clip.path, clip.offset_sec, clip.vstart_sec, key, n))
        else:
            skipped[reason.split(":")[0]] += 1
            problems.append((clip.path, reason))
    return Prepared(kept, skipped, problems)


def _progress(items, total, enabled):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, desc="decoding clips", unit="clip", leave=False)


def load_cached(cache_dir: Path, key: str) -> tuple[np.ndarray, np.ndarray]:
    """Memory-mapped ``(T, 3, H, W)`` uint8 frames and ``(T * 640,)`` float32 audio of a cached clip."""
    return (np.load(cache_dir / f"{key}.video.npy", mmap_mode="r"),
            np.load(cache_dir / f"{key}.audio.npy", mmap_mode="r"))


# ---------------------------------------------------------------------------------------------- the samples


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    # torch takes seeds of 64 bits: a larger product wraps around (the same generator for every value that fits)
    return torch.Generator().manual_seed(((seed * 1_000_003 + epoch) * 10_000_019 + index) % (1 << 64))


def required_sec(stage: str, cfg: ModelConfig, segment_stride: int) -> float:
    """Shortest clip a stage can take a sample from (its window plus the largest shift of the audio)."""
    span = (SEGMENT_FRAMES + (cfg.n_segments - 1) * segment_stride) / VIDEO_FPS
    if stage == "contrastive":
        return span
    if stage == "synchronizability":
        return 2 * span
    return span + cfg.max_offset_sec


@dataclass
class Placement:
    first_frame: int
    first_sample: int
    target: int
    offset_sec: float
    negative: str = ""  # stage III: which kind of unsynchronizable sample (NEGATIVES), "" for the others
    audio_index: int | None = None  # the clip the audio comes from, when not the window's own ("other")


# Stage III's unsynchronizable samples: "far", the clip's own audio from a part that does not overlap the
# window (the reference's only kind); "other", another clip's audio; "silent", the sound replaced by noise at
# -100..-60 dBFS; "static", the picture frozen on the window's first frame.
NEGATIVES = ("far", "other", "silent", "static")


def negative_weights(weights: dict | None) -> dict[str, float]:
    """Checked ``{kind: weight}`` of stage III's negatives (default: the reference's, all "far")."""
    weights = {"far": 1.0} if not weights else dict(weights)
    bad = sorted(set(weights) - set(NEGATIVES))
    if bad or any(float(w) < 0 for w in weights.values()) or sum(float(w) for w in weights.values()) <= 0:
        raise ValueError(f"data.negatives must map some of {', '.join(NEGATIVES)} to weights >= 0 (not all 0), "
                         f"got {weights}")
    return {k: float(w) for k, w in weights.items() if float(w) > 0}


class SyncDataset(torch.utils.data.Dataset):
    """Samples of one stage. ``train=True``: random offsets, crops and augmentation, different every epoch
    (call ``set_epoch``). ``train=False``: the clip's fixed offset, or one drawn once from ``seed``; centre crop.

    An item is a dict of ``video`` (S, 16, 3, c, c) in [-1, 1], ``audio`` (S, 1, 128, 66), ``target``
    (offset class, or 1 = synchronizable), ``offset_sec``, ``index`` and ``negative`` (stage III: the kind of
    unsynchronizable sample, ``NEGATIVES``; "" otherwise). ``raw=True`` leaves the last step to
    the training device (``model_inputs``): ``frames`` (S, 16, 3, c, c) uint8 and ``wave`` (S, 10240) instead.
    """

    def __init__(self, clips: list[Clip], cache_dir: Path, stage: str, cfg: ModelConfig, *, train: bool,
                 seed: int = 0, augment: Augment | None = None, audio_jitter_sec: float = 0.05,
                 segment_stride: int = 8, raw: bool = False, negatives: dict | None = None,
                 offsets: str = "grid"):
        self.continuous = offsets == "continuous" and stage == "sync" and train
        self.clips, self.cache_dir, self.stage, self.cfg, self.raw = clips, Path(cache_dir), stage, cfg, raw
        self.negatives = negative_weights(negatives)
        if "other" in self.negatives and len(clips) < 2:
            raise ValueError("data.negatives 'other' needs at least two clips")
        self.train, self.seed, self.augment = train, seed, augment or Augment()
        self.jitter = int(round(audio_jitter_sec * AUDIO_SR)) if train and not self.continuous else 0
        self.stride = segment_stride
        self.grid = cfg.offset_grid().double()
        self.whole_frames = False  # continuous offsets in whole frames (FeatureDataset: audio features per frame)
        self.epoch = 0

    def __len__(self):
        return len(self.clips)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def span_frames(self) -> int:
        return SEGMENT_FRAMES + (self.cfg.n_segments - 1) * self.stride

    def place(self, index: int, n_frames: int, gen: torch.Generator, frame_step: int = 1) -> Placement:
        """Where the window's video and audio start, and its target. ``frame_step``: the video start is a
        multiple of it (features cached every ``frame_step`` frames; random placements only)."""
        clip, n_samples = self.clips[index], n_frames * SAMPLES_PER_FRAME
        span, a_span = self.span_frames, self.span_frames * SAMPLES_PER_FRAME
        if not self.train and clip.offset_sec is not None and clip.vstart_sec is not None and self.stage != "contrastive":
            # the reference's fixed-offset layout: 5-s crop at vstart, segments 2 frames in
            first = int(clip.vstart_sec * VIDEO_FPS) + LEAD_FRAMES
            a_first = int((clip.vstart_sec + round(clip.offset_sec, 2)) * AUDIO_SR) + LEAD_SAMPLES
            a_first = min(max(a_first, 0), n_samples - a_span)
            return Placement(first, a_first, *self._target(clip.offset_sec))
        if self.stage == "contrastive":
            offset, target = 0.0, 0
        elif self.stage == "synchronizability" and _rand(gen) < 0.5:
            kind = self._negative_kind(gen)
            if kind != "far":
                return self._placed_negative(index, n_frames, gen, frame_step, kind)
            offset, target = (span / VIDEO_FPS) * (1 if _rand(gen) < 0.5 else -1), 0  # from a part that does not overlap
        elif self.continuous:  # to the sample; whole frames where cached features (audio at every frame) hold them
            per_sec = VIDEO_FPS if self.whole_frames else AUDIO_SR
            reach = round(float(self.grid[-1]) * per_sec)
            offset = int(torch.randint(-reach, reach + 1, (1,), generator=gen)) / per_sec
            target = self._target(offset)[0]
        else:
            c = int(torch.randint(len(self.grid), (1,), generator=gen))
            offset, target = float(self.grid[c]), (c if self.stage == "sync" else 1)
        shift = int(round(offset * AUDIO_SR))
        lo = max(0, math.ceil(-shift / SAMPLES_PER_FRAME))
        hi = min(n_frames - span, (n_samples - a_span - shift) // SAMPLES_PER_FRAME)
        if hi < lo and self.stage == "synchronizability" and target == 0:
            shift = -shift  # only the other side fits
            lo = max(0, math.ceil(-shift / SAMPLES_PER_FRAME))
            hi = min(n_frames - span, (n_samples - a_span - shift) // SAMPLES_PER_FRAME)
        lo, hi = -(-lo // frame_step), hi // frame_step  # in units of frame_step
        if hi < lo:
            raise SynchformerError(clip.path, f"too short for a {offset:+.2f} s offset window")
        first = int(torch.randint(lo, hi + 1, (1,), generator=gen)) if (self.train or lo == hi) else (lo + hi) // 2
        first *= frame_step
        a_first = first * SAMPLES_PER_FRAME + shift
        if self.jitter:
            a_first += int(torch.randint(-self.jitter, self.jitter + 1, (1,), generator=gen))
            a_first = min(max(a_first, 0), n_samples - a_span)
        return Placement(first, a_first, target, offset, "far" if self.stage == "synchronizability" and not target else "")

    def _negative_kind(self, gen: torch.Generator) -> str:
        kinds = list(self.negatives)
        if len(kinds) == 1:
            return kinds[0]
        weights = torch.tensor([self.negatives[k] for k in kinds], dtype=torch.float64)
        return kinds[int(torch.multinomial(weights, 1, generator=gen))]

    def _placed_negative(self, index: int, n_frames: int, gen: torch.Generator, frame_step: int, kind: str):
        """A window of the clip's own picture anywhere; its audio from another clip ("other"), or its own in
        sync, to be silenced or frozen later ("silent", "static")."""
        span = self.span_frames
        first = int(torch.randint(0, (n_frames - span) // frame_step + 1, (1,), generator=gen)) * frame_step
        if not self.train:
            first = (n_frames - span) // frame_step // 2 * frame_step
        if kind != "other":
            return Placement(first, first * SAMPLES_PER_FRAME, 0, 0.0, kind)
        other = int(torch.randint(len(self.clips) - 1, (1,), generator=gen))
        other += other >= index
        a_frames = self.clips[other].frames - span
        a_first = int(torch.randint(0, max(a_frames, 0) + 1, (1,), generator=gen)) * SAMPLES_PER_FRAME
        return Placement(first, a_first, 0, float("nan"), kind, other)

    def _target(self, offset_sec: float) -> tuple[int, float]:
        if self.stage == "synchronizability":
            return int(abs(offset_sec) <= self.cfg.max_offset_sec + 1e-6), offset_sec
        return int((self.grid - offset_sec).abs().argmin()), offset_sec

    def sample_key(self, item: int | tuple[int, int]) -> tuple[torch.Generator, int]:
        """The generator and clip index of ``index`` or ``(epoch, index)`` (training batches carry their epoch)."""
        epoch, index = item if isinstance(item, tuple) else (self.epoch, item)
        return sample_generator(self.seed, epoch if self.train else 0, index), index

    def __getitem__(self, item: int | tuple[int, int]) -> dict:
        gen, index = self.sample_key(item)
        frames, audio = load_cached(self.cache_dir, self.clips[index].key)
        p = self.place(index, len(frames), gen)
        if p.audio_index is not None:
            audio = load_cached(self.cache_dir, self.clips[p.audio_index].key)[1]
        video = torch.from_numpy(np.array(frames[p.first_frame:p.first_frame + self.span_frames]))
        wave = torch.from_numpy(np.array(audio[p.first_sample:p.first_sample + self.span_frames * SAMPLES_PER_FRAME]))
        if p.negative == "static":
            video[:] = video[:1].clone()
        elif p.negative == "silent":
            rms = 10 ** (-3 - 2 * _rand(gen))  # -60..-100 dBFS
            wave = torch.randn(wave.shape, generator=gen) * rms
        size = self.cfg.image_size
        if self.train:
            video = self.augment.video(video, size, gen)
            wave = self.augment.audio(wave, gen)
        else:
            video = center_crop(video, size)
        v = video.unfold(0, SEGMENT_FRAMES, self.stride).movedim(-1, 1).contiguous()  # (S, 16, 3, c, c)
        a = wave.unfold(0, SEGMENT_SAMPLES, self.stride * SAMPLES_PER_FRAME).float().contiguous()  # (S, 10240)
        inputs = {"frames": v, "wave": a} if self.raw else {"video": frames_to_model(v), "audio": audio_to_model(a)}
        return {**inputs, "target": p.target, "offset_sec": p.offset_sec, "index": index, "negative": p.negative}


def model_inputs(batch: dict, device: str | torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(video, audio) model inputs of a batch of ``SyncDataset`` items, made on ``device`` (default: where
    the batch is) from raw items, in float32 even under autocast (the log-mel must not run in bf16)."""
    def moved(x: torch.Tensor) -> torch.Tensor:
        return x if device is None else x.to(device)

    if "wave" not in batch:
        return moved(batch["video"]), moved(batch["audio"])
    frames, wave = moved(batch["frames"]), moved(batch["wave"])
    with torch.autocast(frames.device.type, enabled=False):
        return frames_to_model(frames), audio_to_model(wave.float())


def _rand(gen: torch.Generator) -> float:
    return float(torch.rand((), generator=gen))
