"""BERT's sentence-pair input for next-sentence prediction: [CLS] A [SEP] B [SEP], one pair per row.

Off by default (`config.data.next_sentence`), as in RoBERTa; on, a `bert` run trains BERT's second
objective beside masked LM. Shapes: T content tokens, D documents, C chunks, R rows, L seq_len.

The rule, since sources mark documents but not sentences: each document is cut into chunks of at most
L - 3 tokens (room for [CLS] and two [SEP]); chunk c is row c of every epoch. A row's draw comes from
(seed, epoch, row) alone. Segment A is the chunk's first `a` tokens, `a` uniform in [1, n - 1] for a
chunk of n tokens. With probability 1/2, B is the rest of the chunk, the text that really follows A
(label 0, IsNext, as in Hugging Face's BertForPreTraining); otherwise B is as many tokens from a random
place in another document (label 1, NotNext), so the pair's length never gives the label away. A
one-token chunk cannot be split and is always NotNext. Rows are padded, never packed with others.
"""

from __future__ import annotations

import numpy as np

from jaxlm.data.errors import DataError

PAIR_STREAM = 3  # The first word of the pairing seed, apart from masking (1) and data order (2).
IS_NEXT, NOT_NEXT = 0, 1
_SPECIALS_PER_ROW = 3  # [CLS], [SEP], [SEP]


def pair_budget(seq_len: int) -> int:
    """Content tokens a pair row holds: seq_len minus [CLS] and two [SEP]."""
    return seq_len - _SPECIALS_PER_ROW


class SentencePairs:
    """Pair rows over documents' tokens [T] and lengths [D]; `rows` draws them as batch fields."""

    def __init__(self, content_T: np.ndarray, lengths_D: np.ndarray, *, seq_len: int, cls_id: int, sep_id: int,
                 pad_id: int, what: str = "the training split"):
        budget = pair_budget(seq_len)
        if budget < 2:
            raise DataError(f"config.data.seq_len={seq_len}: sentence pairs need at least 5 tokens a row "
                            "([CLS] A [SEP] B [SEP]); raise data.seq_len or set data.next_sentence=False")
        lengths = np.asarray(lengths_D, np.int64)
        if np.count_nonzero(lengths) < 2 and len(content_T):
            raise DataError(f"data.next_sentence=True: {what} has {np.count_nonzero(lengths)} document(s); "
                            "NotNext pairs take segment B from another document, so at least 2 are needed. "
                            "Split the text into documents (data.document=\"line\" or \"paragraph\") or "
                            "set data.next_sentence=False")
        self._content = content_T
        self._doc_starts = np.cumsum(lengths) - lengths
        self._doc_lengths = lengths
        pieces = -(-lengths // budget)  # chunks per document
        self._chunk_doc = np.repeat(np.arange(len(lengths)), pieces)  # [C]
        first_chunk = np.cumsum(pieces) - pieces
        within = np.arange(len(self._chunk_doc)) - first_chunk[self._chunk_doc]
        self._chunk_start = self._doc_starts[self._chunk_doc] + within * budget  # [C] index into content
        self._chunk_length = np.minimum(budget, lengths[self._chunk_doc] - within * budget)  # [C]
        self._nonempty_docs = np.flatnonzero(lengths)
        self.seq_len = seq_len
        self._cls, self._sep, self._pad = cls_id, sep_id, pad_id
        self.num_rows = len(self._chunk_doc)  # R per epoch
        self.num_tokens = int(lengths.sum())

    def report(self) -> dict:
        """Rows, token slots and the share of slots holding tokens (as packing_report), per epoch.

        A NotNext row's B has the length the chunk's rest would have had (less only when the other
        document is shorter), so the share hardly depends on the draw: each chunk's tokens plus its three
        specials.
        """
        slots = self.num_rows * self.seq_len
        tokens = self.num_tokens + _SPECIALS_PER_ROW * self.num_rows
        return {"rows": self.num_rows, "slots": slots, "tokens": tokens,
                "efficiency": tokens / slots if slots else 0.0, "documents": int(np.count_nonzero(self._doc_lengths)),
                "long_documents": int((self._doc_lengths > pair_budget(self.seq_len)).sum())}

    def _other_span(self, rng: np.random.Generator, doc: int, length: int) -> np.ndarray:
        """`length` tokens (fewer if the document is shorter) from a random place in a document != `doc`."""
        others = self._nonempty_docs
        pick = int(rng.integers(len(others) - 1))
        other = int(others[pick + (others[pick] >= doc)])  # skips `doc` without rejection sampling
        start = int(rng.integers(max(self._doc_lengths[other] - length, 0) + 1))
        begin = self._doc_starts[other] + start
        return self._content[begin:begin + min(length, int(self._doc_lengths[other]))]

    def pair(self, row: int, *, seed: int, epoch: int) -> tuple[np.ndarray, np.ndarray, int]:
        """(A, B, label) of row `row` (a chunk index) in `epoch`: a pure function of its arguments."""
        rng = np.random.default_rng([PAIR_STREAM, seed % 2**64, epoch % 2**64, row])
        start, n, doc = int(self._chunk_start[row]), int(self._chunk_length[row]), int(self._chunk_doc[row])
        chunk = self._content[start:start + n]
        is_next = rng.random() < 0.5
        if n < 2:
            return chunk, self._other_span(rng, doc, 1), NOT_NEXT
        a = int(rng.integers(1, n))
        if is_next:
            return chunk[:a], chunk[a:], IS_NEXT
        return chunk[:a], self._other_span(rng, doc, n - a), NOT_NEXT

    def rows(self, rows_R: np.ndarray, *, seed: int, epoch: int) -> dict[str, np.ndarray]:
        """Batch fields of rows `rows_R`: inputs, targets, weights, positions, segment_ids, token_types [R, L]
        and next_sentence [R] (the label). Weights are 0, for the masker to fill in."""
        rows_R = np.asarray(rows_R, np.int64)
        shape = (len(rows_R), self.seq_len)
        tokens_RxL = np.full(shape, self._pad, np.int32)
        types_RxL = np.zeros(shape, np.int32)
        lengths_R = np.zeros(len(rows_R), np.int64)
        labels_R = np.zeros(len(rows_R), np.int32)
        for r, row in enumerate(rows_R.tolist()):
            a_tokens, b_tokens, labels_R[r] = self.pair(row, seed=seed, epoch=epoch)
            a, b = len(a_tokens), len(b_tokens)
            tokens_RxL[r, :a + b + 3] = np.concatenate(
                [[self._cls], a_tokens, [self._sep], b_tokens, [self._sep]])
            types_RxL[r, a + 2:a + b + 3] = 1
            lengths_R[r] = a + b + 3
        real_RxL = np.arange(self.seq_len) < lengths_R[:, None]
        return {
            "inputs": tokens_RxL,
            "targets": tokens_RxL.copy(),
            "weights": np.zeros(shape, np.float32),
            "positions": np.where(real_RxL, np.arange(self.seq_len), 0).astype(np.int32),
            "segment_ids": real_RxL.astype(np.int32),
            "token_types": types_RxL,
            "next_sentence": labels_R,
        }
