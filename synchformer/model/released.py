"""The released checkpoints by name (``--weights audioset``, ``load_model("syncability")``): where each is
published, what it is for, and the md5 the authors give; downloaded once into a cache.

The cache is ``$SYNCHFORMER_CACHE`` (default ``~/.cache/synchformer``). ``$SYNCHFORMER_MIRROR`` replaces the
authors' base URL (a mirror, an air-gapped site's server) with the same ``<ID>/<ID>.pt`` layout below it. A
download goes to ``<file>.part`` (resumed where it stopped, if the server allows), and is renamed into place
only once its md5 matches: a file in the cache is always a whole, checked one.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from synchformer.errors import SynchformerError
from synchformer.io.outputs import write_atomic

BASE_URL = "https://a3s.fi/swift/v1/AUTH_a235c0f452d648828f745589cde1219a/sync/sync_models/"
MMAUDIO_URL = "https://github.com/hkchengrex/MMAudio/releases/download/v0.1/"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Released:
    id: str
    what: str
    md5: str  # the prefix the authors publish (or the whole digest)
    path: str  # below the base URL
    base: str = BASE_URL
    sidecar: dict | None = None  # written beside the file: what load_model cannot read off a bare state dict

    @property
    def filename(self) -> str:
        return f"{self.id}{Path(self.path).suffix}"


def _stage2(id_: str, what: str, md5: str) -> Released:
    return Released(id_, what, md5, f"{id_}/{id_}.pt")


def _stage1(id_: str, what: str, md5: str) -> Released:
    return Released(id_, what, md5, f"{id_}/checkpoints/epoch_best.pt")


MODELS: dict[str, Released] = {
    "audioset": _stage2("24-01-04T16-39-21", "offsets, trained on AudioSet (the DeSync model; VGGSound-Sparse "
                                             "Acc@1 47.2)", "54037d2"),
    "vggsound": _stage2("24-01-02T10-00-53", "offsets, trained on VGGSound (VGGSound-Sparse Acc@1 43.8)", "19592ed"),
    "lrs3": _stage2("23-12-23T18-33-57", "offsets of talking heads, trained on LRS3 (Acc@1 86.6)", "4415276"),
    "syncability": _stage2("24-01-22T20-34-52", "synchronizable or not (stage III of audioset; accuracy 73.5, "
                                                "AUC 0.83): --syncability-weights", "b1cb346"),
    "audioset-s1": _stage1("23-12-22T16-13-38", "stage I encoders, AudioSet (features, fine-tuning)", "4a566f2"),
    "vggsound-s1": _stage1("23-12-22T16-10-50", "stage I encoders, VGGSound", "a9979df"),
    "lrs3-s1": _stage1("23-12-22T16-04-18", "stage I encoders, LRS3", "20b6e55"),
    "mmaudio": Released("synchformer_state_dict", "MMAudio's copy of audioset (its state dict: the visual "
                        "features MMAudio conditions on)", "5b2f5594b0730f70e41e549b7c94390c",
                        "synchformer_state_dict.pth", MMAUDIO_URL,
                        # the authors' model: not centred, their audio timing
                        sidecar={"model": {"center_segments": False, "timing": "authors"}}),
}


# What to do when a released model cannot be had, said the way the caller can do it.
PYTHON_HINT = ('download it yourself and pass its path to load_model, set SYNCHFORMER_MIRROR to a server that has '
               'it, or load the bundled model by name: load_model("bundled") (trained on synthetic clips only)')


def cli_hint(option: str = "--weights") -> str:
    return (f"download it yourself and pass {option} PATH, set SYNCHFORMER_MIRROR to a server that has it, or pass "
            f"{option} bundled for the bundled model (trained on synthetic clips only)")


class DownloadError(SynchformerError):
    """A released model that is not in the cache and could not be downloaded: ``url`` and ``reason`` (the md5
    mismatch, the HTTP status, the refused connection), with what to do (``hint``: ``with_hint`` says it
    another way, e.g. the command line's)."""

    def __init__(self, name: str, url: str, reason: str, hint: str = PYTHON_HINT):
        self.name, self.url, self.reason, self.hint = name, url, reason, hint
        super().__init__(None, f"cannot download {name} from {url} ({reason}); {hint}")

    def with_hint(self, hint: str) -> "DownloadError":
        return DownloadError(self.name, self.url, self.reason, hint)

    def __reduce__(self):  # (to another process and back: its own arguments, not the message)
        return DownloadError, (self.name, self.url, self.reason, self.hint)


def _reason(e: BaseException) -> str:
    """What went wrong with a download, in a few words: "HTTP 404 Not Found", "[Errno 111] Connection refused"."""
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}".strip()
    why = getattr(e, "reason", None) or e
    return " ".join(str(why).split()) or type(why).__name__


