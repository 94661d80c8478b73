"""Tests for jaxlm/data/sentence_pairs.py and the pipeline's sentence-pair batches (data.next_sentence)."""

import numpy as np
import pytest

from jaxlm.config import ConfigError, base_config, data_arguments, validate
from jaxlm.data import pipeline
from jaxlm.data.errors import DataError
from jaxlm.data.sentence_pairs import IS_NEXT, NOT_NEXT, SentencePairs


def build_data(config, workdir=None):
    """The data pipeline as a run builds it from its whole config (caches in `workdir`)."""
    return pipeline.build_data(config.data, **data_arguments(config), cache_dir=workdir)


CLS, SEP, PAD = 2, 3, 0
FIELDS = ("inputs", "targets", "weights", "positions", "segment_ids", "token_types", "next_sentence")


def _documents(lengths):
    """Documents whose tokens say where they come from: document d, token t is 1000 * (d + 1) + t."""
    content = np.concatenate([1000 * (d + 1) + np.arange(n) for d, n in enumerate(lengths)]).astype(np.int32)
    return content, np.array(lengths)


def _pairs(lengths=(30, 7, 1, 45, 12), seq_len=16):
    content, lengths = _documents(lengths)
    return SentencePairs(content, lengths, seq_len=seq_len, cls_id=CLS, sep_id=SEP, pad_id=PAD)


def _split_row(fields, r):
    """(A, B) of row r, read back from its tokens and token types."""
    real = fields["segment_ids"][r] == 1
    tokens, types = fields["inputs"][r][real], fields["token_types"][r][real]
    assert tokens[0] == CLS and tokens[-1] == SEP
    a_end = int(np.argmax(types == 1))
    assert tokens[a_end - 1] == SEP and types[:a_end].sum() == 0 and types[a_end:].all()
    return tokens[1 : a_end - 1], tokens[a_end:-1]


