"""Reading media files."""

from synchformer.io.decode import AVClip, load_av, probe

__all__ = ["AVClip", "load_av", "probe"]
