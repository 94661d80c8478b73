"""Token, learned-position and token-type embeddings, and rotary position embeddings (RoPE).

Shape letters: B batch, L length, D width, H heads, K head dim, V vocab.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxlm.model.layers import param
from jaxlm.model.platform import on_cpu


class Embed(nnx.Module):
    """A lookup table [num, D]; `attend` uses it as the tied output projection D -> num."""

    def __init__(self, num: int, width: int, *, axis: str, std: float, dtype: str, rngs: nnx.Rngs):
        self.dtype = jnp.dtype(dtype)
        self.embedding = param(rngs, nnx.initializers.normal(std), (num, width), (axis, "embed"))

    def __call__(self, ids_BxL: jax.Array) -> jax.Array:
        return jnp.take(self.embedding[...], ids_BxL, axis=0).astype(self.dtype)

    def attend(self, x_BxLxD: jax.Array) -> jax.Array:
        """x @ E^T: [B, L, D] -> [B, L, num]."""
        embedding = self.embedding[...].astype(self.dtype)
        if not on_cpu():
            return jnp.einsum("BLD,VD->BLV", x_BxLxD, embedding)
        # On the CPU, rows flattened as in layers.Dense: a 2-D product XLA:CPU need not transpose.
        *lead, D = x_BxLxD.shape
        return (x_BxLxD.reshape(-1, D) @ embedding.T).reshape(*lead, -1)


def rope_tables(positions_BxL: jax.Array, head_dim: int, theta: float) -> tuple[jax.Array, jax.Array]:
    """cos and sin tables [B, L, K] for RoPE, in LLaMA's rotate-half layout."""
    inv_freq_K2 = 1.0 / theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim)
    angles_BxLxK2 = positions_BxL.astype(jnp.float32)[..., None] * inv_freq_K2
    angles_BxLxK = jnp.concatenate([angles_BxLxK2, angles_BxLxK2], axis=-1)
    return jnp.cos(angles_BxLxK), jnp.sin(angles_BxLxK)


def apply_rope(x_BxLxHxK: jax.Array, cos_BxLxK: jax.Array, sin_BxLxK: jax.Array) -> jax.Array:
    """Rotates each (i, i + K/2) pair of x by its position's angle; computed in float32."""
    x = x_BxLxHxK.astype(jnp.float32)
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    cos, sin = cos_BxLxK[:, :, None, :], sin_BxLxK[:, :, None, :]
    return (x * cos + rotated * sin).astype(x_BxLxHxK.dtype)
