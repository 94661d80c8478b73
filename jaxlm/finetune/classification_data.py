"""Labelled texts for a classifier: JSONL examples, one per row, in batches that are a pure function of
(seed, step) like the pretraining batches, so the same loop trains, splits them over hosts and resumes them.

A row holds one text: [CLS] text [SEP] for bert (BERT's pooler reads position 0), text [EOS] for the causal
families (their head reads the last real token), cut to seq_len. The label rides in the LM batch's fields:
targets[:, 0] is the label's index and weights[:, 0] is 1 (every other weight 0), so the weighted
cross-entropy the step already has, read at one position, is the classifier's loss and accuracy.
"""

from __future__ import annotations

import collections
import hashlib
import json
import threading

import ml_collections
import numpy as np

from jaxlm.data.batches import TrainBatches
from jaxlm.data.errors import DataError
from jaxlm.data.pipeline import Data
from jaxlm.data.sources import JsonlSource
from jaxlm.data.tokenizer import Tokenizer


def read_labelled(pattern: str, text_field: str, label_field: str, field: str) -> tuple[list[str], list[str]]:
    """(texts, label names) of every JSONL line at `pattern`; a line without either field is a DataError naming
    the file, the line and the config field. Labels may be strings or integers (kept as their text)."""
    source = JsonlSource(pattern, text_field, field=field)
    texts, labels = [], []
    for path in source.files:
        for number, record in source.records(path):
            text = record.get(text_field) if isinstance(record, dict) else None
            label = record.get(label_field) if isinstance(record, dict) else None
            if not isinstance(text, str):
                raise DataError(
                    f"{path}:{number}: no string field config.data.text_field={text_field!r}; set data.text_field "
                    "to the field that holds the text"
                )
            if isinstance(label, bool) or not isinstance(label, (str, int)):
                raise DataError(
                    f"{path}:{number}: no string or integer field config.data.label_field={label_field!r}; set "
                    "data.label_field to the field that holds the label"
                )
            texts.append(text)
            labels.append(str(label))
    if not texts:
        raise DataError(f"config.{field.split('config.')[-1]}={pattern!r}: no labelled texts there")
    return texts, labels


def frame(ids: list[int], seq_len: int, *, bos_id: int | None, eos_id: int) -> tuple[list[int], bool]:
    """(the row's ids, whether the text was cut): [bos] ids [eos], the text cut so that all fits seq_len."""
    room = seq_len - 1 - (bos_id is not None)
    row = ([bos_id] if bos_id is not None else []) + ids[:room] + [eos_id]
    return row, len(ids) > room


class ExampleBatches(TrainBatches):
    """TrainBatches over examples instead of a token stream: row i of an epoch is example order[i], the order a
    permutation drawn from (seed, epoch). host_batch, iterate, state and restore are TrainBatches'."""

    def __init__(
        self,
        rows_NxL: np.ndarray,
        lengths_N: np.ndarray,
        labels_N: np.ndarray,
        *,
        batch_size: int,
        seed: int,
        fingerprint: str,
        fingerprint_parts: dict,
    ):
        # TrainBatches' state without its token stream: what host_batch, _epoch, state and restore read.
        self.rows_NxL, self.lengths_N, self.labels_N = rows_NxL, lengths_N, labels_N
        self.num_rows = self.num_tokens = len(labels_N)
        self.batch_size, self.seq_len = batch_size, rows_NxL.shape[1]
        self.fingerprint, self.fingerprint_parts = fingerprint, fingerprint_parts
        self._seed, self._masker = seed, None
        self._epochs, self._lock = {}, threading.Lock()

    def _rows(self, epoch: int, index_R: np.ndarray) -> dict[str, np.ndarray]:
        _, order_R = self._epoch(epoch)
        picked = order_R[index_R]
        return example_fields(
            self.rows_NxL[picked], self.lengths_N[picked], self.labels_N[picked], np.ones(len(picked), np.float32)
        )


def example_fields(
    rows_RxL: np.ndarray, lengths_R: np.ndarray, labels_R: np.ndarray, weights_R: np.ndarray
) -> dict[str, np.ndarray]:
    """The batch fields of whole example rows: each text's `lengths_R` ids, then the tokenizer's pad id."""
    real_RxL = np.arange(rows_RxL.shape[1]) < lengths_R[:, None]
    targets_RxL = np.zeros_like(rows_RxL)
    targets_RxL[:, 0] = labels_R
    weights_RxL = np.zeros(rows_RxL.shape, np.float32)
    weights_RxL[:, 0] = weights_R
    return {
        "inputs": rows_RxL,
        "targets": targets_RxL,
        "weights": weights_RxL,
        "positions": np.where(real_RxL, np.arange(rows_RxL.shape[1], dtype=np.int32), 0).astype(np.int32),
        "segment_ids": real_RxL.astype(np.int32),
    }


