"""What the commands share: the device and weights options, and loading the model."""

from __future__ import annotations

from synchformer.errors import SynchformerError

DEFAULT_WEIGHTS = "audioset"  # the released model every command uses without --weights (inference.predict)
RELEASED = "audioset, vggsound, lrs3 (`synchformer models`), or their .pt files"


def add_device(p):
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if available)")


def add_weights(p):
    p.add_argument("--weights", "-w", help=f"a released model's name, downloaded once ({RELEASED}), a "
                   "checkpoint file, a .safetensors from `synchformer convert` / `synchformer train`, or the bundled "
                   "synthetic-data model: bundled (= synthetic_tiny); default: "
                   f"{DEFAULT_WEIGHTS} (downloaded on first use, 1.1 GB), or where it cannot be had the bundled "
                   "model, with a warning")


def add_syncability(p):
    p.add_argument("--syncability-weights", metavar="W", default="auto",
                   help="a stage III synchronizability model (the released one: 'syncability'; the bundled one: "
                        "'synthetic_tiny_syncability' or 'bundled'; a file, or one from "
                        "`synchformer train synchronizability`): windows it finds cannot be synchronized (silence, "
                        "no visible source, another clip's sound) are left out, and a result without enough "
                        "others is not reliable. 'auto' (default): the bundled one with the bundled offset model, "
                        "none with other weights; 'none': no such model")
    p.add_argument("--min-sync-prob", type=probability, default=0.5, metavar="P",
                   help="with a synchronizability model: windows whose P(synchronizable) is below P (0 to 1; "
                        "default 0.5) are left out. Higher leaves out more doubtful windows, and so trusts fewer")


def add_fine(p):
    p.add_argument("--fine-weights", metavar="W", default="auto",
                   help="a fine-offset model (21 classes 20 ms apart over +-0.2 s; `synchformer train sync` with "
                        "model.max_offset_sec=0.2, see docs/training.md): the file is read again with its sound "
                        "delayed by the offset found, and this model reads what is left, to the frame; "
                        "refined_offset_sec is then its answer; the bundled one: 'synthetic_tiny_fine' or 'bundled'. "
                        "'auto' (default): the bundled one with the "
                        "bundled offset model, none with other weights (none is released); 'none': the "
                        "expectation over the pooled classes instead")


OPTIONS = {"weights": "--weights", "syncability": "--syncability-weights", "fine": "--fine-weights"}


def load_fine(choice: str | None, offset_model, device_name: str):
    """The fine-offset model that ``--fine-weights`` names (None: none; inference.predict.load_companion)."""
    from synchformer.inference.predict import load_companion

    return load_companion(choice, offset_model, device(device_name), "fine", OPTIONS)


def companion_label(choice: str | None, model) -> str | None:
    """What the JSON reports as ``syncability_weights`` / ``fine_weights`` (inference.predict.companion_label)."""
    from synchformer.inference.predict import companion_label as label

    return label(choice, model)


fine_label = syncability_label = companion_label


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
                        "within 0.02 of fp32's), fp32 elsewhere and for tiny models; fp32 gives the numbers of the "
                        "authors' implementation; fp16 needs a GPU")


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


def add_max_offset(p, what: str = ""):
    """``--max-offset SEC``: the half-width of the offset search (inference.search)."""
    from synchformer.constants import DEFAULT_MAX_OFFSET_SEC

    p.add_argument("--max-offset", type=positive_float, default=DEFAULT_MAX_OFFSET_SEC, metavar="SEC",
                   help=f"search offsets up to SEC either way{what} (default {DEFAULT_MAX_OFFSET_SEC:g}). The model "
                        "itself reads +-2 s. Where that gives no reliable reading away from its edges, the windows "
                        "are read again with their sound shifted in steps of 1.92 s (the pictures' features reused: "
                        "each step costs the audio encoder on a few segments and the small sync transformer: "
                        "measured, 1.1x the time of +-2 s with the full-size model), and the shift whose windows "
                        "agree best wins; a file with a reliable reading inside +-2 s costs nothing more. Two shifts that explain the evidence about equally make the answer "
                        "\"ambiguous\", not reliable. A file reaches as far as its length allows (the JSON's "
                        "search.reach_sec). 2: the model's own range alone")


