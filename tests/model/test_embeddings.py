"""RoPE: it is a rotation, and query-key products depend only on the distance between positions."""

import jax.numpy as jnp
import numpy as np

from jaxlm.model.embeddings import apply_rope, rope_tables


def test_rope_preserves_norms_and_depends_only_on_relative_position():
    rng = np.random.default_rng(0)
    q = jnp.asarray(rng.normal(size=(1, 1, 1, 16)).astype(np.float32))
    k = jnp.asarray(rng.normal(size=(1, 1, 1, 16)).astype(np.float32))

    def rotated(x, position):
        cos, sin = rope_tables(jnp.array([[position]]), 16, 10000.0)
        return apply_rope(x, cos, sin)

    np.testing.assert_allclose(jnp.linalg.norm(rotated(q, 7)), jnp.linalg.norm(q), rtol=1e-5)

    def dot(m, n):
        return float(jnp.sum(rotated(q, m) * rotated(k, n)))

    np.testing.assert_allclose(dot(3, 1), dot(12, 10), rtol=1e-4)
    np.testing.assert_allclose(dot(5, 5), float(jnp.sum(q * k)), rtol=1e-4)
    assert abs(dot(3, 1) - dot(3, 2)) > 1e-3  # and it does depend on that distance


def test_rope_matches_llama_rotate_half_formula():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 3, 2, 8)).astype(np.float32)
    positions = np.array([[0, 4, 9]])
    inv_freq = 1.0 / 10000.0 ** (np.arange(0, 8, 2) / 8)
    angles = positions[..., None] * inv_freq
    cos, sin = np.cos(np.concatenate([angles] * 2, -1)), np.sin(np.concatenate([angles] * 2, -1))
    rotate_half = np.concatenate([-x[..., 4:], x[..., :4]], -1)
    expected = x * cos[:, :, None] + rotate_half * sin[:, :, None]
    got = apply_rope(jnp.asarray(x), *rope_tables(jnp.asarray(positions), 8, 10000.0))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
