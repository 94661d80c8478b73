"""BERT's sentence-pair input for next-sentence prediction: [CLS] A [SEP] B [SEP], one pair per row.

Off by default (`config.data.next_sentence`), as in RoBERTa; on, a `bert` run trains BERT's second
objective beside masked LM. Shapes: T content tokens, D documents, C chunks, R rows, L seq_len.

The rule, since sources mark documents but not sentences: each document of at least two tokens is cut
into the fewest chunks of at most L - 3 tokens (room for [CLS] and two [SEP]), of near-equal lengths;
chunk c is row c of every epoch. A row's draw comes from (seed, epoch, row) alone. Segment A is the
chunk's first `a` tokens, `a` uniform in [1, n - 1] for a chunk of n tokens. With probability 1/2, B is
the rest of the chunk, the text that really follows A (label 0, IsNext, as in Hugging Face's
BertForPreTraining). Otherwise (label 1, NotNext) B is the last n - a tokens of a chunk of another
document that is as long or longer and, like this one, is (or is not) its document's last: so B has the
same length, starts inside a chunk and ends at a document's end exactly as often under both labels, and
only the text tells them apart. Should no other document have such a chunk, any long-enough chunk of
another document serves (and the shortest documents' tails, in the rare worst case). One-token
documents cannot be split into A and B; they are left out and counted. Rows are padded, never packed.
"""

from __future__ import annotations

import numpy as np

from jaxlm.data.errors import DataError

PAIR_STREAM = 3  # The first word of the pairing seed, apart from masking (1) and data order (2).
IS_NEXT, NOT_NEXT = 0, 1
_SPECIALS_PER_ROW = 3  # [CLS], [SEP], [SEP]
_DRAWS = 8  # Tries to draw a chunk of another document before searching the candidates for one.


def pair_budget(seq_len: int) -> int:
    """Content tokens a pair row holds: seq_len minus [CLS] and two [SEP]."""
    return seq_len - _SPECIALS_PER_ROW


