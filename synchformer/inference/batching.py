"""Several files in flight at once: their analyses (``analyze.analysis_steps``) advanced side by side, their
encoder requests served together in calls of up to ``batch_size`` segments (a GPU is only kept busy by large
batches; on a CPU one file at a time), decoded ahead by worker processes (``workers.DecodePool``). Results come
in input order whatever finishes first, and equal those of one file at a time (the encoders see each segment
on its own)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator

import torch

from synchformer.constants import MAX_WINDOWS
from synchformer.errors import SynchformerError
from synchformer.features.segments import decode_size
from synchformer.inference.analysis import Analysis
from synchformer.inference.analyze import EncodeRequest, analysis_steps
from synchformer.inference.batch_io import Item, as_item
from synchformer.inference.stream import SegmentChunk, encode_chunk
from synchformer.inference.workers import DecodePool, open_item
from synchformer.model.precision import using

def analyze_files(model, videos: Iterable, *, hop_sec: float = 2.4, sync_model=None, timing: str | None = None,
                  max_windows: int = MAX_WINDOWS, size: int | None = None, workers: int = 0,
                  batch_size: int | None = None, files_in_flight: int | None = None,
                  precision: str | None = None, keep_visual: bool = False,
                  audio_track: int | str | None = None) -> Iterator[tuple[str, "Analysis | SynchformerError"]]:
    """``analyze`` of many files, scheduled as ``score_files`` schedules them: ``(video, Analysis)`` per video,
    or ``(video, SynchformerError)`` for one that cannot be analysed, in the order given. ``workers`` decoding
    processes read ahead; on CUDA the segments of several files (one per worker by default) share encoder calls
    of ``batch_size`` segments. Each Analysis is the one ``analyze`` gives (same windows, logits within float
    tolerance). ``keep_visual`` and ``audio_track``: as ``analyze``'s."""
    items = [as_item(x) for x in videos]
    crop = int(model.cfg.image_size)
    opts = {"size": size or decode_size(crop), "duration": None, "crop": crop, "timing": timing or model.cfg.timing,
            "max_windows": max_windows, "window_segments": model.cfg.n_segments, "audio_track": audio_track}
    kw = {"hop_sec": hop_sec, "sync_model": sync_model, "keep_visual": keep_visual}
    with using(precision, model, sync_model):
        for i, analysis, error in schedule(model, items, opts, kw, workers, batch_size, files_in_flight):
            if error is None:
                note_read_args(analysis, items[i], opts)
            yield items[i].video, (analysis if error is None else SynchformerError(None, error))


def note_read_args(analysis: Analysis, item: Item, opts: dict) -> None:
    """How the file was read, as ``analyze`` notes it, so that a fine pass reads it alike."""
    analysis.read_args = {"first_frame": 0, "size": opts["size"], "max_windows": opts["max_windows"],
                          "audio_path": item.audio,  # a separate track: read again only if a fine pass runs
                          "audio_track": opts.get("audio_track")}


def schedule(model, items: list[Item], opts: dict, kw: dict, workers: int, batch_size: int | None,
              files_in_flight: int | None):
    """``(index, Analysis, None)`` or ``(index, None, error text)`` per item, in input order: up to
    ``files_in_flight`` analyses run side by side, their encoder requests served together."""
    cuda = model.device.type == "cuda"
    batch_size = batch_size or (GPU_BATCH if cuda else CPU_BATCH)
    kw = {**kw, "encode_batch": batch_size}
    pool = DecodePool(items, min(workers, len(items)), opts) if workers > 0 and items else None
    if files_in_flight is None:  # a GPU is fed from several files at once; a CPU is as fast one file at a time
        files_in_flight = max(1, pool.n if pool is not None else 1) if cuda else 1
    files_in_flight = max(1, min(files_in_flight, pool.n if pool is not None else files_in_flight))
    encoder = BatchEncoder(batch_size)
    live: dict[int, _Live] = {}
    done: dict[int, tuple] = {}
    started = emitted = 0
    try:
        while emitted < len(items):
            # a decoding worker sends its files in order: file j may start once the file before it on the same
            # worker (j - n) is finished
            while (started < len(items) and len(live) < files_in_flight
                   and (pool is None or started - pool.n not in live)):
                _start(started, items[started], pool, opts, kw, model, live, done)
                started += 1
            waiting = [i for i in live if live[i].request is not None]
            if waiting:
                feats = encoder([live[i].request for i in waiting])
                for i, f in zip(waiting, feats):
                    live[i].advance(f, done)
            for i in [i for i in live if live[i].finished]:
                live.pop(i).release()
            while emitted in done:
                yield (emitted, *done.pop(emitted))
                emitted += 1
    finally:
        for f in live.values():
            f.steps.close()
        if pool is not None:
            pool.close()


