"""One weighted cross-entropy for both objectives: the batch's `weights` pick the tokens that count.

Shape letters: B batch, L length, V vocab.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def weighted_cross_entropy(
    logits_BxLxV: jax.Array, targets_BxL: jax.Array, weights_BxL: jax.Array
) -> dict[str, jax.Array]:
    """Sums over the batch: weighted loss, weighted correct predictions, the weight itself, and the weighted
    squared log-partition (logsumexp of each token's logits), from which `train.z_loss` makes PaLM's z-loss.

    Sums, not means, so that micro-batches and evaluation batches add up exactly.
    """
    logits_BxLxV = logits_BxLxV.astype(jnp.float32)
    # One log-partition pass serves both the cross-entropy and the z-loss's log Z.
    log_z_BxL = jax.nn.logsumexp(logits_BxLxV, axis=-1)
    loss_BxL = log_z_BxL - jnp.take_along_axis(logits_BxLxV, targets_BxL[..., None], axis=-1)[..., 0]
    correct_BxL = (jnp.argmax(logits_BxLxV, axis=-1) == targets_BxL).astype(jnp.float32)
    return {
        "loss_sum": jnp.sum(loss_BxL * weights_BxL),
        "correct_sum": jnp.sum(correct_BxL * weights_BxL),
        "weight_sum": jnp.sum(weights_BxL),
        "z_squared_sum": jnp.sum(jnp.square(log_z_BxL) * weights_BxL),
    }


def pair_weights(segment_ids_BxL: jax.Array) -> jax.Array:
    """[B] 1.0 for each real sentence-pair row; the all-zero filler rows of an eval batch weigh 0."""
    return (segment_ids_BxL[:, 0] > 0).astype(jnp.float32)


def next_sentence_sums(logits_Bx2: jax.Array, labels_B: jax.Array, weights_B: jax.Array) -> dict[str, jax.Array]:
    """BERT's next-sentence prediction summed over rows, as weighted_cross_entropy sums tokens."""
    logits_Bx2 = logits_Bx2.astype(jnp.float32)
    loss_B = optax.softmax_cross_entropy_with_integer_labels(logits_Bx2, labels_B)
    correct_B = (jnp.argmax(logits_Bx2, axis=-1) == labels_B).astype(jnp.float32)
    return {
        "next_sentence_loss_sum": jnp.sum(loss_B * weights_B),
        "next_sentence_correct_sum": jnp.sum(correct_B * weights_B),
        "next_sentence_weight_sum": jnp.sum(weights_B),
    }
