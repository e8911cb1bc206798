"""The small model that ships with the package, trained on the synthetic sparse-cue benchmark only.

Its files have names that ``load_model`` and every ``--weights`` option take (``BUNDLED``; "bundled" is the offset
model, ``synthetic_tiny``).

It shows the pipeline end to end (``synchformer demo``, ``predict`` without ``--weights``) without any
download; it has never seen a real video, so real videos need the released weights. How it was trained, and
what it scores (per clip, all windows pooled: Acc@1 0.93 on 200 held-out synthetic clips; per single window:
0.65), is in the README ("The bundled model").
"""

from __future__ import annotations

from synchformer.model.assets import (ALIASES, ASSETS, BUNDLED, CAVEAT, NOTE, SYNTHETIC_TINY, SYNTHETIC_TINY_FINE,
                                      SYNTHETIC_TINY_FINE_SHA256, SYNTHETIC_TINY_SHA256, SYNTHETIC_TINY_SYNCABILITY,
                                      SYNTHETIC_TINY_SYNCABILITY_SHA256, WHAT, bundled_name, is_name, path_of, table)
from synchformer.model.load import load_model


def synthetic_tiny(device: str = "cpu"):
    """The bundled offset model (checked against its checksum)."""
    return _load("synthetic_tiny", device)


def synthetic_tiny_syncability(device: str = "cpu"):
    """The bundled synchronizability model, trained on top of ``synthetic_tiny`` (its encoders unchanged)."""
    return _load("synthetic_tiny_syncability", device)


def synthetic_tiny_fine(device: str = "cpu"):
    """The bundled fine-offset model, trained on top of ``synthetic_tiny`` (its visual encoder unchanged)."""
    return _load("synthetic_tiny_fine", device)


def _load(name: str, device: str):
    return load_model(path_of(name), device=device)


__all__ = ["ALIASES", "ASSETS", "BUNDLED", "CAVEAT", "NOTE", "SYNTHETIC_TINY", "SYNTHETIC_TINY_FINE",
           "SYNTHETIC_TINY_FINE_SHA256", "SYNTHETIC_TINY_SHA256", "SYNTHETIC_TINY_SYNCABILITY",
           "SYNTHETIC_TINY_SYNCABILITY_SHA256", "WHAT", "bundled_name", "is_name", "path_of", "synthetic_tiny",
           "synthetic_tiny_fine", "synthetic_tiny_syncability", "table"]
