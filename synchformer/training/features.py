"""Stage II/III with frozen encoders: encode every clip once, then train only the sync transformer.

The reference recomputes both encoders at every step although they never change. Here each clip's
segment features are computed for a segment starting at *every* frame (visual) and every 640-sample
audio position, so any window, offset and start a sample needs is a lookup. The features are of the
centre crop without augmentation (the encoders are frozen, so only the crop and flip would differ) and
the audio jitter is rounded to whole frames (0.04 s).

``visual="pooling"`` keeps the visual encoder's patch tokens instead of its pooled features (after the spatial
pooling's first norm: ``Synchformer.extract_pooling_inputs``), so that the pooling's query side can be tuned
too; that cache is as many times larger as a frame has patches (196 at full size: about 72 MB per 10 s clip at
``video_step`` 8, against 0.4 MB).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from synchformer.constants import SAMPLES_PER_FRAME, SEGMENT_FRAMES, SEGMENT_SAMPLES
from synchformer.features.segments import audio_to_model, center_crop, frames_to_model
from synchformer.model import Synchformer

from .data import SyncDataset, load_cached, save_npy


def encoder_digest(model: Synchformer) -> str:
    """A name for the encoders' weights: features of other weights are never reused."""
    h = hashlib.sha1()
    for k, v in model.state_dict().items():
        if k.startswith(("vfeat_extractor.", "afeat_extractor.")):
            h.update(k.encode())
            h.update(v.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


VISUAL_KINDS = {"features": "video", "pooling": "vtokens"}  # what the visual cache holds -> its files' name


@torch.no_grad()
def encode_clip(model: Synchformer, frames: np.ndarray, audio: np.ndarray, device: str, video_step: int = 1,
                chunk: int = 64, visual: str = "features"):
    """Features (float16) of the visual segments starting at every ``video_step``-th frame, ``(., 8, Dv)``
    (``visual="pooling"``: the pooling's inputs, ``(., 8, patches, Dv)``), and of the audio segments starting
    at every frame's first sample, ``(K, 6, Da)``. Offsets are whole frames apart (0.2 s = 5 frames), so audio
    is needed at every frame; the video start can be coarser."""
    size = model.cfg.image_size
    video = center_crop(torch.from_numpy(np.array(frames)), size)
    wave = torch.from_numpy(np.array(audio, dtype=np.float32))
    vsegs = video.unfold(0, SEGMENT_FRAMES, video_step).movedim(-1, 1)  # (., 16, 3, c, c), a view
    asegs = wave.unfold(0, SEGMENT_SAMPLES, SAMPLES_PER_FRAME)  # (K, 10240)
    encode = model.extract_pooling_inputs if visual == "pooling" else model.extract_vfeats
    vf = [encode(frames_to_model(vsegs[i:i + chunk].contiguous())[None].to(device))[0].half().cpu()
          for i in range(0, len(vsegs), chunk)]
    af = [model.extract_afeats(audio_to_model(asegs[i:i + chunk])[None].to(device))[0].half().cpu()
          for i in range(0, len(asegs), chunk)]
    return torch.cat(vf).numpy(), torch.cat(af).numpy()


def build_feature_cache(model: Synchformer, clips, cache_dir: Path, device: str, d, video_step: int = 1,
                        progress: bool = False, visual: str = "features") -> Path:
    """Encode every clip not yet encoded (each process takes every world-th clip); returns the folder.
    ``visual``: "features" (the encoder's output) or "pooling" (the spatial pooling's inputs)."""
    import torch.distributed as dist

    out = Path(cache_dir) / f"features-{encoder_digest(model)}"
    out.mkdir(parents=True, exist_ok=True)
    vname = f"{VISUAL_KINDS[visual]}{video_step}"
    todo = [c for c in sorted({c.key: c for c in clips}.values(), key=lambda c: c.key)
            if not (out / f"{c.key}.audio.npy").exists() or not (out / f"{c.key}.{vname}.npy").exists()]
    mine = todo[d.rank::d.world]
    if progress and mine:
        from tqdm import tqdm

        mine = tqdm(mine, desc="encoding clips", unit="clip", leave=False)
    was_training = model.training
    model.eval()
    for clip in mine:
        vf, af = encode_clip(model, *load_cached(Path(cache_dir), clip.key), device, video_step, visual=visual)
        for name, arr in ((vname, vf), ("audio", af)):
            save_npy(out / f"{clip.key}.{name}.npy", arr)
    model.train(was_training)
    if d.world > 1:
        dist.barrier()
    return out


def cached_visual(model: Synchformer, batch: dict) -> torch.Tensor:
    """The visual features of a ``FeatureDataset`` batch, (B, S, 8, Dv) in float32: its ``vfeats``, or its
    ``vtokens`` pooled by ``model`` (whose pooling's query side may be in training)."""
    return model.pool_visual(batch["vtokens"]) if "vtokens" in batch else batch["vfeats"].float()


class FeatureDataset(torch.utils.data.Dataset):
    """The samples of a ``SyncDataset`` (same offsets, starts and targets), as cached encoder features:
    items hold ``vfeats`` (S, 8, Dv) (``visual="pooling"``: ``vtokens`` (S, 8, patches, Dv)) and ``afeats``
    (S, 6, Da) instead of ``video``/``audio``.
    ``video_step`` > 1: windows start on that frame grid (a fixed placement is moved to the nearest grid
    frame, its audio with it: the offset stays exact)."""

    def __init__(self, base: SyncDataset, feature_dir: Path, video_step: int = 1, visual: str = "features"):
        if base.stride % video_step:
            raise ValueError(f"video_step {video_step} must divide the segment stride {base.stride}")
        unencoded = sorted(set(base.negatives) & {"silent", "static"}) if base.stage == "synchronizability" else []
        if unencoded:  # their inputs are made per sample, so no cached feature holds them
            raise ValueError(f"data.negatives {' and '.join(unencoded)} need cache_features=false")
        self.base, self.dir, self.step = base, Path(feature_dir), video_step
        self.vname, self.vkey = VISUAL_KINDS[visual], "vtokens" if visual == "pooling" else "vfeats"
        base.whole_frames = True  # continuous offsets: the audio features start at every frame, not every sample

    def __len__(self):
        return len(self.base)

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)

    def __getitem__(self, item: int | tuple[int, int]) -> dict:
        b = self.base
        gen, index = b.sample_key(item)
        clip = b.clips[index]
        vf = np.load(self.dir / f"{clip.key}.{self.vname}{self.step}.npy", mmap_mode="r")
        p = b.place(index, clip.frames, gen, self.step)
        audio_clip = clip if p.audio_index is None else b.clips[p.audio_index]
        af = np.load(self.dir / f"{audio_clip.key}.audio.npy", mmap_mode="r")
        n, stride = b.cfg.n_segments, b.stride
        a_first = min(int(round(p.first_sample / SAMPLES_PER_FRAME)), len(af) - 1 - (n - 1) * stride)
        if p.first_frame % self.step:  # a fixed placement: move video and audio together
            last = (clip.frames - b.span_frames) // self.step
            moved = min(round(p.first_frame / self.step), last) * self.step
            a_first = min(max(a_first + moved - p.first_frame, 0), len(af) - 1 - (n - 1) * stride)
            p.first_frame = moved
        v0, vs = p.first_frame // self.step, stride // self.step
        v = torch.from_numpy(np.array(vf[v0:v0 + (n - 1) * vs + 1:vs]))
        a = torch.from_numpy(np.array(af[a_first:a_first + (n - 1) * stride + 1:stride]))
        return {self.vkey: v, "afeats": a, "target": p.target, "offset_sec": p.offset_sec, "index": index}
