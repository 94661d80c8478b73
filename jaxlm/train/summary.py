"""What a run prints before it trains: parameters per module, memory per device, the config's diff."""

from __future__ import annotations

import os

import jax
import ml_collections
import numpy as np

from jaxlm import config as config_lib


def param_groups(params: dict) -> dict[str, int]:
    """Parameter count of each top-level module (token_embed, blocks, lm_head, ...), largest first."""
    counts = {name: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(group)) for name, group in params.items()}
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


def bytes_per_device(tree, shardings) -> int:
    """Bytes one device holds of `tree` (ShapeDtypeStructs) laid out by `shardings` (its shards' sizes)."""
    sizes = jax.tree.map(lambda x, s: int(np.prod(s.shard_shape(x.shape))) * np.dtype(x.dtype).itemsize,
                         tree, shardings)
    return sum(jax.tree.leaves(sizes))


def flatten(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, object]:
    """{"model.width": 192, ...}: every leaf field of a config by its dotted name."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat



def config_diff(config: ml_collections.ConfigDict, reference: ml_collections.ConfigDict
                ) -> list[tuple[str, object, object]]:
    """(field, value, reference's value) for every field whose value differs from the reference's."""
    ours, theirs = flatten(config), flatten(reference)
    return [(field, value, theirs.get(field)) for field, value in ours.items()
            if field not in theirs or theirs[field] != value]


def _mib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _count(n: int) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.2f}B"
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}K" if n >= 1e3 else str(n)


def start_lines(config: ml_collections.ConfigDict, recipe: str | None, abstract_params: dict, abstract_state,
                state_sharding, params_sharding) -> list[str]:
    """The summary lines: parameters per module, memory per device, the config's diff from its recipe."""
    groups = " | ".join(f"{name} {_count(n)}" for name, n in param_groups(abstract_params).items())
    param_bytes = bytes_per_device(abstract_params, params_sharding)
    opt_bytes = bytes_per_device(abstract_state.opt_state, state_sharding.opt_state)
    lines = [f"params | {groups}",
             f"memory | {_mib(param_bytes)} parameters + {_mib(opt_bytes)} optimizer state per device "
             "(activations not counted)"]
    if recipe:
        try:
            reference, against = config_lib.load_recipe(recipe), os.path.basename(recipe)
        except Exception as error:  # a recipe that needs arguments, say: the diff is only informative
            reference, against = config_lib.base_config(), f"jaxlm/config.py ({recipe} did not load: {error})"
    else:
        reference, against = config_lib.base_config(), "jaxlm/config.py"
    diff = config_diff(config, reference)
    changes = ", ".join(f"{field} {old!r} -> {value!r}" for field, value, old in diff) or "none"
    lines.append(f"config | vs {against}: {changes}")
    return lines
