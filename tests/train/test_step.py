"""The jitted train step: it learns, accumulation equals one big batch, the loss is the weighted mean."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxlm.config import base_config, model_config
from jaxlm.model.transformer import Transformer
from jaxlm.train.loss import weighted_cross_entropy
from jaxlm.train.optimizer import make_optimizer
from jaxlm.train.step import init_state, make_eval_step, make_train_step

V, B, L = 29, 8, 16


def _setup(family="gpt2", grad_accum_steps=1, **train_fields):
    config = base_config()
    config.model.update(family=family, num_layers=2, width=32, num_heads=4)
    config.data.update(seq_len=L, batch_size=B)
    config.train.update(grad_accum_steps=grad_accum_steps, warmup_steps=10, **train_fields)
    graphdef, params = nnx.split(Transformer(model_config(config, V), rngs=nnx.Rngs(0)))
    params = nnx.to_pure_dict(params)
    optimizer, schedule = make_optimizer(config.train, params)
    step = jax.jit(make_train_step(graphdef, optimizer, schedule, grad_accum_steps=grad_accum_steps, dropout_seed=None))
    return graphdef, init_state(params, optimizer), step


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(5, V, (B, L + 1)).astype(np.int32)
    tokens[:, 0] = np.arange(5, 5 + B)  # distinct first tokens: every prefix has one right answer
    weights = (rng.random((B, L)) < 0.8).astype(np.float32)
    return {
        "inputs": tokens[:, :-1],
        "targets": tokens[:, 1:],
        "weights": weights,
        "positions": np.tile(np.arange(L, dtype=np.int32), (B, 1)),
        "segment_ids": np.ones((B, L), np.int32),
    }


@pytest.mark.parametrize("family", ["gpt2", "llama", "bert"])
def test_a_few_hundred_steps_on_one_batch_drive_the_loss_near_zero(family):
    _, state, step = _setup(family, steps=300, learning_rate=3e-3)
    batch = _batch()
    first = None
    for _ in range(300):
        state, metrics = step(state, batch)
        first = float(metrics["loss"]) if first is None else first
    assert first > 3.0  # about log(29) at the start
    assert float(metrics["loss"]) < 0.05
    assert float(metrics["accuracy"]) > 0.99
    assert int(state.step) == 300


def test_gradient_accumulation_equals_one_big_batch():
    _, state_one, step_one = _setup(grad_accum_steps=1)
    _, state_four, step_four = _setup(grad_accum_steps=4)
    for seed in range(3):
        state_one, m_one = step_one(state_one, _batch(seed))
        state_four, m_four = step_four(state_four, _batch(seed))
        np.testing.assert_allclose(m_four["loss"], m_one["loss"], rtol=1e-5)
        np.testing.assert_allclose(m_four["grad_norm"], m_one["grad_norm"], rtol=1e-4)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), state_four.params, state_one.params
    )


def test_loss_is_the_weighted_mean_of_token_cross_entropies():
    graphdef, state, step = _setup()
    batch = _batch()
    logits = nnx.merge(graphdef, state.params)(batch["inputs"], batch["positions"], batch["segment_ids"])
    log_probs = jax.nn.log_softmax(np.asarray(logits, np.float64), axis=-1)
    token_losses = -np.take_along_axis(np.asarray(log_probs), batch["targets"][..., None], -1)[..., 0]
    expected = (token_losses * batch["weights"]).sum() / batch["weights"].sum()
    _, metrics = step(state, batch)
    np.testing.assert_allclose(metrics["loss"], expected, rtol=1e-5)
    sums = make_eval_step(graphdef)(state.params, batch)
    np.testing.assert_allclose(sums["loss_sum"] / sums["weight_sum"], expected, rtol=1e-5)


def test_weighted_cross_entropy_ignores_zero_weight_tokens():
    logits = jnp.array([[[5.0, 0.0], [0.0, 5.0]]])
    sums = weighted_cross_entropy(logits, jnp.array([[0, 0]]), jnp.array([[1.0, 0.0]]))
    np.testing.assert_allclose(sums["loss_sum"], np.log1p(np.exp(-5.0)), rtol=1e-5)
    assert float(sums["correct_sum"]) == 1.0 and float(sums["weight_sum"]) == 1.0


def _one_layer(dropout: float = 0.0, **train_fields):
    """A one-layer gpt2's graphdef, parameters and run config (with `train_fields` set)."""
    config = base_config()
    config.model.update(family="gpt2", num_layers=1, width=32, num_heads=4, dropout=dropout)
    config.data.update(seq_len=L, batch_size=B)
    config.train.update(**train_fields)
    graphdef, params = nnx.split(Transformer(model_config(config, V), rngs=nnx.Rngs(0)))
    return graphdef, nnx.to_pure_dict(params), config