def _encode(texts: list[str], tokenizer: Tokenizer, seq_len: int, bert: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """[N, seq_len] rows of ids (padded with the tokenizer's pad id), each row's length [N], and how many texts
    were cut."""
    rows_NxL = np.full((len(texts), seq_len), tokenizer.pad_id, np.int32)
    lengths_N = np.zeros(len(texts), np.int32)
    cut = 0
    for i, ids in enumerate(tokenizer.encode_batch(texts)):
        row, was_cut = frame(ids, seq_len, bos_id=tokenizer.bos_id if bert else None, eos_id=tokenizer.eos_id)
        rows_NxL[i, : len(row)], lengths_N[i] = row, len(row)
        cut += was_cut
    return rows_NxL, lengths_N, cut


def _label_indices(names: list[str], labels: tuple[str, ...], where: str) -> np.ndarray:
    index = {name: i for i, name in enumerate(labels)}
    unknown = sorted(set(names) - set(index))
    if unknown:
        raise DataError(
            f"{where} has label(s) {', '.join(map(repr, unknown[:5]))} that are not among the classifier's "
            f"({', '.join(labels)}); fix the data or list every label in finetune.labels"
        )
    return np.array([index[name] for name in names], np.int32)


def training_labels(data: ml_collections.ConfigDict) -> tuple[str, ...]:
    """The label names of the training texts, sorted (what finetune.labels="" means): as numbers when every
    label is an integer (so label 2 is head index 2 of 0..10, not after "10"), else as text."""
    _, names = read_labelled(data.path, data.text_field, data.label_field, "config.data.path")
    numeric = all(name.lstrip("-").isdigit() for name in names)
    return tuple(sorted(set(names), key=int if numeric else None))


def build_classification_data(
    data: ml_collections.ConfigDict,
    *,
    labels: tuple[str, ...],
    tokenizer: Tokenizer,
    bert: bool,
    seed: int,
    max_val_batches: int = 0,
) -> Data:
    """Training batches and validation batches of the labelled JSONL at data.path and data.val_path."""
    texts, names = read_labelled(data.path, data.text_field, data.label_field, "config.data.path")
    if len(labels) < 2:
        raise DataError(
            f"config.data.path={data.path!r}: {len(labels)} label(s) ({', '.join(labels)}); a classifier needs "
            "two or more"
        )
    rows_NxL, lengths_N, cut = _encode(texts, tokenizer, data.seq_len, bert)
    labels_N = _label_indices(names, labels, f"config.data.path={data.path!r}")
    val_batches, val_text = [], "no validation (set data.val_path)"
    if data.val_path:
        val_texts, val_names = read_labelled(data.val_path, data.text_field, data.label_field, "config.data.val_path")
        val_rows, val_lengths, val_cut = _encode(val_texts, tokenizer, data.seq_len, bert)
        val_labels = _label_indices(val_names, labels, f"config.data.val_path={data.val_path!r}")
        val_batches = _val_batches(val_rows, val_lengths, val_labels, data.batch_size, max_val_batches)
        val_text = f"validation {len(val_texts)} texts ({val_cut} cut)"
    digest = hashlib.sha256(json.dumps([texts, names]).encode()).hexdigest()
    parts = {
        "corpus": digest[:16],
        "tokenizer": tokenizer.fingerprint[:16],
        "objective": "classify",
        "labels": ",".join(labels),
        "seq_len": data.seq_len,
        "batch_size": data.batch_size,
        "seed": seed,
    }
    fingerprint = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
    counts = collections.Counter(names)
    summary = (
        f"{len(texts)} labelled texts at {data.path} | {len(labels)} labels: "
        + ", ".join(f"{name} {counts[name]}" for name in labels)
        + f" | {cut} cut to seq_len={data.seq_len} | {val_text} | tokenizer {tokenizer.describe()}"
    )
    train = ExampleBatches(
        rows_NxL,
        lengths_N,
        labels_N,
        batch_size=data.batch_size,
        seed=seed,
        fingerprint=fingerprint,
        fingerprint_parts=parts,
    )
    return Data(
        tokenizer=tokenizer,
        train=train,
        val_batches=val_batches,
        summary=summary,
        fingerprint=fingerprint,
        packing={"rows": len(texts), "cut": cut},
    )


def _val_batches(
    rows_NxL: np.ndarray, lengths_N: np.ndarray, labels_N: np.ndarray, batch_size: int, max_batches: int
) -> list[dict]:
    """Every validation text once, in order; the last batch filled with weight-0 copies of the first text."""
    batches = []
    for start in range(0, len(labels_N), batch_size):
        if max_batches and len(batches) == max_batches:
            break
        picked = np.arange(start, start + batch_size)
        real = picked < len(labels_N)
        picked = np.where(real, picked, 0)
        batches.append(example_fields(rows_NxL[picked], lengths_N[picked], labels_N[picked], real.astype(np.float32)))
    return batches
