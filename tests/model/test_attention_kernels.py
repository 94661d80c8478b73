"""The fused attention kernels compute what `attend` computes: values, gradients, on a mesh.

On the CPU, splash runs in the Pallas interpreter (the TPU kernel's own code, interpreted) and the
cuDNN wiring runs through jax.nn.dot_product_attention's XLA implementation; the real cuDNN kernel
is checked only where a GPU is present.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxlm.config import ConfigError, base_config, model_config, validate
from jaxlm.model import attention_kernels
from jaxlm.model.attention import attend, attention_mask
from jaxlm.model.attention_kernels import cudnn_attend, kernel_split, splash_attend
from jaxlm.parallel.mesh import make_mesh
from jaxlm.train.trainer import make_trainer

B, L, H, K = 2, 256, 4, 32
ON_GPU = jax.default_backend() == "gpu"


def _qkv(kv_heads: int, dtype=jnp.float32):
    rng = np.random.default_rng(0)
    q = rng.normal(size=(B, L, H, K))
    k, v = (rng.normal(size=(B, L, kv_heads, K)) for _ in range(2))
    return tuple(jnp.asarray(x, dtype) for x in (q, k, v))


# Row 0: two packed documents; row 1: one document and six padding tokens (segment 0).
SEGMENTS = jnp.asarray([[1] * 100 + [2] * 156, [1] * 250 + [0] * 6], jnp.int32)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("kv_heads", [4, 2])
def test_cudnn_wiring_matches_attend(causal, kv_heads):
    q, k, v = _qkv(kv_heads)
    expected = attend(q, k, v, attention_mask(SEGMENTS, causal))
    got = cudnn_attend(q, k, v, SEGMENTS, causal, implementation="xla")
    np.testing.assert_allclose(got, expected, atol=2e-5)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("kv_heads", [4, 2])
def test_splash_matches_attend_values_and_gradients(causal, kv_heads):
    q, k, v = _qkv(kv_heads)
    mask = attention_mask(SEGMENTS, causal)
    # A fixed random cotangent, so the gradient check sees every output element.
    weights = jnp.asarray(np.random.default_rng(1).normal(size=(B, L, H, K)), jnp.float32)

    def loss(fn, q, k, v):
        return jnp.sum(fn(q, k, v) * weights)

    def ours(q, k, v):
        return splash_attend(q, k, v, SEGMENTS, causal, interpret=True)

    def reference(q, k, v):
        return attend(q, k, v, mask)

    np.testing.assert_allclose(ours(q, k, v), reference(q, k, v), atol=2e-5)
    got = jax.grad(lambda *a: loss(ours, *a), argnums=(0, 1, 2))(q, k, v)
    expected = jax.grad(lambda *a: loss(reference, *a), argnums=(0, 1, 2))(q, k, v)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, atol=1e-4)


def test_splash_refuses_a_length_off_the_tile():
    q, k, v = (x[:, :200] for x in _qkv(4))
    with pytest.raises(ValueError, match="multiple of 128"):
        splash_attend(q, k, v, SEGMENTS[:, :200], True, interpret=True)


def _sharded_config(attention: str):
    config = base_config()
    config.model.update(
        family="llama", num_layers=2, width=64, num_heads=4, num_kv_heads=2, mlp_dim=128, attention=attention
    )
    config.data.update(seq_len=128, batch_size=4)
    config.train.update(warmup_steps=1, learning_rate=1e-3)
    config.mesh.update(preset="fsdp_tp", data=1, fsdp=2, tensor=2)
    return config


def _one_step(attention: str, rules: str = ""):
    config = _sharded_config(attention)
    config.mesh.rules = rules
    model_cfg = dataclasses.replace(model_config(config, 64), interpret_kernels=True)
    trainer = make_trainer(config, model_cfg, make_mesh(config.mesh, jax.devices()[:4]))
    rng = np.random.default_rng(0)
    tokens = rng.integers(5, 64, (4, 129)).astype(np.int32)
    batch = {
        "inputs": tokens[:, :-1],
        "targets": tokens[:, 1:],
        "weights": np.ones((4, 128), np.float32),
        "positions": np.tile(np.arange(128, dtype=np.int32), (4, 1)),
        "segment_ids": np.repeat([[1] * 60 + [2] * 68], 4, 0).astype(np.int32),
    }
    batch = {k: jax.device_put(v, trainer.batch_shardings[k]) for k, v in batch.items()}
    state, metrics = trainer.train_step(trainer.init_state(0), batch)
    return float(metrics["loss"]), float(metrics["grad_norm"]), jax.device_get(state.params)


@pytest.mark.skipif(jax.device_count() < 4, reason="needs 4 devices (XLA_FLAGS host device count)")
def test_splash_train_step_on_a_mesh_matches_xla():
    """Batch split over fsdp and heads over tensor inside shard_map: the step equals the XLA one."""
    loss, grad_norm, params = _one_step("splash")
    loss_xla, grad_norm_xla, params_xla = _one_step("xla")
    assert loss == pytest.approx(loss_xla, rel=1e-5) and grad_norm == pytest.approx(grad_norm_xla, rel=1e-4)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params_xla)):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.skipif(jax.device_count() < 4, reason="needs 4 devices (XLA_FLAGS host device count)")
def test_a_mesh_rules_override_reaches_the_kernel(monkeypatch):
    """With "heads=" (heads whole) the kernel's shard_map splits only the batch; the step still equals XLA's."""
    seen = []
    original = attention_kernels.splash_attend

    def spy(*args, **kwargs):
        seen.append((kwargs["batch_axes"], kwargs["head_axes"]))
        return original(*args, **kwargs)

    monkeypatch.setattr(attention_kernels, "splash_attend", spy)
    loss, grad_norm, _ = _one_step("splash", rules="heads=,batch=fsdp")
    assert set(seen) == {(("fsdp",), ())}
    loss_xla, grad_norm_xla, _ = _one_step("xla", rules="heads=,batch=fsdp")
    assert loss == pytest.approx(loss_xla, rel=1e-5) and grad_norm == pytest.approx(grad_norm_xla, rel=1e-4)


def test_kernel_split_keeps_a_dimension_whole_unless_its_axes_divide_it():
    sizes = {"data": 1, "fsdp": 2, "tensor": 4}
    assert kernel_split(sizes, ("data", "fsdp"), 6) == ("fsdp",)  # size-1 axes split nothing
    assert kernel_split(sizes, ("tensor",), 6) is None  # 4 does not divide 6: whole
    assert kernel_split(sizes, (), 8) is None


def test_config_refuses_what_a_kernel_cannot_run():
    config = _sharded_config("cudnn")
    with pytest.raises(ConfigError, match="model.attention.*bfloat16"):
        validate(config)
    config = _sharded_config("splash")
    config.data.seq_len = 64
    with pytest.raises(ConfigError, match="model.attention.*multiple of 128"):
        validate(config)


@pytest.mark.skipif(ON_GPU, reason="checks the refusal on a device without cuDNN")
@pytest.mark.parametrize("attention", ["cudnn", "splash"])
def test_trainer_refuses_a_kernel_for_other_devices(attention):
    config = _sharded_config(attention)
    config.model.dtype = "bfloat16"
    with pytest.raises(ConfigError, match=f'model.attention="{attention}" runs on'):
        make_trainer(config, model_config(config, 64), make_mesh(config.mesh, jax.devices()[:4]))


@pytest.mark.skipif(not ON_GPU, reason="cuDNN flash attention needs an NVIDIA GPU; CI has none")
@pytest.mark.parametrize("causal", [True, False])
def test_cudnn_kernel_matches_attend_on_gpu(causal):
    q, k, v = _qkv(2, jnp.bfloat16)
    expected = attend(q, k, v, attention_mask(SEGMENTS, causal)).astype(jnp.float32)
    got = cudnn_attend(q, k, v, SEGMENTS, causal).astype(jnp.float32)
    np.testing.assert_allclose(got, expected, atol=2e-2)
