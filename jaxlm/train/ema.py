"""An exponential moving average of the parameters, kept as the last transformation of the optimizer chain.

Kept in the optax state, it is sharded like the parameters, saved in every checkpoint and restored on resume
with the moments, and a step skipped as non-finite leaves it unchanged with them.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import optax


class EmaState(NamedTuple):
    """The average: a float32 tree shaped like the parameters."""

    ema: optax.Params


def parameter_ema(decay: float) -> optax.GradientTransformation:
    """Passes the updates through and averages the parameters they make: ema <- decay * ema + (1 - decay) *
    (params + updates). The average starts at the initial parameters (no bias correction), so after n steps it
    is decay^n * p_0 + (1 - decay) * sum_k decay^(n - k) * p_k."""

    def init(params: optax.Params) -> EmaState:
        return EmaState(ema=jax.tree.map(lambda p: p.astype("float32"), params))

    def update(updates: optax.Updates, state: EmaState, params: optax.Params | None = None):
        if params is None:
            raise ValueError("parameter_ema needs the parameters: pass them to update()")
        new_params = optax.apply_updates(params, updates)
        ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p.astype(e.dtype), state.ema, new_params)
        return updates, EmaState(ema=ema)

    return optax.GradientTransformation(init, update)


def ema_params(opt_state: optax.OptState) -> dict | None:
    """The averaged parameters held in an optimizer state, or None when the run keeps no average."""
    found = [
        x for x in jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, EmaState)) if isinstance(x, EmaState)
    ]
    return found[0].ema if found else None
