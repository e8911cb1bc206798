"""synchformer: find and fix the offset between a video's sound and its pictures.

Positive offsets mean the audio leads the video (it is heard before what makes it is seen).
"""

from synchformer._lazy import lazy_attributes
from synchformer.errors import SynchformerError

__version__ = "0.1.0"
_LAZY = {"make_inputs": "synchformer.features", "Analysis": "synchformer.inference.analysis",
         "analyze": "synchformer.inference.analyze", "encode_audio": "synchformer.inference.embed",
         "encode_video": "synchformer.inference.embed", "extract_features": "synchformer.inference.embed",
         "summarize": "synchformer.inference.pooling", "AVClip": "synchformer.io.decode",
         "load_av": "synchformer.io.decode", "shift_audio": "synchformer.io.fix", "ModelConfig": "synchformer.model",
         "Synchformer": "synchformer.model", "load_model": "synchformer.model", "save_model": "synchformer.model",
         "predict": "synchformer.inference.predict", "Prediction": "synchformer.inference.predict",
         "load_models": "synchformer.inference.predict", "decide_fix": "synchformer.inference.predict",
         "FixDecision": "synchformer.inference.predict",
         "monitor": "synchformer.inference.monitor"}
__all__ = ["AVClip", "Analysis", "FixDecision", "ModelConfig", "Prediction", "Synchformer", "SynchformerError", "analyze",
           "decide_fix", "encode_audio", "encode_video", "extract_features", "load_av", "load_model", "load_models",
           "make_inputs", "monitor", "predict", "save_model", "shift_audio", "summarize"]

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
