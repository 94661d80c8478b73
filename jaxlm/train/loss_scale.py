"""Dynamic loss scaling for float16 training, as PyTorch's GradScaler does it.

float16 gradients underflow to zero below ~6e-8, so the loss is multiplied by a large scale before the
backward pass and the gradients divided by it after. When a scaled gradient overflows (inf or NaN) the update
is skipped and the scale halved; after `period` good steps in a row it doubles. The scale lives in the
optimizer state, so it is saved in checkpoints and a resumed run continues bitwise.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class LossScaleState(NamedTuple):
    scale: jax.Array  # float32 scalar: what the loss is multiplied by
    good_steps: jax.Array  # int32 scalar: finite steps since the scale last changed
    overflows: jax.Array  # int32 scalar: steps skipped for an overflowing gradient, over the whole run
    inner: optax.OptState  # the wrapped optimizer's state, unchanged by a skipped step


def all_finite(tree) -> jax.Array:
    """bool scalar: every floating-point element of `tree` is finite (integer leaves, like a count, are)."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves else jnp.bool_(True)


def dynamic_loss_scale(
    inner: optax.GradientTransformation, *, initial_scale: float = 2.0**16, period: int = 2000
) -> optax.GradientTransformation:
    """`inner`, fed gradients already divided by the scale (the train step does that: it also reports their
    norm), applied only when they are all finite; otherwise a zero update and the inner state kept."""

    def init(params: optax.Params) -> LossScaleState:
        zero = jnp.zeros((), jnp.int32)
        return LossScaleState(jnp.asarray(initial_scale, jnp.float32), zero, zero, inner.init(params))

    def update(grads: optax.Updates, state: LossScaleState, params: optax.Params | None = None):
        finite = all_finite(grads)
        updates, inner_state = inner.update(grads, state.inner, params)
        updates = jax.tree.map(lambda u: jnp.where(finite, u, jnp.zeros_like(u)), updates)
        inner_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), inner_state, state.inner)
        grow = finite & (state.good_steps + 1 >= period)
        scale = jnp.where(finite, jnp.where(grow, state.scale * 2.0, state.scale), jnp.maximum(state.scale / 2.0, 1.0))
        good_steps = jnp.where(finite & ~grow, state.good_steps + 1, 0)
        overflows = state.overflows + (~finite).astype(jnp.int32)
        return updates, LossScaleState(scale, good_steps.astype(jnp.int32), overflows, inner_state)

    return optax.GradientTransformation(init, update)


def loss_scale_state(opt_state: optax.OptState) -> LossScaleState | None:
    """The loss-scaling state at the top of a run's optimizer state, or None (not a float16 run)."""
    return opt_state if isinstance(opt_state, LossScaleState) else None
