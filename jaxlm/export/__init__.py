"""Hugging Face format out and in: config.json, safetensors weights, tokenizer files.

`to_hf` writes a directory `transformers` loads with no custom code (GPT2LMHeadModel, LlamaForCausalLM,
BertForMaskedLM); `from_hf` reads those and BertModel encoders back into jaxlm parameters. Depends on
the model's parameter layout only; `python -m jaxlm.export` is the command line.
"""

from jaxlm.export.convert import from_hf, to_hf
from jaxlm.export.errors import ExportError

__all__ = ["ExportError", "from_hf", "to_hf"]
