"""From a checkpoint file (or a state dict) to a ready ``Synchformer``; and back to the package's format."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

from synchformer.errors import SynchformerError
from synchformer.model import released
from synchformer.model.checkpoint import Checkpoint, checkpoint_of, read_checkpoint, save_safetensors
from synchformer.model.synchformer import SETTINGS_KEY, ModelConfig, Synchformer

FORMAT_VERSION = 1


def _dig(d, *keys):
    for k in keys:
        if not isinstance(d, Mapping) or k not in d:
            return None
        d = d[k]
    return d


# What the tensor shapes cannot tell. The released widths (768) come with the released head counts (ViT-B and
# AST: 12; the sync transformer: 8); other widths need the counts from a config. ``center_segments`` is not in
# the reference, so its files are read without it, and so is a bare state dict of the released widths (MMAudio's,
# an evaluation harness's ``torch.save(ckpt["model"])``) unless it says otherwise: the package's own models that
# centre carry their settings in the state dict itself (``SETTINGS_KEY``). A bare state dict of other widths
# without them must say (a sidecar), as it may be the package's.
RELEASED_HEADS = {"v_heads": 12, "a_heads": 12, "heads": 8}
RELEASED_WIDTH = 768


def _shape_config(sd: Mapping[str, torch.Tensor]) -> dict:
    """The ModelConfig fields that the tensor shapes determine."""

    def shape(key):
        return tuple(sd[key].shape)

    def count(prefix):
        return len({k[len(prefix):].split(".")[0] for k in sd if k.startswith(prefix)})

    cfg = {}
    if "vfeat_extractor.pos_embed" in sd:
        _, n_pos, v_width = shape("vfeat_extractor.pos_embed")
        kernel = shape("vfeat_extractor.patch_embed_3d.proj.weight")
        cfg.update(v_width=v_width, v_depth=count("vfeat_extractor.blocks."),
                   tubelet=kernel[2], patch_size=kernel[3], image_size=round((n_pos - 1) ** 0.5) * kernel[3],
                   segment_frames=shape("vfeat_extractor.temp_embed")[1] * kernel[2])
    if "afeat_extractor.ast.embeddings.position_embeddings" in sd:
        a_width = shape("afeat_extractor.ast.embeddings.position_embeddings")[2]
        cfg.update(a_width=a_width, a_depth=count("afeat_extractor.ast.encoder.layer."))
    if "transformer.pos_emb_cfg.pos_emb" in sd:
        _, seq_len, width = shape("transformer.pos_emb_cfg.pos_emb")
        cfg.update(width=width, depth=count("transformer.blocks."))
        probe = ModelConfig(**cfg)
        per_segment = probe.v_tokens + probe.a_tokens
        if (seq_len - 2) % per_segment:
            raise ValueError(f"positional table of {seq_len} does not fit {per_segment} tokens per segment")
        cfg["n_segments"] = (seq_len - 2) // per_segment
    if "transformer.off_head.weight" in sd:
        cfg.update(head="offset", n_offset_classes=shape("transformer.off_head.weight")[0])
    elif "transformer.sync_head.weight" in sd:
        cfg["head"] = "synchronizability"
    return cfg


def _released_widths(shapes: Mapping) -> bool:
    widths = [shapes[k] for k in ("v_width", "a_width", "width") if k in shapes]
    return bool(widths) and all(w == RELEASED_WIDTH for w in widths)


def _infer(sd, official_args=None, given: Mapping | None = None, reference: bool = False,
           settings: Mapping | None = None):
    """(ModelConfig, fields nothing determined). ``given``: fields from a config (a sidecar); ``settings``: what
    the weights' own ``SETTINGS_KEY`` says; ``reference``: the weights are the reference's (official or stage I
    format, or a bare state dict of its widths without settings), so they have no ``center_segments``."""
    cfg = _shape_config(sd)
    known = dict(given or {})
    n_head = _dig(official_args, "model", "params", "transformer", "params", "n_head")
    if n_head is not None and "heads" not in known:
        known["heads"] = int(n_head)
    for name, value in (settings or {}).items():
        known.setdefault(name, value)
    if reference:  # the authors' own files: no centring, and their audio timing
        known.setdefault("center_segments", False)
        known.setdefault("timing", "authors")
    needed = {"v_heads": cfg.get("v_width"), "a_heads": cfg.get("a_width")}
    if "transformer.pos_emb_cfg.pos_emb" in sd:
        needed.update(heads=cfg["width"], center_segments=None)
    undetermined = []
    for name, width in needed.items():
        if name in known:
            continue
        if width is None and name != "center_segments":  # that part is not in the file: any value will do
            continue
        if width == RELEASED_WIDTH:
            known[name] = RELEASED_HEADS[name]
        else:  # a stand-in that builds (the load checks the tensors, then refuses)
            undetermined.append(name)
            known[name] = False if name == "center_segments" else 1
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(known) - fields)
    if unknown:
        raise ValueError(f"unknown model setting(s) {', '.join(unknown)}")
    return ModelConfig(**{**cfg, **known}), undetermined


def infer_config(state_dict: Mapping[str, torch.Tensor], official_args: Mapping | None = None) -> ModelConfig:
    """Model dimensions read off the tensor shapes; the head counts of the released widths are the released ones
    (or the official `args`' transformer n_head). Fields nothing determines keep ModelConfig's defaults: use
    ``load_model``, which refuses to guess them."""
    return _infer(state_dict, official_args)[0]


def _config_and_gaps(ckpt: Checkpoint, name=None) -> tuple[ModelConfig, list[str]]:
    """(config, fields nothing determined); a one-line SynchformerError naming ``name`` where the sizes cannot
    be read at all."""
    try:
        return _read_config(ckpt)
    except (ValueError, TypeError, KeyError, IndexError) as e:
        raise SynchformerError(name, f"cannot tell the model's sizes from its weights ({e})") from None


def _read_config(ckpt: Checkpoint) -> tuple[ModelConfig, list[str]]:
    ours = _dig(ckpt.config, "model")
    if ckpt.source_format == "safetensors" and isinstance(ours, Mapping) and "v_width" in ours:
        return ModelConfig.from_dict(ours), []
    official = ckpt.source_format in ("official", "stage1")
    given = _dig(ckpt.sidecar, "model")
    if ckpt.sidecar is not None and not isinstance(given, Mapping):
        raise ValueError('its config sidecar has no "model" object')
    # a bare state dict without the package's settings, of the released widths: the reference's layout
    reference = official or (ckpt.settings is None and _released_widths(_shape_config(ckpt.state_dict)))
    return _infer(ckpt.state_dict, ckpt.config if official else None, given, reference=reference,
                  settings=ckpt.settings)


def _check_settings(ckpt: Checkpoint, cfg: ModelConfig, name) -> None:
    """A config (given, or a sidecar's) that contradicts the centring the weights say they were trained with is
    refused: the model would run, with other numbers."""
    said = (ckpt.settings or {}).get("center_segments")
    if said is not None and bool(said) != cfg.center_segments:
        raise SynchformerError(name, f"the weights were trained with center_segments={str(bool(said)).lower()}, "
                                     f"but the config given says {str(cfg.center_segments).lower()}")


def config_of(ckpt: Checkpoint, path=None) -> ModelConfig:
    """The ModelConfig of a read checkpoint; a one-line SynchformerError where its weights do not tell it all."""
    cfg, undetermined = _config_and_gaps(ckpt, path)
    if undetermined:
        raise SynchformerError(path, _undetermined_message(undetermined, path))
    _check_settings(ckpt, cfg, path)
    return cfg


def _undetermined_message(fields: list[str], path) -> str:
    reasons = []
    heads = [f for f in fields if f != "center_segments"]
    if heads:
        reasons.append(f"{', '.join(heads)} (the widths are not the released {RELEASED_WIDTH})")
    if "center_segments" in fields:
        reasons.append("center_segments (a bare state dict does not say whether it was trained with it)")
    example = ", ".join(f'"{f}": {"true or false" if f == "center_segments" else "N"}' for f in fields)
    where = (f"write them into {Path(path).with_suffix('.json')} as {{\"model\": {{{example}}}}}" if path
             else "pass config=ModelConfig(...)")
    return f"the weights do not tell the model's {'; '.join(reasons)}: {where}"


def weights_file(source) -> str:
    """The file that a weights option names: a released model's name ("audioset", ...: its cached download,
    fetched once; ``released.DownloadError`` where it cannot be had), a bundled model's name ("bundled",
    "synthetic_tiny", ...: the package's file, checked), or a path, as given."""
    from synchformer.model import assets

    if released.is_name(source):
        return os.fspath(released.fetch(source))
    if assets.is_name(source):
        return os.fspath(assets.path_of(source))
    return os.fspath(source)


def load_model(source, device: str | torch.device = "cpu", config: ModelConfig | None = None,
               precision: str = "fp32") -> Synchformer:
    """A ``Synchformer`` in eval mode from a released model's name (``released.MODELS``: "audioset",
    "syncability", ...; downloaded once), a bundled model's name ("synthetic_tiny", "synthetic_tiny_syncability",
    "synthetic_tiny_fine"; "bundled" is "synthetic_tiny"), a released .pt (stage II/III or stage I), a bare state
    dict file, the package's .safetensors, or an in-memory state dict. The head (offset or synchronizability) and
    the sizes come from the weights. A bare state dict of the released widths is read as the reference's (no
    centring, the authors' audio timing) unless it carries the package's own settings (``SETTINGS_KEY``, which
    every model of the package that centres writes). What the weights cannot tell (head counts of other widths;
    ``center_segments`` of a bare state dict of other widths) comes from ``config`` or a sidecar ``<file>.json``
    holding ``{"model": {...}}``; without either, the load is refused in one line rather than guessed.

    Stage I files hold only the encoders: ``extract_vfeats``/``extract_afeats`` work, the sync head does not.
    ``precision``: fp32 (default: the reference's numbers), bf16 or fp16 autocast, or auto (bf16 where the
    device is fast at it; see ``model.precision``); the weights stay fp32 either way.
    """
    from synchformer.model.precision import resolve

    resolve(precision, device)  # a bad value is refused before seconds of loading
    from synchformer.model import assets

    path = None
    if released.is_name(source):  # "audioset", "syncability", ...: the cached download
        source = released.fetch(source)
    elif assets.is_name(source):  # "bundled", "synthetic_tiny", ...: the package's own files, checked
        source = assets.path_of(source)
    if isinstance(source, Mapping):
        name = "<state dict>"
        ckpt = checkpoint_of(source, name)
    else:
        name = path = os.fspath(source)
        ckpt = read_checkpoint(source)
    cfg, undetermined = (config, []) if config is not None else _config_and_gaps(ckpt, name)
    if undetermined and path is not None and ckpt.sidecar is None:  # a copy of a file the table knows (MMAudio's)
        known = released.settings_of(path)
        if known:
            ckpt.sidecar = {"model": known}
            cfg, undetermined = _config_and_gaps(ckpt, name)
    _check_settings(ckpt, cfg, name)

    # Built on the meta device and filled with the loaded tensors: no time or memory spent on a random init.
    with torch.device("meta"):
        model = Synchformer(cfg)
    sd = {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in ckpt.state_dict.items()}
    encoders_only = ckpt.head is None
    expected = {k: v for k, v in model.state_dict().items() if k != SETTINGS_KEY}  # (the marker is no weight)
    missing = [k for k in expected if k not in sd and not (encoders_only and not k.startswith(("vfeat_", "afeat_")))]
    unexpected = [k for k in sd if k not in expected]
    wrong = [f"{k} {tuple(sd[k].shape)} (model: {tuple(expected[k].shape)})" for k in sd
             if k in expected and sd[k].shape != expected[k].shape and k != "transformer.pos_emb_cfg.pos_emb"]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} of {len(expected)} tensors missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if wrong:
            parts.append(f"wrong shapes: {', '.join(wrong[:3])}")
        raise SynchformerError(name, "does not hold a complete Synchformer: " + "; ".join(parts))
    if undetermined:  # complete weights whose settings nothing gave: refuse rather than predict with a guess
        raise SynchformerError(name, _undetermined_message(undetermined, path))
    if encoders_only:  # a stage I file: the projections and sync transformer get the reference's init
        fresh = Synchformer(cfg).state_dict()
        sd = {**{k: v for k, v in fresh.items() if not k.startswith(("vfeat_", "afeat_"))}, **sd}
    model.load_state_dict(sd, assign=True)
    model.has_sync_head = not encoders_only
    model.source_format = ckpt.source_format
    model.source_path = None if path is None else os.path.abspath(path)
    model.bundled = _bundled_name(path)  # every verdict of a bundled model says it never saw a real video
    model.caveat = None if model.bundled is None else _bundled_caveat()
    model.precision = resolve(precision, device, cfg)  # auto: also by the model's size on a CPU
    return model.to(device).eval()


