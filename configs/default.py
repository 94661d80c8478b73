"""A small LLaMA-style causal LM on the built-in corpus: the offline first run (~3 minutes on 2 CPU cores)."""

from jaxlm.config import base_config


def get_config():
    config = base_config()  # jaxlm/config.py: every field, its default and its meaning
    return config