def test_rows_are_cls_a_sep_b_sep_with_labels_that_tell_the_truth():
    pairs = _pairs()
    # Near-equal chunks of at most 13: 30 -> 3, 7 -> 1, the one-token document left out, 45 -> 4, 12 -> 1.
    assert pairs.num_rows == 3 + 1 + 4 + 1 and pairs.left_out == 1
    labels = []
    for epoch in range(6):
        fields = pairs.rows(np.arange(pairs.num_rows), seed=0, epoch=epoch)
        assert {k: v.shape for k, v in fields.items()} == {
            **{k: (pairs.num_rows, 16) for k in FIELDS[:-1]},
            "next_sentence": (pairs.num_rows,),
        }
        for r in range(pairs.num_rows):
            a, b = _split_row(fields, r)
            assert len(a) >= 1 and len(b) >= 1 and len(a) + len(b) <= 13
            length = len(a) + len(b) + 3
            np.testing.assert_array_equal(fields["positions"][r], np.where(np.arange(16) < length, np.arange(16), 0))
            assert (fields["inputs"][r][length:] == PAD).all() and not fields["weights"][r].any()
            same_doc = a[0] // 1000 == b[0] // 1000
            if fields["next_sentence"][r] == IS_NEXT:
                # B is exactly the text that follows A, in the same document.
                assert same_doc and b[0] == a[-1] + 1 and (np.diff(np.concatenate([a, b])) == 1).all()
            else:
                assert fields["next_sentence"][r] == NOT_NEXT
                assert not same_doc and (b // 1000 == b[0] // 1000).all() and (np.diff(b) == 1).all()
            labels.append(int(fields["next_sentence"][r]))
    assert 0.35 < np.mean(labels) < 0.65  # a fair coin


def _boundary_features(lengths, seq_len, epochs=40):
    """Per label, how often B starts at a document's start, ends at its end, and fills the chunk's rest."""
    content, lengths = _documents(lengths)
    pairs = SentencePairs(content, lengths, seq_len=seq_len, cls_id=CLS, sep_id=SEP, pad_id=PAD)
    ends = {d: 1000 * (d + 1) + n - 1 for d, n in enumerate(lengths)}
    features = {IS_NEXT: [], NOT_NEXT: []}
    for epoch in range(epochs):
        fields = pairs.rows(np.arange(pairs.num_rows), seed=3, epoch=epoch)
        for r in range(pairs.num_rows):
            a, b = _split_row(fields, r)
            features[int(fields["next_sentence"][r])].append(
                (b[0] % 1000 == 0, b[-1] == ends[b[-1] // 1000 - 1], len(a) + len(b) == pairs._length_C[r])
            )
    return {label: np.mean(rows, axis=0) for label, rows in features.items()}


def test_only_the_text_tells_the_labels_apart():
    # Documents of many lengths, short ones among them: B's boundaries and length must not give the label
    # away (a B that ends where a document ends, or is shorter, must be as likely under both labels).
    lengths = np.random.default_rng(0).integers(2, 90, 60)
    features = _boundary_features(lengths, seq_len=40)
    np.testing.assert_allclose(features[NOT_NEXT], features[IS_NEXT], atol=0.03)
    assert features[IS_NEXT][0] == 0 and features[IS_NEXT][2] == 1  # never at a start; always the chunk's rest


def test_pairs_are_a_pure_function_of_seed_epoch_and_row():
    pairs = _pairs()
    one = pairs.rows(np.array([3, 1, 4]), seed=5, epoch=2)
    again = pairs.rows(np.array([4, 3]), seed=5, epoch=2)
    for key in FIELDS:
        np.testing.assert_array_equal(one[key][[2, 0]], again[key], err_msg=key)
    other_epoch = pairs.rows(np.array([3, 1, 4]), seed=5, epoch=3)
    assert any((one[k] != other_epoch[k]).any() for k in FIELDS)


def test_every_content_token_opens_some_row_each_epoch():
    # Every chunk is a row, and a row's A starts at its chunk's start: no text is skipped.
    pairs = _pairs()
    fields = pairs.rows(np.arange(pairs.num_rows), seed=0, epoch=0)
    firsts = sorted(int(_split_row(fields, r)[0][0]) for r in range(pairs.num_rows))
    chunk_starts = sorted([1000, 1010, 1020, 2000, 4000, 4011, 4022, 4033, 5000])  # near-equal chunks of <= 13
    assert firsts == chunk_starts
    assert pairs.num_tokens == 30 + 7 + 45 + 12  # every token of the pairable documents


@pytest.mark.parametrize(
    "lengths, seq_len, match",
    [
        ((50, 1), 16, "1 document"),
        ((5, 5), 4, "at least 5 tokens a row"),
    ],
)
def test_bad_pair_input_is_refused(lengths, seq_len, match):
    content, lengths = _documents(lengths)
    with pytest.raises(DataError, match=match):
        SentencePairs(content, lengths, seq_len=seq_len, cls_id=CLS, sep_id=SEP, pad_id=PAD)


def test_next_sentence_is_refused_for_causal_families():
    config = base_config()
    config.data.next_sentence = True
    with pytest.raises(ConfigError, match="data.next_sentence=True: next-sentence prediction is a bert objective"):
        validate(config)


def _config(**data):
    config = base_config()
    config.model.family = "bert"
    config.data.seq_len, config.data.batch_size = 32, 8
    config.data.tokenizer.vocab_size = 400
    config.data.next_sentence = True
    config.data.update(data)
    config.eval.max_batches = 3
    return config


@pytest.fixture(scope="module")
def data():
    return build_data(_config(), workdir=None)


def test_pipeline_serves_masked_sentence_pairs(data):
    batch = data.train.batch(0)
    assert set(batch) == set(FIELDS) and batch["next_sentence"].shape == (8,)
    assert (batch["targets"][:, 0] == data.tokenizer.bos_id).all()
    # Masking chose some tokens, never [CLS], [SEP] or padding.
    chosen = batch["weights"] > 0
    assert chosen.any()
    assert not np.isin(batch["targets"][chosen], sorted(data.tokenizer.special_ids)).any()
    assert "sentence-pair rows of 32" in data.summary and data.packing["efficiency"] > 0.5


def test_pair_batches_split_per_host_and_resume(data):
    train = data.train
    for step in (0, 3, train.num_rows // 8, train.num_rows // 8 + 1):  # the third straddles two epochs
        full = train.batch(step)
        parts = [train.host_batch(step, i, 4) for i in range(4)]
        for key in FIELDS:
            np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), full[key], err_msg=key)
    state = train.state(5)
    resumed = build_data(_config(), workdir=None).train
    start = resumed.restore(state)
    for key in FIELDS:
        np.testing.assert_array_equal(resumed.batch(start)[key], train.batch(5)[key], err_msg=key)


def test_turning_pairs_on_changes_the_data_fingerprint(data):
    plain = build_data(_config(next_sentence=False), workdir=None)
    assert "next_sentence" not in plain.train.batch(0)
    with pytest.raises(DataError, match="next_sentence None -> True"):
        data.train.restore(plain.train.state(3))


def test_validation_pairs_are_fixed(data):
    batches = data.val_batches
    assert len(batches) == 3
    again = build_data(_config(), workdir=None).val_batches
    for one, two in zip(batches, again):
        for key in FIELDS:
            np.testing.assert_array_equal(one[key], two[key], err_msg=key)
    assert all(b["next_sentence"].shape == (8,) for b in batches)
