"""One Transformer block: attention and FFN sublayers with residuals, pre-LN or post-LN.

Shape letters: B batch, L length, M key/value cache slots, D width, G key/value heads, K head dim.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from flax import nnx

from jaxlm.model.attention import Attention
from jaxlm.model.config import ModelConfig
from jaxlm.model.ffn import make_ffn
from jaxlm.model.layers import dropout, make_norm


class Block(nnx.Module):
    """Pre-LN: x + f(norm(x)) (GPT-2, LLaMA). Post-LN: norm(x + f(x)) (BERT)."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.attention_norm = make_norm(cfg.norm, cfg.width, cfg.norm_eps, rngs, cfg.use_bias)
        self.attention = Attention(cfg, rngs=rngs)
        self.ffn_norm = make_norm(cfg.norm, cfg.width, cfg.norm_eps, rngs, cfg.use_bias)
        self.ffn = make_ffn(cfg, rngs)

    def _sublayers(
        self, x_BxLxD: jax.Array, attend: Callable[[jax.Array], tuple[jax.Array, Any]], dropout_key: jax.Array | None
    ) -> tuple[jax.Array, Any]:
        """The residual/norm wiring around `attend` (which also returns its own extra output) and the FFN."""
        keys = jax.random.split(dropout_key) if dropout_key is not None else (None, None)
        rate = self.cfg.dropout
        if self.cfg.norm_position == "pre":
            y_BxLxD, extra = attend(self.attention_norm(x_BxLxD))
            x_BxLxD = x_BxLxD + dropout(y_BxLxD, rate, keys[0])
            return x_BxLxD + dropout(self.ffn(self.ffn_norm(x_BxLxD)), rate, keys[1]), extra
        y_BxLxD, extra = attend(x_BxLxD)
        x_BxLxD = self.attention_norm(x_BxLxD + dropout(y_BxLxD, rate, keys[0]))
        return self.ffn_norm(x_BxLxD + dropout(self.ffn(x_BxLxD), rate, keys[1])), extra

    def __call__(
        self,
        x_BxLxD: jax.Array,
        seen: jax.Array,
        rope: tuple[jax.Array, jax.Array] | None,
        dropout_key: jax.Array | None,
    ) -> jax.Array:
        """`seen`: which keys each query sees, as `attention.visibility` gives it."""
        x_BxLxD, _ = self._sublayers(x_BxLxD, lambda h_BxLxD: (self.attention(h_BxLxD, seen, rope), None), dropout_key)
        return x_BxLxD

    def decode(
        self,
        x_BxLxD: jax.Array,
        cache: tuple[jax.Array, jax.Array],
        start: jax.Array,
        mask_Bx1xLxM: jax.Array,
        rope: tuple[jax.Array, jax.Array] | None,
    ) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        """The block on L new tokens whose keys/values go into this layer's cache at slots start..."""
        return self._sublayers(
            x_BxLxD, lambda h_BxLxD: self.attention.decode(h_BxLxD, cache, start, mask_Bx1xLxM, rope), None
        )
