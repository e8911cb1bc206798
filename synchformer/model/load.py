"""From a checkpoint file (or a state dict) to a ready ``Synchformer``; and back to the package's format."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import torch

from synchformer.errors import SynchformerError
from synchformer.model.checkpoint import Checkpoint, detect_head, normalise_state_dict, read_checkpoint, save_safetensors
from synchformer.model.synchformer import ModelConfig, Synchformer

FORMAT_VERSION = 1


def _dig(d, *keys):
    for k in keys:
        if not isinstance(d, Mapping) or k not in d:
            return None
        d = d[k]
    return d


def infer_config(state_dict: Mapping[str, torch.Tensor], official_args: Mapping | None = None) -> ModelConfig:
    """Model dimensions read off the tensor shapes (head counts: the reference's, or its `args`)."""
    sd = state_dict

    def shape(key, default=None):
        return tuple(sd[key].shape) if key in sd else default

    def count(prefix):
        return len({k[len(prefix):].split(".")[0] for k in sd if k.startswith(prefix)})

    cfg = {}
    if "vfeat_extractor.pos_embed" in sd:
        _, n_pos, v_width = shape("vfeat_extractor.pos_embed")
        kernel = shape("vfeat_extractor.patch_embed_3d.proj.weight")
        cfg.update(v_width=v_width, v_depth=count("vfeat_extractor.blocks."), v_heads=max(1, v_width // 64),
                   tubelet=kernel[2], patch_size=kernel[3], image_size=round((n_pos - 1) ** 0.5) * kernel[3],
                   segment_frames=shape("vfeat_extractor.temp_embed")[1] * kernel[2])
    if "afeat_extractor.ast.embeddings.position_embeddings" in sd:
        a_width = shape("afeat_extractor.ast.embeddings.position_embeddings")[2]
        cfg.update(a_width=a_width, a_depth=count("afeat_extractor.ast.encoder.layer."),
                   a_heads=max(1, a_width // 64))
    if "transformer.pos_emb_cfg.pos_emb" in sd:
        _, seq_len, width = shape("transformer.pos_emb_cfg.pos_emb")
        n_head = _dig(official_args, "model", "params", "transformer", "params", "n_head")
        cfg.update(width=width, depth=count("transformer.blocks."), heads=int(n_head or max(1, width // 96)))
        per_segment = ModelConfig(**cfg).v_tokens + ModelConfig(**cfg).a_tokens
        if (seq_len - 2) % per_segment:
            raise ValueError(f"positional table of {seq_len} does not fit {per_segment} tokens per segment")
        cfg["n_segments"] = (seq_len - 2) // per_segment
    if "transformer.off_head.weight" in sd:
        cfg.update(head="offset", n_offset_classes=shape("transformer.off_head.weight")[0])
    elif "transformer.sync_head.weight" in sd:
        cfg["head"] = "synchronizability"
    return ModelConfig(**cfg)


def _config_of(ckpt: Checkpoint) -> ModelConfig:
    ours = _dig(ckpt.config, "model")
    if ckpt.source_format == "safetensors" and isinstance(ours, Mapping) and "v_width" in ours:
        return ModelConfig.from_dict(ours)
    return infer_config(ckpt.state_dict, ckpt.config if ckpt.source_format == "official" else None)


def load_model(source, device: str | torch.device = "cpu", config: ModelConfig | None = None) -> Synchformer:
    """A ``Synchformer`` in eval mode from a released .pt (stage II/III or stage I), a bare state dict file,
    the package's .safetensors, or an in-memory state dict. The head (offset or synchronizability) and the
    sizes come from the weights; pass ``config`` for non-standard head counts.

    Stage I files hold only the encoders: ``extract_vfeats``/``extract_afeats`` work, the sync head does not.
    """
    if isinstance(source, Mapping):
        name = "<state dict>"
        sd = normalise_state_dict(source, name)
        ckpt = Checkpoint(state_dict=sd, source_format="state_dict", head=detect_head(sd, name))
    else:
        name = os.fspath(source)
        ckpt = read_checkpoint(source)
    try:
        cfg = config or _config_of(ckpt)
    except (ValueError, TypeError, KeyError, IndexError) as e:
        raise SynchformerError(name, f"cannot tell the model's sizes from its weights ({e})") from None

    # Built on the meta device and filled with the loaded tensors: no time or memory spent on a random init.
    with torch.device("meta"):
        model = Synchformer(cfg)
    sd = {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in ckpt.state_dict.items()}
    encoders_only = ckpt.head is None
    expected = model.state_dict()
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
    if encoders_only:  # a stage I file: the projections and sync transformer get the reference's init
        fresh = Synchformer(cfg).state_dict()
        sd = {**{k: v for k, v in fresh.items() if not k.startswith(("vfeat_", "afeat_"))}, **sd}
    model.load_state_dict(sd, assign=True)
    model.has_sync_head = not encoders_only
    model.source_format = ckpt.source_format
    return model.to(device).eval()


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
