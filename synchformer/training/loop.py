"""The training loop of all three stages: one process or many (``torchrun``), resumable, early-stopped.

Distributed runs split every global batch (``batch_size`` x processes, in an order drawn from the seed) by
rank, and samples do not depend on which process makes them, so N processes follow the same loss curve as
one process with an N times larger batch. Checkpoints are written every ``save_every`` steps and at each
epoch end (weights as safetensors, optimiser/scheduler/sampler/RNG state beside them, then a pointer file
renamed into place), so a run killed at any moment resumes from its last checkpoint and ends where an
uninterrupted run ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from synchformer.errors import SynchformerError
from synchformer.features.segments import decode_size, token_times
from synchformer.io.outputs import write_atomic
from synchformer.model import Synchformer
from synchformer.model.checkpoint import read_checkpoint
from synchformer.model.load import save_model, weights_file

from .augment import Augment
from .config import TrainConfig, load_config, save_config
from .data import SyncDataset, model_inputs, prepare, read_clip_list, required_sec
from .features import FeatureDataset, build_feature_cache, cached_visual
from .logs import ScalarLog
from .losses import ContrastiveLoss
from .evaluate import metrics_of

METRIC = {"contrastive": "segment_accuracy", "sync": "accuracy_1", "synchronizability": "accuracy"}


# ------------------------------------------------------------------------------------------- distribution


@dataclasses.dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> Dist:
    """From torchrun's environment: NCCL on GPUs, gloo on CPU; a plain run is one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), local)


def pick_device(name: str, d: Dist) -> str:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and d.world > 1:
        name = f"cuda:{d.local_rank}"
    return name


