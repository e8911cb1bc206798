"""A baseline for the benchmarks: the reference implementation's computation, op for op, on our weights.

Written from the published description of v-iashin/Synchformer (../shared/reference): the attention is
computed as the reference does it (einsum with materialised scores, einops-style regrouping, the CLS
key/value repeated per group), the pooling layers are full ``nn.TransformerEncoderLayer``s, the tubelets go
through ``Conv3d``, and all segments of a window run as one batch. It exists to measure our model against
the reference's way of computing on the same machine, in the same run, and to check both give the same
numbers. It is not part of the package.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _attn(q, k, v):  # the reference's qkv_attn: scores materialised, softmax, weighted sum
    return torch.einsum("bij,bjd->bid", torch.einsum("bid,bjd->bij", q, k).softmax(dim=-1), v)


def divided_attention(p, x, heads, n_frames, over_time):
    """DividedAttention.forward of Motionformer with `p` = the block's attn or timeattn module."""
    b, length, dim = x.shape
    hd = dim // heads
    q, k, v = F.linear(x, p.qkv.weight, p.qkv.bias).chunk(3, dim=-1)
    q, k, v = (t.reshape(b, length, heads, hd).permute(0, 2, 1, 3).reshape(b * heads, length, hd) for t in (q, k, v))
    q = q * hd ** -0.5
    (cls_q, q_), (cls_k, k_), (cls_v, v_) = ((t[:, :1], t[:, 1:]) for t in (q, k, v))
    cls_out = _attn(cls_q, k, v)
    n_patches = (length - 1) // n_frames
    if over_time:  # 'b (f n) d -> (b n) f d'
        regroup = lambda t: t.reshape(b * heads, n_frames, n_patches, hd).transpose(1, 2).reshape(-1, n_frames, hd)
    else:  # 'b (f n) d -> (b f) n d'
        regroup = lambda t: t.reshape(-1, n_patches, hd)
    q_, k_, v_ = regroup(q_), regroup(k_), regroup(v_)
    r = q_.shape[0] // cls_k.shape[0]
    k_ = torch.cat([cls_k.repeat_interleave(r, 0), k_], dim=1)
    v_ = torch.cat([cls_v.repeat_interleave(r, 0), v_], dim=1)
    out = _attn(q_, k_, v_)
    if over_time:
        out = out.reshape(b * heads, n_patches, n_frames, hd).transpose(1, 2)
    out = torch.cat([cls_out, out.reshape(b * heads, length - 1, hd)], dim=1)
    out = out.reshape(b, heads, length, hd).permute(0, 2, 1, 3).reshape(b, length, dim)
    return F.linear(out, p.proj.weight, p.proj.bias)


def encoder_layer(pool, dim, heads):
    """The reference's pooling layer: an nn.TransformerEncoderLayer over [CLS, tokens] (all rows computed)."""
    layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=pool.linear1.out_features, dropout=0.0,
                                       activation=nn.GELU(), layer_norm_eps=1e-6, batch_first=True,
                                       norm_first=True)
    layer.load_state_dict({k: v for k, v in pool.state_dict().items() if k != "cls_token"})
    return layer.eval()


