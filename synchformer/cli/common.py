"""What the commands share: the device and weights options, and loading the model."""

from __future__ import annotations

from synchformer.errors import SynchformerError

DEFAULT_WEIGHTS = "audioset"  # the released model every command uses without --weights (downloaded once)
RELEASED = "audioset, vggsound, lrs3 (`synchformer models`), or their .pt files"


def add_device(p):
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if available)")


def add_weights(p):
    p.add_argument("--weights", "-w", help=f"a released model's name, downloaded once ({RELEASED}), a "
                   "checkpoint file, or a .safetensors from `synchformer convert` / `synchformer train`; default: "
                   f"{DEFAULT_WEIGHTS} (downloaded on first use, 1.1 GB), or where it cannot be had the bundled "
                   "synthetic-data model, with a warning")


def add_syncability(p):
    p.add_argument("--syncability-weights", metavar="W", default="auto",
                   help="a stage III synchronizability model (the released one: 'syncability', or a file, or one from "
                        "`synchformer train synchronizability`): windows it finds cannot be synchronized (silence, "
                        "no visible source, another clip's sound) are left out, and a result without enough "
                        "others is not reliable. 'auto' (default): the bundled one with the bundled offset model, "
                        "none with other weights; 'none': no such model")
    p.add_argument("--min-sync-prob", type=float, default=0.5, metavar="P",
                   help="with a synchronizability model: windows below this P(synchronizable) are left out")


def add_fine(p):
    p.add_argument("--fine-weights", metavar="W", default="auto",
                   help="a fine-offset model (21 classes 20 ms apart over +-0.2 s; `synchformer train sync` with "
                        "model.max_offset_sec=0.2, see docs/training.md): the file is read again with its sound "
                        "delayed by the offset found, and this model reads what is left, to the frame; "
                        "refined_offset_sec is then its answer. 'auto' (default): the bundled one with the "
                        "bundled offset model, none with other weights (none is released); 'none': the "
                        "expectation over the pooled classes instead")


def load_fine(choice: str | None, offset_model, device_name: str):
    """The fine-offset model that ``--fine-weights`` names (None: none); ``auto``: see ``_companion``."""
    fine = _companion(choice, offset_model, device_name, "synthetic_tiny_fine", "offset")
    if fine is not None and choice != "auto":
        from synchformer.inference.refine import is_fine_model

        if not is_fine_model(fine):
            reach = fine.cfg.max_offset_sec
            raise SynchformerError(choice, f"is not a fine-offset model: its classes reach +-{reach:g} s (a fine one "
                                           "reaches at most +-0.5 s); pass a coarse model as --weights")
    return fine


def companion_label(choice: str | None, model) -> str | None:
    """What the JSON reports as ``syncability_weights`` / ``fine_weights``: the file, the bundled model's name,
    or null."""
    if model is None:
        return None
    return model.bundled if choice == "auto" else choice


fine_label = syncability_label = companion_label


def _companion(choice: str | None, offset_model, device_name: str, bundled: str, head: str):
    """A model that works beside the offset model (a synchronizability gate, a fine-offset model), as its option
    names it (None or "none": none). ``auto`` pairs the bundled offset model with its bundled companion
    ``bundled``; released or trained offset models get one only when asked. It runs at the offset model's
    precision."""
    if choice in (None, "none"):
        return None
    if choice == "auto":
        if getattr(offset_model, "bundled", None) != "synthetic_tiny":
            return None
        from synchformer.model import bundled as assets

        model = getattr(assets, bundled)(device(device_name))
    else:
        model = load(choice, device_name, head=head)
    model.precision = getattr(offset_model, "precision", "fp32")
    return model


def add_audio_track(p, allow_all: bool = False, what: str = "measure"):
    """``--audio-track N|LANG`` (and ``all`` where each track can be measured in turn)."""
    import re

    def track(text: str):
        text = text.strip()
        if text.isdigit():
            if int(text) < 1:
                raise ValueError(text)
            return int(text)
        if allow_all and text.lower() == "all":
            return "all"
        if not re.fullmatch(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*", text):
            raise ValueError(text)
        return text

    track.__name__ = "audio track (a number from 1, or a language code such as deu" + (", or all)" if allow_all
                                                                                    else ")")
    p.add_argument("--audio-track", type=track, default=None, metavar="N|LANG" + ("|all" if allow_all else ""),
                   help=f"which audio track to {what}: its number (1 = the file's first audio track) or its "
                        "language code as the file tags it (eng, deu, ...); default: the first track marked "
                        "default, else the first track, as players choose"
                        + ("; all: each track in turn, one result per track" if allow_all else ""))


def add_timing(p, default_help: str = "as the weights were trained: authors for the released checkpoints, true "
                                        "for the package's own models"):
    p.add_argument("--timing", choices=("authors", "true"), default=None,
                   help="how the audio is placed against the frames: 'true' by its timestamps, 'authors' as the "
                        "released weights' software stack did (most files' audio 64 ms early; see README "
                        f"\"Audio timing\"); default: {default_help}. Offsets are in the file's true timeline "
                        "either way")


def add_precision(p):
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                   help="number format of the model: auto (default) is bf16 autocast on a GPU with native bf16 and, "
                        "for full-size models, on a CPU with AVX512_BF16/AMX (about 3x faster there; probabilities "
                        "within 0.02 of fp32's), fp32 elsewhere and for tiny models; fp32 gives the reference's "
                        "numbers; fp16 needs a GPU")


