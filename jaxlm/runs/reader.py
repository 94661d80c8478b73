"""Reading a trained run back: its config, model, parameters and tokenizer, from a workdir or a checkpoint.

What export, generate and fine-tuning start from. The parameters come back as float32 on one CPU device
whatever mesh the checkpoint was saved on (or onto given shardings), and the tokenizer is the one the
checkpoint itself carries, so a checkpoints directory alone is enough.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import ml_collections
import numpy as np
from etils import epath

from jaxlm import config as config_lib
from jaxlm.data.tokenizer import Tokenizer
from jaxlm.data.tokenizer_cache import KINDS, load_tokenizer, tokenizer_from_bytes
from jaxlm.model.config import ModelConfig
from jaxlm.runs.checkpoint import Checkpointer, CheckpointError, Restored, reading_step
from jaxlm.runs.layout import TOKENIZER_DIR, find_checkpoints, is_remote
from jaxlm.runs.meta import CheckpointMeta


@dataclasses.dataclass(frozen=True)
class Run:
    """One checkpoint of a run, read back."""

    path: str  # the workdir (or checkpoints directory) it was read from
    step: int
    config: ml_collections.ConfigDict  # the run config, with today's defaults for fields it predates
    model_cfg: ModelConfig
    params: dict  # float32 numpy arrays on the host, or arrays placed on the given shardings
    tokenizer: Tokenizer | None  # None only for an import whose folder carried no jaxlm tokenizer
    meta: CheckpointMeta


PARAMS_KINDS = ("raw", "ema")  # the parameters as trained, or their average (train.ema_decay)


def open_run(path: str, step: int | None = None, shardings: dict | None = None, params: str = "raw") -> Run:
    """The checkpoint of `step` (None: the newest complete one) of the run at `path`, a workdir or its
    checkpoints directory, with its model config and tokenizer; raises CheckpointError naming what is
    missing or unreadable. `params="ema"` reads the run's average of the parameters instead of them."""
    restored = _restore(path, step, shardings, average=params == "ema")
    config = config_lib.config_from_json(restored.meta.config_json)
    params = restored.params
    vocab_size = int(np.shape(params["token_embed"]["embedding"])[0])
    return Run(
        path=path,
        step=restored.step,
        config=config,
        model_cfg=config_lib.model_config(config, vocab_size),
        params=params,
        tokenizer=run_tokenizer(restored.meta, path, config),
        meta=restored.meta,
    )


def restore_params(
    path: str, step: int | None = None, shardings: dict | None = None
) -> tuple[ml_collections.ConfigDict, dict, int]:
    """(the run's config, its params, the step) of a workdir or checkpoints directory, as `open_run` reads them."""
    restored = _restore(path, step, shardings)
    return config_lib.config_from_json(restored.meta.config_json), restored.params, restored.step


def _restore(path: str, step: int | None, shardings: dict | None, average: bool = False) -> Restored:
    """The parameters (or with `average`, their average) and metadata of a checkpoint; float32 numpy on the
    host unless `shardings` places them."""
    if not is_remote(path) and not os.path.isdir(path):
        raise CheckpointError(
            f"no checkpoints at {path}: no such directory; give the --workdir of a jaxlm run "
            "or its checkpoints directory"
        )
    directory = find_checkpoints(path)
    if not epath.Path(directory).exists():
        raise CheckpointError(f"no checkpoints at {path}: expected a run's workdir or its checkpoints directory")
    checkpointer = Checkpointer(directory, read_only=True)
    try:
        steps = checkpointer.complete_steps()
        if not steps:
            raise CheckpointError(f"{directory} holds no complete checkpoint")
        if step is None:
            step = steps[0]
        elif step not in steps:
            raise CheckpointError(
                f"{directory} has no complete checkpoint at step {step}; it has {', '.join(map(str, sorted(steps)))}"
            )
        with reading_step(directory, step, steps):
            shapes = checkpointer.saved_params_shapes(step)
            device = jax.local_devices()[0]
            placed = (
                shardings
                if shardings is not None
                else jax.tree.map(lambda _: jax.sharding.SingleDeviceSharding(device), shapes)
            )
            abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), shapes, placed)
            restored = checkpointer.restore(step, abstract)
            averaged = checkpointer.restore_average(step, abstract) if average else None
        if average and averaged is None:
            raise CheckpointError(
                f"{directory}/{step} keeps no average of the parameters (the run had train.ema_decay=0); "
                "use the parameters as trained (--params=raw), or train with --config.train.ema_decay=0.999"
            )
        if average:
            restored = dataclasses.replace(restored, params=averaged)
    finally:
        checkpointer.close()
    if shardings is None:
        restored = dataclasses.replace(restored, params=jax.tree.map(np.asarray, restored.params))
    return restored


def run_tokenizer(meta: CheckpointMeta, path: str, config: ml_collections.ConfigDict) -> Tokenizer | None:
    """The tokenizer a checkpoint was trained with: the copy it carries; for checkpoints without one, the
    workdir's tokenizer folder, else the configured file; None when there is none."""
    if meta.tokenizer is not None:
        return tokenizer_from_bytes(
            meta.tokenizer.file,
            meta.tokenizer.content,
            f"the tokenizer of the checkpoint of step {meta.step} in {path}",
        )
    for kind in KINDS.values():
        candidate = os.path.join(path, TOKENIZER_DIR, kind.FILENAME)
        if os.path.exists(candidate):
            return load_tokenizer(candidate)
    configured = os.path.expanduser(config.data.tokenizer.path)
    return load_tokenizer(configured) if configured and os.path.exists(configured) else None
