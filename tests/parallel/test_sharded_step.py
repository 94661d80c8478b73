"""Every preset and family: a few sharded train steps equal the one-device steps, and the state
really is split across devices (shard shapes checked, not only results)."""

import functools

import jax
import numpy as np
import pytest

from jaxlm.config import base_config, model_config
from jaxlm.parallel.mesh import make_mesh
from jaxlm.train.trainer import make_trainer

V, B, L, D, H, N = 64, 8, 16, 64, 8, 2
STEPS = 3
# Expected per-device shard of the stacked query kernel [N, D, H, K] under each preset (8 devices).
QUERY_SHARD = {
    "dp": (N, D, H, 8),
    "fsdp": (N, D // 8, H, 8),
    "tp": (N, D, H // 8, 8),
    "fsdp_tp": (N, D // 4, H // 2, 8),
}


def _config(family, preset, **train_fields):
    config = base_config()
    # llama: 4 key/value heads, which an 8-way tensor axis cannot split: they stay whole.
    config.model.update(
        family=family, num_layers=N, width=D, num_heads=H, num_kv_heads=4 if family == "llama" else -1, mlp_dim=128
    )
    config.data.update(seq_len=L, batch_size=B)
    config.train.update(warmup_steps=1, learning_rate=1e-3, **train_fields)
    config.mesh.preset = preset
    return config


def _batches(family):
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(STEPS):
        tokens = rng.integers(5, V, (B, L + 1)).astype(np.int32)
        weights = (rng.random((B, L)) < (0.3 if family == "bert" else 1.0)).astype(np.float32)
        batches.append(
            {
                "inputs": tokens[:, :-1],
                "targets": tokens[:, 1:],
                "weights": weights,
                "positions": np.tile(np.arange(L, dtype=np.int32), (B, 1)),
                "segment_ids": np.repeat([[1] * (L // 2) + [2] * (L // 2)], B, 0).astype(np.int32),
            }
        )
    return batches


def _train(config, devices):
    trainer = make_trainer(config, model_config(config, V), make_mesh(config.mesh, devices))
    state = trainer.init_state(config.seed)
    losses = []
    for batch in _batches(config.model.family):
        batch = {k: jax.device_put(v, trainer.batch_shardings[k]) for k, v in batch.items()}
        state, metrics = trainer.train_step(state, batch)
        losses.append(float(metrics["loss"]))
    return losses, state


def _assert_params_close(params, reference):
    """Equal to float32 rounding, except the attention key bias: softmax ignores it, so its true
    gradient is zero and Adam turns rounding noise into tiny random steps; check it stays tiny."""
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(jax.device_get(params)), jax.tree.leaves(reference)):
        name = jax.tree_util.keystr(path)
        if "['key']['bias']" in name:
            assert np.max(np.abs(a)) < 1e-4 and np.max(np.abs(b)) < 1e-4, name
        else:
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=name)


@functools.cache
def _one_device(family, **train_fields):
    config = _config(family, "dp", **train_fields)
    losses, state = _train(config, jax.devices()[:1])
    return losses, jax.device_get(state.params)


# Every preset with one family each in the quick loop; the rest of the family x preset matrix is `slow`.
QUICK = {("gpt2", "dp"), ("llama", "fsdp"), ("bert", "tp"), ("llama", "fsdp_tp")}
MATRIX = [
    pytest.param(family, preset, marks=() if (family, preset) in QUICK else pytest.mark.slow)
    for preset in ("dp", "fsdp", "tp", "fsdp_tp")
    for family in ("gpt2", "llama", "bert")
]


@pytest.mark.parametrize("family,preset", MATRIX)
def test_sharded_steps_equal_one_device(family, preset):
    reference_losses, reference_params = _one_device(family)
    losses, state = _train(_config(family, preset), jax.devices())
    np.testing.assert_allclose(losses, reference_losses, rtol=1e-5)
    _assert_params_close(state.params, reference_params)

    query = state.params["blocks"]["attention"]["query"]["kernel"]
    assert query.addressable_shards[0].data.shape == QUERY_SHARD[preset]
    moment = state.opt_state[1][0].mu["blocks"]["attention"]["query"]["kernel"]
    assert moment.sharding == query.sharding  # Adam's moments live where their parameter does
    if family == "llama":  # 4 kv heads: split 2 ways by fsdp_tp, kept whole by an 8-way tensor axis
        key = state.params["blocks"]["attention"]["key"]["kernel"]
        assert key.addressable_shards[0].data.shape[2] == (2 if preset == "fsdp_tp" else 4)
    if preset in ("tp", "fsdp_tp"):
        embedding = state.params["token_embed"]["embedding"]
        assert embedding.addressable_shards[0].data.shape[0] == V // (8 if preset == "tp" else 2)


@pytest.mark.parametrize("family", ["gpt2", pytest.param("bert", marks=pytest.mark.slow)])
def test_vocab_parallel_cross_entropy_equals_plain(family):
    """The shard_map loss on vocabulary-split logits gives the plain loss, gradients and updates."""
    reference_losses, reference_params = _one_device(family)
    config = _config(family, "fsdp_tp", cross_entropy="vocab_parallel")
    losses, state = _train(config, jax.devices())
    np.testing.assert_allclose(losses, reference_losses, rtol=1e-5)
    _assert_params_close(state.params, reference_params)


def test_vocab_parallel_eval_sums_equal_plain():
    sums = {}
    for loss in ("plain", "vocab_parallel"):
        config = _config("gpt2", "tp", cross_entropy=loss)
        trainer = make_trainer(config, model_config(config, V), make_mesh(config.mesh))
        batch = {k: jax.device_put(v, trainer.batch_shardings[k]) for k, v in _batches("gpt2")[0].items()}
        sums[loss] = jax.device_get(trainer.eval_step(trainer.init_state(0).params, batch))
    for key in ("loss_sum", "correct_sum", "weight_sum", "z_squared_sum"):
        np.testing.assert_allclose(sums["vocab_parallel"][key], sums["plain"][key], rtol=1e-5)


def test_gradient_accumulation_on_a_mesh_equals_one_big_batch():
    reference_losses, reference_params = _one_device("gpt2")
    losses, state = _train(_config("gpt2", "fsdp_tp", grad_accum_steps=2), jax.devices())
    np.testing.assert_allclose(losses, reference_losses, rtol=1e-5)
    _assert_params_close(state.params, reference_params)
