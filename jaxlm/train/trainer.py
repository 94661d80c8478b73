"""A run's compiled machinery on a mesh: shardings, the initial state, the jitted train and eval steps.

Built from the config alone (no data, no files), so the loop, the tests and the ahead-of-time
compiler for TPU topologies all get the very same step.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import ml_collections
import optax
from flax import nnx
from jax.sharding import NamedSharding

from jaxlm.errors import ConfigError
from jaxlm.model.attention_kernels import choose_kernel
from jaxlm.model.config import ModelConfig
from jaxlm.model.transformer import Transformer
from jaxlm.parallel.rules import Rules, make_rules
from jaxlm.parallel.vocab_parallel import vocab_parallel_cross_entropy
from jaxlm.train import partition
from jaxlm.train.host_memory import release_free_heap
from jaxlm.train.loss import weighted_cross_entropy
from jaxlm.train.optimizer import make_optimizer
from jaxlm.train.step import TrainState, init_state, make_eval_step, make_train_step

BATCH_FIELDS = ("inputs", "targets", "weights", "positions", "segment_ids")  # each [B, L]
PAIR_FIELDS = ("token_types", "next_sentence")  # sentence-pair batches add [B, L] and [B] (the label)


def batch_field_shapes(model_cfg: ModelConfig, batch_size: int, seq_len: int) -> dict[str, tuple[int, ...]]:
    """The global shape of each field of the batches this model trains on."""
    fields = BATCH_FIELDS + (PAIR_FIELDS if model_cfg.next_sentence_head else ())
    return {k: (batch_size,) if k == "next_sentence" else (batch_size, seq_len) for k in fields}


@dataclasses.dataclass(frozen=True)
class Trainer:
    """Everything that depends on (config, model, mesh) but not on data or time."""

    model_cfg: ModelConfig
    mesh: jax.sharding.Mesh
    rules: Rules
    graphdef: nnx.GraphDef
    optimizer: optax.GradientTransformation
    abstract_params: dict  # ShapeDtypeStructs, no sharding
    abstract_state: TrainState
    params_sharding: dict
    state_sharding: TrainState
    batch_shardings: dict[str, NamedSharding]  # of every batch field: rows over the batch axes
    train_step: Callable  # jitted (state, batch) -> (state, metrics); donates the state
    eval_step: Callable  # jitted (params, batch) -> sums

    def init_state(self, seed: int) -> TrainState:
        """Fresh parameters and optimizer state, created where they live: no host holds them whole."""
        model_cfg, optimizer = self.model_cfg, self.optimizer

        def init() -> TrainState:
            params = nnx.to_pure_dict(nnx.split(Transformer(model_cfg, rngs=nnx.Rngs(seed)))[1])
            return init_state(params, optimizer)

        state = jax.block_until_ready(jax.jit(init, out_shardings=self.state_sharding)())
        release_free_heap()  # the initialiser's compile is done with; the step's reuses nothing of it
        return state

    def compile_train_step(self, state: TrainState, batch: dict[str, jax.Array]) -> Callable:
        """The train step compiled ahead of time for `state` and `batch`'s shapes and shardings."""
        compiled = self.train_step.lower(state, batch).compile()
        release_free_heap()
        return compiled

    def state_from_params(self, params: dict) -> TrainState:
        """A step-0 state around given parameters (fresh optimizer)."""
        return jax.jit(lambda p: init_state(p, self.optimizer), out_shardings=self.state_sharding)(params)

    def abstract_batch(self, batch_size: int, seq_len: int) -> dict[str, jax.ShapeDtypeStruct]:
        """ShapeDtypeStructs of a global batch, carrying its sharding (for lowering ahead of time)."""
        dtypes = {"weights": "float32"}
        return {
            k: jax.ShapeDtypeStruct(shape, dtypes.get(k, "int32"), sharding=self.batch_shardings[k])
            for k, shape in batch_field_shapes(self.model_cfg, batch_size, seq_len).items()
        }


