"""Scoring many files: av-benchmark's DeSync, or whole-video offsets; one row per (video, audio) pair.

Decoding (PyAV, CPU-bound) runs in worker processes that stream each file's segment chunks through a bounded
queue; the model stays in the calling process. On a GPU several files are in flight at once (one per decoding
worker) and their segments share each encoder call (``batch_size`` segments), since a GPU is only kept busy by
large batches; on a CPU one file at a time. Rows come in input order whatever finishes first. The encoders see
each segment on its own, so a row does not depend on what else was in a batch beyond float rounding (exactly
the same with one file in flight). Every user-caused failure (missing, unreadable, no sound, too short: a
SynchformerError) becomes a row with ``status: "error"`` and the run goes on.

    model = synchformer.load_model("24-01-04T16-39-21.pt", device="cuda")
    items = read_inputs(["gen/videos"], audio_dir="gen/audio")       # (video, generated audio) pairs
    rows = list(score_files(model, items, workers=8))                # metric="desync"
    summarize_rows(rows)["desync_mean"]                              # av-benchmark's DeSync
"""

from __future__ import annotations

import math
import queue
import sys
import traceback
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from synchformer.constants import (AUDIO_SR, CROP_SIZE, MAX_WINDOWS, METRICS, N_SEGMENTS, SEGMENT_FRAMES,
                                   SEGMENT_STRIDE_FRAMES, VIDEO_FPS)
from synchformer.errors import SynchformerError
from synchformer.features.segments import decode_size
from synchformer.inference.analyze import Analysis, EncodeRequest, analysis_steps
from synchformer.inference.batch_io import (AUDIO_EXTENSIONS, COMMON, METRIC_COLUMNS, VIDEO_EXTENSIONS, Item, as_item,
                                           assign_ids, columns, read_inputs, row_key)
from synchformer.inference.stream import SegmentChunk, encode_chunk, read_segments
from synchformer.interrupts import held_signals
from synchformer.model.precision import using
from synchformer.io.decode import load_audio


_QUEUE_MESSAGES = 6  # per decoding worker: about one file (header, chunks, end) ahead of the model


# ------------------------------------------------------------------------------------------------- decoding

def open_item(item: Item, *, size: int, duration: float | None = None, crop: int = CROP_SIZE,
              timing: str = "true", max_windows: int = 0, window_segments: int = N_SEGMENTS,
              audio_track: int | str | None = None):
    """(SegmentGrid, iterator of SegmentChunk) of one item: segments from frame 0, the external audio (if any)
    from its sample 0 on the same timeline, both cut to ``duration`` seconds (av-benchmark's --audio_length).
    ``max_windows``: the analysis budget of ``read_segments`` (not with ``duration``: a cut is read whole).
    ``audio_track``: which audio track of the file, or of the external audio file (``io.decode.pick_audio_track``)."""
    try:
        return _open_item(item, size, duration, crop, timing, max_windows, window_segments, audio_track)
    except SynchformerError:
        raise
    except Exception as e:  # noqa: BLE001 - see _guarded
        raise _unexpected(item, e) from e