def test_z_loss_adds_the_weighted_mean_square_log_partition_to_what_is_differentiated():
    """Against the naive formula: the gradient of CE + z x mean(logsumexp(logits)^2) over weighted tokens."""
    z = 1e-2  # large enough to move the gradient well past float32 noise
    graphdef, params, _ = _one_layer(warmup_steps=0, clip_norm=0.0)
    batch = _batch()

    def naive(p):
        logits = nnx.merge(graphdef, p)(batch["inputs"], batch["positions"], batch["segment_ids"])
        log_z = jax.scipy.special.logsumexp(logits, axis=-1)
        token_losses = log_z - jnp.take_along_axis(logits, batch["targets"][..., None], -1)[..., 0]
        w = batch["weights"]
        return (jnp.sum(token_losses * w) + z * jnp.sum(jnp.square(log_z) * w)) / jnp.sum(w), jnp.sum(
            jnp.square(log_z) * w
        ) / jnp.sum(w)

    (_, z_squared), naive_grads = jax.value_and_grad(naive, has_aux=True)(params)
    sgd = optax.sgd(1.0)  # one plain step: the update is minus the gradient
    step = jax.jit(make_train_step(graphdef, sgd, lambda count: 1.0, grad_accum_steps=1, dropout_seed=None, z_loss=z))
    state = init_state(params, sgd)
    new, metrics = step(state, batch)
    np.testing.assert_allclose(metrics["z_squared"], z_squared, rtol=1e-5)
    for after, before, grad in zip(jax.tree.leaves(new.params), jax.tree.leaves(params), jax.tree.leaves(naive_grads)):
        np.testing.assert_allclose(before - after, grad, rtol=2e-4, atol=1e-6)
    without, _ = jax.jit(make_train_step(graphdef, sgd, lambda count: 1.0, grad_accum_steps=1, dropout_seed=None))(
        state, batch
    )
    moved = sum(
        float(jnp.abs(a - b).sum()) for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(without.params))
    )
    assert moved > 1e-3  # the z-loss changed the update


def test_dropout_keys_follow_the_step_so_runs_repeat():
    graphdef, params, config = _one_layer(dropout=0.3)
    optimizer, schedule = make_optimizer(config.train, params)
    step = jax.jit(make_train_step(graphdef, optimizer, schedule, grad_accum_steps=1, dropout_seed=7))
    _, a = step(init_state(params, optimizer), _batch())
    _, b = step(init_state(params, optimizer), _batch())
    np.testing.assert_array_equal(a["loss"], b["loss"])
    no_dropout = jax.jit(make_train_step(graphdef, optimizer, schedule, grad_accum_steps=1, dropout_seed=None))
    _, c = no_dropout(init_state(params, optimizer), _batch())
    assert float(a["loss"]) != float(c["loss"])


def _overflowing_step(skip_nonfinite: bool):
    """A step whose loss and gradient are finite but whose update is not: a learning rate that is inf in float32."""
    graphdef, params, config = _one_layer(learning_rate=1e39, warmup_steps=0)
    optimizer, schedule = make_optimizer(config.train, params)
    step = jax.jit(
        make_train_step(
            graphdef, optimizer, schedule, grad_accum_steps=1, dropout_seed=None, skip_nonfinite=skip_nonfinite
        )
    )
    return init_state(params, optimizer), step


def test_a_finite_gradient_with_a_nonfinite_update_marks_the_step_bad():
    state, step = _overflowing_step(skip_nonfinite=False)
    new, metrics = step(state, _batch())
    assert np.isfinite(float(metrics["loss"])) and np.isfinite(float(metrics["grad_norm"]))
    assert not all(np.all(np.isfinite(x)) for x in jax.tree.leaves(new.params))
    assert int(new.first_bad_step) == 1  # so the loop refuses to save this state


def test_skip_nonfinite_drops_an_update_that_is_not_finite():
    state, step = _overflowing_step(skip_nonfinite=True)
    new, _ = step(state, _batch())
    assert int(new.skipped_steps) == 1 and int(new.step) == 1
    for kept, before in zip(
        jax.tree.leaves((new.params, new.opt_state)), jax.tree.leaves((state.params, state.opt_state))
    ):
        np.testing.assert_array_equal(kept, before)
