"""A Hugging Face `tokenizers` file (tokenizer.json: BERT's WordPiece, GPT-2's byte-level BPE, ...) with its
own special ids, so a model imported from Hugging Face keeps the ids it was trained with.

Its special ids are the tokenizer's own ([PAD] 0, [CLS] 101, [SEP] 102 for BERT's vocabulary), not 0..4 as
for jaxlm's own kinds: bos and eos are [CLS] and [SEP] (or <s> and </s>), as elsewhere in jaxlm. Needs the
`tokenizers` package (jaxlm's [hf] extra).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence

import numpy as np

from jaxlm.data.errors import DataError
from jaxlm.data.tokenizer import read_tokenizer_file

# Each special id, by the first of these tokens the vocabulary has (BERT, RoBERTa/LLaMA, GPT-2 spellings).
_SPECIAL_TOKENS = {
    "pad": ("[PAD]", "<pad>", "<|endoftext|>"),
    "unk": ("[UNK]", "<unk>", "<|endoftext|>"),
    "bos": ("[CLS]", "<s>", "<|begin_of_text|>", "<|endoftext|>"),
    "eos": ("[SEP]", "</s>", "<|end_of_text|>", "<|endoftext|>"),
    "mask": ("[MASK]", "<mask>"),
}


class HFTokenizer:
    """Text to ids with a tokenizer.json, its special ids read from its vocabulary."""

    FILENAME = "hf_tokenizer.json"  # apart from CharTokenizer's tokenizer.json

    def __init__(self, content: bytes, origin: str):
        try:
            from tokenizers import Tokenizer as Backend
        except ModuleNotFoundError as error:
            raise DataError(
                f"{origin}: a Hugging Face tokenizer needs the Python package 'tokenizers', which jaxlm's [hf] "
                'extra installs: pip install -e ".[hf]"'
            ) from error
        try:
            self._backend = Backend.from_str(content.decode("utf-8"))
        except Exception as error:  # tokenizers raises a bare Exception for a malformed file
            raise DataError(f"{origin}: not a Hugging Face tokenizer.json ({error})") from error
        self._backend.no_padding()  # the rows are framed and padded here, not by the file's settings
        self._backend.no_truncation()
        self._content, self.origin = content, origin
        self.vocab_size = self._backend.get_vocab_size(with_added_tokens=True)
        found = {}
        for name, spellings in _SPECIAL_TOKENS.items():
            ids = [self._backend.token_to_id(token) for token in spellings]
            found[name] = next((i for i in ids if i is not None), None)
        missing = [name for name in ("pad", "unk", "bos", "eos") if found[name] is None]
        if missing:
            raise DataError(
                f"{origin}: the tokenizer has no {', '.join(missing)} token (looked for "
                + "; ".join(" ".join(_SPECIAL_TOKENS[name]) for name in missing)
                + ")"
            )
        self.pad_id, self.unk_id, self.bos_id, self.eos_id = (found[k] for k in ("pad", "unk", "bos", "eos"))
        self.mask_id = found["mask"] if found["mask"] is not None else -1  # -1: none (no masked LM with it)
        added = {token.content for token in self._backend.get_added_tokens_decoder().values() if token.special}
        self.special_ids = frozenset(
            {i for i in found.values() if i is not None} | {self._backend.token_to_id(t) for t in added}
        )
        self.fingerprint = hashlib.sha256(content).hexdigest()

    @classmethod
    def load(cls, path: str) -> HFTokenizer:
        return cls(read_tokenizer_file(path, "a Hugging Face tokenizer.json"), f"config.data.tokenizer.path={path!r}")

    @classmethod
    def from_bytes(cls, content: bytes, origin: str) -> HFTokenizer:
        return cls(content, origin)

    def encode(self, text: str) -> list[int]:
        return self._backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self._backend.encode_batch(list(texts), add_special_tokens=False)]

    def encode_flat(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        encoded = self.encode_batch(texts)
        lengths = np.fromiter(map(len, encoded), np.int64, len(encoded))
        flat = np.fromiter((i for ids in encoded for i in ids), np.int32, int(lengths.sum()))
        return flat, lengths

    def decode(self, ids: Iterable[int]) -> str:
        return self._backend.decode([int(i) for i in ids if i != self.pad_id], skip_special_tokens=False)

    def save(self, directory: str) -> str:
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, self.FILENAME)
        with open(path, "wb") as f:
            f.write(self._content)
        return path

    def serialized(self) -> bytes:
        return self._content

    def describe(self) -> str:
        model = type(self._backend.model).__name__
        return f"Hugging Face tokenizer ({model}), {self.vocab_size} ids"
