"""The tokenizer interface, and the special ids every kind of tokenizer here shares.

Every kind puts pad, unk, bos, eos and mask at ids 0..4, so packing, masking and the model never
ask which tokenizer they were given; BERT's [CLS] and [SEP] are bos and eos (<s> and </s>, as in
RoBERTa). The kinds: `char_tokenizer.CharTokenizer` (one id per character) and
`sentencepiece_tokenizer.SentencePieceTokenizer`; `tokenizer_cache.build_tokenizer` picks one for a run.
The exception is `hf_tokenizer.HFTokenizer`, a Hugging Face tokenizer.json with its own special ids.
"""

from __future__ import annotations

import itertools
import os
import pathlib
from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np

from jaxlm.data.errors import DataError

PAD_ID, UNK_ID, BOS_ID, EOS_ID, MASK_ID = range(5)
SPECIAL_PIECES = ("<pad>", "<unk>", "<s>", "</s>", "<mask>")

TOKENIZER_KINDS = ("sentencepiece", "char", "hf")  # config.data.tokenizer.kind
MODEL_TYPES = ("bpe", "unigram", "char")  # sentencepiece's algorithms (config.data.tokenizer.model_type)


class Tokenizer(Protocol):
    """Text to ids and back, with pad=0, unk=1, bos=2, eos=3, mask=4 for every kind."""

    vocab_size: int
    pad_id: int
    unk_id: int
    bos_id: int
    eos_id: int
    mask_id: int
    special_ids: frozenset[int]
    fingerprint: str  # sha256 of the saved tokenizer: equal fingerprints tokenize identically.
    FILENAME: str  # the file `save` writes ("tokenizer.model", "tokenizer.json")

    def encode(self, text: str) -> list[int]:
        """The ids of `text`, without bos or eos."""

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """`encode` of each text, faster."""

    def encode_flat(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """`encode_batch` back to back: (ids [T] int32, each text's id count [N] int64)."""

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`: pad skipped, other specials and out-of-vocabulary ids shown as their names."""

    def save(self, directory: str) -> str:
        """Writes the tokenizer into `directory` and returns the file's path."""

    def serialized(self) -> bytes:
        """The bytes `save` writes, which `jaxlm.data.tokenizer_cache.tokenizer_from_bytes` reads back."""

    def describe(self) -> str:
        """One line for logs: the kind and the vocabulary size."""


class FixedSpecials:
    """The special ids every tokenizer here shares."""

    pad_id = PAD_ID
    unk_id = UNK_ID
    bos_id = BOS_ID
    eos_id = EOS_ID
    mask_id = MASK_ID
    special_ids = frozenset(range(len(SPECIAL_PIECES)))

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """`encode` of each text."""
        return [self.encode(text) for text in texts]

    def encode_flat(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """`encode_batch` back to back: (ids [T] int32, each text's id count [N] int64)."""
        encoded = self.encode_batch(texts)
        lengths = np.fromiter(map(len, encoded), np.int64, len(encoded))
        return np.fromiter(itertools.chain.from_iterable(encoded), np.int32, int(lengths.sum())), lengths


def read_tokenizer_file(path: str, what: str) -> bytes:
    """The bytes of the tokenizer file at `path` (`~` expanded); DataError names the field and `what` to give."""
    try:
        return pathlib.Path(os.path.expanduser(path)).read_bytes()
    except OSError as e:
        raise bad_tokenizer_path(
            path, f"cannot read it ({e}); give {what}, or leave it empty to make one from the corpus"
        ) from e


def bad_tokenizer_path(path: str, why: str) -> DataError:
    return DataError(f"config.data.tokenizer.path={path!r}: {why}")