class ReferenceStyle(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.m = model
        cfg = model.cfg
        self.spatial = encoder_layer(model.vfeat_extractor.spatial_attn_agg, cfg.v_width, cfg.v_heads)
        self.freq = encoder_layer(model.afeat_extractor.freq_attn_agg, cfg.a_width, cfg.a_heads)

    def extract_vfeats(self, video):  # (B, S, 16, 3, H, W)
        ve, cfg = self.m.vfeat_extractor, self.m.cfg
        b, s = video.shape[:2]
        x = video.permute(0, 1, 3, 2, 4, 5).reshape(b * s, 3, cfg.segment_frames, cfg.image_size, cfg.image_size)
        x = ve.patch_embed_3d.proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([ve.cls_token.expand(b * s, -1, -1), x], dim=1)
        tile_pos = ve.pos_embed[:, 1:].repeat(1, cfg.v_tokens, 1)
        tile_temp = ve.temp_embed.repeat_interleave(cfg.v_patches, 1)
        x = x + torch.cat([ve.pos_embed[:, :1], tile_pos + tile_temp], dim=1)
        for blk in ve.blocks:
            x = x + divided_attention(blk.timeattn, blk.norm3(x), cfg.v_heads, cfg.v_tokens, True)
            x = x + divided_attention(blk.attn, blk.norm1(x), cfg.v_heads, cfg.v_tokens, False)
            x = x + blk.mlp(blk.norm2(x))
        x = ve.norm(x[:, 1:])
        g = cfg.image_size // cfg.patch_size
        x = x.permute(0, 2, 1).reshape(b * s, -1, cfg.v_tokens, g, g)  # (BS, D, t, h, w)
        x = x.permute(0, 2, 3, 4, 1).reshape(b * s * cfg.v_tokens, g * g, -1)  # '(BS t) (h w) D'
        x = torch.cat([ve.spatial_attn_agg.cls_token.expand(len(x), -1, -1), x], dim=1)
        return self.spatial(x)[:, 0].reshape(b, s, cfg.v_tokens, -1)

    def extract_afeats(self, audio):  # (B, S, 1, F, T)
        ae, cfg = self.m.afeat_extractor, self.m.cfg
        b, s = audio.shape[:2]
        ast = ae.ast
        x = audio.reshape(b * s, cfg.n_mels, cfg.mel_frames).transpose(1, 2)  # the reference's (B*S, T, F)
        x = ast.embeddings.patch_embeddings.projection(x.unsqueeze(1).transpose(2, 3)).flatten(2).transpose(1, 2)
        tokens = torch.cat([ast.embeddings.cls_token, ast.embeddings.distillation_token], 1).expand(len(x), -1, -1)
        x = torch.cat([tokens, x], dim=1) + ast.embeddings.position_embeddings
        for layer in ast.encoder.layer:
            att, h = layer.attention.attention, cfg.a_heads
            y = layer.layernorm_before(x)
            q, k, v = (lin(y).reshape(len(x), -1, h, cfg.a_width // h).transpose(1, 2)
                       for lin in (att.query, att.key, att.value))
            scores = (q @ k.transpose(-1, -2)) / (cfg.a_width // h) ** 0.5
            y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(x.shape)
            x = x + layer.attention.output.dense(y)
            x = x + layer.output.dense(F.gelu(layer.intermediate.dense(layer.layernorm_after(x))))
        x = ast.layernorm(x)[:, 2:]
        f, t = cfg.a_freq_patches, cfg.a_tokens
        x = x.permute(0, 2, 1).reshape(b * s, -1, f, t).permute(0, 3, 2, 1).reshape(b * s * t, f, -1)
        x = torch.cat([ae.freq_attn_agg.cls_token.expand(len(x), -1, -1), x], dim=1)
        return self.freq(x)[:, 0].reshape(b, s, t, -1)

    def compare_v_a(self, vfeats, afeats):
        tr, cfg = self.m.transformer, self.m.cfg
        v, a = self.m.vproj(vfeats).flatten(1, 2), self.m.aproj(afeats).flatten(1, 2)
        b = v.shape[0]
        x = torch.cat([tr.OFF_tok.expand(b, 1, -1), tr.vis_in_lnorm(v), tr.MOD_tok.expand(b, 1, -1),
                       tr.aud_in_lnorm(a)], dim=1) + tr.pos_emb_cfg.pos_emb
        for blk in tr.blocks:
            y, h = blk.ln1(x), cfg.heads
            q, k, v = (lin(y).reshape(b, -1, h, cfg.width // h).transpose(1, 2)
                       for lin in (blk.attn.query, blk.attn.key, blk.attn.value))
            att = ((q @ k.transpose(-2, -1)) * (cfg.width // h) ** -0.5).softmax(-1)
            x = x + blk.attn.proj((att @ v).transpose(1, 2).reshape(x.shape))
            x = x + blk.mlp(blk.ln2(x))
        head = tr.off_head if hasattr(tr, "off_head") else tr.sync_head
        return head(tr.ln_f(x)[:, 0])

    def forward(self, video, audio):
        return self.compare_v_a(self.extract_vfeats(video), self.extract_afeats(audio))
