"""Where the team's shared material lives (../shared beside the checkout; CI always has it)."""

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _find_shared() -> Path:
    candidates = [os.environ.get("SYNCHFORMER_SHARED"), REPO.parent / "shared", "/work/shared"]
    for c in candidates:
        if c and (Path(c) / "parity").is_dir():
            return Path(c)
    return REPO.parent / "shared"


SHARED = _find_shared()
PARITY = SHARED / "parity"
MEDIA = SHARED / "media"
REFERENCE = SHARED / "reference"

needs_shared = pytest.mark.skipif(
    not PARITY.is_dir(), reason=f"shared fixtures not found ({SHARED}; set SYNCHFORMER_SHARED to point at them)")


def read_keys(path: Path) -> list[tuple[str, list[int]]]:
    """`name [d0, d1, ...]` (or `name (d0, d1)`) per line -> [(name, shape)]."""
    out = []
    for line in path.read_text().splitlines():
        name, shape = line.split(" ", 1)
        out.append((name, [int(s) for s in shape.strip("[]() \n").split(",") if s.strip()]))
    return out


def seeded_state_dict(key_file: Path, seed: int = 1) -> dict[str, torch.Tensor]:
    """The weights of the parity fixtures, made by the rule in ../shared/parity/README.md."""
    sd = {}
    for i, (name, shape) in enumerate(read_keys(key_file)):
        g = torch.Generator().manual_seed(seed * 100000 + i)
        t = torch.randn(shape, generator=g, dtype=torch.float32) * 0.02
        if len(shape) == 1 and name.endswith(".weight"):  # LayerNorm weights
            t = t + 1.0
        sd[name] = t
    return sd
