"""Where each piece of the train state and each batch lives on the mesh.

Parameter shardings come from the logical axes the model puts on every parameter and the rules
table; the optimizer's moments follow their parameters; scalars are replicated. Batches are split
over the batch axes, and each host builds and hands over only the rows its devices hold.
"""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from jaxlm.errors import ConfigError
from jaxlm.model.config import ModelConfig
from jaxlm.model.transformer import Transformer
from jaxlm.parallel.rules import Rules
from jaxlm.train.step import TrainState


def param_axes(model_cfg: ModelConfig) -> dict:
    """The logical axis names of every parameter, as a pure dict shaped like the params."""
    abstract = nnx.eval_shape(lambda: Transformer(model_cfg, rngs=nnx.Rngs(0)))
    _, state = nnx.split(abstract)
    return nnx.to_pure_dict(
        jax.tree.map(lambda v: v.replace(v.axes), state, is_leaf=lambda x: isinstance(x, nnx.Variable))
    )


def param_shardings(axes: dict, abstract_params: dict, mesh: jax.sharding.Mesh, rules: Rules) -> dict:
    """A NamedSharding per parameter, from its logical axes."""
    return jax.tree.map(
        lambda names, x: NamedSharding(mesh, rules.spec(names, x.shape, mesh)),
        axes,
        abstract_params,
        is_leaf=lambda x: isinstance(x, tuple),
    )


def state_shardings(abstract_state: TrainState, params_sharding: dict, mesh: jax.sharding.Mesh) -> TrainState:
    """Shardings of the whole TrainState: every optimizer-state array kept for a parameter (moments, an
    average, a factored second moment) split like that parameter, counters and scalars replicated."""
    replicated = NamedSharding(mesh, PartitionSpec())
    by_path = {_dict_keys(path): s for path, s in jax.tree_util.tree_leaves_with_path(params_sharding)}
    opt_sharding = jax.tree_util.tree_map_with_path(
        lambda path, x: _like_its_parameter(path, x, by_path, abstract_state.params) or replicated,
        abstract_state.opt_state,
    )
    return jax.tree.map(lambda _: replicated, abstract_state).replace(params=params_sharding, opt_state=opt_sharding)


def _dict_keys(path) -> tuple:
    return tuple(key.key for key in path if isinstance(key, jax.tree_util.DictKey))


def _like_its_parameter(path, x, by_path: dict, abstract_params: dict) -> NamedSharding | None:
    """The sharding of an optimizer-state array from the parameter it belongs to: the parameter's path ends its
    own (optax keeps param-shaped trees). Same shape: the parameter's sharding. One axis fewer (Adafactor's
    row and column statistics): the parameter's spec without that axis. Anything else: None."""
    keys = _dict_keys(path)
    for start in range(len(keys)):
        param_sharding = by_path.get(keys[start:])
        if param_sharding is None:
            continue
        shape = _leaf(abstract_params, keys[start:]).shape
        spec = tuple(param_sharding.spec) + (None,) * (len(shape) - len(param_sharding.spec))
        if tuple(x.shape) == tuple(shape):
            return param_sharding
        for axis in range(len(shape)):
            if x.shape == shape[:axis] + shape[axis + 1 :]:
                return NamedSharding(param_sharding.mesh, PartitionSpec(*spec[:axis], *spec[axis + 1 :]))
        return None
    return None


def _leaf(tree: dict, keys: tuple):
    for key in keys:
        tree = tree[key]
    return tree


def batch_sharding(mesh: jax.sharding.Mesh, rules: Rules) -> NamedSharding:
    """How a [B, L] batch array is split: rows over the batch axes, every row whole."""
    return NamedSharding(mesh, rules.spec(("batch", "length")))


def rows_sharding(sharding: NamedSharding, ndim: int) -> NamedSharding:
    """`sharding` of a [B, L] batch array, for a batch field of rank `ndim` ([B] labels: rows only)."""
    if ndim == len(sharding.spec):
        return sharding
    return NamedSharding(sharding.mesh, PartitionSpec(*sharding.spec[:ndim]))


def logits_spec(mesh: jax.sharding.Mesh, rules: Rules, vocab_size: int) -> PartitionSpec:
    """The PartitionSpec of [B, L, V] logits under the rules."""
    return rules.spec(("batch", "length", "vocab"), (0, 0, vocab_size), mesh)


def check_fits(
    mesh: jax.sharding.Mesh, rules: Rules, model_cfg: ModelConfig, batch_size: int, grad_accum_steps: int
) -> None:
    """Raises ConfigError when the mesh cannot split the batch, the heads or the FFN as asked."""
    shape = dict(mesh.shape)
    batch_ways = int(np.prod([shape[a] for a in rules.table["batch"]]))
    micro = batch_size // grad_accum_steps
    if micro % batch_ways:
        raise ConfigError(
            f"config.data.batch_size={batch_size}: with train.grad_accum_steps={grad_accum_steps} each "
            f"micro-batch has {micro} rows, which the {batch_ways} batch-parallel devices "
            f"({' x '.join(f'mesh.{a}={shape[a]}' for a in rules.table['batch'])}) cannot split evenly"
        )
    for name, size, field in (
        ("heads", model_cfg.num_heads, "model.num_heads"),
        ("mlp", model_cfg.mlp_dim, "model.mlp_dim"),
    ):
        ways = int(np.prod([shape[a] for a in rules.table[name]]))
        if size % ways:
            axes = " x ".join(f"mesh.{a}={shape[a]}" for a in rules.table[name])
            raise ConfigError(
                f"config.{field}={size}: is not divisible by the {ways}-way split over "
                f"{axes}; pick a tensor size that divides it"
            )


def per_device_bytes(tree, shardings) -> int:
    """Bytes one device holds of `tree` (arrays or ShapeDtypeStructs) laid out by `shardings` (a tree like it)."""
    sizes = jax.tree.map(
        lambda x, s: int(np.prod(s.shard_shape(x.shape))) * np.dtype(x.dtype).itemsize, tree, shardings
    )
    return sum(jax.tree.leaves(sizes))


def host_row_range(sharding: NamedSharding, global_rows: int, row_width: int) -> tuple[int, int]:
    """The [start, stop) rows of a [global_rows, row_width] array this host's devices hold."""
    indices = sharding.addressable_devices_indices_map((global_rows, row_width)).values()
    starts = [index[0].start or 0 for index in indices]
    stops = [global_rows if index[0].stop is None else index[0].stop for index in indices]
    start, stop = min(starts), max(stops)
    assert sum(b - a for a, b in set(zip(starts, stops))) == stop - start, "host rows not contiguous"
    return start, stop


def put_batch(
    host_batch: dict[str, np.ndarray], shardings: dict[str, NamedSharding], global_rows: int
) -> dict[str, jax.Array]:
    """Global device arrays from this host's rows of a batch (all hosts call this together)."""
    return {
        k: jax.make_array_from_process_local_data(shardings[k], v, (global_rows, *v.shape[1:]))
        for k, v in host_batch.items()
    }
