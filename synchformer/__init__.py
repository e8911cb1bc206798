"""synchformer: find and fix the offset between a video's sound and its pictures.

Positive offsets mean the audio leads the video (it is heard before what makes it is seen).
"""

from synchformer._lazy import lazy_attributes
from synchformer.errors import SynchformerError

__version__ = "0.1.0"
_LAZY = {"make_inputs": "synchformer.features", "Analysis": "synchformer.inference.analyze",
         "analyze": "synchformer.inference.analyze", "encode_audio": "synchformer.inference.embed",
         "encode_video": "synchformer.inference.embed", "extract_features": "synchformer.inference.embed",
         "summarize": "synchformer.inference.pooling", "AVClip": "synchformer.io.decode",
         "load_av": "synchformer.io.decode", "shift_audio": "synchformer.io.fix", "ModelConfig": "synchformer.model",
         "Synchformer": "synchformer.model", "load_model": "synchformer.model", "save_model": "synchformer.model"}
__all__ = ["AVClip", "Analysis", "ModelConfig", "Synchformer", "SynchformerError", "analyze", "encode_audio",
           "encode_video", "extract_features", "load_av", "load_model", "make_inputs", "save_model", "shift_audio",
           "summarize"]

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
