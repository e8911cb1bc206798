"""Training configuration: one JSON file per run, overridable from the command line (``optim.lr=1e-4``).

The defaults follow the reference's configs for each stage (``defaults(stage)``); a file only states what
differs. The model's sizes are a ``ModelConfig`` (``model``), optionally starting from a preset (``"tiny"``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from synchformer.constants import STAGES, TIMINGS
from synchformer.errors import SynchformerError
from synchformer.model import ModelConfig

from .data import negative_weights


@dataclass
class DataConfig:
    train: str = ""  # a folder of videos, or a CSV with a ``path`` column (official split CSVs: path,offset_sec,vstart_sec)
    valid: str = ""  # same; rows with offset_sec/vstart_sec use them, others get fixed offsets from the seed
    cache_dir: str = ""  # decoded clips (and stage II features) are kept here; default: <out_dir>/cache
    max_clip_sec: float = 10.0  # the reference's EqualifyFromRight(10 s)
    audio_jitter_sec: float = 0.05
    # stage II's training offsets: "grid", the reference's (a class of the 21-point grid, plus audio_jitter_sec);
    # "continuous", any offset within the grid (to the sample; whole frames, 0.04 s steps, with cache_features,
    # whose audio features start at every frame), learned against two-hot targets (the two neighbouring classes
    # weighted by closeness) so that the expected class is the offset itself
    offsets: str = "grid"
    segment_stride: int = 8  # frames between segment starts; stage I of the reference uses 16 (no overlap)
    min_fps: float = 12.5  # videos below this are skipped ("wrong rates"): most 25 fps frames would repeat
    min_sample_rate: int = 16000  # audio below this lacks the model's upper mel bands
    batch_size: int = 16  # per process
    num_workers: int = 2
    decode_workers: int = 2  # processes that fill the decoded-clip cache
    augment: dict = field(default_factory=dict)  # probabilities, see training.augment.Augment
    # stage III's unsynchronizable half, {kind: weight} of data.NEGATIVES ("far", "other", "silent", "static");
    # the reference's: all "far" (the clip's own audio from a part that does not overlap the window)
    negatives: dict = field(default_factory=lambda: {"far": 1.0})
    # how the clips' audio is placed (io.decode.load_av): "true", or "authors" to fine-tune released weights on
    # the inputs they were trained on; saved in the model's config (ModelConfig.timing)
    timing: str = "true"
    # where uint8 frames and waveforms become model inputs (log-mel, [-1, 1]): "loader" (its workers) or
    # "device" (the training device, batched: on a GPU the loader's CPU work drops about 4x); "auto": device on GPU
    inputs_on: str = "auto"


@dataclass
class OptimConfig:
    optimizer: str = "adam"  # or "adamw"
    lr: float = 2e-6
    weight_decay: float = 0.0
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8
    scheduler: str = "constant"  # "constant" (after warm-up) or "cosine"
    warmup_steps: int = 1000
    clip_norm: float = 1.0


@dataclass
class TrainConfig:
    stage: str = "sync"
    out_dir: str = "runs/sync"  # defaults(stage): runs/<stage>, so that no stage resumes another's run
    model: dict = field(default_factory=dict)  # ModelConfig fields; "preset": "tiny" starts from ModelConfig.tiny()
    # weights to start from: stage I encoders for stage II, a stage II model for stage III; a file, or a released
    # or bundled model's name (audioset, bundled, synthetic_tiny_syncability, ...)
    init: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    epochs: int = 100
    max_steps: int = 0  # stop after this many optimiser steps (0: no limit)
    max_minutes: float = 0.0  # stop (validate, save) after this much training time (0: no limit)
    patience: int = 20  # early stopping: validations without a better validation metric
    # which validation number keeps the best weights and stops early: "metric" (the stage's: Acc@1, higher is
    # better) or "loss" (lower is better; smoother on a small validation set, what ``adapt`` uses)
    select_on: str = "metric"
    valid_every: int = 1  # epochs
    save_every: int = 200  # steps between resumable checkpoints (and at every epoch end)
    log_every: int = 20  # steps
    seed: int = 1337
    precision: str = "fp32"  # "bf16" or "fp16" autocast (fp16 only on GPU)
    grad_checkpointing: bool = False
    cache_features: bool = False  # stage II/III: encode each clip once, then train only the sync transformer
    feature_video_step: int = 1  # with cache_features: windows start every N frames (N | 8): N x fewer visual
    # encoder passes to build the cache; fixed validation windows move to the nearest such frame, audio with them
    # with cache_features: also tune the query side of the visual encoder's spatial pooling (its CLS token, query,
    # output projection and MLP: what in the picture each segment's tokens attend to), keys and values frozen; the
    # cache then holds the pooling's inputs, as many times larger as a frame has patches (``adapt``'s default)
    tune_visual_pooling: bool = False
    # validate and save an exponential moving average of the weights (this decay per step; 0: the live weights):
    # steadier on a small tuning set (``adapt`` uses 0.99)
    ema: float = 0.0
    gather_for_loss: bool = False  # stage I: negatives from every process's batch (the reference: False)
    # stage I: true subtracts the batch mean (against the collapse of encoders trained from scratch); "clip"
    # subtracts each clip's mean segment too, so that what a clip shows throughout cannot carry the loss
    center_embeddings: bool | str = False
    # stages II/III: the reference freezes them; False fine-tunes them too; "visual" fine-tunes the audio encoder
    # only, so that a model can reuse another's visual features (a fine-offset model: inference/fine.py)
    freeze_encoders: bool | str = True
    sync_start: str = "reference"  # stage II's fresh sync transformer: "reference" (std 0.02) or "sharp" (see loop)
    # stages II/III: the sync transformer sees each window's features less their mean segment (ModelConfig.
    # center_segments, saved with the weights); an init file that has it keeps it when the config gives no model
    center_features: bool = False
    device: str = "auto"

    def __post_init__(self):
        if isinstance(self.data, dict):
            self.data = _build(DataConfig, self.data, "data.")
        if isinstance(self.optim, dict):
            self.optim = _build(OptimConfig, self.optim, "optim.")
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}, not {self.stage!r}")
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be fp32, bf16 or fp16, not {self.precision!r}")
        if self.select_on not in ("metric", "loss"):
            raise ValueError(f"select_on must be metric or loss, not {self.select_on!r}")
        if self.sync_start not in ("reference", "sharp"):
            raise ValueError(f"sync_start must be reference or sharp, not {self.sync_start!r}")
        self.optim.betas = tuple(self.optim.betas)
        negative_weights(self.data.negatives)  # checked before any clip is decoded
        if self.freeze_encoders not in (True, False, "visual"):
            raise ValueError(f"freeze_encoders must be true, false or \"visual\", not {self.freeze_encoders!r}")
        if self.tune_visual_pooling and (not self.cache_features or self.stage == "contrastive"):
            raise ValueError("tune_visual_pooling needs cache_features=true (stages sync and synchronizability)")
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must be at least 0 and below 1, not {self.ema!r}")
        if self.data.offsets not in ("grid", "continuous"):
            raise ValueError(f"data.offsets must be grid or continuous, not {self.data.offsets!r}")
        if self.data.timing not in TIMINGS:
            raise ValueError(f"data.timing must be one of {', '.join(TIMINGS)}, not {self.data.timing!r}")

    def model_config(self) -> ModelConfig:
        spec = dict(self.model)
        preset = spec.pop("preset", None)
        if self.stage == "synchronizability":
            spec = {"n_segments": 13, **spec, "head": "synchronizability"}
        spec.setdefault("timing", self.data.timing)
        if preset == "tiny":
            return ModelConfig.tiny(**spec)
        if preset not in (None, "base"):
            raise ValueError(f"model.preset must be 'tiny' or 'base', not {preset!r}")
        return ModelConfig(**spec)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def cache_dir(self) -> Path:
        return Path(self.data.cache_dir or Path(self.out_dir) / "cache")


def defaults(stage: str) -> dict:
    """The reference's settings for a stage (configs/segment_avclip.yaml, sync.yaml, ft_synchability.yaml)."""
    if stage == "contrastive":
        return {"stage": stage, "out_dir": f"runs/{stage}", "epochs": 100, "patience": 20,
                "optim": {"optimizer": "adamw", "lr": 1e-4, "scheduler": "cosine", "warmup_steps": 1000},
                "data": {"batch_size": 2, "segment_stride": 16,
                         "augment": {"p_horizontal_flip": 0.5, "p_color_jitter": 0.2, "p_gray_scale": 0.2,
                                     "p_upscale": 0.2, "p_audio_gain": 0.2, "p_audio_noise": 0.2}}}
    if stage in ("sync", "synchronizability"):
        return {"stage": stage, "out_dir": f"runs/{stage}", "epochs": 10000, "patience": 20,
                "optim": {"optimizer": "adam", "lr": 2e-6, "scheduler": "constant", "warmup_steps": 1000},
                "data": {"batch_size": 16, "augment": {"p_horizontal_flip": 0.5}}}
    raise ValueError(f"stage must be one of {', '.join(STAGES)}, not {stage!r}")


