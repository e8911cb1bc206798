"""The model (encoders, sync transformer) and the loading of its weights."""

from .load import infer_config, load_model, save_model
from .synchformer import ModelConfig, Synchformer, same_encoders

__all__ = ["ModelConfig", "Synchformer", "infer_config", "load_model", "same_encoders", "save_model"]
