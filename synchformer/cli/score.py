"""``synchformer score INPUT... -o OUT.jsonl|OUT.csv``: av-benchmark's DeSync (or whole-video offsets) of many
files; rows written as they complete, resumable, decoding in worker processes, sharded across torchrun ranks.

Under torchrun (WORLD_SIZE > 1) rank r scores ``pending[r::world]`` into ``OUT.rank{r}.part``; after a barrier
rank 0 merges the parts into OUT (after the rows OUT already held) in input order, atomically, and removes
them. The parts must be visible to rank 0 (OUT's folder shared by the nodes). A killed run keeps its rows:
in OUT, or in parts that the next run (``--resume``, the default) folds into OUT first.

Rows name the model and the settings that made them (batch_io.SETTINGS); a run adds only to rows of its own.
A run holds OUT.lock (an flock, gone with its process) from before the model loads to its end: a second run
on OUT is refused. Outputs, OUT's rows and the options are checked before the model loads.
"""

from __future__ import annotations

import argparse
import csv
import errno
import io
import json
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from synchformer.cli.common import (add_audio_track, add_device, add_fine, add_max_windows, add_precision,
                                    add_timing, add_weights, check_workers, device, gpu_decode_workers, load,
                                    load_fine)
from synchformer.cli.common import add_max_offset, add_tolerance
from synchformer.io.outputs import check_output, write_atomic
from synchformer.errors import SynchformerError


def add_parser(sub):
    from synchformer.cli.common import non_negative_int, positive_float, positive_int
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
    p.add_argument("--duration", type=positive_float, metavar="SEC",
                   help="cut video and audio to SEC seconds first (av-benchmark's --audio_length; default: the "
                        "whole file)")
    p.add_argument("--hop", type=positive_float, default=2.4, metavar="SEC", help="offset metric: seconds between "
                   "windows (rounded to 0.32 s; default 2.4: faster than predict's 0.64, fewer windows of evidence)")
    add_fine(p)
    add_tolerance(p, "--metric offset: each row says whether its refined offset is inside it (in_tolerance) and "
                     "which tolerance (tolerance)")
    add_max_windows(p, " of the offset metric (not with --duration: a cut is read whole)")
    add_max_offset(p, " (--metric offset; above 2 the files are decoded in the model's process, which keeps their "
                      "sound for the search)")
    p.add_argument("--workers", type=non_negative_int, default=None, metavar="N",
                   help="decoding processes per model process (0: decode in the model's process; default: up to "
                        "8 on GPU, 1 on CPU)")
    p.add_argument("--batch-size", type=positive_int, default=None, metavar="B",
                   help="segments per encoder call, filled from several files at once on a GPU (default 128 on "
                        "GPU, halved if it runs out of memory; 4 on CPU)")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=True,
                   help="when OUT exists, keep its rows and score only the inputs it lacks (a row is identified "
                        "by video and audio path); its rows must name the same model and settings as this run. "
                        "Default: on")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    p.add_argument("--retry-errors", action="store_true", help="with --resume: score again the inputs whose row "
                   "in OUT is an error")
    p.add_argument("--summary-json", metavar="PATH", help="also write the summary as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: one, on stderr)")
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
        from synchformer.constants import METRICS
        from synchformer.inference.batch_io import columns, legacy_columns

        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise SynchformerError(path, f"cannot read it to resume ({getattr(e, 'strerror', None) or e})") from None
        clean = not text or text.endswith("\n")
        text = text[:text.rfind("\n") + 1]
        advice = "use another output file, or --overwrite"
        legacy = ("was written by an older synchformer, whose rows do not record the model and settings that made "
                  "them: this run cannot add to it; pass --overwrite to score everything again, or write to a new -o")
        if self.is_csv:
            lines = list(csv.reader(io.StringIO(text)))
            if lines and lines[0] != self.cols:
                if lines[0] == list(legacy_columns(self.metric)):
                    raise SynchformerError(path, legacy)
                other = [m for m in METRICS if lines[0] in (list(columns(m)), list(legacy_columns(m)))]
                raise SynchformerError(path, f"holds rows of --metric {other[0]}, not {self.metric}; {advice}" if other
                                       else f"has other columns than --metric {self.metric} writes; {advice}")
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
            if "weights_sha256" not in row:
                raise SynchformerError(path, legacy)
            rows.append(row)
        return rows, clean


def _key(row: dict):
    from synchformer.inference.batch_io import row_key

    return row_key(row["video"], row.get("audio") or None)


def _parts(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f"{out.name}.rank*.part"))


# ------------------------------------------------------------------------------ outputs, checked before any work

