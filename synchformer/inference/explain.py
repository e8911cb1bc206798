"""Which moments of a window the offset decision rests on: attribution over segments, tokens and modalities.

The sync transformer sees 14 segments x (8 visual + 6 audio) tokens. Each score is the *drop in the log-
probability of the target class* (nats) when a segment's or a token's features are taken away:

    score = log p(target | window) - log p(target | window with that part replaced by the baseline)

Positive: the model relies on that part for the target offset; negative: that part speaks against it.

Baseline ("taken away" means): the mean, over the window's *other* segments, of the tokens at the same
position in the segment. It removes what is specific to that moment (a clap, a lip closure) and keeps
what the window has everywhere (the scene, the background noise). A grey frame or digital silence, the
other obvious choice, would itself be a new event (a cut, a drop-out) that the model can sync on, and it is
far from the tokens the transformer was trained on. The mean is taken on the projected tokens (after
``vproj``/``aproj``, linear, so the same as before them), where the transformer reads them.

Methods
- ``occlusion`` (default): the encoders once, then one pass of the small sync transformer per occluded
  segment (28) and per token (196, ``tokens=True``); batched, about 0.4x the encoders' cost on a CPU.
- ``gradient``: gradient x (input - baseline) on the projected tokens, one backward through the sync
  transformer: the first-order estimate of the same drop. Plain gradient x input (a zero baseline) is
  useless here: the transformer starts with a LayerNorm, which ignores a token's scale, so the gradient is
  orthogonal to the token and ``grad . x`` is ~0 for every token.

Segments overlap by half (0.64 s long, every 0.32 s): a moment is seen by two segments, and occluding one
leaves the other's view, so segment scores understate evidence that both segments carry.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch

from synchformer.constants import AUDIO_SR, HOP_LENGTH, SEGMENT_FRAMES, SEGMENT_STRIDE_FRAMES, SEGMENT_STRIDE_SEC, VIDEO_FPS
from synchformer.errors import SynchformerError
from synchformer.features import span_frames, span_samples
from synchformer.inference.window import load_window
from synchformer.model import Synchformer

METHODS = ("occlusion", "gradient")
BASELINE = "mean of the window's other segments (same token position)"
SEG_SEC = SEGMENT_FRAMES / VIDEO_FPS  # 0.64


@dataclass
class Attribution:
    """Scores of one window (see the module docstring). Token scores are None for segment-only occlusion."""

    method: str
    logits: torch.Tensor  # (K,) before any occlusion
    target: int  # class explained
    visual_segment: torch.Tensor  # (S,)
    audio_segment: torch.Tensor  # (S,)
    visual_token: torch.Tensor | None  # (S, 8): one per 2-frame tubelet (80 ms)
    audio_token: torch.Tensor | None  # (S, 6): one per 16-mel-frame patch (160 ms every 100 ms)


@dataclass
class Explanation(Attribution):
    """An ``Attribution`` placed in a file's timeline, with what the figure shows."""

    path: str | None = None
    start_sec: float = 0.0  # first frame of the first segment (as ``predict --start``)
    classes: torch.Tensor = field(default_factory=lambda: torch.linspace(-2, 2, 21))
    target_given: bool = False  # True: the target was asked for; False: the predicted class
    thumbnails: np.ndarray | None = None  # uint8 (15, h, w, 3): middle frame of each 0.32 s slot
    waveform: np.ndarray | None = None  # float32, the window's audio at 16 kHz

    @property
    def n_segments(self) -> int:
        return len(self.visual_segment)

    @property
    def end_sec(self) -> float:
        return self.start_sec + span_frames(self.n_segments) / VIDEO_FPS

    @property
    def probs(self) -> torch.Tensor:
        return self.logits.softmax(-1)

    @property
    def offset_sec(self) -> float:
        """The predicted offset; positive: the audio leads the video."""
        return _sec(self.classes[self.logits.argmax()])

    @property
    def probability(self) -> float:
        return float(self.probs.max())

    @property
    def target_sec(self) -> float:
        return _sec(self.classes[self.target])

    def segment_starts(self) -> np.ndarray:
        return self.start_sec + SEGMENT_STRIDE_SEC * np.arange(self.n_segments)

    def token_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """Centre time (s) of every visual (S, 8) and audio (S, 6) token."""
        s0 = self.segment_starts()[:, None]
        vis = s0 + (np.arange(8) + 0.5) * 2 / VIDEO_FPS  # tubelet k: frames 2k, 2k+1 of the segment
        # audio patch k: mel frames 10k..10k+15, frame j centred on sample 160 j -> centre 160 (10k + 7.5)
        aud = s0 + (10 * np.arange(6) + 7.5) * HOP_LENGTH / AUDIO_SR
        return vis, aud

    def top(self, k: int = 3) -> list[dict]:
        p, i = self.probs.topk(min(k, len(self.probs)))
        return [{"offset_sec": _sec(self.classes[j]), "probability": float(q), "class": int(j)}
                for q, j in zip(p, i)]

    def to_dict(self) -> dict:
        r = lambda x: [float(v) for v in x]  # noqa: E731
        starts = self.segment_starts()
        out = {
            "file": self.path, "method": self.method, "baseline": BASELINE,
            "score": "drop in log-probability of the target class (nats) when the part is replaced by the "
                     "baseline; positive = supports the target" + (" (first-order estimate)" if self.method ==
                                                                    "gradient" else ""),
            "window": {"start_sec": round(self.start_sec, 3), "end_sec": round(self.end_sec, 3)},
            "offset_sec": self.offset_sec, "probability": self.probability, "top3": self.top(3),
            "classes_sec": [_sec(c) for c in self.classes], "probabilities": self.probs.tolist(),
            "target": {"offset_sec": self.target_sec, "class": self.target,
                       "probability": float(self.probs[self.target]), "given": self.target_given},
            "segments": [{"index": s, "start_sec": round(float(t), 3), "end_sec": round(float(t) + SEG_SEC, 3),
                          "visual": float(v), "audio": float(a)}
                         for s, (t, v, a) in enumerate(zip(starts, self.visual_segment, self.audio_segment))],
        }
        if self.visual_token is not None:
            vt, at = self.token_centres()
            out["tokens"] = {"visual": [r(x) for x in self.visual_token], "audio": [r(x) for x in self.audio_token],
                             "visual_centre_sec": [[round(t, 3) for t in x] for x in vt.tolist()],
                             "audio_centre_sec": [[round(t, 3) for t in x] for x in at.tolist()]}
        return out


