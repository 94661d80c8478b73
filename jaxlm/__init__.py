"""jaxlm: pretrain BERT-style (masked LM) and GPT/LLaMA-style (causal LM) Transformers in JAX/Flax."""

__version__ = "0.1.0"
