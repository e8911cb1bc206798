"""``synchformer convert IN.pt OUT.safetensors``: a released checkpoint to the package's format."""

from __future__ import annotations

from pathlib import Path

from synchformer.errors import SynchformerError


def add_parser(sub):
    p = sub.add_parser("convert", help="convert a released checkpoint to the package's .safetensors format")
    p.add_argument("input", metavar="IN.pt")
    p.add_argument("output", metavar="OUT.safetensors")
    p.add_argument("--overwrite", action="store_true", help="replace OUT.safetensors if it exists")
    return p


def run(args) -> int:
    from synchformer.model import load_model, save_model

    src, dst = Path(args.input), Path(args.output)
    if dst.suffix != ".safetensors":
        raise SynchformerError(dst, "the output name must end in .safetensors")
    if dst.exists() and not args.overwrite:
        raise SynchformerError(dst, "exists; pass --overwrite to replace it")
    model = load_model(src)
    digest = save_model(model, dst, protect=[src], extra={"converted_from": src.name})
    print(f"wrote {dst} ({model.cfg.head} head, {model.cfg.n_segments} segments) sha256 {digest}")
    return 0
