"""From config to batches: documents, tokenizer, train/validation token streams, packed batches.

Every batch is a dict of numpy arrays [batch_size, seq_len]: inputs, targets (int32), weights
(float32), positions, segment_ids (int32), as DESIGN.md's batch contract says.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

import ml_collections
import numpy as np

from jaxlm import config as config_lib
from jaxlm.data.corpus import load_documents
from jaxlm.data.errors import DataError
from jaxlm.data.masking import mask_tokens
from jaxlm.data.packing import cut_rows, frame_documents, num_rows, row_fields, row_width
from jaxlm.data.tokenizer import Tokenizer, build_tokenizer

# The first word of the data-order seed, apart from masking.MASK_STREAM.
_ORDER_STREAM = 2
# Validation masks with this step, which masking maps to a stream no training step reaches.
_VAL_MASK_STEP = -1

Masker = Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]]


class TrainBatches:
    """Training batches as a pure function of (seed, step), over endless epochs of the train stream.

    Global row g = step * batch_size + i belongs to epoch g // num_rows. Each epoch cuts the stream
    rotated by an offset drawn from (seed, epoch) into rows and visits them in a permutation drawn
    from (seed, epoch), so epochs see different windows and a resumed run needs only the step.
    `tokens` and `doc_ids` [N] are the train stream; `num_tokens` is N and `num_rows` the rows an epoch has.
    """

    def __init__(self, tokens_N: np.ndarray, doc_ids_N: np.ndarray, *, seq_len: int, batch_size: int,
                 objective: str, seed: int, pad_id: int, masker: Masker | None):
        self.tokens = tokens_N
        self.doc_ids = doc_ids_N
        self.num_tokens = len(tokens_N)
        self.num_rows = num_rows(self.num_tokens, seq_len, objective)
        self._seq_len, self._batch_size, self._objective = seq_len, batch_size, objective
        self._seed, self._pad_id, self._masker = seed, pad_id, masker
        # The epochs the last batch touched: at most two, since a batch never exceeds an epoch.
        self._epochs: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def _epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(tokens_RxW, doc_ids_RxW, order_R) of one epoch."""
        rng = np.random.default_rng([_ORDER_STREAM, self._seed % 2**64, epoch])
        tokens_RxW, doc_ids_RxW = cut_rows(self.tokens, self.doc_ids, seq_len=self._seq_len,
                                           objective=self._objective, pad_id=self._pad_id,
                                           offset=int(rng.integers(self.num_tokens)))
        return tokens_RxW, doc_ids_RxW, rng.permutation(self.num_rows)

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """The batch of `step`: dict of [batch_size, seq_len] arrays, the same for the same (seed, step)."""
        rows_B = step * self._batch_size + np.arange(self._batch_size)
        epochs_B, index_B = np.divmod(rows_B, self.num_rows)
        self._epochs = {e: self._epochs.get(e) or self._epoch(e) for e in np.unique(epochs_B).tolist()}
        width = row_width(self._seq_len, self._objective)
        tokens_BxW = np.empty((self._batch_size, width), np.int32)
        doc_ids_BxW = np.empty((self._batch_size, width), np.int32)
        for epoch, (tokens_RxW, doc_ids_RxW, order_R) in self._epochs.items():
            here = epochs_B == epoch
            tokens_BxW[here] = tokens_RxW[order_R[index_B[here]]]
            doc_ids_BxW[here] = doc_ids_RxW[order_R[index_B[here]]]
        fields = row_fields(tokens_BxW, doc_ids_BxW, objective=self._objective)
        if self._masker:
            fields["inputs"], fields["targets"], fields["weights"] = self._masker(
                fields["inputs"], seed=self._seed, step=step, example_ids_B=rows_B)
        return fields


@dataclasses.dataclass(frozen=True)
class Data:
    """What the trainer takes from the data room."""

    tokenizer: Tokenizer
    train: TrainBatches
    val_batches: list[dict[str, np.ndarray]]  # Fixed; the last padded with zero-weight rows; [] = none.
    summary: str  # One line for the log.


def _split(docs: Sequence[np.ndarray], num_train: int) -> tuple[list[np.ndarray], list[np.ndarray], bool]:
    """(train docs, validation docs, whether one document was cut): the first `num_train` tokens train."""
    ends = np.cumsum([len(doc) for doc in docs])
    first_val = int(np.searchsorted(ends, num_train, side="right"))
    if first_val == len(docs):
        return list(docs), [], False
    cut = num_train - (ends[first_val] - len(docs[first_val]))
    if cut == 0:
        return list(docs[:first_val]), list(docs[first_val:]), False
    head, tail = docs[first_val][:cut], docs[first_val][cut:]
    return [*docs[:first_val], head], [tail, *docs[first_val + 1:]], True