def _open_item(item: Item, size: int, duration: float | None, crop: int = CROP_SIZE, timing: str = "true",
               max_windows: int = 0, window_segments: int = N_SEGMENTS, audio_track: int | str | None = None):
    if item.error:
        raise SynchformerError(item.video, item.error)
    audio = load_audio(item.audio, audio_track) if item.audio else None
    cap, chunk_segments = None, 64
    if duration is not None:
        cap = max(1, (math.floor(duration * VIDEO_FPS + 1e-6) - SEGMENT_FRAMES) // SEGMENT_STRIDE_FRAMES + 1)
        chunk_segments = min(chunk_segments, cap)  # decode no further than the cut
        if audio is not None:
            audio = audio[:round(duration * AUDIO_SR)]
    grid, chunks = read_segments(item.video, first_frame=0, size=size, crop=crop, audio=audio,
                                 chunk_segments=chunk_segments, timing=timing,
                                 max_windows=max_windows if cap is None else 0, window_segments=window_segments,
                                 audio_track=None if audio is not None else audio_track)
    return grid, _guarded(item, chunks if cap is None else _capped(chunks, cap))


def _capped(chunks, cap: int):
    for c in chunks:
        if c.first >= cap:
            return
        if c.first + len(c) > cap:
            c = type(c)(c.first, c.video[:cap - c.first], c.audio[:cap - c.first])
        yield c


def _guarded(item: Item, chunks):
    """Any failure while decoding (not only the decoder's own SynchformerErrors) is that file's problem."""
    try:
        yield from chunks
    except SynchformerError:
        raise
    except Exception as e:  # noqa: BLE001 - a decoder crash on one odd file must not end a long run
        raise _unexpected(item, e) from e


def _unexpected(item: Item, e: Exception) -> SynchformerError:
    traceback.print_exception(e, file=sys.stderr)
    return SynchformerError(item.video, f"decoding failed ({type(e).__name__}: {e})")


def _decode_worker(jobs: list[tuple[int, Item]], opts: dict, q, stop) -> None:
    """Worker process: decodes its files in order and puts ``(index, tag, payload)`` messages on its queue."""
    import multiprocessing
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the model's process stops us
    torch.set_num_threads(1)  # the workers share the machine with each other and with the model
    parent = multiprocessing.parent_process()

    def report(*exc):  # multiprocessing's handle-serving thread reports here; once the model's process has
        if not (stop.is_set() or (parent is not None and not parent.is_alive())):  # gone, a lost handover is
            sys.__excepthook__(*exc)  # expected, not news for the user's terminal

    sys.excepthook = report

    def put(msg):  # wait for room; give up when told to stop or when the model's process is gone (nobody
        while True:  # will read): a normal exit, so that this process's temporary files go with it
            try:
                return q.put(msg, timeout=1.0)
            except queue.Full:
                if stop.is_set() or (parent is not None and not parent.is_alive()):
                    raise SystemExit(1) from None

    for i, item in jobs:
        try:
            grid, chunks = open_item(item, **opts)
            put((i, "grid", grid))
            for chunk in chunks:
                put((i, "chunk", chunk))
            put((i, "end", None))
        except SynchformerError as e:
            put((i, "error", str(e)))
        except Exception as e:  # noqa: BLE001
            put((i, "error", str(_unexpected(item, e))))
    # stay alive until told: tensors travel as shared-memory handles that this process serves
    while not stop.wait(1.0):
        if parent is not None and not parent.is_alive():
            break


class _DecodePool:
    """Worker ``w`` decodes files ``i`` with ``i % n == w`` in order into its own bounded queue, so the model
    can take the files in input order with at most a few chunks per worker in memory (films of any length).
    A worker that dies (a decoder crash) costs the file it was on; a fresh one takes its remaining files."""

    def __init__(self, items: list[Item], n: int, opts: dict):
        # not fork: the parent may hold CUDA, a process group and OpenMP threads. A fork server imports torch
        # and PyAV once and forks the workers from that clean process (spawn would import them per worker).
        if "forkserver" in torch.multiprocessing.get_all_start_methods():
            self.ctx = torch.multiprocessing.get_context("forkserver")
            self.ctx.set_forkserver_preload([__name__])
        else:  # pragma: no cover - Windows
            self.ctx = torch.multiprocessing.get_context("spawn")
        self.items, self.n, self.opts = items, n, opts
        self.stop = self.ctx.Event()
        self.procs: list = [None] * n
        self.queues: list = [None] * n
        try:
            # a start cut short by Ctrl-C / SIGTERM leaves a child that nobody joins, which then fails to read
            # its queues once we are gone (a traceback on the user's terminal): the signal waits until all run
            with held_signals():
                for w in range(n):
                    self._start(w, w)
        except BaseException:
            self.close()
            raise

    def _start(self, w: int, first: int):
        self.queues[w] = self.ctx.Queue(maxsize=_QUEUE_MESSAGES)
        jobs = [(i, self.items[i]) for i in range(first, len(self.items), self.n)]
        self.procs[w] = self.ctx.Process(target=_decode_worker, args=(jobs, self.opts, self.queues[w], self.stop),
                                         daemon=True, name=f"synchformer-decode-{w}")
        self.procs[w].start()

    def get(self, i: int):
        w = i % self.n
        while True:
            try:
                # a tensor arrives as a handle that we fetch from the worker over a socket: a signal raised in
                # the middle of that cuts the worker's side short (a traceback on the terminal), so it waits
                with held_signals():
                    j, tag, payload = self.queues[w].get(timeout=1.0)
                break
            except queue.Empty:
                if not self.procs[w].is_alive():
                    code = self.procs[w].exitcode
                    self._start(w, i + self.n)
                    return "error", f"{self.items[i].video}: the decoding process died (exit code {code})"
            except Exception as e:  # noqa: BLE001 - a message from a dead worker cannot be rebuilt
                self.procs[w].kill()
                self.procs[w].join()
                self._start(w, i + self.n)
                return "error", f"{self.items[i].video}: the decoding process failed ({type(e).__name__}: {e})"
        assert j == i, f"decoding worker {w} sent file {j} while file {i} was expected"
        return tag, payload

    def source(self, i: int):
        tag, payload = self.get(i)
        if tag == "error":
            raise SynchformerError(None, payload)
        state = {"done": False}

        def chunks():
            while True:
                tag, p = self.get(i)
                if tag == "chunk":
                    yield p
                    continue
                state["done"] = True
                if tag == "error":
                    raise SynchformerError(None, p)
                return

        return payload, chunks(), state

    def drain(self, i: int, state):
        """Read what is left of file ``i`` (its analysis stopped early), so the next file's messages come next."""
        while not state["done"]:
            tag, _ = self.get(i)
            state["done"] = tag != "chunk"

    def close(self):
        self.stop.set()
        for p in self.procs:
            if p is None or p.pid is None:  # never started (its start was cut short)
                continue
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()


# -------------------------------------------------------------------------------------------------- scoring

def _num(x, digits: int) -> float | None:
    return round(float(x), digits) if x is not None and math.isfinite(float(x)) else None


def desync_of(analysis: Analysis) -> dict:
    """av-benchmark's DeSync of one clip from an analysis with ``first_frame=0`` and ``size=224`` (e.g.
    ``analyze(model, path, ends_only=True, size=224)``): the argmax class of the first window (segments 0-13)
    and of the last (the last 14 segments), their |offset| averaged. A clip of exactly 14 segments has one
    window, counted twice as av-benchmark does. Also gives both signed offsets and their probabilities."""
    k = analysis.logits.argmax(-1)
    probs = analysis.probs
    out = {}
    for name, w in (("first", 0), ("last", len(k) - 1)):
        out[f"{name}_start_sec"] = _num(analysis.window_starts[w], 3)
        out[f"{name}_offset_sec"] = _num(analysis.grid[k[w]], 3)
        out[f"{name}_probability"] = _num(probs[w, k[w]], 6)
    out["desync_sec"] = _num((abs(out["first_offset_sec"]) + abs(out["last_offset_sec"])) / 2, 6)
    return {c: out[c] for c in METRIC_COLUMNS["desync"]}


def offset_of(analysis: Analysis, summary=None) -> dict:
    """The whole video's offset from all its windows (pooling.summarize's pooled offset; windows that the
    model-free checks reject are left out)."""
    out = dict.fromkeys(METRIC_COLUMNS["offset"])
    d = (summary or analysis.summarize()).to_dict(windows=False)
    drift = d.get("drift") or {}
    out.update(offset_sec=d["offset_sec"], confidence=d["confidence"], refined_offset_sec=d["refined_offset_sec"],
               agreement=d["agreement"], drift_detected=drift.get("detected"),
               drift_ms_per_min=drift.get("slope_ms_per_min"))
    out["abs_offset_sec"] = None if out["offset_sec"] is None else abs(out["offset_sec"])
    return out


def run_settings(model, metric: str = "desync", *, hop_sec: float = 2.4, duration: float | None = None,
                 max_windows: int = MAX_WINDOWS, timing: str | None = None, size: int | None = None,
                 precision: str | None = None, fine_model=None, audio_track: int | str | None = None) -> dict:
    """What ``score_files`` with these arguments records in each row besides the file (batch_io.SETTINGS and
    METRIC_SETTINGS, with metric and timing): the model's identity (``weights_identity``), its precision, the
    frame size, the options that change the numbers, and the fine model's identity where one runs."""
    from synchformer.model.load import weights_identity
    from synchformer.model.precision import resolve

    crop = int(model.cfg.image_size)
    ident = weights_identity(model)
    precision = resolve(precision, model.device, model.cfg) if precision else getattr(model, "precision", "fp32")
    out = {"metric": metric, "timing": timing or ("true" if metric == "desync" else model.cfg.timing),
           "weights": ident["weights"], "weights_sha256": ident["sha256"], "precision": precision,
           "frame_size": int(size or (crop if metric == "desync" else decode_size(crop))),
           "cut_sec": None if duration is None else float(duration), "audio_track": audio_track}
    if metric == "offset":
        fine = weights_identity(fine_model) if fine_model is not None else {}
        # a cut is read whole: the budget does not apply
        out.update(hop_sec=float(hop_sec), max_windows=int(max_windows) if duration is None else 0,
                   fine_weights=fine.get("weights"), fine_sha256=fine.get("sha256"))
    return out


def _row(item: Item, metric: str, settings: dict | None = None) -> dict:
    row = dict.fromkeys(columns(metric))
    row.update(settings or {})
    row.update(id=item.id, video=item.video, audio=item.audio, status="ok", metric=metric)
    return row


def _fill(row: dict, analysis: Analysis, metric: str, fine_model=None) -> dict:
    s = analysis.file_segments if analysis.sampled else analysis.segments_total
    row["timing"] = analysis.timing  # "true" for a separate audio track, taken as it is
    # the audio's gaps and overlaps in its timestamps (placed as players that honour them play them) are news for
    # a row too: players that join the audio end to end hear that file differently
    jumps = [f"audio {e.describe()}" for e in analysis.audio_events if e.kind in ("gap", "overlap")]
    row.update(duration_sec=_num((SEGMENT_FRAMES + (s - 1) * SEGMENT_STRIDE_FRAMES) / VIDEO_FPS, 3), n_segments=s,
               n_windows=len(analysis.window_starts), warnings="; ".join(analysis.warnings + jumps) or None)
    summary = analysis.summarize(fine_model=fine_model if metric == "offset" else None)
    row.update(reliable=bool(summary.reliable), reasons="; ".join(summary.reasons) or None)
    row.update(desync_of(analysis) if metric == "desync" else offset_of(analysis, summary))
    if metric == "offset":
        row["sampled"] = analysis.sampled
    return row


def score_files(model, items: Iterable, *, metric: str = "desync", hop_sec: float = 2.4,
                duration: float | None = None, workers: int = 0, batch_size: int | None = None,
                size: int | None = None, timing: str | None = None, max_windows: int = MAX_WINDOWS,
                precision: str | None = None, files_in_flight: int | None = None,
                fine_model=None, audio_track: int | str | None = None) -> Iterator[dict]:
    """One row (a dict with the keys of :func:`columns`) per item, in the order given, as each is done. Each row
    names the model and the settings that made it (:func:`run_settings`); ids are unique (``assign_ids``).

    ``metric="desync"``: av-benchmark's recipe (frames scaled to short side 224, segments from frame 0, first
    and last window). ``metric="offset"``: every window at ``hop_sec`` (short side 256, as the models were
    trained), pooled into one offset; a file longer than ``max_windows`` windows (the analysis budget, see
    ``analyze``) in that many windows spread over it (0: every window). ``duration``: cut video and audio to
    this many seconds first.
    ``workers``: decoding processes (0: decode in this process). ``batch_size``: segments per encoder call
    (default 128 on CUDA, halved on an out-of-memory error; 4 on a CPU). ``files_in_flight``: files whose
    segments share encoder calls (default: one per decoding worker on CUDA, 1 on a CPU; at most ``workers``).
    ``timing`` of the audio (``load_av``): default "true" for desync (av-benchmark decodes so, and published
    DeSync numbers are of that), the model's own (``ModelConfig.timing``) for offset. ``precision``: fp32, bf16,
    fp16 or auto (default: ``model.precision``). ``fine_model``: offset metric, a fine-offset model for
    ``refined_offset_sec`` (``inference.refine``). ``audio_track``: which audio track of each file (or of its
    separate audio file) is measured: a number from 1 or a language code (default: the one a player picks).
    Items: :class:`Item`, video paths, (video, audio) pairs or dicts (see :func:`as_item`).
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    with using(precision, model, fine_model):
        yield from _score_files(model, items, metric, hop_sec, duration, workers, batch_size, size, timing,
                                max_windows, files_in_flight, fine_model if metric == "offset" else None,
                                audio_track)


def _score_files(model, items, metric, hop_sec, duration, workers, batch_size, size, timing, max_windows,
                 files_in_flight, fine_model=None, audio_track=None):
    items = [as_item(x) for x in items]
    if any(it.id is None for it in items):
        items = assign_ids(items)
    # frames at the model's own input size (224 for the released models; the bundled tiny one takes 32): desync
    # decodes at short side = crop (av-benchmark: 224), offset at the reference's 256/224 proportion
    crop = int(model.cfg.image_size)
    # under using(): model.precision is the one this run computes in
    settings = run_settings(model, metric, hop_sec=hop_sec, duration=duration, max_windows=max_windows,
                            timing=timing, size=size, fine_model=fine_model, audio_track=audio_track)
    timing = settings["timing"]
    opts = {"size": settings["frame_size"], "duration": duration, "crop": crop,
            "timing": timing, "max_windows": max_windows if metric == "offset" else 0,
            "window_segments": model.cfg.n_segments, "audio_track": audio_track}
    kw = {"ends_only": metric == "desync", "hop_sec": hop_sec, "keep_visual": fine_model is not None}
    for i, analysis, error in _schedule(model, items, opts, kw, workers, batch_size, files_in_flight):
        row = _row(items[i], metric, settings)
        try:
            if error is None:
                _note_read_args(analysis, items[i], opts)
                _fill(row, analysis, metric, fine_model)
        except SynchformerError as e:
            error = str(e)
        if error is not None:
            row.update(status="error", error=error)
        yield row


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
        for i, analysis, error in _schedule(model, items, opts, kw, workers, batch_size, files_in_flight):
            if error is None:
                _note_read_args(analysis, items[i], opts)
            yield items[i].video, (analysis if error is None else SynchformerError(None, error))


def _note_read_args(analysis: Analysis, item: Item, opts: dict) -> None:
    """How the file was read, as ``analyze`` notes it, so that a fine pass reads it alike."""
    analysis.read_args = {"first_frame": 0, "size": opts["size"], "max_windows": opts["max_windows"],
                          "audio_path": item.audio,  # a separate track: read again only if a fine pass runs
                          "audio_track": opts.get("audio_track")}


def _schedule(model, items: list[Item], opts: dict, kw: dict, workers: int, batch_size: int | None,
              files_in_flight: int | None):
    """``(index, Analysis, None)`` or ``(index, None, error text)`` per item, in input order: up to
    ``files_in_flight`` analyses run side by side, their encoder requests served together."""
    cuda = model.device.type == "cuda"
    batch_size = batch_size or (GPU_BATCH if cuda else CPU_BATCH)
    kw = {**kw, "encode_batch": batch_size}
    pool = _DecodePool(items, min(workers, len(items)), opts) if workers > 0 and items else None
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


def summarize_rows(rows: Iterable[dict], metric: str = "desync") -> dict:
    """Counts and the dataset-level number: DeSync (mean and std over clips, seconds) or the mean |offset|.
    Accepts rows as written (JSONL) or read back from a CSV (strings)."""
    rows = list(rows)
    ok = [r for r in rows if r.get("status") == "ok"]

    def values(col):
        v = [float(r[col]) for r in ok if r.get(col) not in (None, "")]
        return np.asarray(v, dtype=np.float64)

    out = {"metric": metric, "clips": len(rows), "scored": len(ok), "failed": len(rows) - len(ok)}
    if metric == "desync":
        v = values("desync_sec")  # = the mean over all windows, 2 per clip, as av-benchmark averages
        out.update(desync_mean=float(v.mean()) if len(v) else None, desync_std=float(v.std()) if len(v) else None)
    else:
        v, s = values("abs_offset_sec"), values("offset_sec")
        out.update(mean_abs_offset_sec=float(v.mean()) if len(v) else None,
                   mean_offset_sec=float(s.mean()) if len(s) else None)
    return out


__all__ = ["AUDIO_EXTENSIONS", "COMMON", "Item", "METRICS", "METRIC_COLUMNS", "VIDEO_EXTENSIONS", "as_item",
           "assign_ids", "columns", "desync_of", "load_audio", "offset_of", "open_item", "read_inputs", "row_key",
           "run_settings", "score_files", "summarize_rows"]
