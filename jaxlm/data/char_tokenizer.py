"""A tokenizer with one id per character: the specials, then the corpus's characters."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from collections.abc import Iterable, Sequence

import numpy as np

from jaxlm.data.errors import DataError
from jaxlm.data.tokenizer import PAD_ID, SPECIAL_PIECES, UNK_ID, FixedSpecials, read_tokenizer_file


class CharTokenizer(FixedSpecials):
    """One id per character: the specials, then the corpus's distinct characters in code-point order.

    Encoding then decoding corpus text gives it back exactly; a character the corpus lacks becomes unk.
    """

    FILENAME = "tokenizer.json"

    def __init__(self, chars: Sequence[str]):
        self.chars = "".join(chars)
        self.vocab_size = len(SPECIAL_PIECES) + len(self.chars)
        self.fingerprint = hashlib.sha256(self._saved().encode("utf-8")).hexdigest()
        # A sentinel above every code point lets searchsorted's "past the end" index be read safely.
        self._codepoints = np.append(np.array([ord(c) for c in self.chars], np.uint32), np.uint32(2**32 - 1))
        self._pieces = np.array(list(SPECIAL_PIECES) + list(self.chars), dtype=object)

    @classmethod
    def train(cls, documents: Iterable[str]) -> CharTokenizer:
        """The vocabulary of every character in `documents`."""
        chars: set[str] = set()
        for document in documents:
            chars.update(document)
        return cls(sorted(chars))

    @classmethod
    def load(cls, path: str) -> CharTokenizer:
        """A tokenizer written by `save`."""
        content = read_tokenizer_file(path, f"a {cls.FILENAME} written by jaxlm")
        return cls.from_bytes(content, f"config.data.tokenizer.path={path!r}")

    @classmethod
    def from_bytes(cls, content: bytes, origin: str) -> CharTokenizer:
        """A tokenizer from what `serialized` returned; `origin` names where the bytes came from in errors."""
        try:
            saved = json.loads(content.decode("utf-8"))
        except ValueError:
            saved = None
        chars = saved.get("chars") if isinstance(saved, dict) else None
        if not isinstance(chars, str) or saved.get("kind") != "char" or list(chars) != sorted(set(chars)):
            raise DataError(f"{origin}: is not a char tokenizer written by jaxlm; leave the path empty to build one")
        return cls(chars)

    def encode(self, text: str) -> list[int]:
        """The id of each character of `text` (unk for characters outside the vocabulary)."""
        codepoints = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)
        index = np.searchsorted(self._codepoints, codepoints)
        known = self._codepoints[index] == codepoints
        return np.where(known, index + len(SPECIAL_PIECES), UNK_ID).tolist()

    def decode(self, ids: Iterable[int]) -> str:
        """The characters of `ids`: pad skipped, other specials and unknown ids shown as their names."""
        ids = np.fromiter(ids, np.int64)
        ids = np.where((ids >= 0) & (ids < self.vocab_size), ids, UNK_ID)
        return "".join(self._pieces[ids[ids != PAD_ID]])

    def save(self, directory: str) -> str:
        """Writes `tokenizer.json` into `directory` and returns its path."""
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, self.FILENAME)
        pathlib.Path(path).write_text(self._saved(), encoding="utf-8")
        return path

    def serialized(self) -> bytes:
        """The JSON `save` writes."""
        return self._saved().encode("utf-8")

    def _saved(self) -> str:
        return json.dumps({"kind": "char", "chars": self.chars})

    def describe(self) -> str:
        """One line for logs: the kind and the vocabulary size."""
        return f"char, {self.vocab_size} ids ({len(self.chars)} characters + {len(SPECIAL_PIECES)} specials)"
