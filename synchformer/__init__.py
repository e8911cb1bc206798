"""synchformer: find and fix the offset between a video's sound and its pictures.

Positive offsets mean the audio leads the video (it is heard before what makes it is seen).
"""

from synchformer.errors import SynchformerError
from synchformer.features import make_inputs
from synchformer.inference.analyze import Analysis, analyze
from synchformer.inference.embed import encode_audio, encode_video, extract_features
from synchformer.inference.timeline import summarize
from synchformer.io import AVClip, load_av, shift_audio
from synchformer.model import ModelConfig, Synchformer, load_model, save_model

__version__ = "0.1.0"
__all__ = ["AVClip", "Analysis", "ModelConfig", "Synchformer", "SynchformerError", "analyze", "encode_audio",
           "encode_video", "extract_features", "load_av", "load_model", "make_inputs", "save_model", "shift_audio",
           "summarize"]
