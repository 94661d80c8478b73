"""The data room: documents in, host numpy batches out.

It reads the built-in corpus (CPython's own documentation), local text or JSONL files, or a TFDS
dataset; builds or loads a tokenizer (per character or sentencepiece, with pad/unk/bos/eos/mask at
ids 0..4); tokenizes the corpus once into a cache in the workdir; packs the token stream into
fixed-length rows with segment ids and positions; applies BERT's masking for masked-LM models; and
serves each host its rows of `[batch_size, seq_len]` batches as a pure function of (seed, step), so a
resumed run continues exactly. It knows nothing of models, JAX or optimizers.
"""

from jaxlm.data.batches import TrainBatches, host_rows
from jaxlm.data.errors import DataError
from jaxlm.data.pipeline import Data, build_data
from jaxlm.data.tokenizer import CharTokenizer, SentencePieceTokenizer, Tokenizer

__all__ = ["build_data", "Data", "DataError", "TrainBatches", "host_rows", "Tokenizer", "CharTokenizer",
           "SentencePieceTokenizer"]