def _bundled_name(path) -> str | None:
    from synchformer.model.assets import bundled_name

    return None if path is None else bundled_name(path)


def _bundled_caveat() -> str:
    from synchformer.model.assets import CAVEAT

    return CAVEAT


def weights_identity(model: Synchformer) -> dict:
    """What made a result, for rows and reports to carry: ``{"weights": the name or file it was loaded as,
    "sha256": the first 16 hex digits of the file's sha256 (of the tensors, for a model not read from a file)}``.
    The file is hashed once per file version."""
    label = model.weights_label or model.bundled or model.source_path or "<state dict>"
    if model.source_path is not None and os.path.isfile(model.source_path):
        st = os.stat(model.source_path)
        digest = _file_sha256(model.source_path, st.st_mtime_ns, st.st_size)
    else:
        h = hashlib.sha256()
        for k, v in sorted(model.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().to("cpu").contiguous().numpy().tobytes())
        digest = h.hexdigest()
    return {"weights": str(label), "sha256": digest[:16]}


@functools.lru_cache(maxsize=16)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def save_model(model: Synchformer, path, *, protect: Iterable = (), extra: Mapping | None = None,
               encoders_only: bool | None = None) -> str:
    """Write ``model`` in the package's format (safetensors + its config); returns the file's sha256.

    ``encoders_only`` (default: the model has no trained sync head, i.e. it came from a stage I file): write the
    encoders alone, so that the file stays a stage I file instead of carrying an untrained sync transformer."""
    config = {"synchformer_format": FORMAT_VERSION, "model": model.cfg.to_dict(), **(extra or {})}
    if encoders_only is None:
        encoders_only = not model.has_sync_head
    sd = model.state_dict()
    if encoders_only:
        sd = {k: v for k, v in sd.items() if k.startswith(("vfeat_", "afeat_"))}
    return save_safetensors(sd, path, config, protect=protect)
