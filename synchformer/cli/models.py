"""``synchformer models``: the released models by name, what each is for, and whether it is in the cache; and the
bundled ones, which are installed with the package."""

from __future__ import annotations

import json


def add_parser(sub):
    p = sub.add_parser("models", help="list the released and bundled models (names for --weights), and which are "
                       "downloaded",
                       description="Names for --weights / --syncability-weights / --fine-weights and "
                       "synchformer.load_model(). A released name is downloaded on first use into $SYNCHFORMER_CACHE "
                       "(default ~/.cache/synchformer), md5-checked; $SYNCHFORMER_MIRROR replaces the base URL. The "
                       "bundled models are installed with the package (\"bundled\" is synthetic_tiny). A file path "
                       "works wherever a name does.")
    p.add_argument("--json", action="store_true", help="one JSON object per model")
    return p


def run(args) -> int:
    from synchformer.model import bundled
    from synchformer.model.released import cache_dir, table

    rows, installed = table(), bundled.table()
    if args.json:
        for row in rows + installed:
            print(json.dumps(row))
        return 0
    print(f"cache: {cache_dir()}")
    for r in rows:
        state = f"cached, {r['size_mb']:.0f} MB" if r["cached"] else "not downloaded"
        print(f"  {r['name']:<12} {r['id']:<22} {state:<18} {r['what']}")
    print("bundled (installed with the package, trained on synthetic clips only):")
    for r in installed:
        name = " = ".join([*r["aliases"], r["name"]])
        state = f"installed, {r['size_mb']:.1f} MB" if r["cached"] else "missing"
        print(f"  {name:<35} {state:<18} {r['what']}")
    return 0
