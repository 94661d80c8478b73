"""From a run's data section to batches: source, tokenizer, tokenized corpus, train/validation streams.

Every batch is a dict of numpy arrays [batch_size, seq_len]: inputs, targets (int32), weights
(float32, the loss mask), positions, segment_ids (int32; 0 = padding). Causal rows' targets are the
inputs shifted by one; masked-LM rows carry BERT's corruption in the inputs and weight only the chosen
tokens, so one weighted cross-entropy trains both objectives.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os

import ml_collections
import numpy as np

from jaxlm.data.batches import Masker, TrainBatches, host_share
from jaxlm.data.caches import CORPUS_DIR, TOKENIZER_DIR
from jaxlm.data.errors import DataError
from jaxlm.data.masking import mask_tokens
from jaxlm.data.packing import FramedStream, num_rows, row_fields
from jaxlm.data.select import train_source, val_source
from jaxlm.data.sentence_pairs import SentencePairs
from jaxlm.data.token_store import TokenizedCorpus, tokenize
from jaxlm.data.tokenizer import Tokenizer
from jaxlm.data.tokenizer_cache import build_tokenizer

# Validation masks with this step, which masking maps to a stream no training step reaches, and draws
# its sentence pairs as this epoch, one no training epoch reaches.
_VAL_MASK_STEP = _VAL_EPOCH = -1


@dataclasses.dataclass(frozen=True)
class Data:
    """What the trainer takes from the data pipeline."""

    tokenizer: Tokenizer
    train: TrainBatches
    val_batches: list[dict[str, np.ndarray]]  # Global, fixed; the last padded with zero-weight rows; [] = none.
    summary: str  # One line for the log.
    fingerprint: str  # Names everything that decides the training batches; the checkpoint compares it.
    packing: dict  # How well the train rows are filled: see packing_report.

    def host_val_batches(self, process_index: int, process_count: int) -> list[dict[str, np.ndarray]]:
        """This host's rows of each validation batch."""
        return [host_share(batch, process_index, process_count) for batch in self.val_batches]


def packing_report(stream: FramedStream, seq_len: int, objective: str) -> dict:
    """Rows, token slots, the share of slots holding tokens, and documents split across rows (none dropped)."""
    rows = num_rows(len(stream), seq_len, objective)
    slots = rows * seq_len
    return {
        "rows": rows,
        "slots": slots,
        "tokens": len(stream),
        "efficiency": min(len(stream), slots) / slots if slots else 0.0,
        "documents": stream.num_documents,
        "long_documents": int((stream.framed_lengths > seq_len).sum()),
    }


Part = tuple[np.ndarray, np.ndarray]  # a split's content tokens [T] and document lengths [D]


def _split(corpus: TokenizedCorpus, num_train: int) -> tuple[Part, Part, bool]:
    """((train tokens, lengths), (validation tokens, lengths), whether a document was cut in two):
    the first `num_train` content tokens train, the rest validate."""
    lengths = corpus.lengths
    ends = np.cumsum(lengths)
    first_val = int(np.searchsorted(ends, num_train, side="right"))
    if first_val == len(lengths):
        return (corpus.tokens, lengths), (corpus.tokens[:0], lengths[:0]), False
    cut = int(num_train - (ends[first_val] - lengths[first_val]))
    train_lengths = np.append(lengths[:first_val], [cut] if cut else []).astype(lengths.dtype)
    val_lengths = np.append([lengths[first_val] - cut], lengths[first_val + 1 :]).astype(lengths.dtype)
    return (corpus.tokens[:num_train], train_lengths), (corpus.tokens[num_train:], val_lengths), cut > 0


