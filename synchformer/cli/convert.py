"""``synchformer convert IN.pt OUT.safetensors``: a released checkpoint to the package's format."""

from __future__ import annotations

from pathlib import Path

from synchformer.errors import SynchformerError


def add_parser(sub):
    p = sub.add_parser("convert", help="convert a released checkpoint to the package's .safetensors format")
    p.add_argument("input", metavar="IN.pt", help="a checkpoint: a released .pt, a stage I file, a bare state dict")
    p.add_argument("output", metavar="OUT.safetensors", help="the file to write (a new one, unless --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT.safetensors if it exists")
    return p


def run(args) -> int:
    from synchformer.model import load_model, save_model

    src, dst = Path(args.input), Path(args.output)
    if dst.suffix != ".safetensors":
        raise SynchformerError(dst, "the output name must end in .safetensors")
    if dst.exists() and not args.overwrite:
        raise SynchformerError(dst, "exists; pass --overwrite to replace it")
    from synchformer.model.released import DownloadError

    try:
        model = load_model(src)
    except DownloadError as e:  # a released model's name: said the command line's way
        raise e.with_hint("download it yourself and pass its path as IN.pt, or set SYNCHFORMER_MIRROR to a server "
                          "that has it") from None
    digest = save_model(model, dst, protect=[src], extra={"converted_from": src.name})
    print(f"wrote {dst} ({model.cfg.head} head, {model.cfg.n_segments} segments) sha256 {digest}")
    return 0
