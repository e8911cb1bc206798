"""How far sound and picture may be apart before it counts as out of sync: the broadcast standards' windows, or
one of the user's own. Positive offsets: the sound is ahead of the picture (it leads); negative: it lags.

    tol = Tolerance.parse("ebu-r37")          # or "bt1359", "bt1359-acceptable", "atsc", "40,60" (lead,lag in ms)
    tol.contains(-0.05), tol.to_dict()        # True, {"name": "ebu-r37", "lead_ms": 40, "lag_ms": 60}
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from synchformer.constants import BT1359_SEC

# name: (what it is called in messages, lead ms, lag ms)
STANDARDS = {
    "bt1359": ("BT.1359", round(BT1359_SEC[1] * 1000), round(-BT1359_SEC[0] * 1000)),  # detectability: +45/-125
    "bt1359-acceptable": ("BT.1359 (acceptable)", 90, 185),
    "ebu-r37": ("EBU R37", 40, 60),
    "atsc": ("ATSC IS-191", 15, 45),
}
DEFAULT = "bt1359"
SYNTAX = f"{', '.join(STANDARDS)} or LEAD,LAG in ms (two numbers >= 0, e.g. 40,60)"
_SLACK_SEC = 1e-9  # float noise: an offset of exactly +45 ms is inside a +45 ms bound however it was computed


@dataclass(frozen=True)
class Tolerance:
    """A window of offsets nobody should mind: the sound may lead the picture by up to ``lead_ms`` and lag it by
    up to ``lag_ms``, both ends inside. ``name``: a standard's (``STANDARDS``) or "LEAD,LAG" as given."""

    name: str
    lead_ms: float
    lag_ms: float

    @classmethod
    def parse(cls, text: str) -> Tolerance:
        """A standard's name (any case) or "LEAD,LAG" in ms; ValueError that says what is expected."""
        key = str(text).strip().lower()
        if key in STANDARDS:
            _, lead, lag = STANDARDS[key]
            return cls(key, lead, lag)
        parts = key.split(",")
        try:
            lead, lag = (float(p) for p in parts) if len(parts) == 2 else (math.nan, math.nan)
        except ValueError:
            lead = lag = math.nan
        if not (math.isfinite(lead) and math.isfinite(lag) and lead >= 0 and lag >= 0):
            raise ValueError(f"expected {SYNTAX}, got {text!r}")
        lead, lag = lead + 0.0, lag + 0.0  # "-0" is 0
        return cls(f"{lead:g},{lag:g}", _whole(lead), _whole(lag))

    def contains(self, offset_sec: float) -> bool:
        return -self.lag_ms / 1000 - _SLACK_SEC <= offset_sec <= self.lead_ms / 1000 + _SLACK_SEC

    def contains_interval(self, lo_sec: float, hi_sec: float) -> bool:
        """Whether every offset from ``lo_sec`` to ``hi_sec`` is inside."""
        return self.contains(lo_sec) and self.contains(hi_sec)

    def describe(self) -> str:
        """E.g. "BT.1359's -125..+45 ms", for messages."""
        label = STANDARDS[self.name][0] + "'s" if self.name in STANDARDS else "the tolerance"
        return f"{label} -{self.lag_ms:g}..+{self.lead_ms:g} ms"

    def to_dict(self) -> dict:
        return {"name": self.name, "lead_ms": self.lead_ms, "lag_ms": self.lag_ms}


def tolerance_of(value: Tolerance | str | None) -> Tolerance:
    """``value`` as a Tolerance (a name or "LEAD,LAG" parsed; None: the default, BT.1359)."""
    if isinstance(value, Tolerance):
        return value
    return Tolerance.parse(DEFAULT if value is None else value)


def _whole(ms: float) -> float | int:
    return int(ms) if ms == int(ms) else ms


__all__ = ["DEFAULT", "STANDARDS", "SYNTAX", "Tolerance", "tolerance_of"]
