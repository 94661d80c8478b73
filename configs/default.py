"""A small LLaMA-style causal LM on the built-in corpus: the offline first run (~2 minutes on 2 CPU cores)."""

from jaxlm.config import base_config


def get_config():
    # jaxlm/config.py's defaults are this recipe; that file lists every field and its meaning.
    return base_config()
