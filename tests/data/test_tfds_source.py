"""Tests for jaxlm/data/tfds_source.py on real TFDS datasets built offline from the shared text.

tfds' own `tiny_shakespeare` builder is prepared from ../shared/data/tinyshakespeare.txt through its
manual-download folder (the file it would download, same sha256), and a second, multi-example
dataset is written with `tfds.dataset_builders.store_as_tfds_dataset`. Both are then read by name
through the same pipeline as any other source, and one trains a small model.
"""

import math
from pathlib import Path

import numpy as np
import pytest

from jaxlm.config import base_config, data_arguments
from jaxlm.data import pipeline
from jaxlm.data.errors import DataError


def build_data(config, workdir=None):
    """The data pipeline as a run builds it from its whole config (caches in `workdir`)."""
    return pipeline.build_data(config.data, **data_arguments(config), cache_dir=workdir)


SHAKESPEARE = Path(__file__).parents[3] / "shared/data/tinyshakespeare.txt"
pytestmark = pytest.mark.skipif(not SHAKESPEARE.is_file(), reason=f"shared data file {SHAKESPEARE} is absent")


@pytest.fixture(scope="module")
def text():
    return SHAKESPEARE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, text):
    import tensorflow_datasets as tfds

    root = tmp_path_factory.mktemp("tfds")
    (root / "manual").mkdir()
    (root / "manual" / "input.txt").symlink_to(SHAKESPEARE)
    builder = tfds.builder("tiny_shakespeare", data_dir=str(root / "data"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(root / "manual")))
    speeches = text.split("\n\n")
    tfds.dataset_builders.store_as_tfds_dataset(
        name="shakespeare_speeches",
        version="1.0.0",
        data_dir=str(root / "data"),
        features=tfds.features.FeaturesDict({"speech": tfds.features.Text(), "index": tfds.features.Scalar(np.int64)}),
        split_datasets={
            "train": [(str(i), {"speech": s, "index": i}) for i, s in enumerate(speeches[:-500])],
            "test": [(str(i), {"speech": s, "index": i}) for i, s in enumerate(speeches[-500:])],
        },
    )
    return str(root / "data")


def _config(data_dir, **data):
    config = base_config()
    config.model.family = "gpt2"
    config.data.update(
        {
            "source": "tfds",
            "tfds_name": "tiny_shakespeare",
            "tfds_data_dir": data_dir,
            "seq_len": 64,
            "batch_size": 12,
            **data,
        }
    )
    config.data.tokenizer.kind = "char"
    config.eval.max_batches = 0
    return config


def test_tiny_shakespeare_by_name_with_its_validation_split(data_dir, text):
    data = build_data(_config(data_dir, tfds_val_split="validation"), workdir=None)
    tokenizer = data.tokenizer
    assert tokenizer.vocab_size == 65 + 5
    # The builder's 90/5/5 split: each split is one example, one document closed by eos.
    n_train = int(len(text) * 0.9)
    n_val = int((len(text) - n_train) * 0.5)
    tokens, _ = data.train.stream.tokens()
    assert tokenizer.decode(tokens) == text[:n_train] + "</s>"
    val = np.concatenate([b["inputs"][b["segment_ids"] > 0] for b in data.val_batches])
    expected = tokenizer.encode(text[n_train : n_train + n_val]) + [tokenizer.eos_id]
    np.testing.assert_array_equal(val, expected[: len(val)])
    assert len(expected) - len(val) <= 1  # at most the last token, a target only
    assert "1 document(s), 1,003,854 tokens from TFDS tiny_shakespeare/1.0.0 train" in data.summary


def test_held_out_fraction_and_cache(data_dir, text, tmp_path, caplog):
    config = _config(data_dir, val_fraction=0.1)
    data = build_data(config, workdir=str(tmp_path))
    assert data.train.num_tokens == int(1_003_854 * 0.9)
    assert data.tokenizer.decode(data.train.stream.tokens()[0]) == text[: data.train.num_tokens]
    with caplog.at_level("INFO"):
        again = build_data(config, workdir=str(tmp_path))
    assert "Reusing the tokenized corpus" in caplog.text and again.fingerprint == data.fingerprint
    np.testing.assert_array_equal(again.train.batch(9)["inputs"], data.train.batch(9)["inputs"])


def test_a_dataset_stored_with_tfds_other_feature_and_split(data_dir, text):
    config = _config(data_dir, tfds_name="shakespeare_speeches", text_field="speech", tfds_val_split="test")
    data = build_data(config, workdir=None)
    speeches = text.split("\n\n")
    assert f"{len(speeches) - 500:,} document(s)" in data.summary
    # Every training speech is one document (TFDS stores examples in its own order).
    tokens, doc_ids = data.train.stream.tokens()
    documents = np.split(tokens, np.flatnonzero(np.diff(doc_ids)) + 1)
    decoded = sorted(data.tokenizer.decode(d[:-1]) for d in documents)
    assert decoded == sorted(s for s in speeches[:-500] if s)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"tfds_name": "no_such_dataset_xyz"}, "config.data.tfds_name='no_such_dataset_xyz': no such TFDS dataset"),
        (
            {"tfds_split": "nonsense"},
            r"config.data.tfds_split='nonsense': tiny_shakespeare has splits train, validation",
        ),
        ({"tfds_val_split": "dev"}, r"config.data.tfds_val_split='dev': .*has splits"),
        (
            {"tfds_name": "shakespeare_speeches"},
            r"config.data.text_field='text': shakespeare_speeches has no such text "
            r"feature; its text features are 'speech'",
        ),
    ],
)
def test_bad_tfds_settings_name_the_field(data_dir, data, message):
    with pytest.raises(DataError, match=message):
        build_data(_config(data_dir, **data), workdir=None)


@pytest.mark.slow
def test_train_from_tfds(data_dir, tmp_path):
    from jaxlm.train.loop import run

    config = _config(data_dir, tfds_val_split="validation", seq_len=32, batch_size=8)
    config.model.update(num_layers=1, width=32, num_heads=2)
    config.train.update(steps=40, warmup_steps=5, learning_rate=1e-2)
    config.eval.update(every=0, max_batches=4)
    config.log.every = 20
    config.checkpoint.every = 0
    config.sample.num_tokens = 4
    result = run(config, str(tmp_path / "run"))
    # Forty steps take a char model well below a uniform guess over its 70 ids.
    assert result.val_loss is not None and result.val_loss < math.log(70) - 0.5
    assert (tmp_path / "run" / "metrics.jsonl").is_file()
