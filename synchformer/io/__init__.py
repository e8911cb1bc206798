"""Reading media into the model's rates, and writing corrected copies."""

from .decode import AVClip, load_av, probe
from .fix import shift_audio

__all__ = ["AVClip", "load_av", "probe", "shift_audio"]
