"""Tests for jaxlm/data/pipeline.py: the batch contract, determinism, epochs, splits and errors."""

import glob
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from jaxlm.config import base_config, data_arguments
from jaxlm.data import pipeline
from jaxlm.data.char_tokenizer import CharTokenizer
from jaxlm.data.errors import DataError


def build_data(config, workdir=None):
    """The data pipeline as a run builds it from its whole config (caches in `workdir`)."""
    return pipeline.build_data(config.data, **data_arguments(config), cache_dir=workdir)


SHAKESPEARE = Path(__file__).parents[3] / "shared/data/tinyshakespeare.txt"
FIELDS = {
    "inputs": np.int32,
    "targets": np.int32,
    "weights": np.float32,
    "positions": np.int32,
    "segment_ids": np.int32,
}


def _config(family="llama", **data):
    config = base_config()
    config.model.family = family
    config.data.seq_len, config.data.batch_size = 64, 8
    config.data.tokenizer.vocab_size = 512
    config.eval.max_batches = 0
    for key, value in data.items():
        node, *path, last = ["data", *key.split("__")]
        target = config[node]
        for part in path:
            target = target[part]
        target[last] = value
    return config


@pytest.fixture(scope="module")
def causal():
    return build_data(_config(), workdir=None)


@pytest.fixture(scope="module")
def mlm():
    return build_data(_config("bert"), workdir=None)


def _assert_contract(batch, batch_size, seq_len):
    assert set(batch) == set(FIELDS)
    for key, dtype in FIELDS.items():
        assert batch[key].shape == (batch_size, seq_len) and batch[key].dtype == dtype, key


