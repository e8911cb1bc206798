"""The Synchformer model in one file: Motionformer visual encoder, AST audio encoder, sync transformer.

Module and parameter names follow the released checkpoints exactly (``state_dict()`` of the full-size
model has the 513 keys of the official stage II model), so official weights load without renaming.

Shapes: video ``(B, S, 16, 3, 224, 224)`` in [-1, 1]; audio log-mel ``(B, S, 1, 128, 66)``;
``extract_vfeats`` -> ``(B, S, 8, 768)``; ``extract_afeats`` -> ``(B, S, 6, 768)``; logits ``(B, 21)``
(offset classes -2.0 .. +2.0 s, positive = audio leads) or ``(B, 2)`` (synchronizability).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

import torch
import torch.utils.checkpoint
import torch.nn.functional as F
from torch import nn

from synchformer.constants import TIMINGS
from synchformer.model.precision import autocast

HEADS = ("offset", "synchronizability")
# The settings that the reference's models never have, written into the state dict of a model that has them, so
# that its bare state dict (``torch.save(model.state_dict())``, a re-hosted copy) still says them: a uint8 tensor
# of JSON under this key. A state dict without it is the reference's (no centring, the authors' audio timing).
SETTINGS_KEY = "synchformer_settings"
MARKED = ("center_segments", "timing", "max_offset_sec")  # what the marker says


@dataclass
class ModelConfig:
    """Model dimensions. The defaults are the released stage II model; tiny values serve the tests."""

    # visual encoder: Motionformer ViT, divided space-time attention over 2x16x16 tubelets
    v_width: int = 768
    v_depth: int = 12
    v_heads: int = 12
    image_size: int = 224
    patch_size: int = 16
    tubelet: int = 2
    segment_frames: int = 16
    # audio encoder: AST over a (n_mels x mel_frames) log-mel, 16x16 patches with stride 10
    a_width: int = 768
    a_depth: int = 12
    a_heads: int = 12
    n_mels: int = 128
    mel_frames: int = 66
    a_patch: int = 16
    a_stride: int = 10
    # sync transformer over [OFF, visual tokens, MOD, audio tokens]
    width: int = 768
    depth: int = 3
    heads: int = 8
    n_segments: int = 14
    head: str = "offset"  # or "synchronizability" (stage III: 2 classes)
    n_offset_classes: int = 21
    max_offset_sec: float = 2.0
    mlp_ratio: int = 4
    dropout: float = 0.1  # sync transformer (embedding, attention, residual), as in the reference
    # Subtract each window's mean segment from the features before the sync transformer, so that what a window
    # shows throughout (its background) cannot drown when things happen. Not in the reference: off for its weights.
    center_segments: bool = False
    # How the audio was timed when these weights were trained (io.decode.load_av): "authors" for the released
    # checkpoints (their stack took the audio of most files 64 ms early), "true" for the package's own models.
    timing: str = "true"

    def __post_init__(self):
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, not {self.head!r}")
        if self.timing not in TIMINGS:
            raise ValueError(f"timing must be one of {', '.join(TIMINGS)}, not {self.timing!r}")

    # derived sizes
    @property
    def v_tokens(self) -> int:  # visual tokens per segment (one per tubelet in time)
        return self.segment_frames // self.tubelet

    @property
    def v_patches(self) -> int:  # spatial patches per frame
        return (self.image_size // self.patch_size) ** 2

    @property
    def a_freq_patches(self) -> int:
        return (self.n_mels - self.a_patch) // self.a_stride + 1

    @property
    def a_tokens(self) -> int:  # audio tokens per segment (time patches)
        return (self.mel_frames - self.a_patch) // self.a_stride + 1

    @property
    def seq_len(self) -> int:
        return 2 + self.n_segments * (self.v_tokens + self.a_tokens)

    @property
    def n_classes(self) -> int:
        return self.n_offset_classes if self.head == "offset" else 2

    def offset_grid(self) -> torch.Tensor:
        """Offset (seconds) of each class of the offset head: linspace(-2, 2, 21)."""
        # computed in float64 and rounded: float32 linspace puts the middle class at -3e-8, not 0
        grid = torch.linspace(-self.max_offset_sec, self.max_offset_sec, self.n_offset_classes, dtype=torch.float64)
        return (grid.mul(1e6).round().div(1e6) + 0.0).float()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def marked(self) -> bool:
        """Whether the state dict carries ``SETTINGS_KEY``: where a setting is one the reference never has
        (centred segments, a finer offset grid). The timing alone does not mark it: its state dict stays the
        reference's, key for key, and a bare copy of it is read with the authors' timing."""
        return self.center_segments or self.max_offset_sec != 2.0

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def synchronizability(cls, **kw) -> "ModelConfig":
        """Stage III: 13 segments (4.48 s), 2-class head."""
        return cls(**{"n_segments": 13, "head": "synchronizability", **kw})

    @classmethod
    def tiny(cls, **kw) -> "ModelConfig":
        """A small configuration of the same code, for tests (the input sizes stay the model's own)."""
        small = dict(v_width=32, v_depth=2, v_heads=2, a_width=32, a_depth=2, a_heads=2,
                     width=32, depth=1, heads=2)
        return cls(**{**small, **kw})


def _maybe_checkpoint(owner: nn.Module, layer: nn.Module, *args):
    """Run ``layer``, recomputing its activations in the backward pass when ``owner.grad_checkpointing``
    is set (training the encoders at full size: memory of one layer instead of twelve)."""
    if getattr(owner, "grad_checkpointing", False) and torch.is_grad_enabled():
        return torch.utils.checkpoint.checkpoint(layer, *args, use_reentrant=False)
    return layer(*args)


def _attention(q, k, v):
    return F.scaled_dot_product_attention(q, k, v)


def _gelu(x):
    # in place when no gradient is needed: saves a pass over the largest activation
    return F.gelu(x) if torch.is_grad_enabled() else torch.ops.aten.gelu_(x)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(_gelu(self.fc1(x)))


class DividedAttention(nn.Module):
    """Motionformer's divided attention: patch tokens attend within their group (same spatial position
    across time, or same frame across space) plus the CLS token; the CLS token attends to everything."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, n_frames: int, over_time: bool):
        n, length, dim = x.shape
        h, hd = self.heads, dim // self.heads
        n_patches = (length - 1) // n_frames
        qkv = self.qkv(x).view(n, length, 3, h, hd)
        cls = qkv[:, :1].permute(2, 0, 3, 1, 4)  # (3, n, h, 1, hd)
        all_k, all_v = qkv[:, :, 1].transpose(1, 2), qkv[:, :, 2].transpose(1, 2)  # (n, h, L, hd)
        cls_out = _attention(cls[0], all_k, all_v)  # (n, h, 1, hd)

        # group the patch tokens: (n, frames, patches, 3, h, hd) -> (n * groups, h, group size, hd)
        patches = qkv[:, 1:].view(n, n_frames, n_patches, 3, h, hd)
        if over_time:
            grouped = patches.permute(3, 0, 2, 4, 1, 5)  # (3, n, patches, h, frames, hd)
        else:
            grouped = patches.permute(3, 0, 1, 4, 2, 5)  # (3, n, frames, h, patches, hd)
        groups = grouped.shape[2]
        q, k, v = (t.reshape(n * groups, h, -1, hd) for t in grouped)
        # every group also sees the CLS key/value, in front
        k = torch.cat([cls[1].repeat_interleave(groups, 0), k], dim=2)
        v = torch.cat([cls[2].repeat_interleave(groups, 0), v], dim=2)
        out = _attention(q, k, v).view(n, groups, h, -1, hd)
        if over_time:
            out = out.permute(0, 3, 1, 2, 4)  # (n, frames, patches, h, hd)
        else:
            out = out.permute(0, 1, 3, 2, 4)  # (n, frames, patches, h, hd)
        out = torch.cat([cls_out.transpose(1, 2), out.reshape(n, length - 1, h, hd)], dim=1)
        return self.proj(out.reshape(n, length, dim))


class DividedSpaceTimeBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = DividedAttention(dim, heads)  # over space
        self.timeattn = DividedAttention(dim, heads)  # over time
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, dim * mlp_ratio)
        self.norm3 = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x, n_frames: int):
        # order of the reference: time, then space, then MLP
        x = x + self.timeattn(self.norm3(x), n_frames, over_time=True)
        x = x + self.attn(self.norm1(x), n_frames, over_time=False)
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, dim: int, kernel: tuple):
        super().__init__()
        conv = nn.Conv2d if len(kernel) == 2 else nn.Conv3d
        self.proj = conv(3, dim, kernel, stride=kernel)


class CLSPooling(nn.Module):
    """A pre-norm transformer encoder layer with a learned CLS token in front; returns the CLS output.

    Parameter names are those of ``nn.TransformerEncoderLayer`` (as in the checkpoints). Only the CLS
    row is computed after the keys and values: the other rows' outputs are never used.
    """

    def __init__(self, dim: int, heads: int, hidden: int):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)  # holds in_proj / out_proj
        self.linear1 = nn.Linear(dim, hidden)
        self.linear2 = nn.Linear(hidden, dim)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x):  # (N, L, D) -> (N, D)
        n, length, dim = x.shape
        h = self.self_attn.num_heads
        cls = self.cls_token.expand(n, 1, dim)
        y = self.norm1(torch.cat([cls, x], dim=1))
        w, b = self.self_attn.in_proj_weight, self.self_attn.in_proj_bias
        q = F.linear(y[:, :1], w[:dim], b[:dim]).view(n, 1, h, -1).transpose(1, 2)
        kv = F.linear(y, w[dim:], b[dim:]).view(n, length + 1, 2, h, -1).permute(2, 0, 3, 1, 4)
        out = _attention(q, kv[0], kv[1]).reshape(n, dim)
        return self._finish(cls[:, 0], out)

    def pool_normed(self, y):  # (N, L, D) patch tokens after norm1 -> (N, D), as forward
        """``forward`` from tokens already through ``norm1``, for tuning the query side (CLS token, query, output
        projection, MLP) with the keys and values frozen: a head's attention-weighted value is its value
        projection of the attention-weighted tokens, and its scores are the tokens times (query x key weights),
        so no key or value of a token is computed (far fewer operations than ``forward`` at full size).
        The key bias adds the same score to every token and cancels in the softmax."""
        n, length, dim = y.shape
        h = self.self_attn.num_heads
        hd = dim // h
        cls = self.cls_token.expand(n, 1, dim)
        yc = self.norm1(self.cls_token)[0, 0]  # the CLS token's own key and value (kept apart: no copy of y)
        w, b = self.self_attn.in_proj_weight, self.self_attn.in_proj_bias
        q = F.linear(yc, w[:dim], b[:dim]).view(h, hd)
        wk, wv = w[dim:2 * dim].detach().view(h, hd, dim), w[2 * dim:].detach().view(h, hd, dim)
        u = torch.einsum("he,hed->hd", q, wk) / math.sqrt(hd)  # (heads, D): a token's score is u . token
        if y.dtype != u.dtype and not torch.is_autocast_enabled(y.device.type):
            y = y.to(u.dtype)
        # two products that each read the tokens once, as they lie (no permuted copy of y)
        scores = torch.cat([(u @ yc).expand(n, 1, h), y @ u.t().to(y.dtype)], 1)  # (N, 1 + L, heads)
        att = scores.float().softmax(1).transpose(1, 2)  # (N, heads, 1 + L)
        mixed = att[..., :1] * yc + (att[..., 1:].to(y.dtype) @ y).float()  # (N, heads, D)
        out = torch.einsum("nhd,hed->nhe", mixed, wv) + b[2 * dim:].detach().view(h, hd)
        return self._finish(cls[:, 0], out.reshape(n, dim))

    def _finish(self, cls, attended):
        cls = cls + self.self_attn.out_proj(attended)
        return cls + self.linear2(F.gelu(self.linear1(self.norm2(cls))))


class VisualEncoder(nn.Module):
    """Motionformer (ViT-B/16, divided space-time attention) + spatial CLS pooling -> 8 tokens/segment."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, t = cfg.v_width, cfg.v_tokens
        self.cfg = cfg
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.v_patches + 1, d))
        self.temp_embed = nn.Parameter(torch.zeros(1, t, d))
        # The 2-D patch embedding is unused by the model; kept so state dicts match the official keys.
        self.patch_embed = PatchEmbed(d, (cfg.patch_size,) * 2)
        self.patch_embed.requires_grad_(False)
        self.patch_embed_3d = PatchEmbed(d, (cfg.tubelet, cfg.patch_size, cfg.patch_size))
        self.blocks = nn.ModuleList(DividedSpaceTimeBlock(d, cfg.v_heads, cfg.mlp_ratio) for _ in range(cfg.v_depth))
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.spatial_attn_agg = CLSPooling(d, cfg.v_heads, d * cfg.mlp_ratio)

    def embed(self, x):  # (N, 16, 3, H, W) -> (N, 1 + t*p, D)
        cfg = self.cfg
        n, p, k = x.shape[0], cfg.patch_size, cfg.tubelet
        g = cfg.image_size // p
        # A conv with stride == kernel is a matmul over non-overlapping tubelets (faster than Conv3d on CPU).
        tubes = x.reshape(n, cfg.v_tokens, k, 3, g, p, g, p).permute(0, 1, 4, 6, 3, 2, 5, 7)
        proj = self.patch_embed_3d.proj
        x = F.linear(tubes.reshape(n, cfg.v_tokens * g * g, -1), proj.weight.flatten(1), proj.bias)
        pos = (self.pos_embed[:, 1:].unsqueeze(1) + self.temp_embed.unsqueeze(2)).flatten(1, 2)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(n, 1, -1)
        return torch.cat([cls, x + pos], dim=1)

    def forward(self, x):  # (N, 16, 3, H, W) -> (N, 8, D)
        n, t = x.shape[0], self.cfg.v_tokens
        x = self.patch_tokens(x)
        return self.spatial_attn_agg(x.view(n * t, -1, x.shape[-1])).view(n, t, -1)

    def patch_tokens(self, x):  # (N, 16, 3, H, W) -> (N, t * patches, D), before the spatial pooling
        x = self.embed(x)
        for block in self.blocks:
            x = _maybe_checkpoint(self, block, x, self.cfg.v_tokens)
        return self.norm(x[:, 1:])  # CLS dropped, as in the reference

    def pooling_inputs(self, x):  # (N, 16, 3, H, W) -> (N, t, patches, D): what ``pool_normed`` takes
        n, t = x.shape[0], self.cfg.v_tokens
        x = self.patch_tokens(x)
        return self.spatial_attn_agg.norm1(x).view(n, t, -1, x.shape[-1])


