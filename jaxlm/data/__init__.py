"""The data room: documents in, host numpy batches out.

It reads the built-in corpus (CPython's own documentation) or local text files, builds or loads a
tokenizer (per character or sentencepiece, with pad/unk/bos/eos/mask at ids 0..4), packs the token
stream into fixed-length rows with segment ids and positions, applies BERT's masking for masked-LM
models, and serves `[batch_size, seq_len]` batches as a pure function of (seed, step). It knows
nothing of models, JAX or optimizers.
"""

from jaxlm.data.errors import DataError
from jaxlm.data.pipeline import Data, build_data
from jaxlm.data.tokenizer import CharTokenizer, SentencePieceTokenizer, Tokenizer

__all__ = ["build_data", "Data", "DataError", "Tokenizer", "CharTokenizer", "SentencePieceTokenizer"]