def test_causal_batches_follow_the_contract(causal):
    for step in (0, 1, 500):
        batch = causal.train.batch(step)
        _assert_contract(batch, 8, 64)
        np.testing.assert_array_equal(batch["targets"][:, :-1], batch["inputs"][:, 1:])
        real = batch["segment_ids"] > 0
        assert (batch["weights"][~real] == 0).all()
        assert batch["weights"].mean() > 0.9
    assert causal.train.num_rows == -(-(causal.train.num_tokens - 1) // 64)
    assert "79 document(s)" in causal.summary and "sentencepiece" in causal.summary


def test_batches_are_a_pure_function_of_seed_and_step(causal):
    late, early = causal.train.batch(2000), causal.train.batch(3)
    fresh = build_data(_config(), workdir=None)
    for key in FIELDS:
        np.testing.assert_array_equal(fresh.train.batch(3)[key], early[key])
        np.testing.assert_array_equal(fresh.train.batch(2000)[key], late[key])
    assert not np.array_equal(causal.train.batch(4)["inputs"], early["inputs"])
    reseeded = _config()
    reseeded.seed = 1
    assert not np.array_equal(build_data(reseeded, workdir=None).train.batch(3)["inputs"], early["inputs"])


def test_each_epoch_visits_every_row_once(causal):
    train = causal.train
    steps = -(-2 * train.num_rows // 8) + 1
    batches = [train.batch(step) for step in range(steps)]
    rows = {key: np.concatenate([b[key] for b in batches]) for key in FIELDS}
    stream_counts = np.bincount(train.stream.tokens()[0], minlength=512)
    for epoch in (0, 1):
        epoch_rows = slice(epoch * train.num_rows, (epoch + 1) * train.num_rows)
        inputs, real = rows["inputs"][epoch_rows], rows["segment_ids"][epoch_rows] > 0
        # Each epoch's real inputs are the whole stream but at most its final token (only a target).
        missing = stream_counts - np.bincount(inputs[real], minlength=512)
        assert missing.min() >= 0 and missing.sum() <= 1
    # Different epochs rotate the stream differently: their first rows differ.
    assert not np.array_equal(rows["inputs"][0], rows["inputs"][train.num_rows])


def test_mlm_batches_are_masked(mlm):
    tokenizer = mlm.tokenizer
    batch = mlm.train.batch(7)
    _assert_contract(batch, 8, 64)
    chosen = batch["weights"] == 1
    assert 0.1 < chosen.mean() < 0.2
    assert not np.isin(batch["targets"][chosen], list(tokenizer.special_ids)).any()
    assert (batch["inputs"] == tokenizer.mask_id).sum() > 0.6 * chosen.sum()
    np.testing.assert_array_equal(batch["inputs"][~chosen], batch["targets"][~chosen])
    # Documents open with bos ([CLS]) at position 0 of a segment.
    assert (batch["positions"][batch["targets"] == tokenizer.bos_id] == 0).all()
    again = build_data(_config("bert"), workdir=None).train.batch(7)
    np.testing.assert_array_equal(again["inputs"], batch["inputs"])


@pytest.mark.parametrize("family", ["llama", "bert"])
def test_validation_batches_are_fixed_and_padded(family, causal, mlm):
    data = causal if family == "llama" else mlm
    val = data.val_batches
    assert len(val) >= 2
    for batch in val:
        _assert_contract(batch, 8, 64)
    again = build_data(_config(family), workdir=None).val_batches
    for a, b in zip(val, again):
        for key in FIELDS:
            np.testing.assert_array_equal(a[key], b[key])
    empty_rows = (val[-1]["segment_ids"] == 0).all(axis=1)
    assert (val[-1]["weights"][empty_rows] == 0).all()
    assert all(val[-1][key][empty_rows].sum() == 0 for key in FIELDS)
    capped_config = _config(family)
    capped_config.eval.max_batches = 1
    assert len(build_data(capped_config, workdir=None).val_batches) == 1
    assert build_data(_config(family, val_fraction=0.0), workdir=None).val_batches == []


@pytest.mark.skipif(not SHAKESPEARE.is_file(), reason=f"shared data file {SHAKESPEARE} is absent")
def test_nanogpt_split_on_tiny_shakespeare():
    text = SHAKESPEARE.read_text(encoding="utf-8")
    config = _config("gpt2", source="text", path=str(SHAKESPEARE), val_fraction=0.1, tokenizer__kind="char")
    data = build_data(config, workdir=None)
    tokenizer = data.tokenizer
    assert isinstance(tokenizer, CharTokenizer) and tokenizer.vocab_size == 65 + 5
    n_train = int(len(text) * 0.9)
    # The train split is exactly nanoGPT's first 90% of characters; the document goes on into
    # validation, so no eos closes it. Validation ends with the document's eos.
    assert data.train.num_tokens == n_train == 1_003_854
    assert tokenizer.decode(data.train.stream.tokens()[0]) == text[:n_train]
    val_inputs = np.concatenate([b["inputs"][b["segment_ids"] > 0] for b in data.val_batches])
    expected_val = tokenizer.encode(text[n_train:]) + [tokenizer.eos_id]
    np.testing.assert_array_equal(val_inputs, expected_val[: len(val_inputs)])
    assert len(expected_val) - len(val_inputs) <= 1


def test_too_little_text_raises(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text("just a few characters of text\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"config.data.batch_size=8.*\d+ tokens.*lower data.batch_size"):
        build_data(_config(source="text", path=str(path), tokenizer__kind="char", val_fraction=0.0))
    path.write_text("x" * 5000, encoding="utf-8")
    # So small a fraction holds out no token at all (1 - 1e-17 == 1.0 in floating point).
    with pytest.raises(DataError, match="config.data.val_fraction=1e-17: holds out 0 token"):
        build_data(_config(source="text", path=str(path), tokenizer__kind="char", val_fraction=1e-17))
    data = build_data(_config(source="text", path=str(path), tokenizer__kind="char", val_fraction=0.1))
    assert data.train.num_tokens == 4500 and len(data.val_batches) == 1


def test_workdir_caches_the_tokenizer(tmp_path):
    first = build_data(_config(), workdir=str(tmp_path))
    assert (tmp_path / "tokenizer" / "tokenizer.model").is_file()
    second = build_data(_config(), workdir=str(tmp_path))
    np.testing.assert_array_equal(first.train.batch(1)["inputs"], second.train.batch(1)["inputs"])


def test_data_room_does_not_import_jax():
    code = "import sys, jaxlm.data; assert not any(m.split('.')[0] in ('jax', 'flax') for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


def test_workdir_caches_the_tokenized_corpus(tmp_path, caplog):
    first = build_data(_config(), workdir=str(tmp_path))
    assert len(list((tmp_path / "data_cache").iterdir())) == 1
    with caplog.at_level(logging.INFO):
        second = build_data(_config(), workdir=str(tmp_path))
    assert "Reusing the tokenized corpus" in caplog.text
    assert first.fingerprint == second.fingerprint == build_data(_config(), workdir=None).fingerprint
    for step in (0, 77):
        for key in FIELDS:
            np.testing.assert_array_equal(first.train.batch(step)[key], second.train.batch(step)[key])


def test_lines_with_separate_validation_files(tmp_path):
    train_lines = [f"line {i}: " + "word " * (i % 7) for i in range(400)]
    (tmp_path / "train.txt").write_text("\n".join(train_lines) + "\n", encoding="utf-8")
    (tmp_path / "val.txt").write_text("word one\n\nlion wine\n" * 20, encoding="utf-8")
    config = _config(
        source="text",
        path=str(tmp_path / "train.txt"),
        document="line",
        val_path=str(tmp_path / "val.txt"),
        tokenizer__kind="char",
    )
    data = build_data(config, workdir=None)
    assert "400 document(s)" in data.summary
    # With validation files, nothing is held out of the training text: every line is a document.
    tokens, _ = data.train.stream.tokens()
    assert data.tokenizer.decode(tokens) == "</s>".join(train_lines) + "</s>"
    val_text = data.tokenizer.decode(np.concatenate([b["inputs"][b["segment_ids"] > 0] for b in data.val_batches]))
    assert val_text.startswith("word one</s>lion wine</s>word one</s>")
    assert (
        data.fingerprint
        == build_data(
            _config(**{**config.data.to_dict(), "val_path": str(tmp_path / "train.txt")}), workdir=None
        ).fingerprint
    )  # the validation text does not decide training


def test_jsonl_with_undecodable_bytes_and_max_documents(tmp_path, caplog):
    records = [json.dumps({"text": f"document number {i} " * 5, "id": i}) for i in range(300)]
    (tmp_path / "a.jsonl").write_bytes("\n".join(records).encode() + b'\n{"text": "bad \xff byte"}\n')
    with caplog.at_level(logging.WARNING):
        data = build_data(_config(source="jsonl", path=str(tmp_path / "a.jsonl"), tokenizer__kind="char"))
    assert "301 document(s)" in data.summary and "1 undecodable byte sequence(s) replaced" in data.summary
    # One stray byte in 30 KB is a count in the summary, not a warning of its own.
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]
    bounded = build_data(
        _config(source="jsonl", path=str(tmp_path / "a.jsonl"), tokenizer__kind="char", max_documents=250)
    )
    assert "250 document(s)" in bounded.summary and "replaced with U+FFFD" not in bounded.summary


def test_a_binary_file_as_corpus_is_warned_about_on_a_line_of_its_own(tmp_path, caplog):
    """A shared library read as text: its undecodable bytes are named once, apart from the summary line."""
    dynload = sysconfig.get_config_var("DESTSHARED") or ""
    libraries = sorted(glob.glob(os.path.join(dynload, "*.so")), key=os.path.getsize)
    if not libraries:
        pytest.skip(f"no shared library in {dynload!r} to read as a corpus")
    corpus = tmp_path / "corpus.txt"
    shutil.copyfile(libraries[0], corpus)  # the smallest, some 25 KB
    with caplog.at_level(logging.INFO):
        data = build_data(_config(source="text", path=str(corpus), tokenizer__kind="char", seq_len=32, batch_size=2))
    # Read twice (tokenizer, then tokens), warned once, on a line that says what the file looks like.
    [warning] = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    share = re.fullmatch(
        rf"{re.escape(str(corpus))}: at least [\d,]+ of its [\d,]+ bytes \(([\d.]+)%\) are not UTF-8 and were "
        rf"replaced with U\+FFFD: it looks like a binary file, not text; check config\.data\.path='.*'",
        warning,
    )
    assert share and float(share[1]) > 1, warning
    assert "undecodable byte sequence(s) replaced with U+FFFD" in data.summary  # the summary still counts them


def test_empty_corpus_names_the_path(tmp_path):
    (tmp_path / "empty1.txt").write_text("", encoding="utf-8")
    (tmp_path / "empty2.txt").write_text("", encoding="utf-8")
    pattern = str(tmp_path / "empty*.txt")
    for kind in ("char", "sentencepiece"):  # not sentencepiece's own complaint about an empty sample
        with pytest.raises(DataError, match=r"config.data.path=.*empty\*.txt.*holds no text"):
            build_data(_config(source="text", path=pattern, tokenizer__kind=kind))


def test_long_documents_are_split_and_counted(tmp_path):
    (tmp_path / "a.txt").write_text("short\n" + "long " * 200 + "\n" + "tiny\n", encoding="utf-8")
    data = build_data(
        _config(
            source="text",
            path=str(tmp_path / "a.txt"),
            document="line",
            tokenizer__kind="char",
            val_fraction=0.0,
            batch_size=2,
        )
    )
    assert data.packing["long_documents"] == 1 and data.packing["documents"] == 3
    assert "1 document(s) longer than a row continue in the next" in data.summary
    # Every token is in some row: the stream of 6 + 1001 + 5 tokens needs ceil((1012 - 1) / 64) rows.
    assert data.packing["tokens"] == 1012 and data.packing["rows"] == 16
    assert data.packing["efficiency"] == pytest.approx(1012 / (16 * 64))
