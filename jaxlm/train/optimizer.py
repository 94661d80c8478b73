"""AdamW with warmup and decay, global-norm clipping, and weight decay on matrices only."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax

# Leaves named so by the model: matrices that weight decay applies to, and embedding tables.
_MATRIX_LEAVES = ("kernel",)
_EMBEDDING_LEAVES = ("embedding",)


def learning_rate_schedule(train: ml_collections.ConfigDict) -> optax.Schedule:
    """Linear warmup from 0 to the peak, then cosine, linear or no decay to the last step; or warmup-stable-decay
    ("wsd": the peak until the last `decay_fraction` of the steps, then a linear or 1-sqrt cool-down to the end
    rate); or "rsqrt" (the peak times sqrt(warmup_steps / step) after warmup, as in T5)."""
    warmup = optax.linear_schedule(0.0, train.learning_rate, max(train.warmup_steps, 1))
    decay_steps = max(train.steps - train.warmup_steps, 1)
    if train.decay == "wsd":
        return _warmup_stable_decay(train, warmup)
    if train.decay == "rsqrt":
        peak, start = train.learning_rate, max(train.warmup_steps, 1)
        return optax.join_schedules(
            [warmup, lambda count: peak * jnp.sqrt(start / (count + start))], [train.warmup_steps]
        )
    if train.decay == "cosine":
        decay = optax.cosine_decay_schedule(
            train.learning_rate, decay_steps, alpha=train.end_learning_rate / train.learning_rate
        )
    elif train.decay == "linear":
        decay = optax.linear_schedule(train.learning_rate, train.end_learning_rate, decay_steps)
    else:
        decay = optax.constant_schedule(train.learning_rate)
    return optax.join_schedules([warmup, decay], [train.warmup_steps])


def _warmup_stable_decay(train: ml_collections.ConfigDict, warmup: optax.Schedule) -> optax.Schedule:
    """Warmup, the peak held, then the cool-down over the last `decay_fraction` of `steps`. A run stopped in the
    stable phase can go on with a longer `steps`, or branch a cool-down with checkpoint.restore_from."""
    peak, end = train.learning_rate, train.end_learning_rate
    cooldown = max(round(train.steps * train.decay_fraction), 1)
    stable_until = max(train.steps - cooldown, train.warmup_steps)

    def cool(count):
        done = jnp.clip(count / cooldown, 0.0, 1.0)
        share = jnp.sqrt(done) if train.wsd_decay == "1-sqrt" else done
        return peak - (peak - end) * share

    return optax.join_schedules([warmup, optax.constant_schedule(peak), cool], [train.warmup_steps, stable_until])


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
