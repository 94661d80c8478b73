"""A cache of the ids of text chunks, so each distinct word goes through sentencepiece once.

Chunks (UTF-8 bytes) are looked up in bulk: Arrow's hash table finds the distinct ones in C++, and the
ids are stored back to back in numpy arrays, so encoding natural text costs a Python object per
distinct chunk, not per chunk.
"""

from __future__ import annotations

import collections
import itertools
import operator
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (registers dictionary_encode now, not at the first encode: ~0.1 s)

# Distinct chunks whose ids `encode_flat` remembers; past that, new ones are encoded every time they come.
_CHUNK_CACHE_LIMIT = 1 << 20


class ChunkCache:
    """Chunk (UTF-8 bytes) -> its ids, stored back to back (chunk i's at flat[starts[i]:starts[i] + lengths[i]])."""

    def __init__(self):
        # A missing key gets the next free index on lookup, inside dict's C code: one pass over the distinct
        # chunks numbers the known and the new alike, with no Python per key.
        self._index: collections.defaultdict[bytes, int] = collections.defaultdict()
        self._index.default_factory = self._index.__len__
        self._flat = np.zeros(0, np.int32)
        self._starts = np.zeros(0, np.int64)
        self._lengths = np.zeros(0, np.int64)

    def lookup(
        self, data: bytes, chunk_starts: np.ndarray, encode: Callable[[list[bytes]], list[list[int]]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(ids of the chunks of `data` that begin at `chunk_starts` [C], back to back [T] int32, ids per
        chunk [C] int64); `encode` encodes a list of chunks the cache does not hold."""
        if not len(chunk_starts):
            return np.zeros(0, np.int32), np.zeros(0, np.int64)
        # Arrow's hash table finds the distinct chunks in C++: a Python object per distinct chunk, not per chunk.
        offsets = pa.py_buffer(np.append(chunk_starts, len(data)).astype(np.int64))
        chunks = pa.Array.from_buffers(pa.large_binary(), len(chunk_starts), [None, offsets, pa.py_buffer(data)])
        distinct = chunks.dictionary_encode()
        slots = self._slots(distinct.dictionary.to_pylist(), encode)
        at = slots[distinct.indices.to_numpy()]
        gathered = self._gather(at)
        if len(self._index) > _CHUNK_CACHE_LIMIT:  # full: forget the newest, which are encoded again next time
            for key in list(itertools.islice(self._index, _CHUNK_CACHE_LIMIT, None)):
                del self._index[key]
            self._truncate(_CHUNK_CACHE_LIMIT)
        return gathered

    def _slots(self, distinct: list[bytes], encode: Callable[[list[bytes]], list[list[int]]]) -> np.ndarray:
        """Each distinct chunk's place in the cache [U] int64, new ones encoded and stored."""
        index = self._index
        known = len(index)
        if not known:  # all new: numbering them in one update is 2x faster than looking each one up
            index.update(zip(distinct, range(len(distinct))))
            slots = np.arange(len(distinct), dtype=np.int64)
        else:  # itemgetter looks the keys up in one C loop, faster than a map (a bare value for one key)
            slots = np.array(
                operator.itemgetter(*distinct)(index) if len(distinct) > 1 else [index[distinct[0]]], np.int64
            )
        if len(index) > known:
            new = list(itertools.islice(index, known, None))  # dicts keep insertion order
            try:
                self._add(encode(new))
            except BaseException:  # the index must never name a chunk that has no ids
                for key in new:
                    del index[key]
                raise
        return slots

    def _add(self, encoded: list[list[int]]) -> None:
        lengths = np.fromiter(map(len, encoded), np.int64, len(encoded))
        starts = len(self._flat) + np.cumsum(lengths) - lengths
        self._flat = np.concatenate(
            [self._flat, np.fromiter(itertools.chain.from_iterable(encoded), np.int32, int(lengths.sum()))]
        )
        self._starts = np.concatenate([self._starts, starts])
        self._lengths = np.concatenate([self._lengths, lengths])

    def _truncate(self, size: int) -> None:
        """Keeps the stored ids of the first `size` chunks (the caller trims the index)."""
        self._flat = self._flat[: self._starts[size]].copy()
        self._starts, self._lengths = self._starts[:size], self._lengths[:size]

    def _gather(self, chunk_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lengths = self._lengths[chunk_ids]
        out_starts = np.cumsum(lengths) - lengths
        # Id k of the output is id (k - out_start) of its chunk, found at starts[chunk] + that offset.
        source = np.repeat(self._starts[chunk_ids] - out_starts, lengths) + np.arange(int(lengths.sum()))
        return self._flat[source], lengths