def add_max_windows(p, what: str = ""):
    from synchformer.constants import MAX_WINDOWS

    def count(text: str) -> int:
        n = int(text)
        if n < 0:
            raise ValueError(text)
        return n

    count.__name__ = "window count"  # argparse's error: "invalid window count value: '-1'"
    p.add_argument("--max-windows", type=count, default=MAX_WINDOWS, metavar="N",
                   help=f"analysis budget{what}: a file longer than N windows of 4.8 s (default {MAX_WINDOWS}: about "
                        f"{MAX_WINDOWS * 4.8 / 60:.1f} min) is analysed in N windows spread evenly over it, each "
                        "decoded by seeking to it, so a film costs about what a short clip does; the offset and the "
                        "drift come from those windows (the output says which spans were seen). 0: every window, "
                        "at a cost that grows with the length")


def load_syncability(choice: str | None, offset_model, device_name: str):
    """The synchronizability model that ``--syncability-weights`` names (None: none); ``auto``: see
    ``_companion``."""
    return _companion(choice, offset_model, device_name, "synthetic_tiny_syncability", "synchronizability")


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


def check_workers(args) -> None:
    """``--workers`` and ``--batch-size`` (score; predict over several files), checked before any model loads."""
    if args.workers is not None and args.workers < 0 or args.batch_size is not None and args.batch_size < 1:
        raise SynchformerError(None, "--workers must be >= 0 and --batch-size >= 1")


def gpu_decode_workers() -> int:
    """Decoding processes that keep a GPU fed: up to 8, the CPU cores shared among the node's model processes."""
    import os

    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    return max(1, min(8, (os.cpu_count() or 1) // per_node))


def check_device(name: str) -> None:
    """--device checked before the inputs; "auto" and "cpu" need no check, so no torch import (1.7 s) yet."""
    if name not in ("auto", "cpu"):
        device(name)


def load(weights: str | None, device_name: str, *, head: str | None = None, sync_head: bool = True,
         precision: str = "fp32"):
    """The model in ``weights``; ``sync_head``: the command needs the sync transformer (not only the encoders).
    No ``weights``: the released AudioSet model (from the cache, or downloaded now), or where it cannot be had,
    the bundled synthetic-data model with a warning (``model.load_warning``, also printed)."""
    from synchformer.model import load_model
    from synchformer.model.precision import resolve

    resolve(precision, device(device_name))  # fp16 on a CPU: refused before the weights load
    if weights is None:
        model = _default_model(device_name)
        weights = model.weights_label
        model.precision = resolve(precision, device(device_name), model.cfg)
    else:
        model = load_model(weights, device=device(device_name), precision=precision)
        model.weights_label, model.load_warning = str(weights), None
        if model.bundled == "synthetic_tiny":  # named explicitly: still said in the JSON and predict's text
            from synchformer.model.bundled import NOTE

            model.load_warning = NOTE.removeprefix("note: ")
    if sync_head and not model.has_sync_head:
        raise SynchformerError(weights, "holds only the encoders (a stage I checkpoint): it cannot tell offsets; "
                                        "use a stage II/III checkpoint, or `synchformer features` for its features")
    if head is not None and model.cfg.head != head:
        raise SynchformerError(weights, f"has a {model.cfg.head} head; this needs a model with the {head} head")
    return model


def _default_model(device_name: str):
    import sys

    from synchformer.model import load_model, released
    from synchformer.model.bundled import synthetic_tiny

    try:
        path = released.fetch(DEFAULT_WEIGHTS, timeout=10)
    except SynchformerError:
        model = synthetic_tiny(device(device_name))
        model.weights_label = "bundled"
        model.load_warning = (f"using the bundled model, trained on synthetic clips only: the released "
                              f"{DEFAULT_WEIGHTS} model is not in {released.cache_dir()} and could not be downloaded; "
                              f"pass --weights FILE, or --weights {DEFAULT_WEIGHTS} once online")
        print(f"synchformer: warning: {model.load_warning}", file=sys.stderr)
        return model
    model = load_model(path, device=device(device_name))
    model.weights_label, model.load_warning = DEFAULT_WEIGHTS, None
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