def _check_output(path: Path, inputs) -> None:
    """Refuse, before the model loads, an output that cannot be written (``check_output``: no folder, a
    read-only folder or file system, a full disk, an input), or a read-only file (OUT is appended to)."""
    check_output(path, inputs)
    if path.exists() and not os.access(path, os.W_OK):
        raise SynchformerError(path, "cannot write: the file is read-only")


def _lock(out: Path):
    """Hold OUT.lock for the run, so that a second run on OUT is refused instead of mixing its rows into OUT
    (or rewriting OUT under the first). An flock: the system lets go of it when its process ends, killed or
    not, so a killed run leaves no lock behind. Returns what ``_unlock`` takes; None where there is no lock."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return None
    path = out.with_name(out.name + ".lock")
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise SynchformerError(path, f"cannot write: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip()
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):  # a file system without locks
                print(f"synchformer: warning: {path}: cannot lock ({e.strerror}); make sure that no other run "
                      "writes to the same output", file=sys.stderr)
                return None
            raise SynchformerError(out, f"is being written by another `synchformer score` run "
                                        f"({holder or 'see ' + str(path)}): wait for it to end, or write to "
                                        "another output file") from None
        # a run that ends removes the file while it holds it: a lock on a file no longer there locks nothing
        try:
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}"
                     "\n".encode())
    except OSError as e:
        _unlock((fd, path))
        raise SynchformerError(out, f"cannot write in its folder ({e.strerror or e})") from None
    return fd, path


def _unlock(lock) -> None:
    if lock is not None:
        fd, path = lock
        try:
            os.unlink(path)  # while still held (see _lock)
        except OSError:
            pass
        os.close(fd)


@dataclass
class _Old:
    """What OUT holds before this run: its complete rows, the rows of a killed torchrun run's parts."""

    rows: list[dict] = field(default_factory=list)
    extra: list[dict] = field(default_factory=list)
    parts: list[Path] = field(default_factory=list)
    clean: bool = True

    def ids(self) -> dict:
        ids = {}
        for r in self.rows + self.extra:
            if r.get("id") not in (None, ""):
                ids.setdefault(_key(r), str(r["id"]))
        return ids

    def plan(self, items, retry_errors: bool) -> tuple[list[dict], list[int]]:
        """The rows OUT keeps (its own, then those of parts, each input once) and the indices of the items to
        score."""
        index = {it.key: i for i, it in enumerate(items)}
        extra = sorted(self.extra, key=lambda r: index.get(_key(r), len(items)))  # stable: other inputs last
        kept, seen = [], set()
        for r in self.rows + extra:
            if _key(r) not in seen and not (retry_errors and r.get("status") == "error"):
                seen.add(_key(r))
                kept.append(r)
        return kept, [i for i, it in enumerate(items) if it.key not in seen]


def _read_old(out: Path, fmt: RowFile, args) -> _Old:
    parts = _parts(out)
    exists = out.exists() and out.stat().st_size > 0
    if args.overwrite or not (exists or parts):
        return _Old(parts=parts)
    if not args.resume:
        raise SynchformerError(out, "already exists: pass --resume to score only what it lacks, or --overwrite "
                                    "to replace it")
    rows, clean = fmt.read(out) if exists else ([], True)
    return _Old(rows, [r for p in parts for r in fmt.read(p)[0]], parts, clean)


def _known_settings(args) -> dict:
    """What the options alone tell of run_settings, so that OUT's rows are checked against it before the model
    loads (its identity, precision and frame size: after)."""
    s = {"timing": args.timing or "true"} if args.timing or args.metric == "desync" else {}
    s.update(cut_sec=None if args.duration is None else float(args.duration), audio_track=args.audio_track)
    if args.metric == "offset":
        s.update(hop_sec=float(args.hop), max_windows=args.max_windows if args.duration is None else 0,
                 tolerance=args.tolerance.name, max_offset_sec=float(args.max_offset))
    return s


def _text(v) -> str:  # a value as a CSV holds it, so that rows read back from either format compare
    return "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)


def _option(col: str, s: dict) -> str:
    v = _text(s.get(col))
    if col == "weights_sha256":
        return f"--weights {s.get('weights')} (sha256 {v})"
    if col == "fine_sha256":
        return f"--fine-weights {s.get('fine_weights')} (sha256 {v})" if v else "--fine-weights none"
    if col == "frame_size":
        return f"frames at {v} px"
    if not v:
        return {"cut_sec": "no --duration", "audio_track": "the default audio track"}.get(col, f"no {col}")
    return {"cut_sec": f"--duration {v}", "audio_track": f"--audio-track {v}", "hop_sec": f"--hop {v}",
            "max_windows": f"--max-windows {v}", "max_offset_sec": f"--max-offset {v}"}.get(col, f"--{col} {v}")


