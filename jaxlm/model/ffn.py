"""Feed-forward blocks: the GELU MLP (GPT-2, BERT) and SwiGLU (LLaMA).

Shape letters: B batch, L length, D width, F hidden width.
"""

from __future__ import annotations

import jax
from flax import nnx

from jaxlm.model.config import ModelConfig
from jaxlm.model.layers import ACTIVATIONS, Dense


class Mlp(nnx.Module):
    """Dense D->F, activation, Dense F->D."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        common = dict(use_bias=cfg.use_bias, dtype=cfg.dtype, rngs=rngs)
        self.activation = ACTIVATIONS[cfg.activation]
        self.up = Dense((cfg.width,), (cfg.mlp_dim,), in_axes=("embed",), out_axes=("mlp",), std=cfg.init_std, **common)
        self.down = Dense(
            (cfg.mlp_dim,), (cfg.width,), in_axes=("mlp",), out_axes=("embed",), std=cfg.residual_init_std, **common
        )

    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        return self.down(self.activation(self.up(x_BxLxD)))


class SwiGlu(nnx.Module):
    """down(act(gate(x)) * up(x)), LLaMA's gated FFN."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        common = dict(use_bias=cfg.use_bias, dtype=cfg.dtype, rngs=rngs)
        into = dict(in_axes=("embed",), out_axes=("mlp",), std=cfg.init_std, **common)
        self.activation = ACTIVATIONS[cfg.activation]
        self.gate = Dense((cfg.width,), (cfg.mlp_dim,), **into)
        self.up = Dense((cfg.width,), (cfg.mlp_dim,), **into)
        self.down = Dense(
            (cfg.mlp_dim,), (cfg.width,), in_axes=("mlp",), out_axes=("embed",), std=cfg.residual_init_std, **common
        )

    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        return self.down(self.activation(self.gate(x_BxLxD)) * self.up(x_BxLxD))


def make_ffn(cfg: ModelConfig, rngs: nnx.Rngs) -> Mlp | SwiGlu:
    """The family's feed-forward block."""
    return SwiGlu(cfg, rngs=rngs) if cfg.ffn == "swiglu" else Mlp(cfg, rngs=rngs)
