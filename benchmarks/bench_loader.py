"""Where the model inputs are made: in the DataLoader workers (``data.inputs_on=loader``) or on the training
device (``device``, the default on a GPU). Measured side by side in one process, one thread.

A worker that makes inputs spends most of each sample on the log-mel of its 14 audio segments and ships
float32 frames (4x the bytes of uint8). On a GPU the loader's CPU work is what caps a small model's steps
per second (on a 16-core H100 machine, stage I of a 32-px model ran at ~90 samples/s: data-bound), so the
number that matters is the worker's time per sample; the batched conversion on the device is reported beside
it (on a CPU it is the same work moved to the main process, which is why ``auto`` keeps it in the loader).

It also times short epochs through a DataLoader with ``--workers`` workers started anew each epoch (as
training did before) against one whose workers live across epochs (as training does now).

    python benchmarks/bench_loader.py                       # 224 px, as the released models train
    python benchmarks/bench_loader.py --image-size 32 --device cuda
"""

from __future__ import annotations

import argparse
import json
import pickle
import tempfile
import time
from pathlib import Path

import torch

from synchformer.features.segments import decode_size
from synchformer.model import ModelConfig
from synchformer.training.augment import Augment
from synchformer.training.data import SyncDataset, model_inputs, prepare, read_clip_list, required_sec
from synchformer.training.loop import Dist, GlobalBatches
from synchformer.training.synth import synth


def per_sample(dataset, n: int) -> tuple[float, int]:
    """Seconds per item and pickled bytes per item (what a worker sends to the main process)."""
    dataset[0]  # warm-up (mel filterbank, lookup table)
    t = time.perf_counter()
    items = [dataset[i % len(dataset)] for i in range(n)]
    sec = (time.perf_counter() - t) / n
    return sec, len(pickle.dumps(items[0]))


def epoch_seconds(dataset, batch: int, workers: int, epochs: int, persistent: bool) -> float:
    """Mean seconds per epoch after the first, the loader made once (``persistent``) or every epoch."""
    sampler = GlobalBatches(len(dataset), batch, Dist(), 0, 0, True)

    def make():
        return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=workers,
                                           persistent_workers=persistent)
    loader, times = make(), []
    for epoch in range(epochs):
        t = time.perf_counter()
        sampler.set_epoch(epoch)
        for _ in loader if persistent else make():
            pass
        times.append(time.perf_counter() - t)
    return sum(times[1:]) / (epochs - 1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--samples", type=int, default=48, help="items timed per mode")
    ap.add_argument("--batch-size", type=int, default=16, help="batch converted on the device")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers for the epoch timing")
    ap.add_argument("--epochs", type=int, default=4, help="short epochs timed per loader kind")
    args = ap.parse_args()
    torch.set_num_threads(1)  # as in a DataLoader worker

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synth(tmp / "clips", args.clips, seed=7, progress=False)
        cfg = ModelConfig.tiny(image_size=args.image_size)
        prep = prepare(read_clip_list(tmp / "clips"), tmp / "cache", decode_size(cfg.image_size), 10.0,
                       required_sec("sync", cfg, 8))
        aug = Augment(p_horizontal_flip=0.5, p_color_jitter=0.2, p_audio_gain=0.5)

        def dataset(raw: bool) -> SyncDataset:
            return SyncDataset(prep.clips, tmp / "cache", "sync", cfg, train=True, augment=aug, raw=raw)

        loader_sec, loader_bytes = per_sample(dataset(False), args.samples)
        device_sec, device_bytes = per_sample(dataset(True), args.samples)
        raw = dataset(True)
        batch = torch.utils.data.default_collate([raw[i % len(raw)] for i in range(args.batch_size)])
        batch = {k: v.to(args.device) if torch.is_tensor(v) else v for k, v in batch.items()}
        model_inputs(batch)  # warm-up
        sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
        sync()
        t = time.perf_counter()
        for _ in range(5):
            model_inputs(batch)
        sync()
        convert_sec = (time.perf_counter() - t) / 5 / args.batch_size
        epoch = {kind: epoch_seconds(dataset(True), 2, args.workers, args.epochs, kind == "persistent")
                 for kind in ("fresh", "persistent")}
    print(json.dumps({
        "image_size": args.image_size, "device": args.device, "samples": args.samples,
        "worker_ms_per_sample": {"loader": round(loader_sec * 1e3, 2), "device": round(device_sec * 1e3, 2)},
        "worker_speedup": round(loader_sec / device_sec, 2),
        "bytes_per_sample": {"loader": loader_bytes, "device": device_bytes},
        "device_convert_ms_per_sample": round(convert_sec * 1e3, 3),
        "epoch_sec": {k: round(v, 3) for k, v in epoch.items()}, "epoch_batches": args.clips // 2,
        "epoch_speedup_persistent": round(epoch["fresh"] / epoch["persistent"], 2),
    }))


if __name__ == "__main__":
    main()
