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

    def __init__(
        self,
        content_T: np.ndarray,
        lengths_D: np.ndarray,
        *,
        objective: str,
        bos_id: int,
        eos_id: int,
        cut_head: bool = False,
        cut_tail: bool = False,
    ):
        self._content = content_T
        lengths = np.asarray(lengths_D, np.int64)
        has_bos = np.full(len(lengths), objective == "mlm")
        has_eos = np.ones(len(lengths), bool)
        if len(lengths):
            has_bos[0] &= not cut_head
            has_eos[-1] &= not cut_tail
        self.framed_lengths = lengths + has_bos + has_eos  # [D]: each document with its specials
        self._ends = np.cumsum(self.framed_lengths)
        starts = self._ends - self.framed_lengths
        # Per document: stream position p holds content token p - shift (unless p is its bos or eos).
        self._shift = starts + has_bos - (np.cumsum(lengths) - lengths)
        self._bos_at = np.where(has_bos, starts, -1)  # [D] stream position of the bos, -1 = none
        self._eos_at = np.where(has_eos, self._ends - 1, -1)
        self._bos_id, self._eos_id = bos_id, eos_id
        self.num_documents = len(lengths)

    def __len__(self) -> int:
        return int(self._ends[-1]) if self.num_documents else 0

    def gather(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(tokens, doc_ids) at stream `positions` (any shape, each in [0, N))."""
        positions = np.asarray(positions)
        doc = np.searchsorted(self._ends, positions, side="right")
        return self._tokens_at(positions, doc), doc.astype(np.int32)

    def _tokens_at(self, positions: np.ndarray, doc: np.ndarray) -> np.ndarray:
        """Tokens (int32, a new plain array) at stream `positions` of documents `doc` (same shape)."""
        if len(self._content):  # a special's position reads a neighbour (clipped at the ends), overwritten below
            # asarray: a plain writable array even from a memmap, or from a 0-d index's numpy scalar.
            tokens = np.asarray(np.take(self._content, positions - self._shift[doc], mode="clip"), np.int32)
        else:  # documents of specials only
            tokens = np.zeros(np.shape(positions), np.int32)
        tokens[positions == self._bos_at[doc]] = self._bos_id
        tokens[positions == self._eos_at[doc]] = self._eos_id
        return tokens

    def tokens(self) -> tuple[np.ndarray, np.ndarray]:
        """(tokens_N, doc_ids_N): the whole framed stream, for small streams and tests."""
        return self.gather(np.arange(len(self), dtype=np.int64))

    def rows(
        self, rows_R: np.ndarray, *, seq_len: int, objective: str, pad_id: int, offset: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """(tokens_RxW, doc_ids_RxW) of rows `rows_R` of the stream rotated left by `offset`.

        The rotation treats the stream as a circle so no token is lost; the piece that wraps round gets
        new document ids, so the stream's end and start never share a segment (even for one document).
        Positions past the stream's end are padding (pad_id, document PAD_DOC).
        """
        n, num_docs = len(self), self.num_documents
        width = row_width(seq_len, objective)
        rows_R = np.asarray(rows_R, np.int64)
        if not n:
            return np.full((len(rows_R), width), pad_id, np.int32), np.full((len(rows_R), width), PAD_DOC, np.int32)
        start_R = rows_R * seq_len
        valid_R = np.clip(n - start_R, 0, width)  # slots before the stream's end; the rest are padding
        # Each row reads on from its first slot in [0, 2N): the second lap is the stream again with its
        # documents numbered + D, which is the wrapped piece's new ids, so no row has to wrap.
        first_R = np.where(valid_R > 0, start_R + offset % n, 0)
        doc_RxW = self._row_documents(first_R, valid_R, width)
        position_RxW = first_R[:, None] + np.arange(width)
        second_lap = doc_RxW >= num_docs
        doc = doc_RxW - num_docs * second_lap
        position_RxW -= n * second_lap
        tokens = self._tokens_at(position_RxW, doc)
        doc_ids = doc_RxW.astype(np.int32)
        if (valid_R < width).any():  # only the last row holds padding
            past_end = np.arange(width) >= valid_R[:, None]
            tokens[past_end], doc_ids[past_end] = pad_id, PAD_DOC
        return tokens, doc_ids

    def _row_documents(self, first_R: np.ndarray, valid_R: np.ndarray, width: int) -> np.ndarray:
        """Document [R, W] (second lap + D) of the slots of rows that start at lap position `first_R`.

        Found per row, not per slot: the first slot's document, plus the document ends passed since
        (a binary search for each of R rows, where one per slot costs 3x more on short documents).
        Slots past `valid_R` keep the last valid slot's document.
        """
        n, num_docs = len(self), self.num_documents

        def document_at(position_R: np.ndarray) -> np.ndarray:
            lap = position_R >= n
            return np.searchsorted(self._ends, position_R - n * lap, side="right") + num_docs * lap

        first_doc = document_at(first_R)
        passed_R = document_at(first_R + np.maximum(valid_R, 1) - 1) - first_doc  # document ends inside each row
        row = np.repeat(np.arange(len(first_R)), passed_R)
        ended = first_doc[row] + np.arange(len(row)) - np.repeat(np.cumsum(passed_R) - passed_R, passed_R)
        lap = ended >= num_docs
        end_column = self._ends[ended - num_docs * lap] + n * lap - first_R[row]
        steps = np.zeros((len(first_R), width), np.int64)
        np.add.at(steps, (row, end_column), 1)  # empty documents end where the next does: add, not set
        return first_doc[:, None] + np.cumsum(steps, axis=1)


def row_fields(tokens_RxW: np.ndarray, doc_ids_RxW: np.ndarray, *, objective: str) -> dict[str, np.ndarray]:
    """Batch fields [R, L] of rows: inputs, targets, weights, positions, segment_ids.

    Segments number the documents of a row 1, 2, ... (0 = padding) and positions count from 0 at each
    segment's start. Causal: targets are the next tokens and weights are 1 where the next token belongs
    to the same document. Mlm: targets = inputs and weights = 0, for the masker to fill in.
    """
    if objective == "causal":
        inputs, targets = tokens_RxW[:, :-1], tokens_RxW[:, 1:]
        docs = doc_ids_RxW[:, :-1]
        weights = ((doc_ids_RxW[:, 1:] == docs) & (docs != PAD_DOC)).astype(np.float32)
    else:
        inputs, targets, docs = tokens_RxW, tokens_RxW, doc_ids_RxW
        weights = np.zeros(docs.shape, np.float32)
    starts = np.ones(docs.shape, bool)
    np.not_equal(docs[:, 1:], docs[:, :-1], out=starts[:, 1:])
    padding = docs == PAD_DOC
    segment_ids = np.cumsum(starts, axis=1, dtype=np.int32)
    segment_ids[padding] = 0
    index = np.arange(docs.shape[1], dtype=np.int32)
    positions = index - np.maximum.accumulate(np.where(starts, index, 0), axis=1)
    positions[padding] = 0
    return {
        "inputs": inputs.astype(np.int32),
        "targets": targets.astype(np.int32),
        "weights": weights,
        "positions": positions,
        "segment_ids": segment_ids,
    }
