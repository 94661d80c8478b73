"""Packing documents into fixed-length rows: one framed stream, cut into rows, read as batch fields.

Shapes: T content tokens, D documents, N framed stream length, R rows, L seq_len, W row width (L + 1
causal, L mlm). The framed stream is the documents back to back, each opened by bos (mlm) and closed
by eos. A causal row holds L + 1 tokens and rows overlap by one (stride L): row r covers
stream[r*L : r*L + L + 1], inputs = row[:-1] and targets = row[1:], so every token but the first is a
target exactly once. An mlm row is L tokens with stride L. Documents longer than a row continue in the
next; the last row is padded with pad_id. Nothing is dropped. The stream is never materialized: rows
are gathered from the content tokens (a memmap for large corpora), so a host computes only its rows.
"""

from __future__ import annotations

import numpy as np

PAD_DOC = -1  # The document id of padding.


def row_width(seq_len: int, objective: str) -> int:
    """W: tokens a row holds; causal rows carry one more so the last input has its target."""
    return seq_len + 1 if objective == "causal" else seq_len


def num_rows(num_tokens: int, seq_len: int, objective: str) -> int:
    """R: rows a stream of `num_tokens` fills, the last one possibly padded."""
    overlap = row_width(seq_len, objective) - seq_len
    return max(0, -(-(num_tokens - overlap) // seq_len))


class FramedStream:
    """Documents' tokens [T] and lengths [D], read as the framed stream [N] with bos/eos added on the fly.

    A special marks a real document boundary, so `cut_head` (the first document is the tail of one cut
    by the train/validation split) drops its bos and `cut_tail` (the last is cut) drops its eos.
    """

    def __init__(self, content_T: np.ndarray, lengths_D: np.ndarray, *, objective: str, bos_id: int, eos_id: int,
                 cut_head: bool = False, cut_tail: bool = False):
        self._content = content_T
        lengths = np.asarray(lengths_D, np.int64)
        self._has_bos = np.full(len(lengths), objective == "mlm")
        self._has_eos = np.ones(len(lengths), bool)
        if len(lengths):
            self._has_bos[0] &= not cut_head
            self._has_eos[-1] &= not cut_tail
        self.framed_lengths = lengths + self._has_bos + self._has_eos  # [D]: each document with its specials
        self._ends = np.cumsum(self.framed_lengths)
        self._content_starts = np.cumsum(lengths) - lengths
        self._bos_id, self._eos_id = bos_id, eos_id
        self.num_documents = len(lengths)

    def __len__(self) -> int:
        return int(self._ends[-1]) if self.num_documents else 0

    def gather(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(tokens, doc_ids) at stream `positions` (any shape, each in [0, N))."""
        doc = np.searchsorted(self._ends, positions, side="right")
        offset = positions - (self._ends[doc] - self.framed_lengths[doc])
        is_bos = self._has_bos[doc] & (offset == 0)
        is_eos = self._has_eos[doc] & (offset == self.framed_lengths[doc] - 1)
        special = is_bos | is_eos
        index = np.where(special, 0, self._content_starts[doc] + offset - self._has_bos[doc])
        content = self._content[index] if len(self._content) else np.zeros(index.shape, np.int32)
        tokens = np.where(is_bos, self._bos_id, np.where(is_eos, self._eos_id, content))
        return tokens.astype(np.int32), doc.astype(np.int32)

    def tokens(self) -> tuple[np.ndarray, np.ndarray]:
        """(tokens_N, doc_ids_N): the whole framed stream, for small streams and tests."""
        return self.gather(np.arange(len(self), dtype=np.int64))

    def rows(self, rows_R: np.ndarray, *, seq_len: int, objective: str, pad_id: int,
             offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(tokens_RxW, doc_ids_RxW) of rows `rows_R` of the stream rotated left by `offset`.

        The rotation treats the stream as a circle so no token is lost; the piece that wraps round gets
        new document ids, so the stream's end and start never share a segment (even for one document).
        Positions past the stream's end are padding (pad_id, document PAD_DOC).
        """
        n = len(self)
        rotated_RxW = (np.asarray(rows_R, np.int64)[:, None] * seq_len
                       + np.arange(row_width(seq_len, objective), dtype=np.int64))
        valid = rotated_RxW < n
        position = rotated_RxW + (offset % n if n else 0)
        wrapped = position >= n
        position = np.where(valid, np.where(wrapped, position - n, position), 0)
        if not n:
            return np.full(position.shape, pad_id, np.int32), np.full(position.shape, PAD_DOC, np.int32)
        tokens, doc_ids = self.gather(position)
        doc_ids = np.where(wrapped, doc_ids + self.num_documents, doc_ids)
        return (np.where(valid, tokens, pad_id).astype(np.int32),
                np.where(valid, doc_ids, PAD_DOC).astype(np.int32))


def row_fields(tokens_RxW: np.ndarray, doc_ids_RxW: np.ndarray, *, objective: str) -> dict[str, np.ndarray]:
    """Batch fields [R, L] of rows: inputs, targets, weights, positions, segment_ids.

    Segments number the documents of a row 1, 2, ... (0 = padding) and positions count from 0 at each
    segment's start. Causal: targets are the next tokens and weights are 1 where the next token belongs
    to the same document. Mlm: targets = inputs and weights = 0, for the masker to fill in.
    """
    if objective == "causal":
        inputs, targets = tokens_RxW[:, :-1], tokens_RxW[:, 1:]
        docs = doc_ids_RxW[:, :-1]
        weights = (doc_ids_RxW[:, 1:] == docs) & (docs != PAD_DOC)
    else:
        inputs, targets, docs = tokens_RxW, tokens_RxW, doc_ids_RxW
        weights = np.zeros(docs.shape, bool)
    starts = np.ones(docs.shape, bool)
    starts[:, 1:] = docs[:, 1:] != docs[:, :-1]
    padding = docs == PAD_DOC
    segment_ids = np.where(padding, 0, np.cumsum(starts, axis=1))
    index = np.arange(docs.shape[1])
    positions = index - np.maximum.accumulate(np.where(starts, index, 0), axis=1)
    return {
        "inputs": inputs.astype(np.int32),
        "targets": targets.astype(np.int32),
        "weights": weights.astype(np.float32),
        "positions": np.where(padding, 0, positions).astype(np.int32),
        "segment_ids": segment_ids.astype(np.int32),
    }
