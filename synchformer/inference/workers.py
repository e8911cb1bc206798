"""Decoding worker processes: each file's segment chunks decoded in processes of their own and streamed
through bounded queues, so that the model (in the calling process) is fed while PyAV decodes (CPU-bound).
Every failure of a file (a SynchformerError, a decoder crash) is that file's, never the run's."""

from __future__ import annotations

import math
import queue
import sys
import traceback

import torch

from synchformer.constants import AUDIO_SR, CROP_SIZE, N_SEGMENTS, SEGMENT_FRAMES, SEGMENT_STRIDE_FRAMES, VIDEO_FPS
from synchformer.errors import SynchformerError
from synchformer.inference.batch_io import Item
from synchformer.inference.stream import read_segments
from synchformer.interrupts import held_signals
from synchformer.io.decode import load_audio

_QUEUE_MESSAGES = 6  # per decoding worker: about one file (header, chunks, end) ahead of the model


def open_item(item: Item, *, size: int, duration: float | None = None, crop: int = CROP_SIZE,
              timing: str = "true", max_windows: int = 0, window_segments: int = N_SEGMENTS,
              audio_track: int | str | None = None, keep_margin_sec: float | None = None):
    """(SegmentGrid, iterator of SegmentChunk) of one item: segments from frame 0, the external audio (if any)
    from its sample 0 on the same timeline, both cut to ``duration`` seconds (av-benchmark's --audio_length).
    ``max_windows``: the analysis budget of ``read_segments`` (not with ``duration``: a cut is read whole).
    ``audio_track``: which audio track of the file, or of the external audio file (``io.decode.pick_audio_track``).
    ``keep_margin_sec``: keep the sound read, this far around the windows (``read_segments``' keep_audio), for a
    wide search (inference.search); None: keep none."""
    try:
        return _open_item(item, size, duration, crop, timing, max_windows, window_segments, audio_track,
                          keep_margin_sec)
    except SynchformerError:
        raise
    except Exception as e:  # noqa: BLE001 - see _guarded
        raise _unexpected(item, e) from e


def _open_item(item: Item, size: int, duration: float | None, crop: int = CROP_SIZE, timing: str = "true",
               max_windows: int = 0, window_segments: int = N_SEGMENTS, audio_track: int | str | None = None,
               keep_margin_sec: float | None = None):
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
                                 audio_track=None if audio is not None else audio_track,
                                 keep_audio=keep_margin_sec is not None,
                                 **({"keep_margin_sec": keep_margin_sec} if keep_margin_sec is not None else {}))
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


class DecodePool:
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


__all__ = ["DecodePool", "open_item"]
