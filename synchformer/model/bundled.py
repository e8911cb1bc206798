"""The small model that ships with the package, trained on the synthetic sparse-cue benchmark only.

It shows the pipeline end to end (``synchformer demo``, ``predict`` without ``--weights``) without any
download; it has never seen a real video, so real videos need the released weights. How it was trained, and
what it scores (per clip, all windows pooled: Acc@1 0.93 on 200 held-out synthetic clips; per single window:
0.65), is in the README ("The bundled model").
"""

from __future__ import annotations

from pathlib import Path

from synchformer.errors import SynchformerError

from .checkpoint import sha256sum
from .load import load_model

SYNTHETIC_TINY = Path(__file__).resolve().parent.parent / "assets" / "synthetic_tiny.safetensors"
SYNTHETIC_TINY_SHA256 = "f87db655f62e99d49c6eae88abf8142746ddf404ce61c1fc43151441d10acf97"
CAVEAT = "model trained on synthetic clips only"  # a reason on its every unreliable verdict
NOTE = ("note: using the bundled model, trained on synthetic flash/click clips only (synchformer synth); "
        "for real videos pass --weights with a released checkpoint")


def synthetic_tiny(device: str = "cpu"):
    """The bundled model (checked against its checksum)."""
    path = SYNTHETIC_TINY
    if not path.exists():
        raise SynchformerError(None, "the bundled model is missing from this install: pass --weights with a released "
                                     "checkpoint or one trained with `synchformer train`")
    if sha256sum(path) != SYNTHETIC_TINY_SHA256:
        raise SynchformerError(path, "does not match the bundled model's checksum (a damaged install?)")
    return load_model(path, device=device)
