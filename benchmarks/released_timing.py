"""Does the released model score better on the audio timing it was trained on? Acc@1 and Acc@1 +-1 class of an
offset checkpoint on clips with known offsets, with ``timing="authors"`` and ``timing="true"`` side by side.

The released weights were trained on audio that their software stack took 64 ms early for most files
(``synchformer.io.decode.AUTHORS_DROPPED_SAMPLES``; ../shared/parity/authors_stack). The reference's issue #11
reports Acc@1 0.558 with that stack and 0.362 with a stack that times audio truly (+-1 class: 0.77 both). This
script measures the same thing for any checkpoint and labelled set, in the reference's protocol (one window per
clip at its ``vstart_sec``, the CSV's ``offset_sec`` applied):

    python benchmarks/released_timing.py --weights audioset --csv test_size21_crop5_min-2.00_max2.00.csv
    python benchmarks/released_timing.py --weights W.pt --csv clips.csv --root /data/vggsound --json

The CSV: the reference's fixed-offset format, ``path,offset_sec,vstart_sec`` (paths relative to ``--root``, or
to the CSV's folder). Nobody here has run it on the released weights: this machine has neither them nor the data.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

import synchformer
from synchformer.training.evaluate import eval_dataset, metrics_of, predict_dataset


def rooted_csv(csv_path: Path, root: Path | None, out: Path) -> Path:
    """The CSV with its paths made absolute (under ``root``, default the CSV's folder)."""
    root = root or csv_path.resolve().parent
    with open(csv_path, newline="") as src, open(out, "w", newline="") as dst:
        rows = csv.DictReader(src)
        w = csv.DictWriter(dst, fieldnames=rows.fieldnames)
        w.writeheader()
        for row in rows:
            row["path"] = str(root / row["path"]) if not Path(row["path"]).is_absolute() else row["path"]
            w.writerow(row)
    return out


def compare(model, csv_path: Path, workers: int = 2, batch: int = 8) -> dict:
    out = {}
    with tempfile.TemporaryDirectory(prefix="synchformer-timing-") as tmp:
        for timing in ("authors", "true"):
            dataset, prep = eval_dataset(csv_path, model.cfg, cache_dir=Path(tmp) / "cache", workers=workers,
                                         progress=True, timing=timing)
            logits, targets = predict_dataset(model, dataset, str(model.device), batch_size=batch, progress=True)
            out[timing] = {**metrics_of(logits, targets, "offset"), "skipped": dict(prep.skipped)}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", required=True, help="an offset checkpoint: a released name (audioset) or a file")
    ap.add_argument("--csv", required=True, type=Path, help="path,offset_sec,vstart_sec")
    ap.add_argument("--root", type=Path, help="folder the CSV's paths are relative to (default: the CSV's)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=2, help="decoding processes")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    model = synchformer.load_model(args.weights, device=args.device)
    if model.cfg.head != "offset":
        print(f"{args.weights}: not an offset model", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        res = compare(model, rooted_csv(args.csv, args.root, Path(tmp) / "clips.csv"), args.workers)
    if args.json:
        print(json.dumps({"weights": args.weights, "trained_timing": model.cfg.timing, **res}))
        return 0
    print(f"{args.weights} (trained on {model.cfg.timing} timing), {res['true']['n']} clips")
    for timing, m in res.items():
        print(f"  timing={timing:<8} Acc@1 {m['accuracy_1']:.4f}  Acc@1 +-1 class {m['accuracy_1_tol1']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
