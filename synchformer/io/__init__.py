"""Reading media into the model's rates, and writing corrected copies."""

from synchformer._lazy import lazy_attributes

_LAZY = {"AVClip": "synchformer.io.decode", "load_av": "synchformer.io.decode", "probe": "synchformer.io.decode",
         "shift_audio": "synchformer.io.fix"}
__all__ = ["AVClip", "load_av", "probe", "shift_audio"]

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
