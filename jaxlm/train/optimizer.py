"""AdamW with warmup and decay, global-norm clipping, and weight decay on matrices only."""

from __future__ import annotations

import jax
import ml_collections
import optax

# Leaves named so by the model: matrices that weight decay applies to, and embedding tables.
_MATRIX_LEAVES = ("kernel",)
_EMBEDDING_LEAVES = ("embedding",)


def learning_rate_schedule(train: ml_collections.ConfigDict) -> optax.Schedule:
    """Linear warmup from 0 to the peak, then cosine, linear or no decay to the last step."""
    warmup = optax.linear_schedule(0.0, train.learning_rate, max(train.warmup_steps, 1))
    decay_steps = max(train.steps - train.warmup_steps, 1)
    if train.decay == "cosine":
        decay = optax.cosine_decay_schedule(
            train.learning_rate, decay_steps, alpha=train.end_learning_rate / train.learning_rate
        )
    elif train.decay == "linear":
        decay = optax.linear_schedule(train.learning_rate, train.end_learning_rate, decay_steps)
    else:
        decay = optax.constant_schedule(train.learning_rate)
    return optax.join_schedules([warmup, decay], [train.warmup_steps])


def weight_decay_mask(params: dict, decay_embeddings: bool) -> dict:
    """True for the leaves weight decay applies to: kernels, and embeddings when asked.

    Norm scales and biases are never decayed (as in GPT-2, BERT and LLaMA training).
    """
    decayed = _MATRIX_LEAVES + (_EMBEDDING_LEAVES if decay_embeddings else ())

    def decays(path, _) -> bool:
        return getattr(path[-1], "key", None) in decayed

    return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(
    train: ml_collections.ConfigDict, params: dict
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optax chain for a run and its learning-rate schedule."""
    schedule = learning_rate_schedule(train)
    adamw = optax.adamw(
        schedule,
        b1=train.b1,
        b2=train.b2,
        eps=train.eps,
        weight_decay=train.weight_decay,
        mask=weight_decay_mask(params, train.decay_embeddings),
    )
    # Always the same chain, clipping or not (0 = at infinity, a no-op): the optimizer state keeps one
    # structure, so a run resumed with clipping turned on or off (the cure for a diverging run) restores.
    clip = optax.clip_by_global_norm(train.clip_norm if train.clip_norm > 0 else float("inf"))
    return optax.chain(clip, adamw), schedule