def _build(cls, values: dict, prefix: str = ""):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(prefix + u for u in unknown)}")
    return cls(**values)


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # a bare string: paths, names


def parse_overrides(items: list[str]) -> dict:
    """``["optim.lr=1e-4", "data.train=clips/"]`` -> nested dict (values parsed as JSON when they are)."""
    out: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} is not of the form key=value (e.g. optim.lr=1e-4)")
        node = out
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = _parse_value(value)
    return out


def load_config(stage: str, path: str | os.PathLike | None = None, overrides: list[str] = ()) -> TrainConfig:
    """Stage defaults, then the JSON file, then the overrides. Errors name the file and the setting."""
    values = defaults(stage)
    where = "the command line"
    if path:
        where = str(path)
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise SynchformerError(path, f"cannot read the config: {e.strerror or e}") from None
        try:
            values = _merge(values, json.loads(text))
        except json.JSONDecodeError as e:
            raise SynchformerError(path, f"is not valid JSON (line {e.lineno}: {e.msg})") from None
        if values.get("stage", stage) != stage:
            raise SynchformerError(path, f"is a config for stage {values['stage']!r}, not {stage!r}")
        where = f"{path} or the command line"
    try:
        values = _merge(values, parse_overrides(list(overrides)))
        values["stage"] = stage
        cfg = _build(TrainConfig, values)
        cfg.model_config()  # the model settings are checked now, not after the data is prepared
        if cfg.center_embeddings not in (True, False, "clip"):
            raise ValueError(f"center_embeddings must be true, false or \"clip\", not {cfg.center_embeddings!r}")
        if cfg.data.inputs_on not in ("auto", "loader", "device"):
            raise ValueError(f"data.inputs_on must be auto, loader or device, not {cfg.data.inputs_on!r}")
    except (ValueError, TypeError) as e:
        raise SynchformerError(path, f"bad setting in {where}: {e}") from None
    return cfg


def save_config(cfg: TrainConfig, path: Path) -> None:
    from synchformer.io.outputs import write_atomic

    write_atomic(path, lambda tmp: Path(tmp).write_text(json.dumps(cfg.to_dict(), indent=2) + "\n"))
