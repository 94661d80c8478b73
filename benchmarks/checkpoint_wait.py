"""How long the step loop waits for a checkpoint save, and how big a checkpoint is on disk.

    JAX_PLATFORMS=cpu python benchmarks/checkpoint_wait.py [--config=configs/gpt2_small.py] [--saves=3]

Builds the recipe's full train state (float32 parameters and AdamW moments) on one device, saves
it the way the loop does (Orbax, async), and reports per save: the time the loop is blocked (the
device-to-host copy before `save` returns), the background write time, and the bytes on disk.
It then times one train step at batch 1 to put the wait beside the time between two saves.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from jaxlm.config import model_config
from jaxlm.parallel.mesh import make_mesh
from jaxlm.runs.checkpoint import Checkpointer
from jaxlm.runs.meta import CheckpointMeta
from jaxlm.train.trainer import make_trainer

config_flags.DEFINE_config_file("config", "configs/gpt2_small.py", "Recipe whose state to save.")
flags.DEFINE_integer("saves", 3, "Saves to time.")
flags.DEFINE_bool("time_step", True, "Also time one train step at batch 1 (slow for big models).")


def _disk_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)


def main(_) -> None:
    config = flags.FLAGS.config
    config.mesh.update(preset="dp", data=1, fsdp=1, tensor=1)
    config.data.batch_size, config.train.grad_accum_steps = 1, 1
    vocab = config.model.vocab_size if config.model.vocab_size > 0 else config.data.tokenizer.vocab_size
    trainer = make_trainer(config, model_config(config, vocab), make_mesh(config.mesh, jax.devices()[:1]))
    state = trainer.init_state(0)
    params = sum(x.size for x in jax.tree.leaves(state.params))
    print(
        f"state: {params / 1e6:.1f}M parameters, "
        f"{sum(x.nbytes for x in jax.tree.leaves((state.params, state.opt_state))) / 2**30:.2f} GiB"
    )

    directory = tempfile.mkdtemp(prefix="jaxlm-ckpt-bench-")
    try:
        checkpointer = Checkpointer(
            os.path.join(directory, "checkpoints"), keep=config.checkpoint.keep, async_save=config.checkpoint.async_save
        )
        waits, writes = [], []
        for step in range(1, flags.FLAGS.saves + 1):
            start = time.perf_counter()
            checkpointer.save(
                step,
                state.params,
                state.opt_state,
                CheckpointMeta(step=step, config_json=config.to_json_best_effort(), saved_at=""),
            )
            waits.append(time.perf_counter() - start)
            checkpointer.wait()
            writes.append(time.perf_counter() - start)
        size = _disk_bytes(os.path.join(directory, "checkpoints", str(flags.FLAGS.saves)))
        checkpointer.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(f"loop blocked per save: median {np.median(waits):.2f} s (all: {', '.join(f'{w:.2f}' for w in waits)})")
    print(f"save finished on disk after: median {np.median(writes):.2f} s")
    print(f"on disk per checkpoint: {size / 2**30:.2f} GiB")

    if flags.FLAGS.time_step:
        batch = {
            k: jax.device_put(np.zeros(s.shape, s.dtype), trainer.batch_shardings[k])
            for k, s in trainer.abstract_batch(1, config.data.seq_len).items()
        }
        batch["segment_ids"] = batch["segment_ids"] + 1
        step_fn = trainer.compile_train_step(state, batch)
        state, metrics = step_fn(state, batch)
        jax.block_until_ready(metrics)
        start = time.perf_counter()
        state, metrics = step_fn(state, batch)
        jax.block_until_ready(metrics)
        seconds = time.perf_counter() - start
        interval = config.checkpoint.every * seconds
        print(
            f"one step at batch 1: {seconds:.2f} s; checkpoint.every={config.checkpoint.every} steps "
            f"-> {interval:.0f} s between saves; blocked {100 * np.median(waits) / interval:.3f}% of it "
            "(the recipe's real batch makes steps longer, so the share is smaller still)"
        )


if __name__ == "__main__":
    app.run(main)
