"""``synchformer models``: the released models by name, what each is for, and whether it is in the cache."""

from __future__ import annotations

import json


def add_parser(sub):
    p = sub.add_parser("models", help="list the released models (names for --weights), and which are downloaded",
                       description="Names for --weights / --syncability-weights and synchformer.load_model(). "
                       "A name is downloaded on first use into $SYNCHFORMER_CACHE (default ~/.cache/synchformer), "
                       "md5-checked; $SYNCHFORMER_MIRROR replaces the base URL. Local paths work as before.")
    p.add_argument("--json", action="store_true", help="one JSON object per model")
    return p


def run(args) -> int:
    from synchformer.model.released import cache_dir, table

    rows = table()
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print(f"cache: {cache_dir()}")
    for r in rows:
        state = f"cached, {r['size_mb']:.0f} MB" if r["cached"] else "not downloaded"
        print(f"  {r['name']:<12} {r['id']:<22} {state:<18} {r['what']}")
    return 0
