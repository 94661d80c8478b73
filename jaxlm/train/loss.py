"""One weighted cross-entropy for both objectives (DESIGN.md: the batch's weights pick the tokens).

Shape letters: B batch, L length, V vocab.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def weighted_cross_entropy(logits_BxLxV: jax.Array, targets_BxL: jax.Array, weights_BxL: jax.Array
                           ) -> dict[str, jax.Array]:
    """Sums over the batch: weighted loss, weighted correct predictions, and the weight itself.

    Sums, not means, so that micro-batches and evaluation batches add up exactly.
    """
    logits_BxLxV = logits_BxLxV.astype(jnp.float32)
    loss_BxL = optax.softmax_cross_entropy_with_integer_labels(logits_BxLxV, targets_BxL)
    correct_BxL = (jnp.argmax(logits_BxLxV, axis=-1) == targets_BxL).astype(jnp.float32)
    return {
        "loss_sum": jnp.sum(loss_BxL * weights_BxL),
        "correct_sum": jnp.sum(correct_BxL * weights_BxL),
        "weight_sum": jnp.sum(weights_BxL),
    }
