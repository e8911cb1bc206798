"""What `score` reads (folders, glob patterns, CSV lists and video files, as Items: a video and an optional
generated audio track) and writes (rows of fixed columns). Pure Python, no torch: the command line checks its
inputs and its output before a model loads.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath

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
    # in_tolerance: the refined offset inside the row's tolerance (inference.tolerance); empty: no offset
    "offset": ("offset_sec", "abs_offset_sec", "confidence", "refined_offset_sec", "agreement",
               "drift_detected", "drift_ms_per_min", "sampled", "in_tolerance"),
}


# What made a row besides its file (inference.score.run_settings): rows of other ones are not one data set, so
# that a resume refuses them (metric and timing above are two more). weights: as loaded (a name or a file);
# weights_sha256: its identity; frame_size: short side decoded at, px; cut_sec: --duration; hop_sec as given.
SETTINGS = ("weights", "weights_sha256", "precision", "frame_size", "cut_sec", "audio_track")
METRIC_SETTINGS = {"desync": (), "offset": ("hop_sec", "max_windows", "fine_weights", "fine_sha256", "tolerance",
                                            "max_offset_sec")}


def columns(metric: str) -> tuple[str, ...]:
    return COMMON + METRIC_COLUMNS[metric] + SETTINGS + METRIC_SETTINGS[metric]


def legacy_columns(metric: str) -> tuple[str, ...]:
    """The columns of rows written before rows named their model and settings."""
    return COMMON + METRIC_COLUMNS[metric]


@dataclass(frozen=True)
class Item:
    """One thing to score: a video, optionally with a separately generated audio file replacing its sound."""

    video: str
    audio: str | None = None
    id: str | None = None  # None: one is made from the paths (assign_ids)
    error: str | None = None  # known to be unusable before decoding (e.g. no audio file in --audio-dir)

    @property
    def key(self) -> tuple[str, str]:
        return row_key(self.video, self.audio)


def row_key(video, audio) -> tuple[str, str]:
    """What identifies a row (for resuming): the video and the audio path, absolute."""
    return os.path.abspath(video), (os.path.abspath(audio) if audio else "")


def as_item(x) -> Item:
    """An Item from an Item, a path, a (video, audio) pair or a dict with video/path, audio and id keys (no id:
    :func:`assign_ids` makes one)."""
    if isinstance(x, Item):
        return x
    if isinstance(x, (str, os.PathLike)):
        return Item(os.fspath(x))
    if isinstance(x, dict):
        video = os.fspath(x.get("video") or x["path"])
        audio = x.get("audio") or x.get("audio_path")
        return Item(video, os.fspath(audio) if audio else None, str(x["id"]) if x.get("id") else None)
    video, audio = x
    return Item(os.fspath(video), os.fspath(audio) if audio else None)


def _what(item: Item) -> str:
    return item.video + (f" with {item.audio}" if item.audio else "")


def _derive(items: list[Item], which: list[int], taken: set, level: dict | None = None) -> tuple[dict, dict]:
    """Ids for ``items[which]``, unique among them and not in ``taken``: the video's stem; where that is not
    enough, the file name; then the path below the folder the videos share; then that and the audio's path
    below the folder the audio files share (unique: the inputs differ in their video or their audio)."""
    def common(paths):
        return os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths]) if paths else ""

    vbase = common([items[i].video for i in which])
    abase = common([items[i].audio for i in which if items[i].audio])

    def name(it: Item, n: int) -> str:
        if n == 0:
            return Path(it.video).stem
        if n == 1:
            return Path(it.video).name
        rel = PurePath(os.path.relpath(os.path.abspath(it.video), vbase)).as_posix()
        if n == 2 or not it.audio:
            return rel
        return rel + "+" + PurePath(os.path.relpath(os.path.abspath(it.audio), abase)).as_posix()

    level = {i: (level or {}).get(i, 0) for i in which}
    while True:
        cand = {i: name(items[i], level[i]) for i in which}
        count = Counter(cand.values())
        clash = [i for i in which if level[i] < 3 and (count[cand[i]] > 1 or cand[i] in taken)]
        if not clash:
            break
        for i in clash:
            level[i] += 1
    used = set(taken)
    for i in which:  # still taken (by a given id, an old row's): numbered
        base, n = cand[i], 2
        while cand[i] in used:
            cand[i], n = f"{base}~{n}", n + 1
        used.add(cand[i])
    return cand, level


def assign_ids(items: list[Item], previous: Mapping[tuple[str, str], str] | None = None,
               output: str | os.PathLike | None = None) -> list[Item]:
    """``items`` with ids unique among them, and stable across resumes. An id given (a CSV's id column) stays:
    two inputs given the same one are refused. Else the id that ``previous`` (row key -> id: the rows that
    ``output`` already holds) gave the input, so that a resume (or --retry-errors) never renames a row. Else the
    video's stem, or where two inputs share it a longer name (``_derive``), as a run over the same inputs from
    scratch names them; longer still where an old row of another input has that id."""
    previous = dict(previous or {})
    given: dict[str, Item] = {}
    for it in items:
        if it.id is not None:
            if it.id in given and given[it.id].key != it.key:
                raise SynchformerError(None, f"two inputs are given the id {it.id!r}: {_what(given[it.id])} and "
                                             f"{_what(it)}; ids must be unique")
            given[it.id] = it
    for key, old in previous.items():
        if old in given and given[old].key != key:
            raise SynchformerError(output, f"holds the row of {key[0]} under the id {old!r}, which this run "
                                           f"gives {_what(given[old])}: give it another id, or use another output "
                                           "file, or --overwrite")
    ids = {i: it.id for i, it in enumerate(items) if it.id is not None}
    auto = [i for i in range(len(items)) if i not in ids]
    # as a run over these inputs alone names them, so that a resumed run writes what an uninterrupted one does
    fresh, level = _derive(items, auto, set(ids.values()))
    ids.update({i: previous[items[i].key] for i in auto if items[i].key in previous})  # rows keep their ids
    new = [i for i in auto if i not in ids]
    ids.update({i: fresh[i] for i in new})
    clash = [i for i in new if fresh[i] in previous.values()]  # an old row of another input has it
    if clash:
        taken = {v for i, v in ids.items() if i not in clash} | set(previous.values())
        ids.update(_derive(items, clash, taken, level)[0])
    return [it if it.id == ids[i] else dataclasses.replace(it, id=ids[i]) for i, it in enumerate(items)]


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

    items, line_of = [], {}
    for n, r in enumerate(rows, 2):
        if not (r.get(vcol) or "").strip():
            continue
        video = resolve(r[vcol])
        audio = (r.get(acol) or "").strip() if acol else ""
        item = Item(video, resolve(audio) if audio else None, ((r.get(icol) or "").strip() or None) if icol else None)
        if item.id is not None:
            first = line_of.setdefault(item.id, (n, item))
            if first[1].key != item.key:
                raise SynchformerError(path, f"lines {first[0]} and {n} have the same id {item.id!r} "
                                             f"({_what(first[1])}; {_what(item)}): ids must be unique")
        items.append(item)
    return items


def read_inputs(inputs: Iterable[str | os.PathLike], audio_dir: str | os.PathLike | None = None,
                previous: Mapping[tuple[str, str], str] | None = None,
                output: str | os.PathLike | None = None) -> list[Item]:
    """Items from folders (scanned recursively for videos), glob patterns, CSV files (columns ``path`` or
    ``video``, optional ``audio``/``audio_path`` and ``id``) and video files, in the order given (folders
    and globs sorted), without duplicates. A missing video file (by its extension) stays an item, to become an
    error row; another missing path is an error.

    ``audio_dir``: pair each video that has no audio from a CSV with ``audio_dir/<video stem>.<ext>`` (ext
    one of .wav .flac .mp3 .ogg .m4a); a video without one gets an error row.

    Ids: unique, see :func:`assign_ids` (``previous``, ``output``: the rows an output holds, for a resume).
    """
    items: list[Item] = []

    def add(path: str, pattern_ok: bool):
        if os.path.isdir(path):
            items.extend(Item(p) for p in _scan(path))
        elif path.lower().endswith(".csv"):
            if not os.path.isfile(path):
                raise SynchformerError(path, "CSV file not found")
            items.extend(_read_csv(path))
        elif pattern_ok and glob.has_magic(path):
            for match in sorted(glob.glob(path, recursive=True)):
                add(match, False)
        elif os.path.exists(path) or path.lower().endswith(VIDEO_EXTENSIONS):
            items.append(Item(path))  # a missing video becomes an error row
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
    return assign_ids(unique, previous, output)


def _pair(item: Item, audio_dir: str) -> Item:
    stem = Path(item.video).stem
    for ext in AUDIO_EXTENSIONS + tuple(e.upper() for e in AUDIO_EXTENSIONS):
        cand = os.path.join(audio_dir, stem + ext)
        if os.path.isfile(cand):
            return dataclasses.replace(item, audio=cand)
    exts = ",".join(e[1:] for e in AUDIO_EXTENSIONS)
    return dataclasses.replace(item, error=f"no audio file {stem}.{{{exts}}} in {audio_dir}")
