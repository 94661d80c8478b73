"""Labelled JSONL texts as classifier rows: framing, labels, batches as a pure function of (seed, step) split
over hosts, the resume check, and each bad input named in one line."""

import json

import numpy as np
import pytest

from jaxlm.config import base_config
from jaxlm.data.char_tokenizer import CharTokenizer
from jaxlm.data.errors import DataError
from jaxlm.finetune.classification_data import build_classification_data, frame, read_labelled, training_labels


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def _data(tmp_path, n=10, **fields):
    records = [{"text": "ab" * (i + 1), "label": "even" if i % 2 == 0 else "odd"} for i in range(n)]
    data = base_config().data
    data.update(
        {
            "source": "jsonl",
            "path": _write(tmp_path / "train.jsonl", records),
            "val_path": _write(tmp_path / "val.jsonl", records[:5]),
            "seq_len": 8,
            "batch_size": 4,
            **fields,
        }
    )
    return data


TOKENIZER = CharTokenizer.train(["ab"])


def test_a_row_is_cls_text_sep_for_bert_and_text_eos_for_causal_cut_to_fit():
    assert frame([7, 8, 9], 8, bos_id=2, eos_id=3) == ([2, 7, 8, 9, 3], False)
    assert frame([7, 8, 9], 8, bos_id=None, eos_id=3) == ([7, 8, 9, 3], False)
    assert frame(list(range(10, 20)), 5, bos_id=2, eos_id=3) == ([2, 10, 11, 12, 3], True)


def test_rows_carry_the_label_in_column_0_and_count_what_was_cut(tmp_path):
    data = build_classification_data(
        _data(tmp_path), labels=("even", "odd"), tokenizer=TOKENIZER, bert=True, seed=0, max_val_batches=0
    )
    batch = data.train.batch(0)
    assert set(batch) == {"inputs", "targets", "weights", "positions", "segment_ids"}
    assert np.all(batch["weights"][:, 0] == 1) and np.all(batch["weights"][:, 1:] == 0)
    assert np.all(batch["inputs"][:, 0] == TOKENIZER.bos_id)
    lengths = batch["segment_ids"].sum(axis=1)
    assert np.all(batch["inputs"][np.arange(4), lengths - 1] == TOKENIZER.eos_id)
    assert np.all(batch["positions"][:, :2] == [0, 1])
    assert "10 labelled texts" in data.summary and "even 5, odd 5" in data.summary
    assert "7 cut to seq_len=8" in data.summary  # texts longer than 6 characters
    # Validation: every text once, the last batch filled with weight-0 rows.
    assert [float(b["weights"][:, 0].sum()) for b in data.val_batches] == [4.0, 1.0]


def test_labels_match_texts_through_the_shuffle(tmp_path):
    data = build_classification_data(
        _data(tmp_path, seq_len=32), labels=("even", "odd"), tokenizer=TOKENIZER, bert=False, seed=3
    )
    for step in range(5):
        batch = data.train.batch(step)
        for row, segments, label in zip(batch["inputs"], batch["segment_ids"], batch["targets"][:, 0]):
            text = TOKENIZER.decode(row[segments == 1][:-1])  # without the closing EOS
            assert label == (0 if (len(text) // 2 - 1) % 2 == 0 else 1)


def test_batches_are_a_function_of_seed_and_step_and_hosts_split_them(tmp_path):
    make = lambda seed: build_classification_data(  # noqa: E731
        _data(tmp_path, seq_len=32), labels=("even", "odd"), tokenizer=TOKENIZER, bert=True, seed=seed
    )
    a, b, c = make(0), make(0), make(1)
    for step in (0, 3, 7):
        whole = a.train.batch(step)
        for key in whole:
            np.testing.assert_array_equal(whole[key], b.train.batch(step)[key])
            halves = [a.train.host_batch(step, i, 2)[key] for i in range(2)]
            np.testing.assert_array_equal(np.concatenate(halves), whole[key])
    assert any(not np.array_equal(a.train.batch(s)["inputs"], c.train.batch(s)["inputs"]) for s in range(3))
    # An epoch is every text once.
    seen = np.concatenate([a.train.batch(s)["inputs"] for s in range(5)])[:10]
    assert len({row.tobytes() for row in seen}) == 10
    assert a.train.restore(a.train.state(5)) == 5
    with pytest.raises(DataError, match="labels"):
        other = build_classification_data(
            _data(tmp_path, seq_len=32), labels=("even", "odd", "zero"), tokenizer=TOKENIZER, bert=True, seed=0
        )
        other.train.restore(a.train.state(5))


def test_training_labels_are_the_sorted_set(tmp_path):
    assert training_labels(_data(tmp_path)) == ("even", "odd")


@pytest.mark.parametrize(
    "lines, message",
    [
        ([{"text": "ab"}], r"train.jsonl:1: no string or integer field config.data.label_field='label'"),
        ([{"label": "x"}], r"train.jsonl:1: no string field config.data.text_field='text'"),
        ([{"text": "ab", "label": [1]}], r"label_field"),
        (["not json"], r"train.jsonl:1: not valid JSON"),
    ],
)
def test_bad_lines_are_named_by_file_line_and_field(tmp_path, lines, message):
    path = tmp_path / "train.jsonl"
    path.write_text("".join((json.dumps(x) if not isinstance(x, str) else x) + "\n" for x in lines))
    with pytest.raises(DataError, match=message):
        read_labelled(str(path), "text", "label", "config.data.path")


def test_a_validation_label_the_classifier_lacks_is_named(tmp_path):
    data = _data(tmp_path)
    _write(tmp_path / "val.jsonl", [{"text": "ab", "label": "prime"}])
    with pytest.raises(DataError, match=r"val_path=.*label\(s\) 'prime' that are not among the classifier's"):
        build_classification_data(data, labels=("even", "odd"), tokenizer=TOKENIZER, bert=True, seed=0)


def test_one_label_is_not_a_classification(tmp_path):
    data = _data(tmp_path)
    _write(tmp_path / "train.jsonl", [{"text": "ab", "label": "only"}] * 3)
    with pytest.raises(DataError, match="a classifier needs two or more"):
        build_classification_data(data, labels=("only",), tokenizer=TOKENIZER, bert=True, seed=0)
