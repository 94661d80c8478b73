"""Attention against a naive reference: MHA, grouped-query heads, causal and segment masks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxlm.model.attention import Attention, attend, attend_causal, attention_mask, causal_block_rows
from jaxlm.model.config import ModelConfig


def _config(num_heads=4, num_kv_heads=4, causal=True) -> ModelConfig:
    return ModelConfig.for_family(
        "gpt2",
        vocab_size=11,
        width=32,
        num_layers=2,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        mlp_dim=64,
        max_len=8,
        causal=causal,
    )


def _naive_attention(layer: Attention, x, mask):
    """Loops over heads in numpy: q k^T / sqrt(K), masked softmax, times v, output projection."""
    p = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(layer)))
    q = np.einsum("bld,dhk->blhk", x, p["query"]["kernel"]) + p["query"]["bias"]
    k = np.einsum("bld,dgk->blgk", x, p["key"]["kernel"]) + p["key"]["bias"]
    v = np.einsum("bld,dgk->blgk", x, p["value"]["kernel"]) + p["value"]["bias"]
    H, G, K = q.shape[2], k.shape[2], q.shape[3]
    out = np.zeros_like(q)
    for h in range(H):
        g = h // (H // G)  # query head h reads key/value group g
        scores = np.einsum("bqk,bmk->bqm", q[:, :, h], k[:, :, g]) / np.sqrt(K)
        scores = np.where(mask[:, 0], scores, -1e30)
        weights = np.exp(scores - scores.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        out[:, :, h] = np.einsum("bqm,bmk->bqk", weights, v[:, :, g])
    return np.einsum("blhk,hkd->bld", out, p["out"]["kernel"]) + p["out"]["bias"]


@pytest.mark.parametrize("num_heads,num_kv_heads", [(4, 4), (4, 2), (4, 1)])
@pytest.mark.parametrize("causal", [True, False])
def test_attention_matches_naive_reference(num_heads, num_kv_heads, causal):
    layer = Attention(_config(num_heads, num_kv_heads, causal), rngs=nnx.Rngs(0))
    x = np.random.default_rng(0).normal(size=(2, 8, 32)).astype(np.float32)
    segments = np.array([[1, 1, 1, 2, 2, 2, 2, 0], [1, 1, 1, 1, 1, 1, 1, 1]], np.int32)
    mask = attention_mask(jnp.asarray(segments), causal)
    got = layer(jnp.asarray(x), mask, None)
    np.testing.assert_allclose(got, _naive_attention(layer, x, np.asarray(mask)), rtol=1e-5, atol=1e-5)


def test_mask_keeps_segments_apart_and_hides_the_future():
    segments = jnp.array([[1, 1, 2, 2, 0]])
    causal = np.asarray(attention_mask(segments, causal=True))[0, 0]
    expected = np.array([[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 0, 1]], bool)
    np.testing.assert_array_equal(causal, expected)
    bidirectional = np.asarray(attention_mask(segments, causal=False))[0, 0]
    np.testing.assert_array_equal(bidirectional[0], [1, 1, 0, 0, 0])
    np.testing.assert_array_equal(bidirectional[2], [0, 0, 1, 1, 0])


@pytest.mark.parametrize("kv_heads", [4, 2, 1])
def test_attend_equals_jax_dot_product_attention(kv_heads):
    rng = np.random.default_rng(0)
    B, L, H, K = 2, 9, 4, 8
    q = jnp.asarray(rng.normal(size=(B, L, H, K)), jnp.float32)
    k, v = (jnp.asarray(rng.normal(size=(B, L, kv_heads, K)), jnp.float32) for _ in range(2))
    mask = attention_mask(jnp.asarray([[1] * 5 + [2] * 4, [1] * 7 + [0] * 2]), causal=True)
    want = jax.nn.dot_product_attention(q, k, v, mask=mask)
    np.testing.assert_allclose(attend(q, k, v, mask), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("length", [pytest.param(200, marks=pytest.mark.slow), 256])  # 200: a ragged last block
def test_causal_blocks_give_full_attention_values_and_gradients(length):
    """Each query block sees keys only up to its end; the rest is its future, so nothing changes."""
    assert causal_block_rows(length) == 64 and causal_block_rows(64) == 0  # 200: 3 blocks of 64 and one of 8
    rng = np.random.default_rng(0)
    B, H, G, K = 2, 4, 2, 8
    q = jnp.asarray(rng.normal(size=(B, length, H, K)), jnp.float32)
    k, v = (jnp.asarray(rng.normal(size=(B, length, G, K)), jnp.float32) for _ in range(2))
    cut = length // 3  # packed documents, the second running across block edges, then padding
    segments = np.ones((B, length), np.int32)
    segments[0, cut:] = 2
    segments[1, -7:] = 0
    mask = attention_mask(jnp.asarray(segments), causal=True)

    def loss(fn):
        return lambda q, k, v: jnp.sum(jnp.sin(fn(q, k, v, mask)))

    np.testing.assert_allclose(attend_causal(q, k, v, mask), attend(q, k, v, mask), rtol=1e-5, atol=1e-6)
    want = jax.grad(loss(attend), argnums=(0, 1, 2))(q, k, v)
    got = jax.grad(loss(attend_causal), argnums=(0, 1, 2))(q, k, v)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