class GlobalBatches(torch.utils.data.Sampler):
    """Batches of (epoch, index) pairs for this process: global batch k of an epoch is ``order[k*G:(k+1)*G]``
    with G = batch x world; rank r takes its r-th slice. Starts at ``first_step`` (resuming mid-epoch).
    The epoch travels with each index because DataLoader workers that live across epochs keep their own copy
    of the dataset, which ``set_epoch`` in this process does not reach."""

    def __init__(self, n: int, batch: int, d: Dist, seed: int, epoch: int, shuffle: bool, first_step: int = 0):
        self.n, self.batch, self.d, self.seed, self.shuffle = n, batch, d, seed, shuffle
        self.set_epoch(epoch, first_step)

    def set_epoch(self, epoch: int, first_step: int = 0) -> None:
        self.epoch, self.first_step = epoch, first_step
        g = torch.Generator().manual_seed((self.seed * 7919 + epoch) % (1 << 64))  # (torch: 64-bit seeds)
        self.order = torch.randperm(self.n, generator=g).tolist() if self.shuffle else list(range(self.n))

    def __len__(self):
        return self.n // (self.batch * self.d.world) - self.first_step

    def __iter__(self):
        size = self.batch * self.d.world
        for k in range(self.first_step, self.n // size):
            start = k * size + self.d.rank * self.batch
            yield [(self.epoch, i) for i in self.order[start:start + self.batch]]


# ------------------------------------------------------------------------------------------------ stages


class Stage(nn.Module):
    """The model plus what a stage adds (the contrastive temperature); ``forward(batch) -> (loss, outputs)``."""

    def __init__(self, model: Synchformer, stage: str, gather_for_loss: bool = False, center: bool = False,
                 freeze_encoders: bool | str = True, two_hot: bool = False, tune_pooling: bool = False,
                 ema: float = 0.0):
        super().__init__()
        self.model, self.stage = model, stage
        self.two_hot = two_hot and stage == "sync"
        self.frozen = stage != "contrastive" and freeze_encoders is True
        self.visual_frozen = stage != "contrastive" and freeze_encoders in (True, "visual")
        if stage == "contrastive":
            if model.cfg.v_width != model.cfg.a_width:
                raise ValueError("stage I compares visual and audio features directly: v_width must equal a_width")
            self.loss = ContrastiveLoss(gather=gather_for_loss, center=bool(center))
            self.center_clip = center == "clip"
            for part in (model.vproj, model.aproj, model.transformer):  # unused until stage II
                part.requires_grad_(False)
        elif self.visual_frozen:  # stages II and III train only the projections and the sync transformer
            for enc in (model.vfeat_extractor, model.afeat_extractor)[:2 if self.frozen else 1]:
                enc.requires_grad_(False)
            if tune_pooling:  # the query side of the visual pooling (its key and value rows get no gradient)
                pool = model.vfeat_extractor.spatial_attn_agg
                for part in (pool.cls_token, pool.self_attn, pool.linear1, pool.linear2, pool.norm2):
                    part.requires_grad_(True)
        # (a buffer of this module, so that checkpoints carry it and a resumed run goes on averaging)
        self.average = WeightAverage(model, ema) if ema else None

    def train(self, mode: bool = True):
        super().train(mode)
        if self.visual_frozen:  # frozen encoders stay in eval mode (the reference's toggle_mode)
            self.model.vfeat_extractor.eval()
        if self.frozen:
            self.model.afeat_extractor.eval()
        return self

    def segment_embeddings(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage I's (B * S, D) visual and audio embeddings: the mean over each segment's tokens (the
        reference's AveragePooling), less each clip's mean segment with ``center="clip"``."""
        video, audio = model_inputs(batch)
        v, a = self.model.extract_vfeats(video).mean(2), self.model.extract_afeats(audio).mean(2)  # (B, S, D)
        if self.center_clip:  # what a clip shows throughout (its background) cannot tell its segments apart
            v, a = v - v.mean(1, keepdim=True), a - a.mean(1, keepdim=True)
        return v.flatten(0, 1), a.flatten(0, 1)

    def forward(self, batch: dict):
        m = self.model
        if self.stage == "contrastive":
            return self.loss(*self.segment_embeddings(batch))  # (loss, [segments matched, segments])
        if "vfeats" in batch or "vtokens" in batch:  # cached (vtokens: the pooling's inputs, pooled here)
            vf, af = cached_visual(m, batch), batch["afeats"]
        else:
            video, audio = model_inputs(batch)
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.visual_frozen):
                vf = m.extract_vfeats(video)
            with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
                af = m.extract_afeats(audio)
        logits = m.compare_v_a(vf.float(), af.float())
        if self.two_hot:
            target = two_hot(batch["offset_sec"].to(logits.device), m.cfg.offset_grid().to(logits.device))
            return F.cross_entropy(logits.float(), target), logits
        return F.cross_entropy(logits.float(), batch["target"]), logits


class WeightAverage(nn.Module):
    """An exponential moving average of the trainable weights (``decay`` per step), validated and saved in place
    of the live weights: on a small tuning set those swing from one epoch to the next, and the average of the
    last few hundred steps held out better (docs/benchmarks.md, issue 39)."""

    def __init__(self, model: nn.Module, decay: float):
        super().__init__()
        self.decay = decay
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        for i, n in enumerate(self.names):
            self.register_buffer(f"w{i}", model.get_parameter(n).detach().clone())

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for i, n in enumerate(self.names):
            getattr(self, f"w{i}").lerp_(model.get_parameter(n).detach(), 1 - self.decay)

    @contextlib.contextmanager
    def applied(self, model: nn.Module):
        """The model holds the averaged weights inside the block, its live ones again after it."""
        live = {n: model.get_parameter(n).detach().clone() for n in self.names}
        with torch.no_grad():
            for i, n in enumerate(self.names):
                model.get_parameter(n).copy_(getattr(self, f"w{i}"))
        try:
            yield
        finally:
            with torch.no_grad():
                for n, v in live.items():
                    model.get_parameter(n).copy_(v)


def _averaged(stage: Stage):
    return stage.average.applied(stage.model) if stage.average is not None else contextlib.nullcontext()


def two_hot(offset_sec: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """(B,) offsets -> (B, classes) targets: each offset split between the two grid points around it, in
    proportion to closeness, so that the target's expected offset is the offset (on the grid: one-hot)."""
    lo_sec, step = float(grid[0]), (float(grid[-1]) - float(grid[0])) / (len(grid) - 1)
    pos = ((offset_sec.double() - lo_sec) / step).clamp(0, len(grid) - 1)
    pos = torch.where((pos - pos.round()).abs() < 1e-6, pos.round(), pos)  # on the grid: exactly one class
    lo = pos.floor().clamp(max=len(grid) - 2)
    w = (pos - lo).float()[:, None]
    lo = lo.long()[:, None]
    out = torch.zeros(len(pos), len(grid), device=offset_sec.device)
    return out.scatter(1, lo, 1 - w).scatter(1, lo + 1, w)


def _out_of_time(cfg: TrainConfig, t0: float, d, device: str) -> bool:
    """``max_minutes`` spent (rank 0's clock decides, so that every process stops at the same step)."""
    if not cfg.max_minutes:
        return False
    over = time.time() - t0 > cfg.max_minutes * 60
    if d.world > 1:
        t = torch.tensor([float(over)], device=device)
        dist.broadcast(t, 0)
        over = bool(t.item())
    return over


# with ``init``, a ``model`` that sets only these keeps the init file's sizes (e.g. a fine-offset model: 21
# classes over +-0.2 s, started from a +-2 s model; the head is new, everything else is the file's)
GRID_SETTINGS = {"n_offset_classes", "max_offset_sec"}


def build_model(cfg: TrainConfig) -> Synchformer:
    """A fresh model of the configured size, with the ``init`` weights loaded where given."""
    if cfg.init:  # a released or bundled model's name: its file
        cfg = dataclasses.replace(cfg, init=weights_file(cfg.init))
    mcfg = cfg.model_config()
    grid_only = bool(cfg.model) and set(cfg.model) <= GRID_SETTINGS
    if cfg.init and (not cfg.model or grid_only):  # sizes from the init file, head (and 13 segments) from the stage
        from synchformer.model.load import config_of

        mcfg = config_of(read_checkpoint(cfg.init), cfg.init)
        if cfg.stage == "synchronizability":
            mcfg = dataclasses.replace(mcfg, head="synchronizability", n_segments=13)
        else:
            mcfg = dataclasses.replace(mcfg, head="offset")
        mcfg = dataclasses.replace(mcfg, timing=cfg.data.timing)  # what this run trains on
        if grid_only:  # another offset grid over the same encoders and sync transformer: a new head
            mcfg = dataclasses.replace(mcfg, **cfg.model)
    if cfg.center_features:
        mcfg = dataclasses.replace(mcfg, center_segments=True)
    model = Synchformer(mcfg)
    if cfg.sync_start == "sharp":
        sharp_start(model.transformer, mcfg)  # an init file that holds a sync transformer overwrites it below
    if cfg.init:
        init_from(model, cfg.init)
    return model


def sharp_start(transformer: nn.Module, mcfg) -> None:
    """Re-initialise a fresh sync transformer so that it can leave the plateau it otherwise sits on when
    trained from scratch (the loss stays at ln 21: the reference's issues #5 and #19).

    Two changes, found with benchmarks/probes/probe_sync_head.py: query and key weights drawn with std 2/sqrt(width)
    instead of 0.02 (the reference's std gives near-uniform attention at small widths, so no token can pick
    out its partner), and positions that are sines and cosines of each token's time in the window (periods
    0.05 to 20 s), so that tokens at the same time in the two streams start out alike.
    """
    d = mcfg.width

    def sincos(t: torch.Tensor) -> torch.Tensor:
        freqs = torch.exp(torch.linspace(math.log(1 / 0.05), math.log(1 / 20.0), d // 2, dtype=torch.float64))
        angle = 2 * math.pi * t[:, None] * freqs[None]
        return torch.cat([angle.sin(), angle.cos()], 1).float()

    with torch.no_grad():
        pe, nv = transformer.pos_emb_cfg.pos_emb, mcfg.n_segments * mcfg.v_tokens
        pe[0, 1:1 + nv, :d // 2 * 2] = sincos(token_times(mcfg.n_segments, mcfg.v_tokens))
        pe[0, 2 + nv:, :d // 2 * 2] = sincos(token_times(mcfg.n_segments, mcfg.a_tokens))
        for block in transformer.blocks:
            block.attn.query.weight.normal_(0, 2 / math.sqrt(d))
            block.attn.key.weight.normal_(0, 2 / math.sqrt(d))


def init_from(model: Synchformer, path: str) -> None:
    """Load a stage I file (encoders) or a stage II model: all of it for another stage II run (training in
    rounds), all but the head for stage III. ``path``: a file, or a released or bundled model's name."""
    path = weights_file(path)
    sd = read_checkpoint(path).state_dict
    own = model.state_dict()
    head_keys = {k for k in list(own) + list(sd) if k.startswith(("transformer.off_head.", "transformer.sync_head."))
                 and not (k in own and k in sd and own[k].shape == sd[k].shape)}
    wrong = [k for k in sd if k in own and k != "transformer.pos_emb_cfg.pos_emb" and k not in head_keys
             and sd[k].shape != own[k].shape]
    if wrong:
        raise SynchformerError(path, f"does not fit the configured model: {', '.join(wrong[:3])} differ in shape "
                                     "(leave `model` empty to take the sizes from this file)")
    result = model.load_state_dict({k: v for k, v in sd.items() if k not in head_keys}, strict=False)
    encoders = [k for k in result.missing_keys if k.startswith(("vfeat_extractor.", "afeat_extractor."))]
    if encoders or result.unexpected_keys:
        raise SynchformerError(path, f"does not fit the model: {len(encoders)} encoder tensors missing, "
                                     f"{len(result.unexpected_keys)} unexpected")


# ----------------------------------------------------------------------------------------------- schedule


def lr_lambda(cfg: TrainConfig, total_steps: int):
    warm = max(cfg.optim.warmup_steps, 0)

    def factor(step: int) -> float:
        if step < warm:  # linear warm-up from 1% (the reference's LinearLR start factor)
            return 0.01 + 0.99 * step / warm
        if cfg.optim.scheduler == "cosine":
            progress = min(1.0, (step - warm) / max(1, total_steps - warm))
            return 0.5 * (1 + math.cos(math.pi * progress))
        return 1.0

    return factor


def make_optimizer(stage: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in stage.named_parameters():
        if p.requires_grad:
            # no weight decay on gains, biases, tokens and the temperature (as the reference), nor on the visual
            # pooling's packed query/key/value weights when its query side is tuned: keys and values stay as they are
            kept = cfg.tune_visual_pooling and "spatial_attn_agg.self_attn.in_proj" in name
            (no_decay if p.ndim < 2 or "token" in name or "logit_scale" in name or kept else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    kinds = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    if cfg.optim.optimizer not in kinds:
        raise SynchformerError(None, f"optim.optimizer must be adam or adamw, not {cfg.optim.optimizer!r}")
    return kinds[cfg.optim.optimizer](groups, lr=cfg.optim.lr, betas=cfg.optim.betas, eps=cfg.optim.eps)


# ------------------------------------------------------------------------------------------- checkpoints


def save_weights(model: Synchformer, path: Path, extra: dict | None = None, encoders_only: bool = False) -> None:
    # encoders_only: a stage I result, whose sync transformer was never trained
    save_model(model, path, extra=extra, encoders_only=encoders_only)


def save_checkpoint(out: Path, stage: Stage, opt, sched, scaler, progress: dict) -> None:
    """Step-named files, then ``last.json`` pointing at them (renamed into place: never half-written)."""
    step = progress["step"]
    ckdir = out / "checkpoints"
    ckdir.mkdir(parents=True, exist_ok=True)
    weights, state = ckdir / f"step-{step:08d}.safetensors", ckdir / f"step-{step:08d}.state.pt"
    save_weights(stage.model, weights, {"step": step})
    resume = {"stage": {k: v for k, v in stage.state_dict().items() if not k.startswith("model.")},
              "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
              "scaler": scaler.state_dict() if scaler is not None else None,
              "rng": torch.get_rng_state(), "progress": progress}
    write_atomic(state, lambda tmp: torch.save(resume, tmp))
    pointer = json.dumps({"step": step, "stage": stage.stage, "weights": weights.name, "state": state.name})
    write_atomic(ckdir / "last.json", lambda tmp: Path(tmp).write_text(pointer))
    for old in ckdir.glob("step-*"):  # keep only the newest checkpoint
        if not old.name.startswith(f"step-{step:08d}."):
            old.unlink(missing_ok=True)


def load_checkpoint(out: Path, stage: Stage, opt, sched, scaler) -> dict | None:
    pointer = out / "checkpoints" / "last.json"
    if not pointer.exists():
        return None
    info = json.loads(pointer.read_text())
    advice = "give this run its own out_dir (out_dir=runs/NAME)"
    if info.get("stage", stage.stage) != stage.stage:
        raise SynchformerError(out, f"holds a {info['stage']} run, not a {stage.stage} one: it cannot be resumed "
                                    f"as this stage; {advice}")
    sd = read_checkpoint(out / "checkpoints" / info["weights"]).state_dict
    try:
        stage.model.load_state_dict(sd)
    except RuntimeError:  # a run written before the pointer named its stage, or of another model
        raise SynchformerError(out, f"holds a run of another stage or model; it cannot be resumed; {advice}") from None
    state = torch.load(out / "checkpoints" / info["state"], map_location="cpu", weights_only=True)
    stage.load_state_dict({**{f"model.{k}": v for k, v in stage.model.state_dict().items()}, **state["stage"]})
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    if scaler is not None and state["scaler"] is not None:
        scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng"])
    return state["progress"]


# -------------------------------------------------------------------------------------------- evaluation


def _to(batch: dict, device: str) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def run_eval(stage: Stage, dataset, cfg: TrainConfig, d: Dist, device: str) -> dict:
    """Metrics over the whole validation set (each process takes every world-th sample)."""
    stage.eval()
    idx = list(range(d.rank, len(dataset), d.world))
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, idx), batch_size=cfg.data.batch_size,
                                         num_workers=cfg.data.num_workers)
    outs, targets, losses = [], [], []
    with torch.no_grad(), _autocast(cfg, device):
        for batch in loader:
            batch = _to(batch, device)
            loss, out = stage(batch)
            losses.append(float(loss) * len(batch["target"]))
            outs.append(out.float().cpu())
            targets.append(batch["target"].cpu())
    parts = [(outs, targets, losses)]
    if d.world > 1:
        parts = [None] * d.world
        dist.all_gather_object(parts, (outs, targets, losses))
    outs = [o for p in parts for o in p[0]]
    targets = torch.cat([t for p in parts for t in p[1]])
    n = len(targets)
    result = {"loss": sum(l for p in parts for l in p[2]) / max(n, 1), "n": n}
    if stage.stage == "contrastive":
        hits = torch.stack(outs).sum(0)
        result["segment_accuracy"] = float(hits[0] / hits[1])
    else:
        result.update(metrics_of(torch.cat(outs), targets, "offset" if stage.stage == "sync" else "synchronizability"))
    stage.train()
    return result


def _autocast(cfg: TrainConfig, device: str):
    if cfg.precision == "fp32":
        return contextlib.nullcontext()
    kind = "cuda" if device.startswith("cuda") else "cpu"
    return torch.autocast(kind, dtype=torch.bfloat16 if cfg.precision == "bf16" else torch.float16)


def start_of_run(stage: str, config, overrides: list[str]) -> tuple[TrainConfig, Synchformer, dict]:
    """For read-out scripts (benchmarks/probes/probe_*.py): the config, the model ``synchformer train`` would start
    from (same seed, ``init`` loaded; in eval mode) and its datasets, decoded in this one process."""
    cfg = load_config(stage, config, ["data.decode_workers=1", *overrides])
    torch.manual_seed(cfg.seed % (1 << 64))
    model = build_model(cfg).eval()
    return cfg, model, make_datasets(cfg, model.cfg, Dist(), False)


# ---------------------------------------------------------------------------------------------- training


def make_datasets(cfg: TrainConfig, mcfg, d: Dist, progress: bool, device: str = "cpu"):
    """Decode (rank 0 fills the cache, the others wait) and check the clips; the train and valid datasets."""
    raw = cfg.data.inputs_on == "device" or (cfg.data.inputs_on == "auto" and device.startswith("cuda"))
    need = required_sec(cfg.stage, mcfg, cfg.data.segment_stride)
    size = decode_size(mcfg.image_size)
    out = {}
    for name in ("train", "valid"):
        source = getattr(cfg.data, name)
        if not source:
            if name == "train":
                raise SynchformerError(None, "no training data: set data.train to a folder of videos or a CSV")
            continue
        check = functools.partial(prepare, read_clip_list(source), cfg.cache_dir, size, cfg.data.max_clip_sec, need,
                                  min_fps=cfg.data.min_fps, min_sample_rate=cfg.data.min_sample_rate,
                                  timing=cfg.data.timing)
        if d.main:
            prep = check(workers=cfg.data.decode_workers, progress=progress)
        if d.world > 1:
            dist.barrier()
        if not d.main:  # everything is cached now: this pass only reads the metadata
            prep = check()
        if not prep.clips:
            raise SynchformerError(source, f"no usable clips ({prep.report(name)})")
        out[name] = (prep, SyncDataset(prep.clips, cfg.cache_dir, cfg.stage, mcfg, train=name == "train",
                                       seed=cfg.seed, augment=Augment.from_dict(cfg.data.augment),
                                       audio_jitter_sec=cfg.data.audio_jitter_sec,
                                       segment_stride=cfg.data.segment_stride, raw=raw,
                                       negatives=cfg.data.negatives, offsets=cfg.data.offsets))
    return out


def train(cfg: TrainConfig, *, progress: bool = True, stop_after: int = 0) -> dict:
    """Train one stage as configured; resumes from ``out_dir`` if it holds a checkpoint. Returns a summary.
    ``stop_after``: leave after this many steps of this call (tests use it to stand in for a kill)."""
    d = init_distributed(pick_device(cfg.device, Dist()))
    device = pick_device(cfg.device, d)
    if cfg.precision == "fp16" and not device.startswith("cuda"):
        raise SynchformerError(None, "precision fp16 needs a GPU; use bf16 on CPU")
    out = Path(cfg.out_dir)
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.json")
    torch.manual_seed(cfg.seed % (1 << 64))  # the same initial weights in every process
    model = build_model(cfg)
    mcfg = model.cfg
    if cfg.grad_checkpointing:
        model.set_grad_checkpointing(True)
    data = make_datasets(cfg, mcfg, d, progress and d.main, device)
    prep, train_set = data["train"]
    valid_set = data["valid"][1] if "valid" in data else None
    log = ScalarLog(out / "logs", enabled=d.main)
    if d.main:
        for name, (p, _) in data.items():
            print(p.report(name), flush=True)
            for path, why in p.problems[:20]:
                print(f"  skipped {path}: {why}", flush=True)

    model.to(device)
    stage = Stage(model, cfg.stage, cfg.gather_for_loss, cfg.center_embeddings, cfg.freeze_encoders,
                  two_hot=cfg.data.offsets == "continuous", tune_pooling=cfg.tune_visual_pooling,
                  ema=cfg.ema).to(device)
    if cfg.cache_features and cfg.stage != "contrastive":
        if cfg.freeze_encoders is not True:
            raise SynchformerError(None, "cache_features needs freeze_encoders=true (features of changing encoders "
                                         "cannot be cached)")
        if cfg.data.segment_stride != 8:
            raise SynchformerError(None, "cache_features needs data.segment_stride=8")
        step, visual = cfg.feature_video_step, "pooling" if cfg.tune_visual_pooling else "features"
        feat_dir = build_feature_cache(model, train_set.clips, cfg.cache_dir, device, d, step, progress and d.main,
                                       visual)
        train_set = FeatureDataset(train_set, feat_dir, step, visual)
        if valid_set:
            build_feature_cache(model, valid_set.clips, cfg.cache_dir, device, d, step, progress and d.main, visual)
            valid_set = FeatureDataset(valid_set, feat_dir, step, visual)

    steps_per_epoch = len(train_set) // (cfg.data.batch_size * d.world)
    if steps_per_epoch == 0:
        raise SynchformerError(None, f"{len(train_set)} training clips are fewer than one batch "
                                     f"({cfg.data.batch_size} x {d.world} processes)")
    total = cfg.max_steps or cfg.epochs * steps_per_epoch
    opt = make_optimizer(stage, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg, total))
    scaler = torch.amp.GradScaler("cuda") if cfg.precision == "fp16" else None
    prog = {"step": 0, "epoch": 0, "step_in_epoch": 0, "best": None, "best_epoch": -1, "bad_epochs": 0}
    resumed = load_checkpoint(out, stage, opt, sched, scaler)
    if resumed is not None:
        prog = resumed
        if d.main:
            print(f"resuming from step {prog['step']} (epoch {prog['epoch']})", flush=True)
    ddp = stage
    if d.world > 1:
        ddp = nn.parallel.DistributedDataParallel(stage, device_ids=[d.local_rank] if device.startswith("cuda")
                                                  else None)
    metric = METRIC[cfg.stage]
    bar = _bar(total, prog["step"], progress and d.main)
    calls, stop, interrupted, t0 = 0, False, False, time.time()
    stage1 = cfg.stage == "contrastive"
    stage.train()
    sampler = GlobalBatches(len(train_set), cfg.data.batch_size, d, cfg.seed, prog["epoch"], True)
    # one loader whose workers live across epochs (not started again for every epoch); its own
    # generator: making the loader must not draw from the global RNG (resumed runs would drift)
    workers = 0 if isinstance(train_set, FeatureDataset) else cfg.data.num_workers  # a few KB per sample
    loader = torch.utils.data.DataLoader(train_set, batch_sampler=sampler, num_workers=workers,
                                         persistent_workers=workers > 0, pin_memory=device.startswith("cuda"),
                                         generator=torch.Generator())
    while prog["epoch"] < cfg.epochs and not stop:
        sampler.set_epoch(prog["epoch"], prog["step_in_epoch"])  # each item carries it to the dataset
        for batch in loader:
            batch = _to(batch, device)
            with _autocast(cfg, device):
                loss, _ = ddp(batch)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
            else:
                loss.backward()
            norm = nn.utils.clip_grad_norm_([p for p in stage.parameters() if p.requires_grad], cfg.optim.clip_norm)
            scaler.step(opt) if scaler is not None else opt.step()
            if scaler is not None:
                scaler.update()
            sched.step()
            if stage.average is not None:
                stage.average.update(model)
            prog["step"] += 1
            prog["step_in_epoch"] += 1
            calls += 1
            value = float(loss.detach())
            if d.world > 1:  # the loss of the global batch, for the log
                t = torch.tensor([value], device=device)
                dist.all_reduce(t)
                value = float(t) / d.world
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{value:.4f}", epoch=prog["epoch"])
            if prog["step"] % cfg.log_every == 0 or prog["step"] == 1:
                scalars = {"train/loss": value, "train/lr": sched.get_last_lr()[0], "train/grad_norm": float(norm)}
                if cfg.stage == "contrastive":
                    scalars["train/temperature"] = float(stage.loss.logit_scale.detach())
                log.add(prog["step"], **scalars)
            done = bool(cfg.max_steps and prog["step"] >= cfg.max_steps) or _out_of_time(cfg, t0, d, device)
            if prog["step"] % cfg.save_every == 0 and not done and d.main:
                save_checkpoint(out, stage, opt, sched, scaler, prog)
            if done or (stop_after and calls >= stop_after):
                stop, interrupted = True, not done
                break
        if interrupted:
            break  # stop_after: leave without finishing the epoch (as a killed run would)
        # epoch end (or max_steps reached): validate, keep the best, stop early
        prog["epoch"] += 1
        prog["step_in_epoch"] = 0
        if valid_set is not None and (prog["epoch"] % cfg.valid_every == 0 or stop):
            with _averaged(stage):
                res = run_eval(stage, valid_set, cfg, d, device)
            log.add(prog["step"], **{f"valid/{k}": v for k, v in res.items() if isinstance(v, (int, float))})
            if d.main:
                msg = " ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in res.items())
                (bar.write if bar is not None else print)(f"epoch {prog['epoch']} step {prog['step']}: valid {msg}")
            chosen = "loss" if cfg.select_on == "loss" else metric
            score = -res["loss"] if chosen == "loss" else res[metric]  # higher is better
            if prog["best"] is None or score > prog["best"]:
                prog.update(best=score, best_epoch=prog["epoch"], bad_epochs=0)
                if d.main:
                    with _averaged(stage):
                        save_weights(model, out / "best.safetensors", {"step": prog["step"], chosen: res[chosen]},
                                     encoders_only=stage1)
            else:
                prog["bad_epochs"] += 1
                if prog["bad_epochs"] >= cfg.patience:
                    stop = True
                    if d.main:
                        print(f"early stop: no better validation {chosen} for {cfg.patience} validations",
                              flush=True)
        if d.main:
            save_checkpoint(out, stage, opt, sched, scaler, prog)
    if bar is not None:
        bar.close()
    if d.main and not interrupted:
        with _averaged(stage):  # (with ``ema``, the run's result is the averaged weights)
            save_weights(model, out / "last.safetensors", {"step": prog["step"]}, encoders_only=stage1)
            if valid_set is None:  # without validation the last weights are the result
                save_weights(model, out / "best.safetensors", {"step": prog["step"]}, encoders_only=stage1)
    log.close()
    if d.world > 1:
        dist.barrier()
    best = prog["best"] if prog["best"] is None or cfg.select_on == "metric" else -prog["best"]  # (a loss)
    return {"steps": prog["step"], "epochs": prog["epoch"], "best": best, "best_epoch": prog["best_epoch"],
            "seconds": round(time.time() - t0, 1), "out_dir": str(out), "rank": d.rank}


def _bar(total: int, done: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc="training", unit="step", dynamic_ncols=True)
