"""Flax NNX modules for the Transformer. Pure functions of parameters and inputs.

Knows nothing of data, optimizers or files; every parameter carries logical axis names (`axes`).
"""

from jaxlm.model.config import FAMILY_ARCHITECTURES, ModelConfig, model_config_from
from jaxlm.model.transformer import Transformer

__all__ = ["FAMILY_ARCHITECTURES", "ModelConfig", "Transformer", "model_config_from"]
