"""Learning-rate schedules and which parameters weight decay touches."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxlm.config import base_config
from jaxlm.train.optimizer import learning_rate_schedule, make_optimizer, weight_decay_mask


def _train(**fields):
    train = base_config().train
    train.update({"steps": 1000, "learning_rate": 1e-3, "warmup_steps": 100, "end_learning_rate": 1e-4, **fields})
    return train


@pytest.mark.parametrize("decay", ["cosine", "linear", "constant"])
def test_schedule_warms_up_linearly_then_decays_to_the_end_rate(decay):
    schedule = learning_rate_schedule(_train(decay=decay))
    assert float(schedule(0)) == 0.0
    np.testing.assert_allclose(schedule(50), 5e-4, rtol=1e-6)
    np.testing.assert_allclose(schedule(100), 1e-3, rtol=1e-6)
    end = 1e-3 if decay == "constant" else 1e-4
    np.testing.assert_allclose(schedule(1000), end, rtol=1e-5)
    if decay == "cosine":  # halfway through the decay, halfway between peak and end
        np.testing.assert_allclose(schedule(550), (1e-3 + 1e-4) / 2, rtol=1e-5)
    if decay == "linear":
        np.testing.assert_allclose(schedule(550), (1e-3 + 1e-4) / 2, rtol=1e-5)


@pytest.mark.parametrize("shape", ["linear", "1-sqrt"])
def test_wsd_holds_the_peak_then_cools_down_over_the_last_fraction(shape):
    schedule = learning_rate_schedule(_train(decay="wsd", decay_fraction=0.2, wsd_decay=shape))
    np.testing.assert_allclose(schedule(50), 5e-4, rtol=1e-6)  # warmup as for every schedule
    for step in (100, 500, 800):  # stable until steps - 0.2 * steps = 800
        np.testing.assert_allclose(schedule(step), 1e-3, rtol=1e-6)
    done = 0.25  # step 850: a quarter through the 200-step cool-down
    share = done if shape == "linear" else np.sqrt(done)
    np.testing.assert_allclose(schedule(850), 1e-3 - (1e-3 - 1e-4) * share, rtol=1e-5)
    np.testing.assert_allclose(schedule(1000), 1e-4, rtol=1e-5)


def test_rsqrt_decays_as_the_inverse_square_root_of_the_step():
    schedule = learning_rate_schedule(_train(decay="rsqrt"))
    np.testing.assert_allclose(schedule(100), 1e-3, rtol=1e-6)
    np.testing.assert_allclose(schedule(400), 1e-3 * np.sqrt(100 / 400), rtol=1e-5)  # a quarter of the way: half


PARAMS = {
    "token_embed": {"embedding": jnp.ones((4, 2))},
    "blocks": {
        "attention": {"query": {"kernel": jnp.ones((2, 2, 2)), "bias": jnp.ones((2, 2))}},
        "attention_norm": {"scale": jnp.ones((2, 2))},
    },
}


def test_decay_mask_covers_kernels_only_unless_embeddings_are_asked_for():
    mask = weight_decay_mask(PARAMS, decay_embeddings=False)
    assert mask["blocks"]["attention"]["query"] == {"kernel": True, "bias": False}
    assert mask["blocks"]["attention_norm"]["scale"] is False
    assert mask["token_embed"]["embedding"] is False
    assert weight_decay_mask(PARAMS, decay_embeddings=True)["token_embed"]["embedding"] is True


def test_weight_decay_shrinks_only_masked_parameters():
    optimizer, _ = make_optimizer(_train(weight_decay=0.5, warmup_steps=0, clip_norm=0.0), PARAMS)
    zero_grads = optax.tree.zeros_like(PARAMS)
    updates, _ = optimizer.update(zero_grads, optimizer.init(PARAMS), PARAMS)
    new = optax.apply_updates(PARAMS, updates)
    assert float(new["blocks"]["attention"]["query"]["kernel"][0, 0, 0]) < 1.0
    assert float(new["blocks"]["attention"]["query"]["bias"][0, 0]) == 1.0
    assert float(new["token_embed"]["embedding"][0, 0]) == 1.0


def test_clipping_equals_adamw_on_gradients_scaled_to_the_clip_norm():
    train = _train(weight_decay=0.0, warmup_steps=0, clip_norm=1.0, decay="constant")
    clipped, _ = make_optimizer(train, PARAMS)
    train.clip_norm = 0.0
    unclipped, _ = make_optimizer(train, PARAMS)
    grads = optax.tree.ones_like(PARAMS)
    grads = {**grads, "token_embed": {"embedding": jnp.full((4, 2), 1e3)}}
    scaled = optax.tree.scale(1.0 / float(optax.tree.norm(grads)), grads)  # global norm exactly 1
    state_a, state_b = clipped.init(PARAMS), unclipped.init(PARAMS)
    for _ in range(3):  # Adam's moments remember the gradient's scale, so later updates differ
        a, state_a = clipped.update(grads, state_a, PARAMS)
        b, state_b = unclipped.update(scaled, state_b, PARAMS)
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6), a, b)
    raw, _ = unclipped.update(grads, unclipped.init(PARAMS), PARAMS)
    assert not np.allclose(raw["blocks"]["attention_norm"]["scale"], a["blocks"]["attention_norm"]["scale"])