def _sec(x) -> float:
    # the float32 grid has -2.98e-08 for its middle class: round so that it reads (and compares) as 0
    return round(float(x), 3) + 0.0


def baseline_tokens(x: torch.Tensor) -> torch.Tensor:
    """``(S, t, D)`` -> for each segment, the mean of the other segments' tokens at the same position.

    Written as ``x_s + mean_j (x_j - x_s)`` so that a segment equal to all the others gets exactly itself back
    (a plain mean of equal floats need not round to the same float): occluding it then changes nothing.
    """
    s = x.shape[0]
    return x + (x[None] - x[:, None]).sum(1) / (s - 1)


def _log_prob(model: Synchformer, v: torch.Tensor, a: torch.Tensor, target: int) -> torch.Tensor:
    """(B, S, 8, D), (B, S, 6, D) projected tokens -> (B,) log p(target)."""
    return model.transformer(v.flatten(1, 2), a.flatten(1, 2)).float().log_softmax(-1)[:, target]


def attribute(model: Synchformer, vfeats: torch.Tensor, afeats: torch.Tensor, target: int | None = None,
              method: str = "occlusion", tokens: bool = True, batch_size: int = 28) -> Attribution:
    """Scores for one window from its encoder features ``(S, 8, Dv)``, ``(S, 6, Da)`` (a leading batch of 1 is
    accepted; before ``vproj``/``aproj``, as ``extract_vfeats``/``extract_afeats`` give them).

    target: class index to explain (None: the predicted class). ``tokens``: also occlude single tokens
    (occlusion only; the gradient method always gives them).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    if not model.has_sync_head:
        raise SynchformerError(None, "these weights hold only the encoders (stage I): there is no decision to explain")
    vfeats, afeats = (f[0] if f.dim() == 4 else f for f in (vfeats, afeats))
    was_training = model.training
    model.eval()  # dropout would make every score noise
    try:
        with torch.no_grad():
            dev = model.device
            v, a = model.sync_tokens(vfeats[None].to(dev), afeats[None].to(dev))
            logits = model.transformer(v.flatten(1, 2), a.flatten(1, 2))[0].float()
            v, a = v[0], a[0]
            target = int(logits.argmax()) if target is None else int(target)
            if not 0 <= target < len(logits):
                raise ValueError(f"target class {target} out of range 0..{len(logits) - 1}")
            bv, ba = baseline_tokens(v), baseline_tokens(a)
            ref = logits.log_softmax(-1)[target]
        if method == "gradient":
            scores = _gradient(model, v, a, bv, ba, target)
        else:
            with torch.no_grad():
                scores = _occlusion(model, v, a, bv, ba, target, ref, tokens, batch_size)
    finally:
        model.train(was_training)
    return Attribution(method, logits.cpu(), target, *(None if x is None else x.cpu() for x in scores))


def _occlusion(model, v, a, bv, ba, target, ref, tokens, batch_size):
    n_seg, n_v, n_a = v.shape[0], v.shape[1], a.shape[1]
    # units: (modality 0 = visual / 1 = audio, segment, token index or None for the whole segment)
    units = [(m, s, None) for m in (0, 1) for s in range(n_seg)]
    if tokens:
        units += [(0, s, k) for s in range(n_seg) for k in range(n_v)]
        units += [(1, s, k) for s in range(n_seg) for k in range(n_a)]

    def unchanged(m, s, k):
        return torch.equal((v, a)[m][s, _sl(k)], (bv, ba)[m][s, _sl(k)])

    # Replacing tokens by themselves is no occlusion: such units score exactly 0, without a forward pass whose
    # last bits would depend on the batch size.
    run = [u for u in units if not unchanged(*u)]
    drop = dict.fromkeys(units, 0.0)
    for i in range(0, len(run), batch_size):
        chunk = run[i:i + batch_size]
        vb, ab = v.repeat(len(chunk), 1, 1, 1), a.repeat(len(chunk), 1, 1, 1)
        for j, (m, s, k) in enumerate(chunk):
            (vb, ab)[m][j, s, _sl(k)] = (bv, ba)[m][s, _sl(k)]
        for u, lp in zip(chunk, _log_prob(model, vb, ab, target)):
            drop[u] = float(ref - lp)
    seg = [torch.tensor([drop[(m, s, None)] for s in range(n_seg)]) for m in (0, 1)]
    if not tokens:
        return seg[0], seg[1], None, None
    tok = [torch.tensor([[drop[(m, s, k)] for k in range(n)] for s in range(n_seg)]) for m, n in ((0, n_v), (1, n_a))]
    return seg[0], seg[1], tok[0], tok[1]


def _sl(k):
    return slice(None) if k is None else slice(k, k + 1)


def _gradient(model, v, a, bv, ba, target):
    v, a = v.detach().requires_grad_(True), a.detach().requires_grad_(True)
    with torch.enable_grad():
        lp = _log_prob(model, v[None], a[None], target)[0]
        gv, ga = torch.autograd.grad(lp, [v, a])
    with torch.no_grad():
        # d(log p) ~ grad . (x - baseline): the first-order change when a token is occluded; sign as occlusion
        tv, ta = (gv * (v - bv)).sum(-1), (ga * (a - ba)).sum(-1)
    return tv.sum(-1), ta.sum(-1), tv, ta


def target_class(classes: torch.Tensor, target_sec: float) -> int:
    """Index of the offset class at ``target_sec`` (must be on the grid)."""
    i = int((classes - target_sec).abs().argmin())
    if not math.isfinite(target_sec) or abs(float(classes[i]) - target_sec) > 1e-3:
        lo, hi, step = float(classes[0]), float(classes[-1]), float(classes[1] - classes[0])
        raise SynchformerError(None, f"target {target_sec:g} s is not an offset class: the classes are "
                                     f"{lo:+.1f} ... {hi:+.1f} s by {step:.1f} s")
    return i


def explain_window(model: Synchformer, path: str | os.PathLike, start_sec: float = 0.0,
                   target_sec: float | None = None, method: str = "occlusion", tokens: bool = True,
                   timing: str | None = None, audio_track: int | str | None = None) -> Explanation:
    """Explain the decision on the window of ``predict_window(model, path, start_sec)`` (same decoding, same
    segments; ``start_sec`` from the first video frame; ``audio_track`` as there): the predicted offset, or the
    class at ``target_sec`` seconds."""
    path = os.fspath(path)
    if model.cfg.head != "offset":
        raise SynchformerError(path, "explain needs a model with the offset head")
    classes = model.cfg.offset_grid()
    target = None if target_sec is None else target_class(classes, target_sec)
    n_seg = model.cfg.n_segments
    # the window of predict_window
    clip, video, audio = load_window(path, start_sec, n_seg, model.cfg.image_size, timing or model.cfg.timing,
                                     audio_track)
    dev = model.device
    # no_grad, not inference_mode: inference tensors could not enter the gradient method's autograd graph
    with torch.no_grad():
        vfeats = model.extract_vfeats(video[None].to(dev))
        afeats = model.extract_afeats(audio[None].to(dev))
    att = attribute(model, vfeats, afeats, target=target, method=method, tokens=tokens)

    slots = round(span_frames(n_seg) / SEGMENT_STRIDE_FRAMES)  # 15 slots of 0.32 s
    mid = SEGMENT_STRIDE_FRAMES * np.arange(slots) + SEGMENT_STRIDE_FRAMES // 2
    thumbs = clip.frames[torch.as_tensor(mid)].permute(0, 2, 3, 1)
    step = max(1, thumbs.shape[1] // 112)  # ~112 px is plenty for a strip of 15
    wave = clip.audio[:span_samples(n_seg)]
    return Explanation(**vars(att), path=path, start_sec=clip.start_sec, classes=classes,
                       target_given=target_sec is not None, thumbnails=thumbs[:, ::step, ::step].numpy().copy(),
                       waveform=wave.numpy().astype(np.float32))


__all__ = ["Attribution", "Explanation", "attribute", "baseline_tokens", "explain_window", "target_class", "SEG_SEC"]
