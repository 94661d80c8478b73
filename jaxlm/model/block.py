"""One Transformer block: attention and FFN sublayers with residuals, pre-LN or post-LN.

Shape letters: B batch, L length, D width, K head dim.
"""

from __future__ import annotations

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
        self.attention_norm = make_norm(cfg.norm, cfg.width, cfg.norm_eps, rngs)
        self.attention = Attention(cfg, rngs=rngs)
        self.ffn_norm = make_norm(cfg.norm, cfg.width, cfg.norm_eps, rngs)
        self.ffn = make_ffn(cfg, rngs)

    def __call__(self, x_BxLxD: jax.Array, mask_Bx1xLxL: jax.Array,
                 rope: tuple[jax.Array, jax.Array] | None, dropout_key: jax.Array | None) -> jax.Array:
        keys = jax.random.split(dropout_key) if dropout_key is not None else (None, None)
        rate = self.cfg.dropout
        if self.cfg.norm_position == "pre":
            x_BxLxD = x_BxLxD + dropout(
                self.attention(self.attention_norm(x_BxLxD), mask_Bx1xLxL, rope), rate, keys[0])
            return x_BxLxD + dropout(self.ffn(self.ffn_norm(x_BxLxD)), rate, keys[1])
        x_BxLxD = self.attention_norm(
            x_BxLxD + dropout(self.attention(x_BxLxD, mask_Bx1xLxL, rope), rate, keys[0]))
        return self.ffn_norm(x_BxLxD + dropout(self.ffn(x_BxLxD), rate, keys[1]))
