"""What `score` reads (folders, glob patterns, CSV lists and video files, as Items: a video and an optional
generated audio track) and writes (rows of fixed columns). Pure Python, no torch: the command line checks its
inputs and its output before a model loads.
"""

from __future__ import annotations

import csv
import glob
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from synchformer.errors import SynchformerError

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ogv", ".flv", ".wmv",
                    ".ts", ".mts", ".m2ts", ".3gp")
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".m4a")

# Row columns (fixed, so CSV and JSONL hold the same fields; a missing value is None / empty).
COMMON = ("id", "video", "audio", "status", "error", "metric", "timing", "duration_sec", "n_segments", "n_windows",
          "warnings", "reliable", "reasons")  # the verdict (synchformer.inference.verdict); reasons joined by "; "
METRIC_COLUMNS = {
    # av-benchmark: argmax class of the first and the last 4.8 s window; desync = mean of their |offset|
    "desync": ("desync_sec", "first_start_sec", "first_offset_sec", "first_probability",
               "last_start_sec", "last_offset_sec", "last_probability"),
    # whole-video analysis pooled into one offset (synchformer.inference.pooling)
    # sampled: the file was longer than the analysis budget, so windows spread over it were read (max_windows)
    "offset": ("offset_sec", "abs_offset_sec", "confidence", "refined_offset_sec", "agreement",
               "drift_detected", "drift_ms_per_min", "sampled"),
}


def columns(metric: str) -> tuple[str, ...]:
    return COMMON + METRIC_COLUMNS[metric]


@dataclass(frozen=True)
class Item:
    """One thing to score: a video, optionally with a separately generated audio file replacing its sound."""

    video: str
    audio: str | None = None
    id: str | None = None
    error: str | None = None  # known to be unusable before decoding (e.g. no audio file in --audio-dir)

    @property
    def key(self) -> tuple[str, str]:
        return row_key(self.video, self.audio)


def row_key(video, audio) -> tuple[str, str]:
    """What identifies a row (for resuming): the video and the audio path, absolute."""
    return os.path.abspath(video), (os.path.abspath(audio) if audio else "")


def as_item(x) -> Item:
    """An Item from an Item, a path, a (video, audio) pair or a dict with video/path and audio keys."""
    if isinstance(x, Item):
        return x
    if isinstance(x, (str, os.PathLike)):
        return Item(os.fspath(x), id=Path(x).stem)
    if isinstance(x, dict):
        video = os.fspath(x.get("video") or x["path"])
        audio = x.get("audio") or x.get("audio_path")
        return Item(video, os.fspath(audio) if audio else None, x.get("id") or Path(video).stem)
    video, audio = x
    return Item(os.fspath(video), os.fspath(audio) if audio else None, Path(video).stem)


def _scan(folder: str) -> list[str]:
    found = []
    for root, _, files in os.walk(folder):
        found += [os.path.join(root, f) for f in files if f.lower().endswith(VIDEO_EXTENSIONS)]
    return sorted(found)


def _read_csv(path: str) -> list[Item]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows, fields = list(reader), [c for c in reader.fieldnames or [] if c]
    except OSError as e:
        raise SynchformerError(path, f"cannot read the CSV ({e.strerror or e})") from None
    except (csv.Error, UnicodeDecodeError) as e:
        raise SynchformerError(path, f"not a readable CSV ({e})") from None
    col = {c.strip().lower(): c for c in fields}
    vcol = col.get("path") or col.get("video")
    if vcol is None:
        raise SynchformerError(path, f"needs a 'path' or 'video' column (has: {', '.join(fields) or 'none'})")
    acol, icol = col.get("audio") or col.get("audio_path"), col.get("id")
    here = os.path.dirname(path)

    def resolve(p: str) -> str:  # relative paths are relative to the CSV's folder
        p = os.path.expanduser(p.strip())
        return os.path.normpath(p if os.path.isabs(p) else os.path.join(here, p))

    items = []
    for r in rows:
        if not (r.get(vcol) or "").strip():
            continue
        video = resolve(r[vcol])
        audio = (r.get(acol) or "").strip() if acol else ""
        items.append(Item(video, resolve(audio) if audio else None,
                          (r.get(icol) or "").strip() or Path(video).stem if icol else Path(video).stem))
    return items


def read_inputs(inputs: Iterable[str | os.PathLike], audio_dir: str | os.PathLike | None = None) -> list[Item]:
    """Items from folders (scanned recursively for videos), glob patterns, CSV files (columns ``path`` or
    ``video``, optional ``audio``/``audio_path`` and ``id``) and video files, in the order given (folders
    and globs sorted), without duplicates. A missing video file (by its extension) stays an item, to become an
    error row; another missing path is an error.

    ``audio_dir``: pair each video that has no audio from a CSV with ``audio_dir/<video stem>.<ext>`` (ext
    one of .wav .flac .mp3 .ogg .m4a); a video without one gets an error row.
    """
    items: list[Item] = []

    def add(path: str, pattern_ok: bool):
        if os.path.isdir(path):
            items.extend(Item(p, id=Path(p).stem) for p in _scan(path))
        elif path.lower().endswith(".csv"):
            if not os.path.isfile(path):
                raise SynchformerError(path, "CSV file not found")
            items.extend(_read_csv(path))
        elif pattern_ok and glob.has_magic(path):
            for match in sorted(glob.glob(path, recursive=True)):
                add(match, False)
        elif os.path.exists(path) or path.lower().endswith(VIDEO_EXTENSIONS):
            items.append(Item(path, id=Path(path).stem))  # a missing video becomes an error row
        elif pattern_ok:  # most likely a mistyped folder: nothing to score
            raise SynchformerError(path, "not found (not a file, a folder, a CSV or a glob pattern that matches)")

    for inp in inputs:
        add(os.path.expanduser(os.fspath(inp)), True)
    if audio_dir is not None:
        audio_dir = os.fspath(audio_dir)
        if not os.path.isdir(audio_dir):
            raise SynchformerError(audio_dir, "audio folder not found")
        items = [it if it.audio else _pair(it, audio_dir) for it in items]
    seen, unique = set(), []
    for it in items:
        if it.key not in seen:
            seen.add(it.key)
            unique.append(it)
    return unique


def _pair(item: Item, audio_dir: str) -> Item:
    stem = Path(item.video).stem
    for ext in AUDIO_EXTENSIONS + tuple(e.upper() for e in AUDIO_EXTENSIONS):
        cand = os.path.join(audio_dir, stem + ext)
        if os.path.isfile(cand):
            return Item(item.video, cand, item.id)
    exts = ",".join(e[1:] for e in AUDIO_EXTENSIONS)
    return Item(item.video, None, item.id, error=f"no audio file {stem}.{{{exts}}} in {audio_dir}")