def with_shardings(tree, shardings):
    """ShapeDtypeStructs of `tree` that carry `shardings` (what Orbax restores onto, what AOT lowers)."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


# The devices each fused attention kernel runs on (jax's platform names).
KERNEL_PLATFORMS = {"cudnn": "gpu", "splash": "tpu"}


def check_attention_platform(model_cfg: ModelConfig, mesh: jax.sharding.Mesh) -> None:
    """Raises ConfigError when `model.attention` names a kernel these devices cannot run."""
    needed = KERNEL_PLATFORMS.get(model_cfg.attention)
    platform = mesh.devices.flat[0].platform
    if needed and platform != needed and not model_cfg.interpret_kernels:
        raise ConfigError(
            f'config.model.attention="{model_cfg.attention}" runs on {needed.upper()} only, '
            f'and these devices are {platform}; use model.attention="xla"'
        )


def _traced_on(mesh: jax.sharding.Mesh, step: Callable) -> Callable:
    """`step`, traced with `mesh` as the context mesh: the model picks its formulations for the mesh's devices
    (jaxlm.model.platform), and splash attention's shard_map finds the mesh there."""

    @functools.wraps(step)
    def traced(*args):
        with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
            return step(*args)

    return traced


def make_trainer(config: ml_collections.ConfigDict, model_cfg: ModelConfig, mesh: jax.sharding.Mesh) -> Trainer:
    """The shardings and jitted steps of a run whose model is `model_cfg`, on `mesh`.

    `model.attention="auto"` becomes the fused kernel of the mesh's devices where it applies
    (attention_kernels.choose_kernel), and the fused kernels split their work over the mesh axes that the
    run's rules give the logical "batch" and "heads" axes, which are resolved here and handed to the model.
    """
    platform = mesh.devices.flat[0].platform
    kernel = choose_kernel(model_cfg.attention, platform, config.data.seq_len, model_cfg.dtype, model_cfg.head_dim)
    rules = make_rules(config.mesh.rules)
    model_cfg = dataclasses.replace(
        model_cfg, attention=kernel, kernel_batch_axes=rules.table["batch"], kernel_head_axes=rules.table["heads"]
    )
    check_attention_platform(model_cfg, mesh)
    partition.check_fits(mesh, rules, model_cfg, config.data.batch_size, config.train.grad_accum_steps)
    graphdef, abstract_model_state = nnx.split(nnx.eval_shape(lambda: Transformer(model_cfg, rngs=nnx.Rngs(0))))
    abstract_params = nnx.to_pure_dict(abstract_model_state)
    params_sharding = partition.param_shardings(partition.param_axes(model_cfg), abstract_params, mesh, rules)
    optimizer, schedule = make_optimizer(config.train, abstract_params, loss_scaling=model_cfg.dtype == "float16")
    abstract_state = jax.eval_shape(lambda p: init_state(p, optimizer), abstract_params)
    state_sharding = partition.state_shardings(abstract_state, params_sharding, mesh)
    rows = partition.batch_sharding(mesh, rules)
    batch_shardings = {
        k: partition.rows_sharding(rows, len(shape)) for k, shape in batch_field_shapes(model_cfg, 1, 1).items()
    }

    if config.train.cross_entropy == "vocab_parallel":
        loss_fn = vocab_parallel_cross_entropy(mesh, partition.logits_spec(mesh, rules, model_cfg.vocab_size))
    else:
        loss_fn = weighted_cross_entropy
    # The step's contract: state and batch arrive and leave with these shardings; the old state's
    # buffers are donated to the new one; metrics come back replicated.
    train_step_fn = make_train_step(
        graphdef,
        optimizer,
        schedule,
        grad_accum_steps=config.train.grad_accum_steps,
        dropout_seed=config.seed if model_cfg.dropout > 0 else None,
        loss_fn=loss_fn,
        skip_nonfinite=config.train.skip_nonfinite,
        z_loss=config.train.z_loss,
    )
    eval_step_fn = make_eval_step(graphdef, loss_fn)
    train_step_fn, eval_step_fn = _traced_on(mesh, train_step_fn), _traced_on(mesh, eval_step_fn)
    train_step = jax.jit(
        train_step_fn,
        in_shardings=(state_sharding, batch_shardings),
        out_shardings=(state_sharding, None),
        donate_argnums=0,
    )
    eval_step = jax.jit(eval_step_fn, in_shardings=(params_sharding, batch_shardings))
    return Trainer(
        model_cfg=model_cfg,
        mesh=mesh,
        rules=rules,
        graphdef=graphdef,
        optimizer=optimizer,
        abstract_params=abstract_params,
        abstract_state=abstract_state,
        params_sharding=params_sharding,
        state_sharding=state_sharding,
        batch_shardings=batch_shardings,
        train_step=train_step,
        eval_step=eval_step,
    )