GPU_BATCH, CPU_BATCH = 128, 4  # segments per encoder call (a CUDA out-of-memory error halves it and retries)


class BatchEncoder:
    """Serves several files' EncodeRequests with shared encoder calls of up to ``batch`` segments per model.
    On CUDA, an out-of-memory error halves the batch (for the rest of the run) and retries: a too large
    ``--batch-size`` costs speed, not the run."""

    def __init__(self, batch: int):
        self.batch = batch

    def __call__(self, requests: list[EncodeRequest]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        out: list = [None] * len(requests)
        by_model: dict[int, list[int]] = {}
        for j, r in enumerate(requests):
            by_model.setdefault(id(r.model), []).append(j)
        for js in by_model.values():
            model = requests[js[0]].model
            if len(js) == 1:
                chunk = requests[js[0]].chunk
            else:  # one tensor of every file's segments: the encoders see each segment on its own
                chunk = SegmentChunk(0, torch.cat([requests[j].chunk.video for j in js]),
                                     torch.cat([requests[j].chunk.audio for j in js]))
            v, a = self._encode(model, chunk)
            at = 0
            for j in js:
                n = len(requests[j].chunk)
                out[j] = (v[at:at + n], a[at:at + n])
                at += n
        return out

    def _encode(self, model, chunk: SegmentChunk):
        while True:
            try:
                return encode_chunk(model, chunk, batch=self.batch)
            except torch.cuda.OutOfMemoryError:
                if self.batch <= 1:
                    raise
                self.batch = max(1, self.batch // 2)
                torch.cuda.empty_cache()
                print(f"synchformer: warning: the GPU ran out of memory; encoding {self.batch} segments per call "
                      "from now on (--batch-size)", file=sys.stderr)


class _Live:
    """One file in flight: its analysis generator and the request it waits on."""

    def __init__(self, i: int, steps, pool, state):
        self.i, self.steps, self.pool, self.state = i, steps, pool, state
        self.request, self.finished = None, False

    def advance(self, feats, done: dict) -> None:
        """Run the analysis to its next request (``feats``: the answer to the last one), or to its end."""
        try:
            self.request = next(self.steps) if feats is None else self.steps.send(feats)
        except StopIteration as end:
            self._finish(done, analysis=end.value)
        except SynchformerError as e:
            self._finish(done, error=str(e))

    def _finish(self, done: dict, analysis=None, error=None) -> None:
        self.request, self.finished = None, True
        done[self.i] = (analysis, error)

    def release(self) -> None:
        if self.pool is not None and self.state is not None:
            self.pool.drain(self.i, self.state)  # what an analysis that stopped early left unread


def _start(i, item, pool, opts, kw, model, live, done) -> None:
    state = None
    try:
        if pool is None:
            grid, chunks = open_item(item, **opts)
        else:
            grid, chunks, state = pool.source(i)
    except SynchformerError as e:
        done[i] = (None, str(e))
        return
    f = _Live(i, analysis_steps(model, grid, chunks, **kw), pool, state)
    f.advance(None, done)
    if f.finished:
        f.release()
    else:
        live[i] = f


__all__ = ["BatchEncoder", "CPU_BATCH", "GPU_BATCH", "analyze_files", "note_read_args", "schedule"]