def _check_settings(out: Path, rows: list[dict], settings: dict) -> None:
    """Refuse to add to rows made with another model or other settings: one number over both would mean
    nothing. The file stays untouched."""
    cols = [c for c in settings if c not in ("metric", "weights", "fine_weights")]  # a file is its sha256
    for r in rows:
        # a separate audio file is taken as it is, whatever --timing says (its rows say "true")
        diff = [c for c in cols if _text(r.get(c)) != _text(settings[c])
                and not (c == "timing" and r.get("audio") not in (None, ""))]
        if diff:
            raise SynchformerError(out, f"holds rows scored with {', '.join(_option(c, r) for c in diff)}, not "
                                        f"{', '.join(_option(c, settings) for c in diff)} as this run: score with "
                                        "the same to add to it, or use another output file, or --overwrite")


def _settle(out: Path, fmt: RowFile, old: _Old, kept: list[dict], overwrite: bool) -> None:
    """OUT as the rows it keeps (the parts of a killed torchrun run folded in, a half-written last line and
    doubled rows dropped), atomically; only once the run is known to go ahead."""
    if not overwrite and (old.parts or not old.clean or len(kept) != len(old.rows)):
        write_atomic(out, lambda tmp: fmt.write_all(tmp, kept))
    for p in old.parts:
        p.unlink()


# --------------------------------------------------------------------------------------------------- the run

def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def _append(fd: int, text: str, path: Path, done: int) -> None:
    """A row onto OUT, whole or not at all: a file system that fills up (or fails) mid-run leaves OUT with
    complete rows, from which a resume goes on."""
    data = text.encode("utf-8")
    if not data:
        return
    end = os.lseek(fd, 0, os.SEEK_END)
    try:
        _write_all(fd, data)
    except OSError as e:
        try:
            os.ftruncate(fd, end)
        except OSError:
            pass  # a resume drops a half-written last line
        raise SynchformerError(path, f"cannot write: {e.strerror or e}; the {done} rows this run wrote before are "
                                     "complete: run the same command again to go on") from None


def _score(model, fine, items, todo, args, fmt: RowFile, path: Path, truncate: bool, show: bool) -> list[dict]:
    """Score ``items[todo]``, appending each row to ``path`` as soon as it is done."""
    from tqdm import tqdm

    from synchformer.inference.score import score_files

    workers = args.workers
    if workers is None:  # decoding keeps a GPU fed only with several processes; on CPU the model is the bottleneck
        workers = gpu_decode_workers() if model.device.type == "cuda" else 1
    rows = []
    try:  # the umask's permissions, as any output
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0), 0o666)
    except OSError as e:
        raise SynchformerError(path, f"cannot write: {e.strerror or e}") from None
    try:
        if os.fstat(fd).st_size == 0:
            _append(fd, fmt.header(), path, 0)
        stream = score_files(model, [items[i] for i in todo], metric=args.metric, hop_sec=args.hop,
                             duration=args.duration, max_windows=args.max_windows, workers=workers,
                             batch_size=args.batch_size, timing=args.timing, audio_track=args.audio_track,
                             fine_model=fine, tolerance=args.tolerance, max_offset_sec=args.max_offset)
        with tqdm(total=len(todo), unit="clip", file=sys.stderr, disable=not show, dynamic_ncols=True) as bar:
            try:
                for row in stream:
                    _append(fd, fmt.line(row), path, len(rows))
                    rows.append(row)
                    if row["status"] == "error":
                        bar.write(f"synchformer: skipped: {row['error']}", file=sys.stderr)
                    bar.update()
            finally:
                stream.close()  # stops the decoding workers, also on Ctrl-C
    finally:
        os.close(fd)
    return rows


def _report(out: Path, rows: list[dict], n_new: int, elapsed: float, args, world: int, settings: dict) -> None:
    from synchformer.inference.score import summarize_rows

    s = summarize_rows(rows, args.metric)
    s.update(settings)  # what every row was made with (a resume with others is refused)
    s.update(output=str(out), new_rows=n_new, elapsed_sec=round(elapsed, 3),
             clips_per_sec=round(n_new / elapsed, 4) if elapsed > 0 else None, world_size=world)
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