class ASTEmbeddings(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.a_width
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.distillation_token = nn.Parameter(torch.zeros(1, 1, d))
        self.position_embeddings = nn.Parameter(torch.zeros(1, 2 + cfg.a_freq_patches * cfg.a_tokens, d))
        self.patch_embeddings = nn.Module()
        self.patch_embeddings.projection = nn.Conv2d(1, d, cfg.a_patch, stride=cfg.a_stride)

    def forward(self, x):  # (N, 1, F, T) -> (N, 2 + f*t, D); patches in frequency-major order
        x = self.patch_embeddings.projection(x).flatten(2).transpose(1, 2)
        n = x.shape[0]
        tokens = torch.cat([self.cls_token, self.distillation_token], dim=1).expand(n, -1, -1)
        return torch.cat([tokens, x], dim=1) + self.position_embeddings


class ASTLayer(nn.Module):
    """A pre-norm ViT layer with the parameter names of Hugging Face's AST."""

    def __init__(self, dim: int, heads: int, hidden: int):
        super().__init__()
        self.heads = heads
        self.attention = nn.Module()
        self.attention.attention = nn.Module()
        for name in ("query", "key", "value"):
            setattr(self.attention.attention, name, nn.Linear(dim, dim))
        self.attention.output = nn.Module()
        self.attention.output.dense = nn.Linear(dim, dim)
        self.intermediate = nn.Module()
        self.intermediate.dense = nn.Linear(dim, hidden)
        self.output = nn.Module()
        self.output.dense = nn.Linear(hidden, dim)
        self.layernorm_before = nn.LayerNorm(dim, eps=1e-12)
        self.layernorm_after = nn.LayerNorm(dim, eps=1e-12)

    def forward(self, x):
        n, length, dim = x.shape
        att = self.attention.attention
        y = self.layernorm_before(x)
        q, k, v = (lin(y).view(n, length, self.heads, -1).transpose(1, 2) for lin in (att.query, att.key, att.value))
        y = _attention(q, k, v).transpose(1, 2).reshape(n, length, dim)
        x = x + self.attention.output.dense(y)
        return x + self.output.dense(_gelu(self.intermediate.dense(self.layernorm_after(x))))


class AST(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embeddings = ASTEmbeddings(cfg)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(
            ASTLayer(cfg.a_width, cfg.a_heads, cfg.a_width * cfg.mlp_ratio) for _ in range(cfg.a_depth))
        self.layernorm = nn.LayerNorm(cfg.a_width, eps=1e-12)

    def forward(self, x):
        x = self.embeddings(x)
        for layer in self.encoder.layer:
            x = _maybe_checkpoint(self, layer, x)
        return self.layernorm(x)


class AudioEncoder(nn.Module):
    """AST on a 128-bin log-mel + frequency CLS pooling -> 6 tokens/segment."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.ast = AST(cfg)
        self.freq_attn_agg = CLSPooling(cfg.a_width, cfg.a_heads, cfg.a_width * cfg.mlp_ratio)

    def forward(self, x):  # (N, 1, F, T) -> (N, t, D)
        cfg = self.cfg
        x = self.ast(x)[:, 2:]  # drop CLS and distillation tokens: (N, f*t, D), frequency-major
        n, f, t = x.shape[0], cfg.a_freq_patches, cfg.a_tokens
        x = x.view(n, f, t, -1).transpose(1, 2).reshape(n * t, f, -1)
        return self.freq_attn_agg(x).view(n, t, -1)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float = 0.1):
        super().__init__()
        self.heads = heads
        self.key, self.query, self.value, self.proj = (nn.Linear(dim, dim) for _ in range(4))
        self.dropout = dropout

    def forward(self, x):
        n, length, dim = x.shape
        q, k, v = (lin(x).view(n, length, self.heads, -1).transpose(1, 2) for lin in (self.query, self.key, self.value))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return F.dropout(self.proj(y.transpose(1, 2).reshape(n, length, dim)), self.dropout, self.training)


class Block(nn.Module):
    """minGPT block (no causal mask), as in the reference's sync transformer."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int, dropout: float = 0.1):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.ln2 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, dropout)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim),
                                 nn.Dropout(dropout))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class SyncTransformer(nn.Module):
    """3 blocks over [OFF, visual tokens, MOD, audio tokens]; the head reads the OFF token."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.width
        self.OFF_tok = nn.Parameter(torch.zeros(1, 1, d))
        self.MOD_tok = nn.Parameter(torch.zeros(1, 1, d))
        self.vis_in_lnorm = nn.LayerNorm(d)
        self.aud_in_lnorm = nn.LayerNorm(d)
        self.pos_emb_cfg = nn.Module()  # name kept from the reference ("pos_emb_cfg.pos_emb")
        self.pos_emb_cfg.pos_emb = nn.Parameter(torch.zeros(1, cfg.seq_len, d))
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.Sequential(*(Block(d, cfg.heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.depth)))
        self.ln_f = nn.LayerNorm(d)
        if cfg.head == "offset":
            self.off_head = nn.Linear(d, cfg.n_classes)
        else:
            self.sync_head = nn.Linear(d, 2)

    def forward(self, v, a):  # (B, Sv, D), (B, Sa, D) -> (B, classes)
        b = v.shape[0]
        x = torch.cat([self.OFF_tok.expand(b, 1, -1), self.vis_in_lnorm(v),
                       self.MOD_tok.expand(b, 1, -1), self.aud_in_lnorm(a)], dim=1)
        x = self.ln_f(self.blocks(self.drop(x + self.pos_emb_cfg.pos_emb)))
        head = self.off_head if hasattr(self, "off_head") else self.sync_head
        return head(x[:, 0])


class Synchformer(nn.Module):
    has_sync_head = True  # False for weights that hold only the encoders (stage I files)
    caveat: str | None = None  # about the model itself, carried into unreliable verdicts (e.g. the bundled one)
    bundled: str | None = None  # the name of the bundled model it was loaded from (model.bundled.BUNDLED)
    weights_label: str | None = None  # what the CLI loaded it as (a file, a released name, "bundled")
    source_path: str | None = None  # the file load_model read (None: an in-memory state dict, or built here)
    load_warning: str | None = None  # said with every result of the CLI (e.g. the bundled model stood in)
    precision: str = "fp32"  # "bf16" / "fp16": the encoders and the sync transformer run under autocast

    def __init__(self, cfg: ModelConfig | None = None, segment_batch: int | None = None):
        super().__init__()
        self.cfg = cfg = cfg or ModelConfig()
        # Segments are independent in the encoders. On a CPU, two per window at a time bound the activation
        # memory without slowing the (matmul-bound) encoders down; a GPU needs whole windows per call to stay
        # busy (benchmarks/bench_core.py on an H100: 0.24 s a window with 2, 0.15 s with 14). None: that choice.
        self.segment_batch = segment_batch
        self.vfeat_extractor = VisualEncoder(cfg)
        self.afeat_extractor = AudioEncoder(cfg)
        self.vproj = nn.Linear(cfg.v_width, cfg.width)
        self.aproj = nn.Linear(cfg.a_width, cfg.width)
        self.transformer = SyncTransformer(cfg)
        self.apply(_init_weights)
        # (the private names: the public ones came with torch 2.5, and torch>=2.2 is supported)
        self._register_state_dict_hook(Synchformer._add_settings)
        self._register_load_state_dict_pre_hook(Synchformer._take_settings, with_module=True)

    @property
    def device(self) -> torch.device:
        return self.vproj.weight.device

    def _by_segments(self, encoder, x):  # (B, S, ...) -> (B, S, t, D)
        b, s = x.shape[:2]
        x = x.reshape(b * s, *x.shape[2:])
        per_window = self.segment_batch or (s if x.is_cuda else 2)
        step = per_window * b if not torch.is_grad_enabled() else len(x)
        out = torch.cat([encoder(chunk) for chunk in x.split(max(step, 1))])
        return out.view(b, s, *out.shape[1:])

    def extract_vfeats(self, video: torch.Tensor) -> torch.Tensor:
        """(B, S, 16, 3, 224, 224) in [-1, 1] -> (B, S, 8, 768) segment features, before ``vproj``."""
        cfg = self.cfg
        expected = (cfg.segment_frames, 3, cfg.image_size, cfg.image_size)
        if video.dim() != 6 or tuple(video.shape[2:]) != expected:
            raise ValueError(f"video must be (B, S, {', '.join(map(str, expected))}), got {tuple(video.shape)}")
        with autocast(self):
            return self._by_segments(self.vfeat_extractor, video).float()

    def extract_pooling_inputs(self, video: torch.Tensor) -> torch.Tensor:
        """(B, S, 16, 3, 224, 224) -> (B, S, 8, 196, 768): the visual encoder's patch tokens after its spatial
        pooling's first norm; ``pool_visual`` turns them into ``extract_vfeats``'s features. (What a feature cache
        holds when the pooling's query side is tuned: training.features.)"""
        with autocast(self):
            return self._by_segments(self.vfeat_extractor.pooling_inputs, video).float()

    def pool_visual(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, S, 8, P, D) from ``extract_pooling_inputs`` -> (B, S, 8, D), as ``extract_vfeats``."""
        b, s, t, p, d = tokens.shape
        with autocast(self):
            kind = tokens.device.type  # (cast once here: the pooling reads the tokens twice, as they come)
            tokens = tokens.to(torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else torch.float32)
            return self.vfeat_extractor.spatial_attn_agg.pool_normed(tokens.reshape(b * s * t, p, d)).view(
                b, s, t, -1).float()

    def extract_afeats(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, S, 1, 128, 66) log-mel -> (B, S, 6, 768) segment features, before ``aproj``."""
        cfg = self.cfg
        expected = (1, cfg.n_mels, cfg.mel_frames)
        if audio.dim() != 5 or tuple(audio.shape[2:]) != expected:
            raise ValueError(f"audio must be (B, S, {', '.join(map(str, expected))}), got {tuple(audio.shape)}")
        with autocast(self):
            return self._by_segments(self.afeat_extractor, audio).float()

    def compare_v_a(self, vfeats: torch.Tensor, afeats: torch.Tensor) -> torch.Tensor:
        """Logits from segment features of one window: (B, S, 8, D), (B, S, 6, D) -> (B, classes)."""
        if not self.has_sync_head:
            raise RuntimeError("these weights hold only the encoders (a stage I checkpoint): use extract_vfeats/"
                               "extract_afeats, or train the sync transformer (stage II) first")
        if vfeats.shape[1] != self.cfg.n_segments or afeats.shape[1] != self.cfg.n_segments:
            raise ValueError(f"this model takes windows of {self.cfg.n_segments} segments, got "
                             f"{vfeats.shape[1]} visual and {afeats.shape[1]} audio")
        with autocast(self):
            v, a = self.sync_tokens(vfeats, afeats)
            return self.transformer(v.flatten(1, 2), a.flatten(1, 2)).float()

    def sync_tokens(self, vfeats: torch.Tensor, afeats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The sync transformer's visual and audio tokens, (B, S, 8, width) and (B, S, 6, width)."""
        if self.cfg.center_segments:
            vfeats, afeats = (f - f.mean(1, keepdim=True) for f in (vfeats, afeats))
        return self.vproj(vfeats), self.aproj(afeats)

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        return self.compare_v_a(self.extract_vfeats(video), self.extract_afeats(audio))

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        """Recompute encoder activations in the backward pass (the reference cannot): less memory, ~30% slower."""
        self.vfeat_extractor.grad_checkpointing = enabled
        self.afeat_extractor.ast.grad_checkpointing = enabled

    def _add_settings(self, state_dict, prefix, local_metadata):  # state_dict post-hook
        if self.cfg.marked:
            state_dict[prefix + SETTINGS_KEY] = settings_tensor(self.cfg)

    def _take_settings(self, state_dict, prefix, *args):  # load_state_dict pre-hook: the marker is no weight
        state_dict.pop(prefix + SETTINGS_KEY, None)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        marker = state_dict.get(SETTINGS_KEY)
        if strict and marker is not None:  # weights that say another centring: this model would run them wrongly
            try:
                said = bool(read_settings(marker).get("center_segments", False))
            except ValueError as e:
                raise RuntimeError(f"unreadable {SETTINGS_KEY} in the state dict: {e}") from None
            if said != self.cfg.center_segments:
                raise RuntimeError(f"the weights were trained with center_segments={said}, this model has "
                                   f"center_segments={self.cfg.center_segments}")
        # Stage III fine-tunes from stage II: a longer positional table is trimmed, as the reference does.
        key = "transformer.pos_emb_cfg.pos_emb"
        own = self.transformer.pos_emb_cfg.pos_emb.shape[1]
        if key in state_dict and state_dict[key].shape[1] > own:
            state_dict = {**state_dict, key: state_dict[key][:, :own]}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


def settings_tensor(cfg: ModelConfig) -> torch.Tensor:
    """The ``SETTINGS_KEY`` marker of ``cfg``: the JSON of its ``MARKED`` settings, as uint8."""
    text = json.dumps({k: getattr(cfg, k) for k in MARKED}, sort_keys=True, separators=(",", ":"))
    return torch.tensor(list(text.encode()), dtype=torch.uint8, device="cpu")  # (also in a meta-device build)


def read_settings(marker) -> dict:
    """The settings a ``SETTINGS_KEY`` tensor says (a copy cast to another dtype reads the same); ValueError
    where it is not one."""
    if not isinstance(marker, torch.Tensor) or marker.dim() != 1 or not 0 < marker.numel() <= 4096:
        raise ValueError("not a 1-d tensor of JSON bytes")
    values = marker.detach().to("cpu", torch.float64).tolist()
    if any(v != int(v) or not 0 <= v <= 255 for v in values):
        raise ValueError("not a 1-d tensor of JSON bytes")
    try:
        said = json.loads(bytes(int(v) for v in values).decode())
    except (UnicodeDecodeError, ValueError):
        raise ValueError("not JSON") from None
    if not isinstance(said, dict) or not set(said) <= set(MARKED):
        raise ValueError(f"expected an object of {', '.join(MARKED)}")
    grid = said.get("max_offset_sec", 2.0)
    if (not isinstance(said.get("center_segments", False), bool) or said.get("timing", "true") not in TIMINGS
            or isinstance(grid, bool) or not isinstance(grid, (int, float)) or not grid > 0):
        raise ValueError(f"unknown values in {json.dumps(said, sort_keys=True)[:120]}")
    return said


def _init_weights(module: nn.Module):
    """Initialisation of the reference (only matters for training from scratch)."""
    if isinstance(module, (nn.Linear, nn.Conv2d, nn.Conv3d)):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.MultiheadAttention):
        nn.init.normal_(module.in_proj_weight, std=0.02)
        nn.init.zeros_(module.in_proj_bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    for name, p in module.named_parameters(recurse=False):
        if name in ("cls_token", "distillation_token", "pos_embed", "temp_embed", "position_embeddings",
                    "OFF_tok", "MOD_tok", "pos_emb"):
            nn.init.normal_(p, std=0.02)


ENCODERS = ("vfeat_extractor.", "afeat_extractor.")


def same_encoders(a: Synchformer, b: Synchformer, parts: tuple[str, ...] = ENCODERS) -> bool:
    """Whether ``a``'s and ``b``'s encoders (``parts``: both, or one, e.g. ``("vfeat_extractor.",)``) are the same,
    weight for weight, on inputs of the same size: then one's features are the other's. Stage III fine-tunes only
    the sync transformer, a fine-offset model all but the visual encoder, so theirs are usually their parent's."""
    if a is b:
        return True
    if a.cfg.v_width != b.cfg.v_width or a.cfg.image_size != b.cfg.image_size:
        return False
    sa, sb = a.state_dict(), b.state_dict()
    keys = [k for k in sa if k.startswith(parts)]
    return bool(keys) and all(k in sb and sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k].to(sa[k].device))
                              for k in keys)
