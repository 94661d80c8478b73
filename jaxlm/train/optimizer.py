"""The optimizer of a run: AdamW, LAMB, Adafactor, Muon or SGD with momentum, after global-norm clipping, with
the learning-rate schedule and weight decay on matrices only; optionally an average of the parameters (EMA) and,
in float16, dynamic loss scaling around it all.

Everything a run must carry from step to step lives in the optax state, so checkpoints, sharding and resume
treat the EMA and the loss scale like the moments."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import optax
from optax.contrib import MuonDimensionNumbers, muon

from jaxlm.train.ema import parameter_ema
from jaxlm.train.loss_scale import dynamic_loss_scale

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


def muon_dimensions(params: dict) -> dict:
    """Muon's view of each parameter: the blocks' matrices as (reduction axes, output axes), the layer axis a
    batch axis; None (AdamW) for embeddings, the heads, norms and biases, as Muon's authors train them.

    The kernels are stacked over layers: [layers, in..., out...]. Attention's output and the FFN's down
    projection read (heads, head_dim) or the FFN width and write the model width (their last axis); the other
    projections read the model width (axis 1).
    """

    def dimensions(path, x) -> MuonDimensionNumbers | None:
        names = [getattr(key, "key", None) for key in path]
        if names[0] != "blocks" or names[-1] != "kernel" or x.ndim < 3:
            return None
        if names[-2] in ("out", "down"):
            return MuonDimensionNumbers(reduction_axis=tuple(range(1, x.ndim - 1)), output_axis=(x.ndim - 1,))
        return MuonDimensionNumbers(reduction_axis=(1,), output_axis=tuple(range(2, x.ndim)))

    return jax.tree_util.tree_map_with_path(dimensions, params)


def _trust_ratio(update: jax.Array, param: jax.Array, axes: tuple[int, ...] | None) -> jax.Array:
    """LAMB's ||param|| / ||update|| scaling over `axes` (1 where either norm is 0), as optax's
    scale_by_trust_ratio computes it for a whole leaf."""
    param_norm = jnp.sqrt(jnp.sum(jnp.square(param), axis=axes, keepdims=True))
    update_norm = jnp.sqrt(jnp.sum(jnp.square(update), axis=axes, keepdims=True))
    ratio = jnp.where((param_norm == 0) | (update_norm == 0), 1.0, param_norm / update_norm)
    return update * ratio


def _clip_rms(update: jax.Array, param: jax.Array, axes: tuple[int, ...] | None) -> jax.Array:
    """Adafactor's update clipping: divided by max(1, RMS over `axes`), as optax's clip_by_block_rms(1.0)."""
    del param
    rms = jnp.sqrt(jnp.mean(jnp.square(update), axis=axes, keepdims=True))
    return update / jnp.maximum(1.0, rms)


def _per_layer(fn) -> optax.GradientTransformation:
    """`fn(update, param, axes)` over each matrix: the blocks' leaves are stacked [layers, ...], so their axes
    exclude the first (one norm per layer, as for unstacked layers); every other leaf is one matrix."""

    def update(updates, state, params=None):
        def one(path, u, p):
            stacked = getattr(path[0], "key", None) == "blocks" and u.ndim > 1
            return fn(u, p, tuple(range(1, u.ndim)) if stacked else None)

        return jax.tree_util.tree_map_with_path(one, updates, params), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def _direction(train: ml_collections.ConfigDict, params: dict) -> optax.GradientTransformation:
    """The optimizer's update direction before weight decay and the learning rate (AdamW and LAMB keep optax's
    own aliases, so their state is what optax.adamw and optax.lamb make)."""
    if train.optimizer == "adafactor":  # T5's: factored second moments, update clipping, no first moment
        # optax.adafactor's own chain without its learning rate, parameter scaling and sign flip; the update
        # clipped per matrix (per layer of the stacked blocks), as T5 clips.
        return optax.chain(optax.scale_by_factored_rms(), _per_layer(_clip_rms))
    if train.optimizer == "muon":
        # learning_rate=-1 gives the bare direction (optax scales by -lr); consistent_rms=0.2 makes the
        # matrices' updates as large as AdamW's, so that one learning rate and weight decay serve both groups.
        # optax gives the other group Adam with Nesterov momentum (NAdam), as it does the matrices.
        return muon(
            -1.0,
            beta=train.muon_momentum,
            eps=train.eps,
            adam_b1=train.b1,
            adam_b2=train.b2,
            muon_weight_dimension_numbers=muon_dimensions(params),
            consistent_rms=0.2,
        )
    return optax.trace(decay=train.b1)  # sgd: heavy-ball momentum


def make_optimizer(
    train: ml_collections.ConfigDict, params: dict, *, loss_scaling: bool = False
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optax chain for a run and its learning-rate schedule.

    Always clip -> optimizer [-> EMA], clipping or not (0 = at infinity, a no-op): the state keeps one
    structure, so a run resumed with clipping turned on or off (the cure for a diverging run) restores.
    `loss_scaling` wraps it in dynamic loss scaling (float16 runs).
    """
    schedule = learning_rate_schedule(train)
    mask = weight_decay_mask(params, train.decay_embeddings)
    if train.optimizer == "adamw":
        optimizer = optax.adamw(
            schedule, b1=train.b1, b2=train.b2, eps=train.eps, weight_decay=train.weight_decay, mask=mask
        )
    elif train.optimizer == "lamb":  # optax.lamb's chain, its trust ratio per layer of the stacked blocks
        optimizer = optax.chain(
            optax.scale_by_adam(b1=train.b1, b2=train.b2, eps=train.eps),
            optax.add_decayed_weights(train.weight_decay, mask),
            _per_layer(_trust_ratio),
            optax.scale_by_learning_rate(schedule),
        )
    else:  # decoupled weight decay, as AdamW's: lr x weight_decay x param
        optimizer = optax.chain(
            _direction(train, params),
            optax.add_decayed_weights(train.weight_decay, mask),
            optax.scale_by_learning_rate(schedule),
        )
    clip = optax.clip_by_global_norm(train.clip_norm if train.clip_norm > 0 else float("inf"))
    chain = [clip, optimizer] + ([parameter_ema(train.ema_decay)] if train.ema_decay > 0 else [])
    optimizer = optax.chain(*chain)
    if loss_scaling:
        optimizer = dynamic_loss_scale(optimizer, initial_scale=train.loss_scale_init, period=train.loss_scale_period)
    return optimizer, schedule
