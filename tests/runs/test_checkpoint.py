"""The Checkpointer alone: a failed save is one clear error and leaves the older checkpoint intact."""

import errno
import os
import shutil

import jax.numpy as jnp
import numpy as np
import pytest

from jaxlm.runs.checkpoint import Checkpointer, CheckpointError
from jaxlm.runs.meta import CheckpointMeta
from jaxlm.runs.reader import restore_params

CONFIG = {"keep": 3, "keep_every": 0, "async_save": True}


def _meta(step):
    return CheckpointMeta(step=step, config_json="{}", saved_at="")


def test_a_failed_save_names_the_step_and_keeps_older_checkpoints(tmp_path, monkeypatch):
    checkpointer = Checkpointer(str(tmp_path / "checkpoints"), **CONFIG)
    params = {"w": jnp.arange(6.0).reshape(2, 3)}
    checkpointer.save(1, params, {"count": jnp.zeros((), jnp.int32)}, _meta(1))
    checkpointer.wait()

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpointer._manager, "save", disk_full)
    with pytest.raises(CheckpointError) as error:
        checkpointer.save(2, {"w": params["w"] + 1}, {"count": jnp.ones((), jnp.int32)}, _meta(2))
    message = str(error.value)
    assert "saving the checkpoint of step 2" in message and "No space left on device" in message
    assert "older checkpoints are intact (newest: step 1)" in message
    checkpointer.close()

    _, restored, step = restore_params(str(tmp_path))
    assert step == 1
    np.testing.assert_array_equal(restored["w"], np.arange(6.0).reshape(2, 3))


def test_restore_params_names_what_is_missing(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoints at"):
        restore_params(str(tmp_path / "nowhere"))
    checkpointer = Checkpointer(str(tmp_path / "checkpoints"), **CONFIG)
    checkpointer.save(3, {"w": jnp.ones(2)}, {"c": jnp.zeros(())}, _meta(3))
    checkpointer.close()
    with pytest.raises(CheckpointError, match="no complete checkpoint at step 5; it has 3"):
        restore_params(str(tmp_path), step=5)


def test_restore_params_of_an_unreadable_checkpoint_names_it_and_the_older_ones(tmp_path):
    checkpointer = Checkpointer(str(tmp_path / "checkpoints"), **CONFIG)
    for step in (1, 2):
        checkpointer.save(step, {"w": jnp.full(2, float(step))}, {"c": jnp.zeros(())}, _meta(step))
        checkpointer.wait()
    checkpointer.close()
    shutil.rmtree(tmp_path / "checkpoints" / "2" / "params")  # committed, but its arrays are gone
    with pytest.raises(
        CheckpointError,
        match=r"checkpoint 2 in .* cannot be read \(KeyError: .*\); "
        r"choose an older complete step \(1; --step=N in python -m jaxlm.export",
    ):
        restore_params(str(tmp_path))
    _, restored, step = restore_params(str(tmp_path), step=1)
    assert step == 1 and restored["w"].tolist() == [1.0, 1.0]

    shutil.rmtree(tmp_path / "checkpoints" / "2")
    for name in os.listdir(tmp_path / "checkpoints" / "1" / "params"):
        path = tmp_path / "checkpoints" / "1" / "params" / name
        if path.is_file():
            path.write_bytes(b"garbage!")
    with pytest.raises(
        CheckpointError,
        match="checkpoint 1 in .* cannot be read .*; there is no older complete checkpoint to use instead",
    ):
        restore_params(str(tmp_path))
