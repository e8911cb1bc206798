"""synchformer: find and fix the offset between a video's sound and its pictures.

Positive offsets mean the audio leads the video (it is heard before what makes it is seen).
"""

from synchformer.errors import SynchformerError
from synchformer.features import make_inputs
from synchformer.io import AVClip, load_av
from synchformer.model import ModelConfig, Synchformer, load_model, save_model

__version__ = "0.1.0"
__all__ = ["AVClip", "ModelConfig", "Synchformer", "SynchformerError", "load_av", "load_model", "make_inputs",
           "save_model"]