def _chunks(lengths_D: np.ndarray, budget: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(document [C], offset in the document [C], length [C]): each document of 2+ tokens cut into the
    fewest chunks of at most `budget` tokens, their lengths differing by at most one."""
    pieces_D = np.where(lengths_D >= 2, -(-lengths_D // budget), 0)
    doc_C = np.repeat(np.arange(len(lengths_D)), pieces_D)
    index_C = np.arange(len(doc_C)) - (np.cumsum(pieces_D) - pieces_D)[doc_C]  # chunk number within its document
    pieces_C, total_C = pieces_D[doc_C], lengths_D[doc_C]
    offset_C = index_C * total_C // pieces_C
    return doc_C, offset_C, (index_C + 1) * total_C // pieces_C - offset_C


class SentencePairs:
    """Pair rows over documents' tokens [T] and lengths [D]; `rows` draws them as batch fields."""

    def __init__(
        self,
        content_T: np.ndarray,
        lengths_D: np.ndarray,
        *,
        seq_len: int,
        cls_id: int,
        sep_id: int,
        pad_id: int,
        what: str = "the training split",
    ):
        budget = pair_budget(seq_len)
        if budget < 2:
            raise DataError(
                f"config.data.seq_len={seq_len}: sentence pairs need at least 5 tokens a row "
                "([CLS] A [SEP] B [SEP]); raise data.seq_len or set data.next_sentence=False"
            )
        lengths_D = np.asarray(lengths_D, np.int64)
        pairable = int(np.count_nonzero(lengths_D >= 2))
        if pairable < 2 and len(content_T):
            raise DataError(
                f"data.next_sentence=True: {what} has {pairable} document(s) of two or more tokens; "
                "NotNext pairs take segment B from another document, so at least 2 are needed. "
                'Split the text into documents (data.document="paragraph", or "line", though '
                "short documents leave most of each pair row padding) or set data.next_sentence=False"
            )
        self._content = content_T
        doc_starts_D = np.cumsum(lengths_D) - lengths_D
        self._doc_C, offset_C, self._length_C = _chunks(lengths_D, budget)
        self._start_C = doc_starts_D[self._doc_C] + offset_C  # index into content
        self._last_C = offset_C + self._length_C == lengths_D[self._doc_C]
        # Per last-ness, the chunks sorted by length: those at least n long are a suffix.
        self._by_length = {}
        for last in (False, True):
            chunks = np.flatnonzero(self._last_C == last)
            chunks = chunks[np.argsort(self._length_C[chunks], kind="stable")]
            self._by_length[last] = (chunks, self._length_C[chunks])
        self._longest_first = np.argsort(-self._length_C, kind="stable")
        self.seq_len = seq_len
        self._cls, self._sep, self._pad = cls_id, sep_id, pad_id
        self.num_rows = len(self._doc_C)  # R per epoch
        self.num_tokens = int(self._length_C.sum())
        self.documents = pairable
        self.left_out = int(np.count_nonzero(lengths_D == 1))  # one-token documents: no pair to make
        self.long_documents = int((lengths_D > budget).sum())

    def report(self) -> dict:
        """Rows, token slots and the share of slots holding tokens (as packing_report), per epoch.

        Every row holds its chunk's n tokens and three specials, whatever its label (B's length is the
        same under both), so the share does not depend on the draw.
        """
        slots = self.num_rows * self.seq_len
        tokens = self.num_tokens + _SPECIALS_PER_ROW * self.num_rows
        return {
            "rows": self.num_rows,
            "slots": slots,
            "tokens": tokens,
            "efficiency": tokens / slots if slots else 0.0,
            "documents": self.documents,
            "long_documents": self.long_documents,
            "left_out_documents": self.left_out,
        }

    def _other_chunk(self, rng: np.random.Generator, row: int) -> int:
        """A chunk of another document, as long as chunk `row` or longer and as last in its document."""
        doc, n = int(self._doc_C[row]), int(self._length_C[row])
        chunks_K, lengths_K = self._by_length[bool(self._last_C[row])]
        candidates_K = chunks_K[np.searchsorted(lengths_K, n) :]
        for _ in range(_DRAWS if len(candidates_K) else 0):
            chunk = int(candidates_K[rng.integers(len(candidates_K))])
            if self._doc_C[chunk] != doc:
                return chunk
        for pool_K in (candidates_K, self._longest_first):  # then any long-enough chunk, then the longest
            others_K = pool_K[self._doc_C[pool_K] != doc]
            if pool_K is self._longest_first:
                others_K = others_K[self._length_C[others_K] == self._length_C[others_K[0]]]
            if len(others_K):
                return int(others_K[rng.integers(len(others_K))])
        raise AssertionError("unreachable: the constructor makes sure another document has a chunk")

    def pair(self, row: int, *, seed: int, epoch: int) -> tuple[np.ndarray, np.ndarray, int]:
        """(A, B, label) of row `row` (a chunk index) in `epoch`: a pure function of its arguments."""
        rng = np.random.default_rng([PAIR_STREAM, seed % 2**64, epoch % 2**64, row])
        start, n = int(self._start_C[row]), int(self._length_C[row])
        a = int(rng.integers(1, n))
        chunk_N = self._content[start : start + n]
        if rng.random() < 0.5:
            return chunk_N[:a], chunk_N[a:], IS_NEXT
        other = self._other_chunk(rng, row)
        other_end = int(self._start_C[other] + self._length_C[other])
        b = min(n - a, int(self._length_C[other]))  # less only in the fallback to a shorter chunk
        return chunk_N[:a], self._content[other_end - b : other_end], NOT_NEXT

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
            a_A, b_B, labels_R[r] = self.pair(row, seed=seed, epoch=epoch)
            a, b = len(a_A), len(b_B)
            tokens_RxL[r, : a + b + 3] = np.concatenate([[self._cls], a_A, [self._sep], b_B, [self._sep]])
            types_RxL[r, a + 2 : a + b + 3] = 1
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