def add_tolerance(p, what: str):
    """``--tolerance NAME|LEAD,LAG``, read as a Tolerance (a bad one: argparse's one-line error, exit code 2)."""
    import argparse

    from synchformer.inference.tolerance import DEFAULT, STANDARDS, Tolerance

    def tolerance(text: str):
        try:
            return Tolerance.parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    named = ", ".join(f"{k} +{lead}/-{lag}" for k, (_, lead, lag) in STANDARDS.items())
    p.add_argument("--tolerance", type=tolerance, default=Tolerance.parse(DEFAULT), metavar="NAME|LEAD,LAG",
                   help=f"how far sound may be ahead of (+) or behind (-) the pictures and still count as in sync: "
                        f"{what}. A standard's window in ms ({named}: ITU-R BT.1359's detectable and acceptable "
                        f"limits, EBU R37, ATSC IS-191) or your own LEAD,LAG in ms (40,60: sound up to 40 ms early "
                        f"or 60 ms late). Default: {DEFAULT}")


def load_syncability(choice: str | None, offset_model, device_name: str):
    """The synchronizability model that ``--syncability-weights`` names (None: none)."""
    from synchformer.inference.predict import load_companion

    return load_companion(choice, offset_model, device(device_name), "syncability", OPTIONS)


def device(name: str) -> str:
    """``--device NAME`` checked (a one-line error that names the option), as the name torch takes."""
    from synchformer.inference.predict import resolve_device

    dev = resolve_device(name, "--device")
    return str(dev) if name == "auto" else name


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
         precision: str = "fp32", option: str = "--weights"):
    """The model in ``weights`` (a file, a released or bundled model's name; inference.predict.load_weights);
    ``sync_head``: the command needs the sync transformer (not only the encoders). No ``weights``: the released
    AudioSet model, or where it cannot be had, the bundled one with a warning that says why (printed now, and
    ``model.load_warning``). ``option``: the option that named it, for what a failed download says."""
    import sys

    from synchformer.inference.predict import load_weights

    model, _, warnings = load_weights(weights, device=device(device_name), precision=precision,
                                      options={"weights": option}, head=head, sync_head=sync_head)
    if weights is None and warnings:  # the bundled model stood in
        print(f"synchformer: warning: {warnings[0]}", file=sys.stderr)
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


# ------------------------------------------------------------------------------------------------ option values
# argparse ``type=`` functions: a bad value is refused while the command line is read (argparse prints the usage
# and "argument --hop: expected ..." and exits with code 2), before any input is opened or any model loads.


def _parse_number(text: str, kind, what: str):
    import argparse
    import math

    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def _validator(kind, what: str, ok, name: str):
    import argparse

    def parse(text: str):
        value = _parse_number(text, kind, what)
        if not ok(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    parse.__name__ = name
    return parse


finite_float = _validator(float, "a finite number", lambda v: True, "finite number")
positive_float = _validator(float, "a finite number > 0", lambda v: v > 0, "positive number")
non_negative_float = _validator(float, "a finite number >= 0", lambda v: v >= 0, "non-negative number")
probability = _validator(float, "a probability from 0 to 1", lambda v: 0 <= v <= 1, "probability")
positive_int = _validator(int, "a whole number >= 1", lambda v: v >= 1, "positive whole number")
non_negative_int = _validator(int, "a whole number >= 0", lambda v: v >= 0, "non-negative whole number")


def float_at_least(low: float):
    """A finite number >= ``low``."""
    return _validator(float, f"a finite number >= {low:g}", lambda v: v >= low, f"number >= {low:g}")


def int_at_least(low: int):
    """A whole number >= ``low``."""
    return _validator(int, f"a whole number >= {low}", lambda v: v >= low, f"whole number >= {low}")


# a random seed: any whole number (the generators take a negative or a huge one modulo 2**64)
random_seed = _validator(int, "a whole number", lambda v: True, "seed")


def version() -> str:
    """The installed package's version (its metadata), or the source tree's ``synchformer.__version__``."""
    try:
        from importlib.metadata import PackageNotFoundError, version as installed

        return installed("synchformer")
    except (ImportError, PackageNotFoundError):
        import synchformer

        return synchformer.__version__
