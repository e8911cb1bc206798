"""Where the bundled models' files are, their names and checksums, and which file is which (``bundled`` loads
them; ``load`` resolves their names). Nothing here loads a model."""

from __future__ import annotations

import os
from pathlib import Path

from synchformer.errors import SynchformerError

from .checkpoint import sha256sum

ASSETS = Path(__file__).resolve().parent.parent / "assets"
SYNTHETIC_TINY = ASSETS / "synthetic_tiny.safetensors"
SYNTHETIC_TINY_SHA256 = "f87db655f62e99d49c6eae88abf8142746ddf404ce61c1fc43151441d10acf97"
# its stage III companion (same encoders, so the gate costs only its sync transformer): P(synchronizable)
SYNTHETIC_TINY_SYNCABILITY = ASSETS / "synthetic_tiny_syncability.safetensors"
SYNTHETIC_TINY_SYNCABILITY_SHA256 = "7430d497e66fcd581a17efcd3a6e3a22e05a8d319685bc2c8b549808da91b3ae"
# its fine-offset companion (same visual encoder, so its pass costs the audio encoder and its sync transformer):
# the offset below the 0.2 s classes (inference.fine)
SYNTHETIC_TINY_FINE = ASSETS / "synthetic_tiny_fine.safetensors"
SYNTHETIC_TINY_FINE_SHA256 = "e2cb523868fd6ce07cbf5afdc1cb26496ba8891f6181ff08d24df2a0587eec7f"
BUNDLED = ("synthetic_tiny", "synthetic_tiny_syncability", "synthetic_tiny_fine")
ALIASES = {"bundled": "synthetic_tiny"}
WHAT = {"synthetic_tiny": "offsets; trained on synthetic flash/click clips only (synchformer synth): the "
                          "pipeline end to end, not real videos",
        "synthetic_tiny_syncability": "synchronizable or not, beside synthetic_tiny (--syncability-weights)",
        "synthetic_tiny_fine": "fine offsets (+-0.2 s), beside synthetic_tiny (--fine-weights)"}


def is_name(source) -> bool:
    """A bundled model's name (or "bundled") that is not also a file here (a local file of that name wins)."""
    return isinstance(source, str) and (source in BUNDLED or source in ALIASES) and not os.path.exists(source)


def path_of(name: str) -> Path:
    """The file of bundled model ``name`` (or "bundled"), checked against its checksum."""
    name = ALIASES.get(name, name)
    if name not in BUNDLED:
        raise SynchformerError(name, f"is not a bundled model's name ({', '.join([*ALIASES, *BUNDLED])})")
    path, sha = file_of(name)
    if not path.exists():
        raise SynchformerError(None, f"the bundled model is missing from this install ({path.name}): pass --weights "
                                     "with a released checkpoint or one trained with `synchformer train`")
    if sha256sum(path) != sha:
        raise SynchformerError(path, "does not match the bundled model's checksum (a damaged install?)")
    return path


def table() -> list[dict]:
    """Every bundled model, as ``released.table()`` lists the released ones (no URL: it is installed)."""
    rows = []
    for name in BUNDLED:
        path, sha = file_of(name)
        aliases = [a for a, n in ALIASES.items() if n == name]
        rows.append({"name": name, "aliases": aliases, "id": None, "what": WHAT[name], "url": None, "md5": None,
                     "sha256": sha, "bundled": True, "cached": str(path) if path.exists() else None,
                     "size_mb": round(path.stat().st_size / 1e6, 1) if path.exists() else None})
    return rows


def file_of(name: str) -> tuple[Path, str]:
    """(path, sha256) of a bundled model, read when asked (tests point them elsewhere)."""
    key = name.upper()
    return globals()[key], globals()[f"{key}_SHA256"]
CAVEAT = "model trained on synthetic clips only"  # a reason on its every unreliable verdict
NOTE = ("note: using the bundled model, trained on synthetic flash/click clips only (synchformer synth); "
        "for real videos pass --weights with a released checkpoint")


def bundled_name(path) -> str | None:
    """Which bundled model the file at ``path`` is (by size and checksum, whatever its name), or None."""
    try:
        size = os.path.getsize(path)
        for name in BUNDLED:
            file, sha = file_of(name)
            if file.exists() and size == file.stat().st_size and sha256sum(path) == sha:
                return name
    except (OSError, TypeError):
        pass
    return None


__all__ = ["ALIASES", "ASSETS", "BUNDLED", "CAVEAT", "NOTE", "SYNTHETIC_TINY", "SYNTHETIC_TINY_FINE",
           "SYNTHETIC_TINY_SYNCABILITY", "WHAT", "bundled_name", "file_of", "is_name", "path_of", "table"]