def _val_batches(tokens_N: np.ndarray, doc_ids_N: np.ndarray, *, config: ml_collections.ConfigDict,
                 objective: str, pad_id: int, masker: Masker | None) -> list[dict[str, np.ndarray]]:
    """Validation rows in stream order, batched; the last batch filled with all-zero (zero-weight) rows."""
    batch_size, seq_len = config.data.batch_size, config.data.seq_len
    tokens_RxW, doc_ids_RxW = cut_rows(tokens_N, doc_ids_N, seq_len=seq_len, objective=objective, pad_id=pad_id)
    if config.eval.max_batches:
        tokens_RxW = tokens_RxW[:config.eval.max_batches * batch_size]
        doc_ids_RxW = doc_ids_RxW[:config.eval.max_batches * batch_size]
    fields = row_fields(tokens_RxW, doc_ids_RxW, objective=objective)
    rows = len(tokens_RxW)
    if masker:
        fields["inputs"], fields["targets"], fields["weights"] = masker(
            fields["inputs"], seed=config.seed, step=_VAL_MASK_STEP, example_ids_B=np.arange(rows))
    filler = -rows % batch_size
    fields = {k: np.concatenate([v, np.zeros((filler, seq_len), v.dtype)]) for k, v in fields.items()}
    return [{k: v[i:i + batch_size] for k, v in fields.items()} for i in range(0, rows + filler, batch_size)]


def build_data(config: ml_collections.ConfigDict, workdir: str | None = None) -> Data:
    """The tokenizer, training batches and validation batches that `config.data` describes."""
    objective = config_lib.objective(config)
    batch_size, seq_len, val_fraction = config.data.batch_size, config.data.seq_len, config.data.val_fraction
    documents = load_documents(config)
    tokenizer = build_tokenizer(config, documents, workdir)
    docs = [np.asarray(tokenizer.encode(document), np.int32) for document in documents]
    num_tokens = sum(len(doc) for doc in docs)
    # nanoGPT's split: the first int(n * (1 - f)) tokens train, the rest validate.
    train_docs, val_docs, cut = _split(docs, int(num_tokens * (1 - val_fraction)))
    frame = functools.partial(frame_documents, objective=objective, bos_id=tokenizer.bos_id,
                              eos_id=tokenizer.eos_id)
    train_tokens_N, train_doc_ids_N = frame(train_docs, cut_tail=cut)
    val_tokens_N, val_doc_ids_N = frame(val_docs, cut_head=cut)
    masker = None if objective == "causal" else functools.partial(
        mask_tokens, mask_prob=config.data.mask_prob, mask_id=tokenizer.mask_id,
        vocab_size=tokenizer.vocab_size, special_ids=tokenizer.special_ids)

    train = TrainBatches(train_tokens_N, train_doc_ids_N, seq_len=seq_len, batch_size=batch_size,
                         objective=objective, seed=config.seed, pad_id=tokenizer.pad_id, masker=masker)
    if train.num_rows < batch_size:
        raise DataError(
            f"config.data.batch_size={batch_size}, config.data.seq_len={seq_len}: the training split has "
            f"{train.num_tokens:,} tokens, {train.num_rows} row(s), fewer than one batch of {batch_size} rows; "
            "lower data.batch_size or data.seq_len (or data.val_fraction), or use more text")
    val_batches = []
    if val_fraction > 0:
        val_batches = _val_batches(val_tokens_N, val_doc_ids_N, config=config, objective=objective,
                                   pad_id=tokenizer.pad_id, masker=masker)
        if not val_batches:
            raise DataError(
                f"config.data.val_fraction={val_fraction}: holds out {len(val_tokens_N)} token(s), too few for "
                f"one row of data.seq_len={seq_len}; raise data.val_fraction, lower data.seq_len, or set "
                "data.val_fraction=0 for no validation")

    slots = train.num_rows * seq_len
    val_rows = num_rows(len(val_tokens_N), seq_len, objective)
    summary = (f"{len(documents):,} document(s), {num_tokens:,} tokens ({tokenizer.describe()}); "
               f"train {train.num_tokens:,} tokens in {train.num_rows:,} rows, validation "
               f"{len(val_tokens_N):,} tokens in {val_rows:,} rows ({len(val_batches)} batches used); "
               f"{objective} rows of {seq_len}, {min(train.num_tokens, slots) / slots:.1%} of train slots hold tokens")
    return Data(tokenizer=tokenizer, train=train, val_batches=val_batches, summary=summary)