def _val_batches(
    stream: FramedStream,
    *,
    batch_size: int,
    seq_len: int,
    max_batches: int,
    seed: int,
    objective: str,
    pad_id: int,
    masker: Masker | None,
    pairs: SentencePairs | None,
) -> list[dict[str, np.ndarray]]:
    """Validation rows in stream (or pair) order, batched (at most `max_batches`, 0 = all); the last batch
    filled with all-zero (zero-weight) rows."""
    rows = pairs.num_rows if pairs else num_rows(len(stream), seq_len, objective)
    if max_batches:
        rows = min(rows, max_batches * batch_size)
    if pairs:
        fields = pairs.rows(np.arange(rows), seed=seed, epoch=_VAL_EPOCH)
    else:
        fields = row_fields(
            *stream.rows(np.arange(rows), seq_len=seq_len, objective=objective, pad_id=pad_id), objective=objective
        )
    if masker:
        fields["inputs"], fields["targets"], fields["weights"] = masker(
            fields["inputs"], seed=seed, step=_VAL_MASK_STEP, example_ids_B=np.arange(rows)
        )
    filler = -rows % batch_size
    fields = {k: np.concatenate([v, np.zeros((filler, *v.shape[1:]), v.dtype)]) for k, v in fields.items()}
    return [{k: v[i : i + batch_size] for k, v in fields.items()} for i in range(0, rows + filler, batch_size)]


def _rows_text(packing: dict, seq_len: int, objective: str, *, pairs: bool) -> str:
    """How the training rows are made and filled, for the `data |` line."""
    if pairs:
        return (
            f"sentence-pair rows of {seq_len} ([CLS] A [SEP] B [SEP], half of B from another document), "
            f"{packing['efficiency']:.1%} of train slots hold tokens, documents cut into "
            f"{packing['rows']:,} chunks of at most {seq_len - 3} tokens"
            + (
                f", {packing['left_out_documents']:,} one-token document(s) left out (no pair to make)"
                if packing["left_out_documents"]
                else ""
            )
        )
    return (
        f"{objective} rows of {seq_len}, packing {packing['efficiency']:.1%} of train slots hold tokens, "
        f"{packing['long_documents']:,} document(s) longer than a row continue in the next"
    )


