"""Cross-entropy over vocabulary-split logits with explicit collectives (shard_map).

With the vocabulary split over the tensor axis, each device holds [b, L, V/t] logits. The plain
jitted loss leaves XLA to decide how to reduce over V; here each device computes its partial
max, partial sum of exponentials and its share of the target logit, and three small collectives
over [b, L] finish the job, so the full [B, L, V] logits are never gathered on one device.
Shape letters: B batch, L length, V vocab (lower case: this device's part).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

LossFn = Callable[[jax.Array, jax.Array, jax.Array], dict[str, jax.Array]]


def _axes(entry) -> tuple[str, ...]:
    if entry is None:
        return ()
    return (entry,) if isinstance(entry, str) else tuple(entry)


def vocab_parallel_cross_entropy(mesh: jax.sharding.Mesh, logits_spec: PartitionSpec) -> LossFn:
    """A loss with the signature and sums of `weighted_cross_entropy`, computed where logits live.

    `logits_spec` is the PartitionSpec of the [B, L, V] logits (batch axes, None, vocab axes).
    """
    batch_axes, vocab_axes = _axes(logits_spec[0]), _axes(logits_spec[2])
    tokens_spec = PartitionSpec(logits_spec[0], None)

    def over_vocab(reduce, x):
        return reduce(x, vocab_axes) if vocab_axes else x

    def local(logits_bxLxv, targets_bxL, weights_bxL):
        logits_bxLxv = logits_bxLxv.astype(jnp.float32)
        v = logits_bxLxv.shape[-1]
        start = jax.lax.axis_index(vocab_axes) * v if vocab_axes else 0
        # The max only keeps exp() in range; the loss does not depend on it, so no gradient flows.
        max_bxL = over_vocab(jax.lax.pmax, jax.lax.stop_gradient(jnp.max(logits_bxLxv, axis=-1)))
        sum_exp_bxL = over_vocab(jax.lax.psum, jnp.sum(jnp.exp(logits_bxLxv - max_bxL[..., None]), -1))
        local_targets_bxL = targets_bxL - start
        here_bxL = (local_targets_bxL >= 0) & (local_targets_bxL < v)
        picked_bxL = jnp.take_along_axis(logits_bxLxv, jnp.clip(local_targets_bxL, 0, v - 1)[..., None], axis=-1)[
            ..., 0
        ]
        target_logit_bxL = over_vocab(jax.lax.psum, jnp.where(here_bxL, picked_bxL, 0.0))
        log_z_bxL = jnp.log(sum_exp_bxL) + max_bxL
        loss_bxL = log_z_bxL - target_logit_bxL
        # The target is the argmax when no logit beats it (ties, vanishingly rare, count as correct).
        correct_bxL = (jax.lax.stop_gradient(target_logit_bxL) >= max_bxL).astype(jnp.float32)
        sums = {
            "loss_sum": jnp.sum(loss_bxL * weights_bxL),
            "correct_sum": jnp.sum(correct_bxL * weights_bxL),
            "weight_sum": jnp.sum(weights_bxL),
            "z_squared_sum": jnp.sum(jnp.square(log_z_bxL) * weights_bxL),
        }
        return jax.tree.map(lambda s: jax.lax.psum(s, batch_axes) if batch_axes else s, sums)

    return jax.shard_map(local, mesh=mesh, in_specs=(logits_spec, tokens_spec, tokens_spec), out_specs=PartitionSpec())
