"""Reading a run back: config, model, parameters and tokenizer from a workdir, or from its checkpoints alone."""

import os
import shutil

import numpy as np
import pytest

from jaxlm.config import base_config
from jaxlm.runs.checkpoint import CheckpointError
from jaxlm.runs.reader import open_run
from jaxlm.train.loop import run

pytestmark = pytest.mark.slow  # trains a run first


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny causal run with a trained sentencepiece tokenizer, 6 steps, a checkpoint at 3 and 6."""
    config = base_config()
    config.model.update(num_layers=1, width=32, num_heads=2)
    config.data.update(seq_len=32, batch_size=8)  # the tests' 8 devices split the batch
    config.data.tokenizer.vocab_size = 400
    config.train.update(steps=6, warmup_steps=1)
    config.checkpoint.every, config.eval.max_batches, config.sample.num_tokens = 3, 1, 4
    workdir = str(tmp_path_factory.mktemp("run"))
    run(config, workdir)
    return config, workdir


def test_open_run_gives_what_the_run_trained(trained):
    config, workdir = trained
    opened = open_run(workdir)
    assert opened.step == 6 and opened.model_cfg.vocab_size == 400 and opened.config.model.family == "llama"
    assert opened.config.model.width == 32 and not opened.meta.params_only
    with open(os.path.join(workdir, "tokenizer", "tokenizer.model"), "rb") as f:
        assert opened.tokenizer.serialized() == f.read()
    assert open_run(workdir, step=3).step == 3
    with pytest.raises(CheckpointError, match="no complete checkpoint at step 4; it has 3, 6"):
        open_run(workdir, step=4)


def test_the_checkpoints_directory_alone_is_enough(trained, tmp_path):
    """No tokenizer folder, no config.json: the checkpoint carries its tokenizer and config."""
    _, workdir = trained
    alone = tmp_path / "checkpoints"
    shutil.copytree(os.path.join(workdir, "checkpoints"), alone)
    opened, original = open_run(str(alone)), open_run(workdir)
    assert opened.tokenizer.serialized() == original.tokenizer.serialized()
    assert opened.tokenizer.encode("The quick fox\n") == original.tokenizer.encode("The quick fox\n")
    for a, b in zip(np.asarray(opened.params["lm_head"]["kernel"]), np.asarray(original.params["lm_head"]["kernel"])):
        np.testing.assert_array_equal(a, b)


def test_what_is_not_a_run_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="no such directory"):
        open_run(str(tmp_path / "missing"))
    with pytest.raises(CheckpointError, match="holds no complete checkpoint"):
        open_run(str(tmp_path))