def _settings(args, model, fine) -> dict:
    from synchformer.inference.score import run_settings

    return run_settings(model, args.metric, hop_sec=args.hop, duration=args.duration, max_windows=args.max_windows,
                        timing=args.timing, fine_model=fine, audio_track=args.audio_track, tolerance=args.tolerance,
                        max_offset_sec=args.max_offset)


def run(args) -> int:
    from synchformer.inference.batch_io import VIDEO_EXTENSIONS, read_inputs

    t0 = time.perf_counter()
    out = Path(args.output)
    fmt = RowFile(out, args.metric)
    check_workers(args)
    if args.duration is not None and not args.duration > 0 or not args.hop > 0:
        raise SynchformerError(None, "--duration and --hop must be positive")
    files = [p for p in args.inputs if os.path.isfile(p)]
    summary = Path(args.summary_json) if args.summary_json else None
    if summary is not None and summary.resolve() == out.resolve():
        raise SynchformerError(summary, "is the rows' output (-o) too; choose another name for the summary")
    # every output checked, and OUT's rows read, before the model loads (seconds): a run refused here costs nothing
    for path in (out, summary):
        if path is not None:
            _check_output(path, files)
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    lock = _lock(out) if rank == 0 else None  # under torchrun rank 0 writes OUT; the ranks write parts
    try:
        old = _read_old(out, fmt, args)
        items = read_inputs(args.inputs, audio_dir=args.audio_dir, previous=old.ids(), output=out)
        if not items:
            raise SynchformerError(None, f"no inputs found in {' '.join(args.inputs)} (videos are found by their "
                                         f"extension: {' '.join(VIDEO_EXTENSIONS)})")
        if not any(os.path.exists(it.video) for it in items):  # nothing to score: say so before the model loads
            raise SynchformerError(items[0].video if len(items) == 1 else None, "file not found" if len(items) == 1
                                   else f"none of the {len(items)} videos exists (the first: {items[0].video})")
        kept, todo = old.plan(items, args.retry_errors)
        _check_settings(out, kept, _known_settings(args))
        if world > 1:
            return _run_distributed(out, fmt, items, old, kept, todo, args, t0, world)
        model = load(args.weights, args.device, precision=args.precision)
        fine = load_fine(args.fine_weights, model, str(model.device)) if args.metric == "offset" else None
        settings = _settings(args, model, fine)
        _check_settings(out, kept, settings)  # the model's identity and what follows from it
        _settle(out, fmt, old, kept, args.overwrite)
        new = _score(model, fine, items, todo, args, fmt, out, args.overwrite, not args.no_progress)
        _report(out, kept + new, len(new), time.perf_counter() - t0, args, 1, settings)
    finally:
        _unlock(lock)
    return 0


def _run_distributed(out: Path, fmt: RowFile, items, old: _Old, kept, todo, args, t0: float, world: int) -> int:
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
    fine = load_fine(args.fine_weights, model, dev) if args.metric == "offset" else None  # a rank's own GPU
    settings = _settings(args, model, fine)
    # ranks wait for each other at the end for as long as the slowest shard takes
    if dev.startswith("cuda"):
        dist.init_process_group("nccl", timeout=timedelta(days=7), device_id=torch.device(dev))
    else:
        dist.init_process_group("gloo", timeout=timedelta(days=7))
    try:
        plan = [None]
        if rank == 0:  # one rank decides (and holds OUT's lock), so that every rank shards the same list
            try:
                _check_settings(out, kept, settings)
                _settle(out, fmt, old, kept, args.overwrite)
                plan[0] = ("ok", todo, items)
            except SynchformerError as e:
                plan[0] = ("error", str(e), None)
        dist.broadcast_object_list(plan, src=0)
        status, todo, items = plan[0]
        if status == "error":
            raise SynchformerError(None, todo)
        part = out.with_name(f"{out.name}.rank{rank}.part")
        _score(model, fine, items, todo[rank::world], args, fmt, part, True, rank == 0 and not args.no_progress)
        dist.barrier()
        if rank == 0:
            index = {it.key: i for i, it in enumerate(items)}
            parts = [out.with_name(f"{out.name}.rank{r}.part") for r in range(world)]
            new = sorted((r for p in parts for r in fmt.read(p)[0]), key=lambda r: index.get(_key(r), len(items)))
            write_atomic(out, lambda tmp: fmt.write_all(tmp, kept + new))
            if len(new) == len(todo):
                for p in parts:
                    p.unlink()
            else:
                print(f"synchformer: warning: {len(todo) - len(new)} rows missing from the parts (is the folder of "
                      f"{out} shared by all nodes?); parts kept", file=sys.stderr)
            _report(out, kept + new, len(todo), time.perf_counter() - t0, args, world, settings)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    return 0
