"""Is stage I learning, and if not, why? Segment embeddings of a stage I config's validation windows (as the
loss sees them: mean over each segment's tokens, centred on the batch), read out without training.

For the config's starting encoders and each ``--weights`` file (stage I checkpoints), per modality:
``spread`` (how far embeddings sit from their mean, relative to their size: near 0 is a collapse onto one
vector), ``mean_cos`` (cosine between different segments after centring); for the pair: ``matched_cos``
against ``all_pairs_cos`` (a segment's own audio should be closer than the rest), and ``retrieval`` (visual ->
audio, the validation metric) beside chance. On a ``synchformer synth`` folder, ``event_sep`` says how
strongly each modality tells segments with an event from those without: a modality near 0 has nothing the
other can match, which is where stage I from scratch stalls.

    python benchmarks/probe_stage1.py --config C.json [--weights runs/s1/checkpoints/step-*.safetensors] [key=value ...]
"""
import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from synchformer.constants import SEGMENT_FRAMES, VIDEO_FPS
from synchformer.training.loop import Stage, init_from, start_of_run
from synchformer.training.synth import event_times


def segment_events(dataset, n: int, events: dict) -> torch.Tensor | None:
    """(n * S,) bool: an event of ``events`` (clip name -> times) falls in the segment's video span."""
    has = []
    for i in range(n):
        clip = dataset.clips[i]
        if Path(clip.path).name not in events:
            return None
        first = dataset.place(i, clip.frames, torch.Generator()).first_frame
        for s in range(dataset.cfg.n_segments):
            t0 = (first + s * dataset.stride) / VIDEO_FPS
            has.append(any(t0 <= e < t0 + SEGMENT_FRAMES / VIDEO_FPS for e in events[Path(clip.path).name]))
    return torch.tensor(has)


def readout(v: torch.Tensor, a: torch.Tensor, has: torch.Tensor | None) -> dict:
    out = {}
    for name, e in (("visual", v), ("audio", a)):
        c = e - e.mean(0)
        n = F.normalize(c, dim=-1)
        off = ~torch.eye(len(n), dtype=torch.bool)
        m = {"spread": float(c.norm(dim=1).mean() / e.norm(dim=1).mean()), "mean_cos": float((n @ n.T)[off].mean())}
        if has is not None and has.any() and (~has).any():
            m["event_sep"] = float((c[has].mean(0) - c[~has].mean(0)).norm() / c.norm(dim=1).mean())
        out[name] = {k: round(x, 4) for k, x in m.items()}
    vn, an = F.normalize(v - v.mean(0), dim=-1), F.normalize(a - a.mean(0), dim=-1)
    sim = vn @ an.T
    out["matched_cos"] = round(float(sim.diag().mean()), 4)
    out["all_pairs_cos"] = round(float(sim.mean()), 4)
    out["retrieval"] = round(float((sim.argmax(1) == torch.arange(len(sim))).float().mean()), 4)
    out["chance"] = round(1 / len(sim), 4)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True, help="a stage I config (its data.valid, else data.train, is read)")
    p.add_argument("--weights", nargs="*", default=[], help="stage I files to read out besides the start")
    p.add_argument("--clips", type=int, default=32, help="windows (one per clip) in the batch")
    p.add_argument("overrides", nargs="*", help="key=value settings, as for synchformer train")
    args = p.parse_args()
    cfg, model, data = start_of_run("contrastive", args.config, args.overrides)
    name = "valid" if "valid" in data else "train"
    dataset = data[name][1]
    dataset.train, dataset.jitter = False, 0  # fixed, central windows without augmentation
    n = min(args.clips, len(dataset))
    source = Path(getattr(cfg.data, name))
    folder = source if source.is_dir() else source.parent
    events = event_times(folder) if (folder / "events.jsonl").exists() else {}
    has = segment_events(dataset, n, events) if events else None
    batch = torch.utils.data.default_collate([dataset[i] for i in range(n)])
    stage = Stage(model, "contrastive")  # the embeddings as stage I makes them (batch centring is readout's)
    for label in ["start", *args.weights]:
        if label != "start":
            init_from(model, label)
        with torch.no_grad():
            v, a = (x.float() for x in stage.segment_embeddings(batch))
        print(json.dumps({"weights": label, "windows": n, "segments": len(v), **readout(v, a, has)}), flush=True)


if __name__ == "__main__":
    main()
