"""``synchformer score INPUT... -o OUT.jsonl|OUT.csv``: av-benchmark's DeSync (or whole-video offsets) of many
files; rows written as they complete, resumable, decoding in worker processes, sharded across torchrun ranks.

Under torchrun (WORLD_SIZE > 1) rank r scores ``pending[r::world]`` into ``OUT.rank{r}.part``; after a barrier
rank 0 merges the parts into OUT (after the rows OUT already held) in input order, atomically, and removes
them. The parts must be visible to rank 0 (OUT's folder shared by the nodes). A killed run keeps its rows:
in OUT, or in parts that the next run (``--resume``, the default) folds into OUT first.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

from synchformer.cli.common import (add_audio_track, add_device, add_fine, add_max_windows, add_precision,
                                    add_timing, add_weights, check_workers, device, gpu_decode_workers, load,
                                    load_fine)
from synchformer.io.outputs import protect_inputs, write_atomic
from synchformer.errors import SynchformerError


def add_parser(sub):
    from synchformer.constants import METRICS

    p = sub.add_parser(
        "score", help="score many videos: av-benchmark's DeSync (default) or whole-video offsets",
        description="One row per video (or video + generated audio) in a JSONL or CSV file, written as each is "
                    "done. Bad files become rows with status 'error'; the run goes on (exit code 0). "
                    "Run under `torchrun --nproc_per_node N -m synchformer score ...` to shard across processes.")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="folders (searched recursively for videos), quoted glob patterns, video files, or CSV "
                        "files with a 'path' (or 'video') column and optional 'audio' (or 'audio_path') and 'id' "
                        "columns; relative paths in a CSV are relative to its folder")
    add_weights(p)
    add_timing(p, "true for --metric desync (as av-benchmark decodes: published DeSync numbers), the model's own "
                  "for offset (authors for the released checkpoints)")
    add_audio_track(p, what="score in each video (or in each --audio-dir file)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="OUT.jsonl or OUT.csv")
    p.add_argument("--metric", choices=METRICS, default="desync",
                   help="desync: av-benchmark's DeSync (|argmax offset| of the first and last 4.8 s, averaged; "
                        "frames at short side 224); offset: every window of the video pooled into one offset "
                        "(short side 256). Default: desync")
    p.add_argument("--audio-dir", metavar="DIR",
                   help="score each video with DIR/<video stem>.{wav,flac,mp3,ogg,m4a} as its sound (generated "
                        "audio; its sample 0 is the video's first frame) instead of the video's own")
    p.add_argument("--duration", type=float, metavar="SEC",
                   help="cut video and audio to SEC seconds first (av-benchmark's --audio_length)")
    p.add_argument("--hop", type=float, default=2.4, metavar="SEC", help="offset metric: seconds between windows "
                   "(rounded to 0.32 s; default 2.4)")
    add_fine(p)
    add_max_windows(p, " of the offset metric (not with --duration: a cut is read whole)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="decoding processes per model process (0: decode in the model's process; default: up to "
                        "8 on GPU, 1 on CPU)")
    p.add_argument("--batch-size", type=int, default=None, metavar="B",
                   help="segments per encoder call, filled from several files at once on a GPU (default 128 on "
                        "GPU, halved if it runs out of memory; 4 on CPU)")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="when OUT exists, keep its rows and score only the inputs it lacks (a row is identified "
                        "by video and audio path). Default: on")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    p.add_argument("--retry-errors", action="store_true", help="with --resume: score again the inputs whose row "
                   "in OUT is an error")
    p.add_argument("--summary-json", metavar="PATH", help="also write the summary as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_device(p)
    add_precision(p)
    return p


class RowFile:
    """Rows as JSONL (one object per line) or CSV (a header, then one line per row), in a fixed column order."""

    def __init__(self, path: Path, metric: str):
        from synchformer.inference.batch_io import columns

        suffix = path.suffix.lower()
        if suffix not in (".jsonl", ".ndjson", ".csv"):
            raise SynchformerError(path, "the output must be a .jsonl or a .csv file")
        self.is_csv, self.metric, self.cols = suffix == ".csv", metric, list(columns(metric))

    @staticmethod
    def _csv(values) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(values)
        return buf.getvalue()

    def header(self) -> str:
        return self._csv(self.cols) if self.is_csv else ""

    def line(self, row: dict) -> str:
        if self.is_csv:
            return self._csv(["" if v is None else str(v).lower() if isinstance(v, bool) else v
                              for v in (row.get(c) for c in self.cols)])
        return json.dumps({c: row.get(c) for c in self.cols}, ensure_ascii=False) + "\n"

    def write_all(self, path, rows) -> None:
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(self.header())
            f.writelines(self.line(r) for r in rows)

    def read(self, path: Path) -> tuple[list[dict], bool]:
        """The complete rows of ``path``, and whether it ended cleanly (a killed run may leave half a line)."""
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise SynchformerError(path, f"cannot read it to resume ({getattr(e, 'strerror', None) or e})") from None
        clean = not text or text.endswith("\n")
        text = text[:text.rfind("\n") + 1]
        advice = "use another output file, or --overwrite"
        if self.is_csv:
            lines = list(csv.reader(io.StringIO(text)))
            if lines and lines[0] != self.cols:
                raise SynchformerError(path, f"has other columns than --metric {self.metric} writes; {advice}")
            return [dict(zip(self.cols, r)) for r in lines[1:]], clean
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise SynchformerError(path, f"line {n} is not JSON; {advice}") from None
            if not isinstance(row, dict) or row.get("metric") != self.metric:
                raise SynchformerError(path, f"line {n} is not a row of --metric {self.metric}; {advice}")
            rows.append(row)
        return rows, clean


def _key(row: dict):
    from synchformer.inference.batch_io import row_key

    return row_key(row["video"], row.get("audio") or None)


def _parts(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f"{out.name}.rank*.part"))


def _plan(out: Path, fmt: RowFile, items, args, timing: str) -> tuple[list[dict], list[int]]:
    """The rows OUT keeps and the indices of the items to score (``timing``: this run's audio timing, which
    the kept rows must share). Resuming folds the parts of a killed torchrun run into OUT first, and drops a
    half-written last line."""
    everything = list(range(len(items)))
    parts = _parts(out)
    exists = out.exists() and out.stat().st_size > 0
    if not (exists or parts):
        return [], everything
    if args.overwrite:
        for p in parts:
            p.unlink()
        return [], everything
    if not args.resume:
        raise SynchformerError(out, "already exists: pass --resume to score only what it lacks, or --overwrite "
                                    "to replace it")
    prev, clean = fmt.read(out) if exists else ([], True)
    index = {it.key: i for i, it in enumerate(items)}
    extra = [r for p in parts for r in fmt.read(p)[0]]
    extra.sort(key=lambda r: index.get(_key(r), len(items)))  # stable: rows of other inputs last
    kept, seen = [], set()
    for r in prev + extra:
        if _key(r) not in seen and not (args.retry_errors and r.get("status") == "error"):
            seen.add(_key(r))
            kept.append(r)
    # rows placed with another audio timing would mix two protocols in one dataset number
    other = sorted({r["timing"] for r in kept if r.get("status") == "ok" and r.get("timing") not in (None, "", timing)})
    if other:
        raise SynchformerError(out, f"holds rows scored with --timing {other[0]}, this run uses {timing}: pass "
                                    f"--timing {other[0]} to add to it, or use another output file, or --overwrite")
    if parts or not clean or len(kept) != len(prev):
        write_atomic(out, lambda tmp: fmt.write_all(tmp, kept))
        for p in parts:
            p.unlink()
    return kept, [i for i in everything if items[i].key not in seen]


def _timing(args, model) -> str:
    """The audio timing this run scores with (as score_files resolves it)."""
    return args.timing or ("true" if args.metric == "desync" else model.cfg.timing)


def _score(model, items, todo, args, fmt: RowFile, path: Path, mode: str, show: bool) -> list[dict]:
    """Score ``items[todo]``, appending each row to ``path`` as soon as it is done."""
    from tqdm import tqdm

    from synchformer.inference.score import score_files

    workers = args.workers
    if workers is None:  # decoding keeps a GPU fed only with several processes; on CPU the model is the bottleneck
        workers = gpu_decode_workers() if model.device.type == "cuda" else 1
    rows = []
    with open(path, mode, encoding="utf-8", newline="") as f:
        if f.tell() == 0:
            f.write(fmt.header())
        stream = score_files(model, [items[i] for i in todo], metric=args.metric, hop_sec=args.hop,
                             duration=args.duration, max_windows=args.max_windows, workers=workers,
                             batch_size=args.batch_size, timing=args.timing, audio_track=args.audio_track,
                             fine_model=load_fine(args.fine_weights, model, str(model.device))  # a rank's own GPU
                             if args.metric == "offset" else None)
        with tqdm(total=len(todo), unit="clip", file=sys.stderr, disable=not show, dynamic_ncols=True) as bar:
            try:
                for row in stream:
                    f.write(fmt.line(row))
                    f.flush()
                    rows.append(row)
                    if row["status"] == "error":
                        bar.write(f"synchformer: skipped: {row['error']}", file=sys.stderr)
                    bar.update()
            finally:
                stream.close()  # stops the decoding workers, also on Ctrl-C
    return rows


def _report(out: Path, rows: list[dict], n_new: int, elapsed: float, args, world: int, model) -> None:
    from synchformer.inference.score import summarize_rows

    s = summarize_rows(rows, args.metric)
    s.update(output=str(out), new_rows=n_new, elapsed_sec=round(elapsed, 3),
             clips_per_sec=round(n_new / elapsed, 4) if elapsed > 0 else None, world_size=world,
             precision=getattr(model, "precision", "fp32"))
    print(f"{out}: {s['clips']} rows ({n_new} new): {s['scored']} clips scored, {s['failed']} failed")
    if args.metric == "desync" and s["desync_mean"] is not None:
        print(f"DeSync {s['desync_mean']:.4f} s (std {s['desync_std']:.4f}) over {s['scored']} clips")
    elif args.metric == "offset" and s["mean_abs_offset_sec"] is not None:
        print(f"mean |offset| {s['mean_abs_offset_sec']:.4f} s (mean offset {s['mean_offset_sec']:+.4f} s) "
              f"over {s['scored']} clips")
    print(f"elapsed {elapsed:.1f} s, {n_new / elapsed if elapsed > 0 else 0:.2f} clips/s"
          + (f" on {world} processes" if world > 1 else ""))
    if args.summary_json:
        write_atomic(args.summary_json, lambda tmp: Path(tmp).write_text(json.dumps(s, indent=2) + "\n"))


def run(args) -> int:
    from synchformer.inference.batch_io import VIDEO_EXTENSIONS, read_inputs

    t0 = time.perf_counter()
    out = Path(args.output)
    fmt = RowFile(out, args.metric)
    if not out.parent.is_dir():
        raise SynchformerError(out, "cannot write: the folder does not exist")
    check_workers(args)
    if args.duration is not None and not args.duration > 0 or not args.hop > 0:
        raise SynchformerError(None, "--duration and --hop must be positive")
    if args.summary_json and not Path(args.summary_json).parent.is_dir():
        raise SynchformerError(args.summary_json, "cannot write: the folder does not exist")
    protect_inputs(out, [p for p in args.inputs if os.path.isfile(p)])
    items = read_inputs(args.inputs, audio_dir=args.audio_dir)
    if not items:
        raise SynchformerError(None, f"no inputs found in {' '.join(args.inputs)} (videos are found by their "
                                     f"extension: {' '.join(VIDEO_EXTENSIONS)})")
    if not any(os.path.exists(it.video) for it in items):  # nothing to score: say so before the model loads
        raise SynchformerError(items[0].video if len(items) == 1 else None, "file not found" if len(items) == 1
                               else f"none of the {len(items)} videos exists (the first: {items[0].video})")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        return _run_distributed(out, fmt, items, args, t0, world)
    model = load(args.weights, args.device, precision=args.precision)
    prev, todo = _plan(out, fmt, items, args, _timing(args, model))
    new = _score(model, items, todo, args, fmt, out, "w" if args.overwrite else "a", not args.no_progress)
    _report(out, prev + new, len(new), time.perf_counter() - t0, args, 1, model)
    return 0


def _run_distributed(out: Path, fmt: RowFile, items, args, t0: float, world: int) -> int:
    import torch
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0))
    dev = device(args.device)
    if dev == "cuda":
        dev = f"cuda:{local}"
    if dev.startswith("cuda"):
        torch.cuda.set_device(dev)
    # a bad --weights fails on every rank alike, before any collective
    model = load(args.weights, dev, precision=args.precision)
    # ranks wait for each other at the end for as long as the slowest shard takes
    if dev.startswith("cuda"):
        dist.init_process_group("nccl", timeout=timedelta(days=7), device_id=torch.device(dev))
    else:
        dist.init_process_group("gloo", timeout=timedelta(days=7))
    try:
        plan = [None]
        if rank == 0:  # one rank reads OUT and decides, so that every rank shards the same list
            try:
                prev, todo = _plan(out, fmt, items, args, _timing(args, model))
                plan[0] = ("ok", todo)
            except SynchformerError as e:
                plan[0] = ("error", str(e))
        dist.broadcast_object_list(plan, src=0)
        status, todo = plan[0]
        if status == "error":
            raise SynchformerError(None, todo)
        part = out.with_name(f"{out.name}.rank{rank}.part")
        _score(model, items, todo[rank::world], args, fmt, part, "w", rank == 0 and not args.no_progress)
        dist.barrier()
        if rank == 0:
            index = {it.key: i for i, it in enumerate(items)}
            parts = [out.with_name(f"{out.name}.rank{r}.part") for r in range(world)]
            new = sorted((r for p in parts for r in fmt.read(p)[0]), key=lambda r: index.get(_key(r), len(items)))
            write_atomic(out, lambda tmp: fmt.write_all(tmp, prev + new))
            if len(new) == len(todo):
                for p in parts:
                    p.unlink()
            else:
                print(f"synchformer: warning: {len(todo) - len(new)} rows missing from the parts (is the folder of "
                      f"{out} shared by all nodes?); parts kept", file=sys.stderr)
            _report(out, prev + new, len(todo), time.perf_counter() - t0, args, world, model)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    return 0
