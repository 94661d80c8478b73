"""Where a run starts: its own newest good checkpoint, another run's weights, or fresh parameters.

Resuming restores the parameters, the optimizer state, the step counters and the data iterator's
position, so the run continues with bitwise the same losses as one that never stopped; it refuses a
checkpoint of another model or other data, naming the field. `checkpoint.restore_from` starts a new run
from another run's weights (and, unless `params_only`, its optimizer state and step).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import ml_collections
import numpy as np

from jaxlm import config as config_lib
from jaxlm.data.pipeline import Data
from jaxlm.model.classifier import classifier_params
from jaxlm.runs.checkpoint import Checkpointer, CheckpointError, reading_step
from jaxlm.runs.layout import find_checkpoints
from jaxlm.runs.meta import CheckpointMeta
from jaxlm.runs.reader import open_run
from jaxlm.train.progress import format_duration
from jaxlm.train.step import TrainState
from jaxlm.train.trainer import Trainer, with_shardings


@dataclasses.dataclass(frozen=True)
class Start:
    """The state a run starts from and what it carries over."""

    state: TrainState
    step: int  # steps already taken (0: a fresh run)
    train_seconds: float  # training time already spent on those steps
    checkpoint: int | None  # the step of the checkpoint restored from the run's own workdir
    wandb_run_id: str | None = None  # the W&B run that checkpoint logged to, continued by this one


def check_same_model(meta: CheckpointMeta, config: ml_collections.ConfigDict) -> None:
    """Raises CheckpointError when the checkpoint holds the parameters of a different model."""
    saved = config_lib.flatten(config_lib.config_from_json(meta.config_json))
    ours = config_lib.flatten(config)
    for field in config_lib.PARAMETER_FIELDS:
        if saved[field] != ours[field]:
            raise CheckpointError(
                f"the checkpoint at step {meta.step} was trained with {field}={saved[field]!r}, but this run asks "
                f"for {ours[field]!r}, a model with other parameters; run with {field}={saved[field]!r} to "
                "resume, or use a new --workdir"
            )


def check_same_optimizer(meta: CheckpointMeta, config: ml_collections.ConfigDict, how_else: str) -> None:
    """Raises CheckpointError when the checkpoint's optimizer state has another structure than this run's."""
    saved = config_lib.optimizer_state_kind(config_lib.config_from_json(meta.config_json))
    ours = config_lib.optimizer_state_kind(config)
    for field, kind in saved.items():
        if kind != ours[field]:
            raise CheckpointError(
                f"the checkpoint at step {meta.step} holds the optimizer state of {field}: {kind}, and this run "
                f"asks for {ours[field]}, which keeps another state; {how_else}"
            )


def start_state(
    config: ml_collections.ConfigDict,
    trainer: Trainer,
    checkpointer: Checkpointer,
    newest: CheckpointMeta | None,
    data: Data,
    say: Callable[[str], None],
) -> Start:
    """The newest checkpoint of `checkpointer` that restores, else `checkpoint.restore_from`'s weights,
    else fresh parameters from `config.seed`; `say` prints what was chosen.

    `newest` (the newest checkpoint's metadata) is checked against the config first, so that a run of
    another model is refused by name, never mistaken for a checkpoint that fails to read and set aside.
    """
    if newest is not None:
        check_same_model(newest, config)
        if not newest.params_only:
            check_same_optimizer(
                newest,
                config,
                "resume with the checkpoint's setting, or start a new --workdir from its weights with "
                f"--config.checkpoint.restore_from={checkpointer.directory}",
            )
    restored = checkpointer.restore_newest(
        with_shardings(trainer.abstract_params, trainer.params_sharding),
        with_shardings(trainer.abstract_state.opt_state, trainer.state_sharding.opt_state),
        report=say,
    )
    if restored is None:
        if config.checkpoint.restore_from:
            state = _restore_from(config, trainer, say)
        elif config.finetune.init_from:
            state = _init_from(config, trainer, say)
        else:
            state = trainer.init_state(config.seed)
        return Start(state=state, step=0, train_seconds=0.0, checkpoint=None)
    meta = restored.meta
    check_same_model(meta, config)
    if meta.data_state is not None:  # an import has none: its data starts at its step
        data.train.restore(meta.data_state)
    if restored.opt_state is None:  # a params-only checkpoint (an import): the optimizer starts afresh
        state = trainer.state_from_params(restored.params)
        state = state.replace(step=jax.device_put(np.int32(meta.step), trainer.state_sharding.step))
    else:
        state = jax.device_put(
            TrainState(
                step=np.int32(meta.step),
                params=restored.params,
                opt_state=restored.opt_state,
                first_bad_step=np.int32(0),
                skipped_steps=np.int32(meta.skipped_steps),
            ),
            trainer.state_sharding,
        )
    say(
        f"resume | step {restored.step} from {checkpointer.directory}/{restored.step} (saved {meta.saved_at}; "
        f"{format_duration(meta.train_seconds)} of training kept)"
    )
    if config.checkpoint.restore_from:
        say(
            f"note  | checkpoint.restore_from={config.checkpoint.restore_from!r} is not used: this workdir has "
            "checkpoints of its own, and the run continues them (give a new --workdir to start from those weights)"
        )
    return Start(
        state=state,
        step=restored.step,
        train_seconds=meta.train_seconds,
        checkpoint=restored.step,
        wandb_run_id=meta.wandb_run_id,
    )


def _init_from(config: ml_collections.ConfigDict, trainer: Trainer, say: Callable[[str], None]) -> TrainState:
    """A classifier's first state: the pretrained run's encoder weights, BERT's pooler from its next-sentence
    head when it has one, the rest of the head drawn from config.seed; a fresh optimizer."""
    source = config.finetune.init_from
    run = open_run(source)
    _, params = classifier_params(run.model_cfg, run.params, trainer.model_cfg.num_labels, seed=config.seed)
    wanted = jax.tree.map(lambda x: x.shape, trainer.abstract_params)
    if jax.tree.map(lambda x: np.shape(x), params) != wanted:
        raise CheckpointError(
            f"finetune.init_from={source!r}: its parameters do not make this run's classifier; the model fields "
            "must be the pretrained run's"
        )
    say(f"start | encoder from {source} step {run.step}; classifier head ({trainer.model_cfg.num_labels} labels) fresh")
    return trainer.state_from_params(jax.device_put(params, trainer.params_sharding))


def _restore_from(config: ml_collections.ConfigDict, trainer: Trainer, say: Callable[[str], None]) -> TrainState:
    """A fresh run whose parameters (and, unless params_only, optimizer and step) come from another run."""
    source = config.checkpoint.restore_from
    other = Checkpointer(find_checkpoints(source), read_only=True)
    try:
        steps = other.complete_steps()
        if not steps:
            raise CheckpointError(f"checkpoint.restore_from={source!r}: no complete checkpoint there")
        with reading_step(other.directory, steps[0], steps, restore_from=True):
            saved = dict(jax.tree_util.tree_leaves_with_path(other.saved_params_shapes(steps[0])))
        for path, wanted in jax.tree_util.tree_leaves_with_path(trainer.abstract_params):
            if path not in saved or saved[path].shape != wanted.shape:
                found = saved[path].shape if path in saved else "nothing"
                raise CheckpointError(
                    f"checkpoint.restore_from={source!r}: parameter "
                    f"{jax.tree_util.keystr(path)} is {found} there but {wanted.shape} "
                    "in this run's model; the model fields must match"
                )
        with_optimizer = not config.checkpoint.params_only
        if with_optimizer and not other.has_optimizer_state(steps[0]):
            raise CheckpointError(
                f"checkpoint.restore_from={source!r}: step {steps[0]} holds parameters only "
                "(an imported model), no optimizer state; leave checkpoint.params_only=True"
            )
        if with_optimizer:
            check_same_optimizer(
                other.meta(steps[0]), config, "leave checkpoint.params_only=True to take its weights alone"
            )
        with reading_step(other.directory, steps[0], steps, restore_from=True):
            restored = other.restore(
                steps[0],
                with_shardings(trainer.abstract_params, trainer.params_sharding),
                with_shardings(trainer.abstract_state.opt_state, trainer.state_sharding.opt_state)
                if with_optimizer
                else None,
            )
    finally:
        other.close()
    say(
        f"start | weights from {other.directory} step {restored.step}"
        + (" (optimizer state and step too)" if with_optimizer else "")
    )
    state = trainer.state_from_params(restored.params)
    if not with_optimizer:
        return state
    return state.replace(
        opt_state=restored.opt_state, step=jax.device_put(np.int32(restored.step), trainer.state_sharding.step)
    )
