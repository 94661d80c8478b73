"""Documents in, host numpy batches out; knows nothing of models, JAX or optimizers.

It reads the built-in corpus (CPython's own documentation), local text or JSONL files, or a TFDS
dataset; builds or loads a tokenizer (per character or sentencepiece, with pad/unk/bos/eos/mask at
ids 0..4); tokenizes the corpus once into a cache in the workdir; packs the token stream into
fixed-length rows with segment ids and positions; applies BERT's masking for masked-LM models; and
serves each host its rows of `[batch_size, seq_len]` batches as a pure function of (seed, step), so a
resumed run continues exactly. `pipeline.build_data` puts it together from a run's data section.

Import from the modules (`jaxlm.data.pipeline.build_data`): this file imports nothing, so the run
config reads the data choices (`sources.SOURCES`, `tokenizer.TOKENIZER_KINDS`) without loading them.
"""
