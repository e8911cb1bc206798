"""What the commands share: device choice, loading weights, writing outputs safely."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from synchformer.errors import SynchformerError

RELEASED = "24-01-04T16-39-21.pt (AudioSet), 24-01-02T10-00-53.pt (VGGSound), 23-12-23T18-33-57.pt (LRS3)"


def add_device(p):
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if available)")


def add_weights(p, required: bool = True):
    p.add_argument("--weights", "-w", required=False, help=f"checkpoint: a released .pt ({RELEASED}) or a "
                   ".safetensors from `synchformer convert`")


def device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def load(weights: str | None, device_name: str, *, head: str | None = None):
    from synchformer.model import load_model

    if weights is None:
        raise SynchformerError(None, f"no weights given: pass --weights with a released checkpoint ({RELEASED}) "
                                     "or a file made by `synchformer convert`")
    model = load_model(weights, device=device(device_name))
    if head is not None and model.cfg.head != head:
        raise SynchformerError(weights, f"has a {model.cfg.head} head; this needs a model with the {head} head")
    return model


def protect_inputs(output: str | os.PathLike, inputs) -> Path:
    """Refuse an output path that is one of the inputs (never write over the user's data)."""
    out = Path(output)
    for src in inputs:
        src = Path(src)
        if out.resolve() == src.resolve() or (out.exists() and src.exists() and os.path.samefile(out, src)):
            raise SynchformerError(out, f"is an input file ({src}); choose another output name")
    return out


def write_atomic(path: str | os.PathLike, write) -> None:
    """``write(tmp_path)`` into a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    if not path.parent.is_dir():
        raise SynchformerError(path, "cannot write: the folder does not exist")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; an output gets the usual permissions
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise SynchformerError(path, f"cannot write: {e.strerror or e}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
