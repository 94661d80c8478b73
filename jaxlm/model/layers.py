"""Small building blocks: a dense layer over several axes, LayerNorm, RMSNorm, activations.

Every parameter is an `nnx.Param` whose `axes` metadata holds one logical axis name per dimension
("embed", "heads", "kv_heads", "head_dim", "mlp", "vocab", ...). Whoever builds the step maps those names
to mesh axes (jaxlm.parallel.rules); no module here ever names a mesh axis.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxlm.model.platform import on_cpu

Initializer = Callable[[jax.Array, Sequence[int], jnp.dtype], jax.Array]


def param(rngs: nnx.Rngs, init: Initializer, shape: Sequence[int], axes: Sequence[str]) -> nnx.Param:
    """A float32 parameter with logical axis names, one per dimension."""
    assert len(shape) == len(axes), f"shape {shape} and axes {axes} differ in rank"
    return nnx.Param(init(rngs.params(), tuple(shape), jnp.float32), axes=tuple(axes))


class Dense(nnx.Module):
    """y = x W + b, contracting the last len(in_shape) axes of x against W[*in_shape, *out_shape]."""

    def __init__(
        self,
        in_shape: Sequence[int],
        out_shape: Sequence[int],
        *,
        in_axes: Sequence[str],
        out_axes: Sequence[str],
        use_bias: bool,
        std: float,
        dtype: str,
        rngs: nnx.Rngs,
    ):
        self.in_rank = len(in_shape)
        self.dtype = jnp.dtype(dtype)
        self.kernel = param(rngs, nnx.initializers.normal(std), (*in_shape, *out_shape), (*in_axes, *out_axes))
        self.bias = param(rngs, nnx.initializers.zeros, out_shape, out_axes) if use_bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.kernel[...].astype(self.dtype)
        if on_cpu():
            # One 2-D product over flattened rows: contracting several axes at once is not canonical for
            # XLA:CPU, whose rewrite transposes the activations (benchmarks/NOTES.md). On a TPU the same
            # flattening cost llama_7b 12 GiB a chip (benchmarks/RESULTS.md), so only here.
            lead, inner = x.shape[: x.ndim - self.in_rank], x.shape[x.ndim - self.in_rank :]
            out_shape = kernel.shape[self.in_rank :]
            y = (x.astype(self.dtype).reshape(-1, math.prod(inner)) @ kernel.reshape(math.prod(inner), -1)).reshape(
                *lead, *out_shape
            )
        else:
            contract = (tuple(range(x.ndim - self.in_rank, x.ndim)), tuple(range(self.in_rank)))
            y = jax.lax.dot_general(x.astype(self.dtype), kernel, (contract, ((), ())))
        if self.bias is not None:
            y = y + self.bias[...].astype(self.dtype)
        return y


class LayerNorm(nnx.Module):
    """LayerNorm over the last axis, computed in float32 and returned in the input's dtype."""

    def __init__(self, width: int, *, eps: float, use_bias: bool = True, rngs: nnx.Rngs):
        self.eps = eps
        self.scale = param(rngs, nnx.initializers.ones, (width,), ("embed",))
        self.bias = param(rngs, nnx.initializers.zeros, (width,), ("embed",)) if use_bias else None

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        mean = x32.mean(-1, keepdims=True)
        var = jnp.square(x32 - mean).mean(-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.eps) * self.scale[...]
        if self.bias is not None:
            y = y + self.bias[...]
        return y.astype(x.dtype)


class RMSNorm(nnx.Module):
    """RMSNorm over the last axis (LLaMA), computed in float32 and returned in the input's dtype."""

    def __init__(self, width: int, *, eps: float, rngs: nnx.Rngs):
        self.eps = eps
        self.scale = param(rngs, nnx.initializers.ones, (width,), ("embed",))

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.square(x32).mean(-1, keepdims=True) + self.eps)
        return (y * self.scale[...]).astype(x.dtype)


def make_norm(kind: str, width: int, eps: float, rngs: nnx.Rngs, use_bias: bool = True) -> LayerNorm | RMSNorm:
    """The family's normalisation layer (`use_bias`: LayerNorm's shift; RMSNorm has none)."""
    if kind == "rmsnorm":
        return RMSNorm(width, eps=eps, rngs=rngs)
    return LayerNorm(width, eps=eps, use_bias=use_bias, rngs=rngs)


ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # BERT
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),  # GPT-2's "gelu_new"
    "silu": jax.nn.silu,  # LLaMA's SwiGLU gate
}


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Inverted dropout; the identity when rate is 0 or no key is given (evaluation)."""
    if rate == 0.0 or key is None:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0).astype(x.dtype)
