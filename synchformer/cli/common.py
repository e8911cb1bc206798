"""What the commands share: the device and weights options, and loading the model."""

from __future__ import annotations

from synchformer.errors import SynchformerError

RELEASED = "24-01-04T16-39-21.pt (AudioSet), 24-01-02T10-00-53.pt (VGGSound), 23-12-23T18-33-57.pt (LRS3)"


def add_device(p):
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if available)")


def add_weights(p):
    p.add_argument("--weights", "-w", help=f"checkpoint: a released .pt ({RELEASED}) or a "
                   ".safetensors from `synchformer convert`")


def device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise SynchformerError(None, f"--device {name}: not a device name (cpu, cuda, cuda:1, ...)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no GPU is visible"
            raise SynchformerError(None, f"--device {name}: CUDA is not available ({why}); use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise SynchformerError(None, f"--device {name}: there are only {torch.cuda.device_count()} GPU(s)")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise SynchformerError(None, f"--device {name}: MPS is not available on this machine; use --device cpu")
    return name


def load(weights: str | None, device_name: str, *, head: str | None = None, sync_head: bool = True):
    """The model in ``weights``; ``sync_head``: the command needs the sync transformer (not only the encoders)."""
    from synchformer.model import load_model

    if weights is None:
        raise SynchformerError(None, f"no weights given: pass --weights with a released checkpoint ({RELEASED}) "
                                     "or a file made by `synchformer convert`")
    model = load_model(weights, device=device(device_name))
    if sync_head and not model.has_sync_head:
        raise SynchformerError(weights, "holds only the encoders (a stage I checkpoint): it cannot tell offsets; "
                                        "use a stage II/III checkpoint, or `synchformer features` for its features")
    if head is not None and model.cfg.head != head:
        raise SynchformerError(weights, f"has a {model.cfg.head} head; this needs a model with the {head} head")
    return model


def load_or_bundled(weights: str | None, device_name: str, *, head: str | None = None):
    """``--weights`` if given, else the bundled synthetic-data model (with a printed note saying so)."""
    import sys

    if weights is not None:
        return load(weights, device_name, head=head)
    from synchformer.model.bundled import NOTE, synthetic_tiny

    model = synthetic_tiny(device(device_name))
    if head is not None and model.cfg.head != head:
        raise SynchformerError(None, f"this needs a model with the {head} head: pass --weights")
    print(NOTE, file=sys.stderr)
    return model
