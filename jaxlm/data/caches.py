"""The folders the data pipeline caches in below a run's workdir, so restarts and other hosts reuse its work."""

TOKENIZER_DIR = "tokenizer"  # the trained tokenizer and the settings it was trained with
CORPUS_DIR = "data_cache"  # tokenized corpora, keyed by source and tokenizer
