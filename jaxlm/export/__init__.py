"""Hugging Face format out and in: config.json, safetensors weights, tokenizer files.

`convert.to_hf` writes a folder `transformers` loads with no custom code (GPT2LMHeadModel, LlamaForCausalLM,
BertForMaskedLM, and each family's *ForSequenceClassification / *ForTokenClassification with its label names);
`convert.from_hf` reads those and BertModel encoders back into jaxlm parameters.
`run_export.export_run` and `hf_import.import_hf` do the same for a run's workdir; `python -m
jaxlm.export` is the command line. Import from the modules.
"""