def build_data(
    data: ml_collections.ConfigDict,
    *,
    objective: str,
    seed: int,
    max_val_batches: int = 0,
    tokenizer: Tokenizer | None = None,
    cache_dir: str | None = None,
) -> Data:
    """The tokenizer, training batches and validation batches that a run's data section describes.

    `objective` is "causal" or "mlm"; `seed` draws the data order and the masks; validation holds at
    most `max_val_batches` batches (0 = the whole split); `jaxlm.config.data_arguments` gives these three
    for a run config. `tokenizer`: None for the one `data.tokenizer` names (trained if need be).
    `cache_dir` (a run's local workdir; None: nothing cached) keeps a trained tokenizer in TOKENIZER_DIR
    and the tokenized corpus in CORPUS_DIR below it, for restarts and other processes to reuse.
    """
    batch_size, seq_len = data.batch_size, data.seq_len
    source, held_out = train_source(data), val_source(data)
    if tokenizer is None:
        tokenizer = build_tokenizer(
            data.tokenizer,
            source,
            max_documents=data.max_documents,
            cache_dir=os.path.join(cache_dir, TOKENIZER_DIR) if cache_dir else None,
        )
    cache_dir = os.path.join(cache_dir, CORPUS_DIR) if cache_dir else None
    corpus = tokenize(source, tokenizer, max_documents=data.max_documents, cache_dir=cache_dir)
    frame = functools.partial(FramedStream, objective=objective, bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id)
    val_fraction = 0.0 if held_out else data.val_fraction
    if held_out:
        train_part, cut = (corpus.tokens, corpus.lengths), False
        # Read only as much validation text as the evaluation uses.
        max_tokens = max_val_batches * batch_size * seq_len + 1 if max_val_batches else 0
        val_corpus = tokenize(held_out, tokenizer, max_tokens=max_tokens, cache_dir=cache_dir)
        val_part = (val_corpus.tokens, val_corpus.lengths)
    else:
        # nanoGPT's split: the first int(n * (1 - f)) tokens train, the rest validate.
        train_part, val_part, cut = _split(corpus, int(len(corpus.tokens) * (1 - val_fraction)))
    train_stream, val_stream = frame(*train_part, cut_tail=cut), frame(*val_part, cut_head=cut)
    train_pairs = val_pairs = None
    if data.next_sentence:
        pair = functools.partial(
            SentencePairs, seq_len=seq_len, cls_id=tokenizer.bos_id, sep_id=tokenizer.eos_id, pad_id=tokenizer.pad_id
        )
        train_pairs = pair(*train_part)
        if held_out or val_fraction > 0:
            val_pairs = pair(*val_part, what="the validation split")
    masker = (
        None
        if objective == "causal"
        else functools.partial(
            mask_tokens,
            mask_prob=data.mask_prob,
            mask_id=tokenizer.mask_id,
            vocab_size=tokenizer.vocab_size,
            special_ids=tokenizer.special_ids,
        )
    )

    parts = {
        "corpus": corpus.sha256[:16],
        "tokenizer": tokenizer.fingerprint[:16],
        "objective": objective,
        "seq_len": seq_len,
        "batch_size": batch_size,
        "seed": seed,
        "val_fraction": val_fraction,
    }
    if masker:
        parts["mask_prob"] = data.mask_prob
    if train_pairs:
        parts["next_sentence"] = True
    fingerprint = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
    train = TrainBatches(
        train_stream,
        seq_len=seq_len,
        batch_size=batch_size,
        objective=objective,
        seed=seed,
        pad_id=tokenizer.pad_id,
        masker=masker,
        fingerprint=fingerprint,
        fingerprint_parts=parts,
        pairs=train_pairs,
    )
    if train.num_rows < batch_size:
        raise DataError(
            f"config.data.batch_size={batch_size}, config.data.seq_len={seq_len}: the training split has "
            f"{train.num_tokens:,} tokens, {train.num_rows} row(s), fewer than one batch of {batch_size} rows; "
            "lower data.batch_size or data.seq_len (or data.val_fraction), or use more text"
        )
    val_batches = []
    if held_out or val_fraction > 0:
        val_batches = _val_batches(
            val_stream,
            batch_size=batch_size,
            seq_len=seq_len,
            max_batches=max_val_batches,
            seed=seed,
            objective=objective,
            pad_id=tokenizer.pad_id,
            masker=masker,
            pairs=val_pairs,
        )
        if not val_batches:
            field = f"{held_out.field}: holds" if held_out else f"config.data.val_fraction={val_fraction}: holds out"
            raise DataError(
                f"{field} {len(val_stream)} token(s), too few for one row of data.seq_len={seq_len}; "
                + (
                    "use a larger validation split"
                    if held_out
                    else "raise data.val_fraction, lower data.seq_len, or set data.val_fraction=0 for no validation"
                )
            )

    packing = train_pairs.report() if train_pairs else packing_report(train_stream, seq_len, objective)
    val_rows = val_pairs.num_rows if val_pairs else num_rows(len(val_stream), seq_len, objective)
    rows_text = _rows_text(packing, seq_len, objective, pairs=train_pairs is not None)
    replaced = corpus.replaced + (val_corpus.replaced if held_out else 0)
    summary = (
        f"{len(corpus.lengths):,} document(s), {len(corpus.tokens):,} tokens from {source.describe()} "
        f"({tokenizer.describe()}); train {train.num_tokens:,} tokens in {train.num_rows:,} rows, validation "
        f"{len(val_stream):,} tokens in {val_rows:,} rows ({len(val_batches)} batches used); {rows_text}; "
        f"data fingerprint {fingerprint}"
        + (f"; {replaced:,} undecodable byte sequence(s) replaced with U+FFFD" if replaced else "")
    )
    return Data(
        tokenizer=tokenizer,
        train=train,
        val_batches=val_batches,
        summary=summary,
        fingerprint=fingerprint,
        packing=packing,
    )
