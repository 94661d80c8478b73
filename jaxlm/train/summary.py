"""What a run prints before it trains: parameters per module, memory per device, the config's diff."""

from __future__ import annotations

import jax
import ml_collections
import numpy as np

from jaxlm import config as config_lib
from jaxlm.train.partition import per_device_bytes


def param_count(tree) -> int:
    """Entries in a tree of arrays or ShapeDtypeStructs."""
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def param_groups(params: dict) -> dict[str, int]:
    """Parameter count of each top-level module (token_embed, blocks, lm_head, ...), largest first."""
    counts = {name: param_count(group) for name, group in params.items()}
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


def config_diff(
    config: ml_collections.ConfigDict, reference: ml_collections.ConfigDict
) -> list[tuple[str, object, object]]:
    """(field, value, reference's value) for every field whose value differs from the reference's."""
    ours, theirs = config_lib.flatten(config), config_lib.flatten(reference)
    return [
        (field, value, theirs.get(field))
        for field, value in ours.items()
        if field not in theirs or theirs[field] != value
    ]


def _mib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _count(n: int) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.2f}B"
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}K" if n >= 1e3 else str(n)


def start_lines(
    config: ml_collections.ConfigDict,
    reference: tuple[str, ml_collections.ConfigDict] | None,
    abstract_params: dict,
    abstract_state,
    state_sharding,
    params_sharding,
) -> list[str]:
    """The summary lines: parameters per module, memory per device, and the config's diff from `reference`,
    (name, config) of the recipe the run started from (None: jaxlm/config.py's defaults)."""
    groups = " | ".join(f"{name} {_count(n)}" for name, n in param_groups(abstract_params).items())
    param_bytes = per_device_bytes(abstract_params, params_sharding)
    opt_bytes = per_device_bytes(abstract_state.opt_state, state_sharding.opt_state)
    name, reference_config = reference or ("jaxlm/config.py", config_lib.base_config())
    diff = config_diff(config, reference_config)
    changes = ", ".join(f"{field} {old!r} -> {value!r}" for field, value, old in diff) or "none"
    return [
        f"params | {groups}",
        f"memory | {_mib(param_bytes)} parameters + {_mib(opt_bytes)} optimizer state per device "
        "(activations not counted)",
        f"config | vs {name}: {changes}",
    ]
