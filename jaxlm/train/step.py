"""The train and eval steps: pure functions of (state, batch), which the trainer jits with shardings.

Shape letters: B batch, A micro-batches per step, L length.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxlm.train.loss import next_sentence_sums, pair_weights, weighted_cross_entropy
from jaxlm.train.loss_scale import all_finite, loss_scale_state

SUM_KEYS = ("loss_sum", "correct_sum", "weight_sum", "z_squared_sum")  # what weighted_cross_entropy returns
PAIR_SUM_KEYS = ("next_sentence_loss_sum", "next_sentence_correct_sum", "next_sentence_weight_sum")

# inputs, targets, weights, positions, segment_ids: each [B, L]; sentence-pair batches (BERT's
# next-sentence prediction) add token_types [B, L] and next_sentence [B], the IsNext/NotNext label. A sequence
# classifier's batch has the same fields, its label in targets[:, 0] and its weight in weights[:, 0].
Batch = dict[str, jax.Array]
LossFn = Callable[[jax.Array, jax.Array, jax.Array], dict[str, jax.Array]]


@flax.struct.dataclass
class TrainState:
    """Everything a step changes: the step count, float32 parameters and the optimizer state."""

    step: jax.Array  # int32 scalar: steps taken so far
    params: dict
    opt_state: optax.OptState
    first_bad_step: jax.Array  # int32 scalar: the first step whose loss, gradient or new state was not finite; 0 = none
    skipped_steps: jax.Array  # int32 scalar: non-finite steps skipped (with train.skip_nonfinite)


def init_state(params: dict, optimizer: optax.GradientTransformation) -> TrainState:
    """The state before the first step."""
    zero = jnp.zeros((), jnp.int32)
    return TrainState(
        step=zero, params=params, opt_state=optimizer.init(params), first_bad_step=zero, skipped_steps=zero
    )


def _forward(
    graphdef: nnx.GraphDef,
    params: dict,
    batch: Batch,
    dropout_key: jax.Array | None,
    loss_fn: LossFn = weighted_cross_entropy,
) -> dict[str, jax.Array]:
    model = nnx.merge(graphdef, params)
    if "next_sentence" not in batch:
        logits = model(batch["inputs"], batch["positions"], batch["segment_ids"], dropout_key=dropout_key)
        if logits.ndim == 2:  # a sequence classifier's [B, C]: its label and weight ride in column 0
            return loss_fn(logits[:, None, :], batch["targets"][:, :1], batch["weights"][:, :1])
        return loss_fn(logits, batch["targets"], batch["weights"])
    logits_BxLxV, pair_logits_Bx2 = model.with_next_sentence(
        batch["inputs"], batch["positions"], batch["segment_ids"], batch["token_types"], dropout_key
    )
    return {
        **loss_fn(logits_BxLxV, batch["targets"], batch["weights"]),
        **next_sentence_sums(pair_logits_Bx2, batch["next_sentence"], pair_weights(batch["segment_ids"])),
    }


def micro_batches(batch: Batch, count: int) -> Batch:
    """[B, L] -> [count, B / count, L], micro-batch i taking rows i, i + count, ...

    Strided rather than contiguous, so that every micro-batch spreads over all the devices that
    split the batch instead of living on a few of them.
    """
    return jax.tree.map(lambda x_BxL: x_BxL.reshape(-1, count, *x_BxL.shape[1:]).swapaxes(0, 1), batch)


def accumulate_gradients(
    grad_fn: Callable, params: dict, batch: Batch, count: int, step_key: jax.Array | None, sum_keys: tuple[str, ...]
) -> tuple[dict, dict[str, jax.Array]]:
    """(gradients, loss sums) of `grad_fn(params, micro_batch, key)` added up over `count` micro-batches.

    One micro-batch runs as a plain call: XLA keeps a one-trip while loop, whose zeroed accumulators and
    copied buffers cost a small model on the CPU more than its matmuls (benchmarks/NOTES.md). Dropout keys
    come from (step key, micro-batch index).
    """

    def key_of(index):
        return jax.random.fold_in(step_key, index) if step_key is not None else None

    if count == 1:
        return grad_fn(params, batch, key_of(0))

    def add(carry, micro_and_index):
        grads, sums = carry
        micro, index = micro_and_index
        micro_grads, micro_sums = grad_fn(params, micro, key_of(index))
        return (jax.tree.map(jnp.add, grads, micro_grads), jax.tree.map(jnp.add, sums, micro_sums)), None

    zeros = (jax.tree.map(jnp.zeros_like, params), dict.fromkeys(sum_keys, 0.0))
    (grads, sums), _ = jax.lax.scan(add, zeros, (micro_batches(batch, count), jnp.arange(count)))
    return grads, sums


def make_train_step(
    graphdef: nnx.GraphDef,
    optimizer: optax.GradientTransformation,
    schedule: optax.Schedule,
    *,
    grad_accum_steps: int,
    dropout_seed: int | None,
    loss_fn: LossFn = weighted_cross_entropy,
    skip_nonfinite: bool = False,
    z_loss: float = 0.0,
) -> Callable[[TrainState, Batch], tuple[TrainState, dict[str, jax.Array]]]:
    """A pure `train_step(state, batch) -> (state, metrics)`.

    The batch is split into `grad_accum_steps` micro-batches whose gradients are summed inside the
    step; every loss is normalised by the whole batch's weight, so the update equals one big batch.
    Dropout keys come from (dropout_seed, step, micro-batch), so a resumed run drops the same units.
    Sentence-pair batches add BERT's next-sentence loss, a mean over rows, to the masked-LM loss, a
    mean over chosen tokens; the metrics report the two apart (`loss` stays the masked-LM one).
    `z_loss` > 0 adds PaLM's z-loss, z_loss x the weighted mean of logsumexp(logits)^2, to what is
    differentiated; `loss` stays the cross-entropy and `z_squared` reports that mean.
    A step whose loss, gradient norm or new state (parameters, optimizer moments) is not finite is
    recorded in `first_bad_step`; with
    `skip_nonfinite` its update is dropped instead (the step still counts, the data moves on).
    An optimizer with dynamic loss scaling (float16) gets the gradients of the scaled loss divided back by
    the scale; an overflow there is its to handle (skip the update, halve the scale), not a divergence.
    """

    def train_step(state: TrainState, batch: Batch) -> tuple[TrainState, dict[str, jax.Array]]:
        pairs = "next_sentence" in batch
        total_weight = jnp.maximum(jnp.sum(batch["weights"]), 1.0)
        total_pairs = jnp.maximum(jnp.sum(pair_weights(batch["segment_ids"])), 1.0) if pairs else None

        scaling = loss_scale_state(state.opt_state)
        scale = scaling.scale if scaling is not None else None

        def micro_loss(params, micro: Batch, key):
            sums = _forward(graphdef, params, micro, key, loss_fn)
            loss = sums["loss_sum"] / total_weight
            if z_loss:  # PaLM's z-loss: keeps the softmax's normaliser near 1 (log Z near 0)
                loss = loss + z_loss * sums["z_squared_sum"] / total_weight
            if pairs:
                loss = loss + sums["next_sentence_loss_sum"] / total_pairs
            return (loss * scale if scale is not None else loss), sums

        step_key = jax.random.fold_in(jax.random.key(dropout_seed), state.step) if dropout_seed is not None else None
        sum_keys = SUM_KEYS + (PAIR_SUM_KEYS if pairs else ())
        grads, sums = accumulate_gradients(
            jax.grad(micro_loss, has_aux=True), state.params, batch, grad_accum_steps, step_key, sum_keys
        )
        if scale is not None:
            grads = jax.tree.map(lambda g: g / scale, grads)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        loss, grad_norm = sums["loss_sum"] / total_weight, optax.tree.norm(grads)
        # The new state too: a finite gradient times a NaN learning rate (or an overflowing moment) makes
        # parameters that must never be saved as good.
        # A loss-scaled step's overflow is the scaler's to skip, unless the scale is already at its floor of 1:
        # then the gradient itself is not finite, as without scaling.
        grad_ok = jnp.isfinite(grad_norm) | (scale > 1.0) if scale is not None else jnp.isfinite(grad_norm)
        finite = jnp.isfinite(loss) & grad_ok & all_finite((params, opt_state))
        if pairs:
            finite &= jnp.isfinite(sums["next_sentence_loss_sum"])
        if skip_nonfinite:
            params, opt_state = jax.tree.map(
                lambda new, old: jnp.where(finite, new, old), (params, opt_state), (state.params, state.opt_state)
            )
        first_bad_step = jnp.where((state.first_bad_step == 0) & ~finite, state.step + 1, state.first_bad_step)
        metrics = {
            "loss": loss,
            "accuracy": sums["correct_sum"] / total_weight,
            "grad_norm": grad_norm,
            "learning_rate": schedule(state.step),
            "weight_sum": sums["weight_sum"],
        }
        if z_loss:  # the mean log Z squared, before the weight: what the auxiliary loss pushes down
            metrics["z_squared"] = sums["z_squared_sum"] / total_weight
        if scale is not None:  # the scale this step's loss was multiplied by, and the overflows so far
            metrics["loss_scale"] = scale
            metrics["overflow_steps"] = opt_state.overflows
        if pairs:
            metrics["next_sentence_loss"] = sums["next_sentence_loss_sum"] / total_pairs
            metrics["next_sentence_accuracy"] = sums["next_sentence_correct_sum"] / total_pairs
        new_state = TrainState(
            step=state.step + 1,
            params=params,
            opt_state=opt_state,
            first_bad_step=first_bad_step,
            skipped_steps=state.skipped_steps + (~finite if skip_nonfinite else False),
        )
        return new_state, metrics

    return train_step


def make_eval_step(
    graphdef: nnx.GraphDef, loss_fn: LossFn = weighted_cross_entropy
) -> Callable[[dict, Batch], dict[str, jax.Array]]:
    """A pure `eval_step(params, batch) -> sums` (loss_sum, correct_sum, weight_sum); no dropout."""

    def eval_step(params: dict, batch: Batch) -> dict[str, jax.Array]:
        return _forward(graphdef, params, batch, None, loss_fn)

    return eval_step
