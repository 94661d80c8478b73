"""Packing token documents into fixed-length rows: one stream, cut into rows, read as batch fields.

Shapes: N stream length, D documents, R rows, L seq_len, W row width (L + 1 causal, L mlm).
A causal row holds L + 1 tokens and rows overlap by one (stride L): row r covers stream[r*L : r*L + L + 1],
inputs = row[:-1] and targets = row[1:], so every token but the first is a target exactly once.
An mlm row is L tokens with stride L. Documents longer than a row continue in the next; the last row
is padded with pad_id. Document ids ride along the stream, so a row knows where documents meet.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PAD_DOC = -1  # The document id of padding.


def frame_documents(docs: Sequence[np.ndarray], *, objective: str, bos_id: int, eos_id: int,
                    cut_head: bool = False, cut_tail: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(tokens_N, doc_ids_N): documents concatenated, each ending in eos and, for mlm, opening with bos.

    A special marks a real document boundary, so `cut_head` (the first document is the tail of one cut
    by the train/validation split) drops its bos and `cut_tail` (the last is cut) drops its eos.
    """
    lengths = np.array([len(doc) for doc in docs], np.int64)
    has_bos = np.full(len(docs), objective == "mlm")
    has_eos = np.ones(len(docs), bool)
    if docs:
        has_bos[0] &= not cut_head
        has_eos[-1] &= not cut_tail
    framed = lengths + has_bos + has_eos
    framed_starts = np.cumsum(framed) - framed
    tokens = np.empty(int(framed.sum()), np.int32)
    tokens[framed_starts[has_bos]] = bos_id
    tokens[(framed_starts + framed - 1)[has_eos]] = eos_id
    # Each content token moves right by the specials framed before it.
    shift = framed_starts + has_bos - (np.cumsum(lengths) - lengths)
    content = np.concatenate([np.asarray(doc, np.int32) for doc in docs] + [np.zeros(0, np.int32)])
    tokens[np.arange(len(content)) + np.repeat(shift, lengths)] = content
    doc_ids = np.repeat(np.arange(len(docs), dtype=np.int32), framed)
    return tokens, doc_ids


def row_width(seq_len: int, objective: str) -> int:
    """W: tokens a row holds; causal rows carry one more so the last input has its target."""
    return seq_len + 1 if objective == "causal" else seq_len


def num_rows(num_tokens: int, seq_len: int, objective: str) -> int:
    """R: rows a stream of `num_tokens` fills, the last one possibly padded."""
    overlap = row_width(seq_len, objective) - seq_len
    return max(0, -(-(num_tokens - overlap) // seq_len))


def cut_rows(tokens_N: np.ndarray, doc_ids_N: np.ndarray, *, seq_len: int, objective: str, pad_id: int,
             offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(tokens_RxW, doc_ids_RxW): the stream rotated left by `offset`, cut into rows (read-only views).

    The rotation treats the stream as a circle so no token is lost; the piece that wraps round gets new
    document ids, so the stream's end and start never share a segment (even for a one-document corpus).
    """
    n = len(tokens_N)
    offset = offset % n if n else 0
    tokens = np.roll(tokens_N, -offset)
    doc_ids = np.roll(doc_ids_N, -offset)
    if offset:
        doc_ids[n - offset:] += doc_ids_N.max() + 1
    rows, width = num_rows(n, seq_len, objective), row_width(seq_len, objective)
    # At least one row's worth, so a stream too short for any row still gives a (0, W) result.
    padded = (max(rows, 1) - 1) * seq_len + width
    tokens = np.concatenate([tokens, np.full(padded - n, pad_id, np.int32)])
    doc_ids = np.concatenate([doc_ids, np.full(padded - n, PAD_DOC, np.int32)])
    view = np.lib.stride_tricks.sliding_window_view
    return view(tokens, width)[::seq_len][:rows], view(doc_ids, width)[::seq_len][:rows]


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
