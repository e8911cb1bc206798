"""The small model meant to ship with the package, trained on the synthetic sparse-cue benchmark only.

It would show the pipeline end to end (``synchformer demo``, ``predict`` without ``--weights``) without any
download; it never sees a real video, so real videos need the released weights. This version ships none
yet (README, "Training": a small model does not yet learn the benchmark on a CPU); the loader below is
what finds, checks and loads it once it is committed at ``SYNTHETIC_TINY`` with its checksum.
"""

from __future__ import annotations

from pathlib import Path

from synchformer.errors import SynchformerError

from .checkpoint import sha256sum
from .load import load_model

SYNTHETIC_TINY = Path(__file__).resolve().parent.parent / "assets" / "synthetic_tiny.safetensors"
SYNTHETIC_TINY_SHA256 = ""  # set together with the file
NOTE = ("note: using the bundled model, trained on synthetic flash/click clips only (synchformer synth); "
        "for real videos pass --weights with a released checkpoint")


def synthetic_tiny(device: str = "cpu"):
    """The bundled model (checked against its checksum)."""
    path = SYNTHETIC_TINY
    if not path.exists():
        raise SynchformerError(None, "this version ships no bundled model yet: pass --weights with a released "
                                     "checkpoint or one trained with `synchformer train`")
    if sha256sum(path) != SYNTHETIC_TINY_SHA256:
        raise SynchformerError(path, "does not match the bundled model's checksum (a damaged install?)")
    return load_model(path, device=device)