def cache_dir() -> Path:
    return Path(os.environ.get("SYNCHFORMER_CACHE") or Path.home() / ".cache" / "synchformer")


def cached_path(name: str) -> Path:
    return cache_dir() / MODELS[name].filename


def url_of(name: str) -> str:
    m = MODELS[name]
    base = os.environ.get("SYNCHFORMER_MIRROR") or m.base
    return base.rstrip("/") + "/" + m.path


def is_name(source) -> bool:
    """A released model's name that is not also a file here (a local file of that name wins)."""
    return isinstance(source, str) and source in MODELS and not os.path.exists(source)


def md5sum(path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def fetch(name: str, progress: bool | None = None, timeout: float = 30.0) -> Path:
    """The cached file of released model ``name``, downloaded first if it is not there yet (with a progress
    bar when ``progress``; default: when stderr is a terminal). ``DownloadError`` (one line: the URL and why)
    where it cannot be had."""
    if name not in MODELS:
        raise SynchformerError(name, f"is not a released model's name ({', '.join(MODELS)})")
    path, m = cached_path(name), MODELS[name]
    try:
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        if m.sidecar is not None and not path.with_suffix(".json").exists():
            write_atomic(path.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(m.sidecar) + "\n"))
    except OSError as e:
        raise SynchformerError(path.parent, f"cannot write the model cache ({e.strerror or e}); set "
                                            "SYNCHFORMER_CACHE to a folder that can be written") from None
    if path.exists():
        return path
    url = url_of(name)
    part = path.with_name(path.name + ".part")
    try:
        _download(url, part, sys.stderr.isatty() if progress is None else progress, timeout, f"{name} ({m.id})")
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as e:
        raise DownloadError(name, url, _reason(e)) from None
    digest = md5sum(part)
    if not digest.startswith(m.md5):
        part.unlink(missing_ok=True)
        raise DownloadError(name, url, f"md5 checksum does not match: {digest[:len(m.md5)]}, expected {m.md5}; the "
                                       "download is deleted")
    os.replace(part, path)
    return path


def _download(url: str, part: Path, progress: bool, timeout: float, label: str) -> None:
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code != 416 or not have:  # 416: the part is already whole
            raise
        return
    with response:
        resumed = response.status == 206
        length = response.headers.get("Content-Length")
        total = (int(length) if length else None)
        if total is not None and resumed:
            total += have
        from tqdm import tqdm

        with open(part, "ab" if resumed else "wb") as out, \
                tqdm(total=total, initial=have if resumed else 0, unit="B", unit_scale=True, desc=label,
                     disable=not progress, leave=False) as bar:
            while block := response.read(CHUNK):
                out.write(block)
                bar.update(len(block))
    if total is not None and part.stat().st_size != total:
        raise OSError(f"the connection closed after {part.stat().st_size} of {total} bytes; run again to resume")


def settings_of(path) -> dict | None:
    """The model settings the table knows for a bare state dict file (found by its whole md5, wherever it is
    and however it is named: MMAudio's copy of the AudioSet model), or None."""
    known = [m for m in MODELS.values() if m.sidecar is not None and len(m.md5) == 32]
    if not known:
        return None
    digest = md5sum(path)
    for m in known:
        if digest == m.md5:
            return dict(m.sidecar["model"])
    return None


def table() -> list[dict]:
    """Every released model: name, ID, what it is for, URL, and whether (and how big) it is in the cache."""
    rows = []
    for name, m in MODELS.items():
        path = cached_path(name)
        rows.append({"name": name, "id": m.id, "what": m.what, "url": url_of(name), "md5": m.md5, "bundled": False,
                     "cached": str(path) if path.exists() else None,
                     "size_mb": round(path.stat().st_size / 1e6, 1) if path.exists() else None})
    return rows
