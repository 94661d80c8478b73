"""The two formulations (XLA:CPU's and the accelerators') compute the same numbers, and the switch reads the mesh."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxlm.model import platform
from jaxlm.model.attention import attend, attend_causal, attention_mask
from jaxlm.model.attention_kernels import choose_kernel
from jaxlm.model.config import ModelConfig
from jaxlm.model.transformer import Transformer


def _both(fn, *args):
    """fn(*args) and its gradient, traced once with each formulation."""
    results = []
    for name in ("cpu", "tpu"):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(platform, "target_platform", lambda name=name: name)
            value = jax.jit(fn)(*args)
            grads = jax.jit(jax.grad(lambda *a: jnp.sum(fn(*a) ** 2), argnums=tuple(range(len(args)))))(*args)
        results.append((value, grads))
    return results


def _assert_same(results, atol):
    (cpu_value, cpu_grads), (tpu_value, tpu_grads) = results
    np.testing.assert_allclose(cpu_value, tpu_value, atol=atol)
    for a, b in zip(cpu_grads, tpu_grads):
        np.testing.assert_allclose(a, b, atol=atol * 10)


@pytest.mark.parametrize("causal, length", [(False, 64), (True, 256)])  # 256: four query blocks on the CPU
def test_attention_formulations_agree(causal, length):
    rng = np.random.default_rng(0)
    q = jnp.asarray(rng.normal(size=(2, length, 4, 16)), jnp.float32)
    k, v = (jnp.asarray(rng.normal(size=(2, length, 2, 16)), jnp.float32) for _ in range(2))
    segments = jnp.asarray([[1] * (length // 2) + [2] * (length // 2), [1] * (length - 5) + [0] * 5])
    mask = attention_mask(segments, causal)
    fn = attend_causal if causal else attend
    _assert_same(_both(lambda q, k, v: fn(q, k, v, mask), q, k, v), atol=2e-5)


@pytest.mark.parametrize("family", ["gpt2", "llama"])  # tied head (Embed.attend) and untied (Dense)
def test_model_formulations_agree(family):
    cfg = ModelConfig.for_family(
        family,
        vocab_size=50,
        width=32,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2 if family == "llama" else 4,
        mlp_dim=64,
        max_len=128,
    )
    graphdef, params = nnx.split(Transformer(cfg, rngs=nnx.Rngs(0)))
    ids = jnp.asarray(np.random.default_rng(1).integers(5, 50, (2, 128)), jnp.int32)
    positions, segments = jnp.tile(jnp.arange(128), (2, 1)), jnp.ones((2, 128), jnp.int32)

    def logits(params):
        return nnx.merge(graphdef, params)(ids, positions, segments)

    results = []
    for name in ("cpu", "gpu"):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(platform, "target_platform", lambda name=name: name)
            value, grads = jax.jit(jax.value_and_grad(lambda p: jnp.mean(logits(p) ** 2)))(params)
        results.append((value, jax.tree.leaves(grads)))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5)
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_the_platform_is_the_context_meshs_else_the_default_backend():
    assert platform.target_platform() == jax.default_backend() == "cpu"
    mesh = jax.make_mesh((1,), ("data",), devices=jax.devices()[:1])
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
        assert platform.target_platform() == "cpu" and platform.on_cpu()


@pytest.mark.parametrize(
    "requested, platform_name, length, dtype, head_dim, chosen",
    [
        ("auto", "tpu", 1024, "bfloat16", 64, "splash"),
        ("auto", "tpu", 1000, "bfloat16", 64, "xla"),  # not whole 128-token tiles
        ("auto", "gpu", 1024, "bfloat16", 64, "cudnn"),
        ("auto", "gpu", 1024, "float32", 64, "xla"),  # cuDNN's flash attention computes in half precision
        ("auto", "gpu", 1024, "bfloat16", 256, "xla"),
        ("auto", "cpu", 1024, "bfloat16", 64, "xla"),
        ("xla", "tpu", 1024, "bfloat16", 64, "xla"),  # asked for by name: kept
        ("splash", "tpu", 1024, "float32", 64, "splash"),
    ],
)
def test_auto_picks_the_fused_kernel_where_it_applies(requested, platform_name, length, dtype, head_dim, chosen):
    assert choose_kernel(requested, platform_name, length, dtype, head_dim) == chosen
