"""Multi-head attention with grouped-query heads, causal or bidirectional, packed-segment aware.

Shape letters: B batch, L query length, M key length, D width, H query heads, G key/value heads
(G divides H), K head dim.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxlm.model.config import ModelConfig
from jaxlm.model.embeddings import apply_rope
from jaxlm.model.layers import Dense


def attention_mask(segment_ids_BxL: jax.Array, causal: bool) -> jax.Array:
    """Which key each query may see, [B, 1, L, L] bool.

    Tokens see only their own segment, so packed documents never attend across each other;
    padding (segment 0) sees only padding, which keeps every softmax row non-empty.
    """
    same_segment_BxLxL = segment_ids_BxL[:, :, None] == segment_ids_BxL[:, None, :]
    if causal:
        length = segment_ids_BxL.shape[1]
        same_segment_BxLxL &= jnp.tril(jnp.ones((length, length), dtype=bool))
    return same_segment_BxLxL[:, None]


class Attention(nnx.Module):
    """Query/key/value projections, optional RoPE, scaled dot-product attention, output projection."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        D, H, G, K = cfg.width, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        assert D % H == 0, f"width {D} not divisible by heads {H}"
        assert H % G == 0, f"heads {H} not divisible by kv heads {G}"
        self.cfg = cfg
        dense = dict(in_shape=(D,), in_axes=("embed",), use_bias=cfg.use_bias, std=cfg.init_std,
                     dtype=cfg.dtype, rngs=rngs)
        self.query = Dense(out_shape=(H, K), out_axes=("heads", "head_dim"), **dense)
        self.key = Dense(out_shape=(G, K), out_axes=("kv_heads", "head_dim"), **dense)
        self.value = Dense(out_shape=(G, K), out_axes=("kv_heads", "head_dim"), **dense)
        self.out = Dense((H, K), (D,), in_axes=("heads", "head_dim"), out_axes=("embed",),
                         use_bias=cfg.use_bias, std=cfg.residual_init_std, dtype=cfg.dtype, rngs=rngs)

    def __call__(self, x_BxLxD: jax.Array, mask_Bx1xLxL: jax.Array,
                 rope: tuple[jax.Array, jax.Array] | None) -> jax.Array:
        q_BxLxHxK = self.query(x_BxLxD)
        k_BxLxGxK = self.key(x_BxLxD)
        v_BxLxGxK = self.value(x_BxLxD)
        if rope is not None:
            q_BxLxHxK = apply_rope(q_BxLxHxK, *rope)
            k_BxLxGxK = apply_rope(k_BxLxGxK, *rope)
        y_BxLxHxK = jax.nn.dot_product_attention(q_BxLxHxK, k_BxLxGxK, v_BxLxGxK, mask=mask_Bx1xLxL)
        return self.out(y_BxLxHxK)
