"""The tokenized corpus: every document's tokens back to back and their lengths, cached on disk.

Tokenizing is the slow, once-per-corpus part of the pipeline, and its result depends only on the
source, the tokenizer and the read bounds. So it is streamed into `<cache_dir>/<key>/` (raw int32
tokens and int64 lengths, memory-mapped when read back, so a corpus larger than memory works) and
reused by restarts and by every process that shares the workdir. Without a cache dir it stays in memory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

from jaxlm.data.errors import DataError
from jaxlm.data.sources import Source
from jaxlm.data.tokenizer import Tokenizer

log = logging.getLogger(__name__)

_VERSION = 1  # Bump when the stored layout or what it holds changes.
_CHUNK_CHARS = 1 << 22  # Text tokenized per batch call and write: bounds memory while streaming.
_TOKENS, _LENGTHS, _META = "tokens.int32", "lengths.int64", "meta.json"


@dataclasses.dataclass(frozen=True)
class TokenizedCorpus:
    """A source's documents as token ids; `sha256` names them whatever source or host they came from."""

    tokens: np.ndarray  # [T] int32: documents' tokens back to back, no specials (a memmap when cached).
    lengths: np.ndarray  # [D] int64: tokens per document, empty documents left out.
    sha256: str  # Of tokens then lengths, little-endian.
    replaced: int  # Undecodable byte sequences replaced with U+FFFD while reading.


def _groups(texts: Iterator[str], chars: int) -> Iterator[list[str]]:
    """Successive lists of texts holding about `chars` characters each."""
    group: list[str] = []
    size = 0
    for text in texts:
        group.append(text)
        size += len(text)
        if size >= chars:
            yield group
            group, size = [], 0
    if group:
        yield group


def _chunks(
    source: Source, tokenizer: Tokenizer, max_documents: int, max_tokens: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(tokens, lengths) of successive groups of documents, stopping at the read bounds (0 = none)."""
    total = 0
    for group in _groups(itertools.islice(source.documents(), max_documents or None), _CHUNK_CHARS):
        tokens, lengths = tokenizer.encode_flat(group)
        lengths = lengths[lengths > 0]  # empty documents hold no tokens: dropping them moves none
        done = bool(max_tokens) and total + lengths.sum() >= max_tokens
        if done:  # Keep the documents up to the one that reaches max_tokens.
            keep = int(np.searchsorted(total + np.cumsum(lengths), max_tokens)) + 1
            lengths = lengths[:keep]
            tokens = tokens[: int(lengths.sum())]
        total += int(lengths.sum())
        yield tokens, lengths
        if done:
            return


def _cache_key(source: Source, tokenizer: Tokenizer, max_documents: int, max_tokens: int) -> str:
    settings = {
        "version": _VERSION,
        "source": source.identity,
        "tokenizer": tokenizer.fingerprint,
        "max_documents": max_documents,
        "max_tokens": max_tokens,
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _load(directory: str) -> TokenizedCorpus | None:
    try:
        with open(os.path.join(directory, _META), encoding="utf-8") as f:
            meta = json.load(f)
        tokens = np.memmap(os.path.join(directory, _TOKENS), np.int32, mode="r", shape=(meta["tokens"],))
        lengths = np.fromfile(os.path.join(directory, _LENGTHS), np.int64)
    except (OSError, ValueError, KeyError):
        return None
    if meta.get("version") != _VERSION or len(lengths) != meta["documents"] or lengths.sum() != meta["tokens"]:
        return None
    return TokenizedCorpus(tokens, lengths, meta["sha256"], meta["replaced"])


def _consume(
    chunks: Iterator[tuple[np.ndarray, np.ndarray]], out: BinaryIO | None, field: str
) -> tuple[list[np.ndarray], np.ndarray, str]:
    """Streams chunks into `out` (or keeps their tokens when None): (token parts, lengths [D], sha256)."""
    digest = hashlib.sha256()
    token_parts: list[np.ndarray] = []
    length_parts: list[np.ndarray] = []
    for tokens, lengths in chunks:
        data = tokens.astype("<i4").tobytes()
        digest.update(data)
        length_parts.append(lengths)
        if out:
            out.write(data)
        else:
            token_parts.append(tokens)
    lengths = np.concatenate(length_parts) if length_parts else np.zeros(0, np.int64)
    if not len(lengths):
        raise DataError(f"{field}: holds no text (not one document with a token); point it at data that holds text")
    digest.update(lengths.astype("<i8").tobytes())
    return token_parts, lengths, digest.hexdigest()


def tokenize(
    source: Source, tokenizer: Tokenizer, *, max_documents: int = 0, max_tokens: int = 0, cache_dir: str | None = None
) -> TokenizedCorpus:
    """The source's documents tokenized (the first `max_documents`, or until `max_tokens`; 0 = all).

    With `cache_dir`, reuses `<cache_dir>/<key>/` when the source identity, tokenizer fingerprint and
    bounds match, else writes it (atomically, so a killed run or a concurrent host never leaves half).
    """
    chunks = _chunks(source, tokenizer, max_documents, max_tokens)
    if not cache_dir:
        token_parts, lengths, sha256 = _consume(chunks, None, source.field)
        return TokenizedCorpus(np.concatenate(token_parts), lengths, sha256, source.replaced)

    directory = os.path.join(cache_dir, _cache_key(source, tokenizer, max_documents, max_tokens))
    if cached := _load(directory):
        log.info("Reusing the tokenized corpus cached in %s", directory)
        return cached
    start = time.perf_counter()
    staging = f"{directory}.tmp-{uuid.uuid4().hex}"
    os.makedirs(staging)
    try:
        with open(os.path.join(staging, _TOKENS), "wb") as out:
            _, lengths, sha256 = _consume(chunks, out, source.field)
        lengths.astype("<i8").tofile(os.path.join(staging, _LENGTHS))
        meta = {
            "version": _VERSION,
            "tokens": int(lengths.sum()),
            "documents": len(lengths),
            "sha256": sha256,
            "replaced": source.replaced,
            "source": source.identity,
            "tokenizer": tokenizer.fingerprint,
        }
        with open(os.path.join(staging, _META), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1)
        if os.path.exists(directory) and _load(directory) is None:
            shutil.rmtree(directory, ignore_errors=True)  # Broken (say, a truncated file): replace it.
        try:
            os.replace(staging, directory)
        except OSError:  # Another process finished the same cache first; theirs is as good.
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info(
        "Tokenized %s into %s: %d documents, %d tokens in %.1f s",
        source.describe(),
        directory,
        len(lengths),
        lengths.sum(),
        time.perf_counter() - start,
    )
    corpus = _load(directory)
    if corpus is None:
        raise DataError(f"cannot read back the tokenized corpus written to {directory}; check the disk")
    return corpus
