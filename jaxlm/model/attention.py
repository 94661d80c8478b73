"""Multi-head attention with grouped-query heads, causal or bidirectional, packed-segment aware.

`decode` is the same attention over a key/value cache, for generating a few tokens at a time.
Shape letters: B batch, L query length, M key length (cache slots), D width, H query heads,
G key/value heads (G divides H), R query heads per key/value head (H / G), K head dim.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxlm.model import attention_kernels
from jaxlm.model.config import ModelConfig
from jaxlm.model.embeddings import apply_rope
from jaxlm.model.layers import Dense
from jaxlm.model.platform import on_cpu, target_platform


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


def kernel(cfg: ModelConfig, length: int) -> str:
    """The attention kernel that runs: `cfg.attention`, with "auto" chosen for the platform being traced
    (the trainer resolves it up front for the mesh's devices; here it matters for models built elsewhere)."""
    return attention_kernels.choose_kernel(cfg.attention, target_platform(), length, cfg.dtype, cfg.head_dim)


def visibility(segment_ids_BxL: jax.Array, cfg: ModelConfig) -> jax.Array:
    """What every layer's attention is told about which keys a query sees, built once per step.

    The [B, 1, L, L] mask for "xla"; the [B, L] segment ids themselves for the fused kernels,
    which build their mask tile by tile and never hold an [L, L] matrix.
    """
    if kernel(cfg, segment_ids_BxL.shape[1]) == "xla":
        return attention_mask(segment_ids_BxL, cfg.causal)
    return segment_ids_BxL


def decode_mask(segment_BxM: jax.Array, segment_ids_BxL: jax.Array, start: jax.Array) -> jax.Array:
    """Which cache slot each of L new tokens (in slots start..start+L-1) may see, [B, 1, L, M] bool.

    The causal and segment rule of `attention_mask`, over the cache: a token sees the filled slots of
    its own segment up to its own; empty slots hold segment 0 and lie in the future, so stay hidden.
    """
    query_slots_L = start + jnp.arange(segment_ids_BxL.shape[1])
    slots_M = jnp.arange(segment_BxM.shape[1])
    seen_BxLxM = segment_BxM[:, None, :] == segment_ids_BxL[:, :, None]
    seen_BxLxM &= slots_M[None, None, :] <= query_slots_L[None, :, None]
    return seen_BxLxM[:, None]


def attend(q_BxLxHxK: jax.Array, k_BxMxGxK: jax.Array, v_BxMxGxK: jax.Array, mask_Bx1xLxM: jax.Array) -> jax.Array:
    """softmax(q k^T / sqrt(K), masked) v, [B, L, H, K]; scores and softmax in float32.

    Normalises after the value product: dividing [B, L, H, K] rather than [B, H, L, M] saves a pass over
    the biggest tensor. Two exact formulations, chosen by `platform.on_cpu()`: einsums whose layout XLA:TPU
    and XLA:GPU pick themselves, or on the CPU batched matmuls over (B, G) that XLA:CPU runs without
    transposing the scores.
    """
    q_BxLxHxK = q_BxLxHxK * jnp.asarray(q_BxLxHxK.shape[-1] ** -0.5, q_BxLxHxK.dtype)
    if on_cpu():
        return _attend_batched(q_BxLxHxK, k_BxMxGxK, v_BxMxGxK, mask_Bx1xLxM)
    B, L, H, K = q_BxLxHxK.shape
    G = k_BxMxGxK.shape[2]
    q_BxLxGxRxK = q_BxLxHxK.reshape(B, L, G, H // G, K)
    s_BxGxRxLxM = jnp.einsum("BLGRK,BMGK->BGRLM", q_BxLxGxRxK, k_BxMxGxK, preferred_element_type=jnp.float32)
    s_BxGxRxLxM = jnp.where(mask_Bx1xLxM[:, :, None], s_BxGxRxLxM, -1e30)
    # The max only keeps exp in range; any constant per row gives the same softmax, so no gradient.
    s_max_BxGxRxLx1 = jax.lax.stop_gradient(s_BxGxRxLxM.max(-1, keepdims=True))
    e_BxGxRxLxM = jnp.exp(s_BxGxRxLxM - s_max_BxGxRxLx1)
    y_BxLxGxRxK = jnp.einsum(
        "BGRLM,BMGK->BLGRK", e_BxGxRxLxM.astype(v_BxMxGxK.dtype), v_BxMxGxK, preferred_element_type=jnp.float32
    )
    sum_BxLxGxRx1 = e_BxGxRxLxM.sum(-1).transpose(0, 3, 1, 2)[..., None]
    return (y_BxLxGxRxK / sum_BxLxGxRx1).reshape(B, L, H, K).astype(q_BxLxHxK.dtype)


def _attend_batched(
    q_BxLxHxK: jax.Array, k_BxMxGxK: jax.Array, v_BxMxGxK: jax.Array, mask_Bx1xLxM: jax.Array
) -> jax.Array:
    """`attend` (scaled queries) for XLA:CPU: both products batched matmuls over (B, G) with one contracting
    and one free axis each (queries of a key/value head's R heads side by side as R*L rows), the canonical
    form XLA:CPU runs without transposing the [B, G, R*L, M] scores: 1.4x faster there than the einsums
    (benchmarks/NOTES.md)."""
    B, L, H, K = q_BxLxHxK.shape
    M, G = k_BxMxGxK.shape[1], k_BxMxGxK.shape[2]
    R = H // G
    q_BGxRLxK = q_BxLxHxK.reshape(B, L, G, R, K).transpose(0, 2, 3, 1, 4).reshape(B * G, R * L, K)
    k_BGxMxK = k_BxMxGxK.transpose(0, 2, 1, 3).reshape(B * G, M, K)
    v_BGxMxK = v_BxMxGxK.transpose(0, 2, 1, 3).reshape(B * G, M, K)
    s_BGxRLxM = jnp.matmul(q_BGxRLxK, k_BGxMxK.transpose(0, 2, 1), preferred_element_type=jnp.float32)
    s_BxGxRxLxM = jnp.where(mask_Bx1xLxM[:, :, None], s_BGxRLxM.reshape(B, G, R, L, M), -1e30)
    s_max_BxGxRxLx1 = jax.lax.stop_gradient(s_BxGxRxLxM.max(-1, keepdims=True))
    e_BxGxRxLxM = jnp.exp(s_BxGxRxLxM - s_max_BxGxRxLx1)
    y_BGxRLxK = jnp.matmul(
        e_BxGxRxLxM.reshape(B * G, R * L, M).astype(v_BxMxGxK.dtype), v_BGxMxK, preferred_element_type=jnp.float32
    )
    y_BxGxRxLxK = y_BGxRLxK.reshape(B, G, R, L, K) / e_BxGxRxLxM.sum(-1, keepdims=True)
    return y_BxGxRxLxK.transpose(0, 3, 1, 2, 4).reshape(B, L, H, K).astype(q_BxLxHxK.dtype)


def causal_block_rows(length: int) -> int:
    """Query rows per block for `attend_causal` (0 = one block): 1/8 of the sequence, at least 64."""
    return max(64, length // 8) if length >= 128 else 0


def attend_causal(
    q_BxLxHxK: jax.Array, k_BxLxGxK: jax.Array, v_BxLxGxK: jax.Array, mask_Bx1xLxL: jax.Array
) -> jax.Array:
    """`attend` for causal self-attention; on the CPU, each block of queries against only the keys up to its end.

    Keys after a block lie in every one of its queries' future, so leaving them out changes no
    softmax row, and skips about 40% of the score and value products and their softmax passes:
    fwd+bwd of one context-256 attention went from 0.93 to 0.58 s on the CPU (benchmarks/NOTES.md).
    Accelerators compute the whole [L, L] scores instead (`platform.on_cpu()`): the blocks cost llama_7b
    0.9 GiB a v5p chip, and their fused kernels (model.attention) skip the masked half themselves.
    """
    L = q_BxLxHxK.shape[1]
    rows = causal_block_rows(L) if on_cpu() else 0
    if not rows:
        return attend(q_BxLxHxK, k_BxLxGxK, v_BxLxGxK, mask_Bx1xLxL)
    blocks = []
    for start in range(0, L, rows):
        end = min(start + rows, L)
        blocks.append(
            attend(q_BxLxHxK[:, start:end], k_BxLxGxK[:, :end], v_BxLxGxK[:, :end], mask_Bx1xLxL[:, :, start:end, :end])
        )
    return jnp.concatenate(blocks, axis=1)


class Attention(nnx.Module):
    """Query/key/value projections, optional RoPE, scaled dot-product attention, output projection."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        D, H, G, K = cfg.width, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        assert D % H == 0, f"width {D} not divisible by heads {H}"
        assert H % G == 0, f"heads {H} not divisible by kv heads {G}"
        self.cfg = cfg
        dense = dict(
            in_shape=(D,), in_axes=("embed",), use_bias=cfg.use_bias, std=cfg.init_std, dtype=cfg.dtype, rngs=rngs
        )
        self.query = Dense(out_shape=(H, K), out_axes=("heads", "head_dim"), **dense)
        self.key = Dense(out_shape=(G, K), out_axes=("kv_heads", "head_dim"), **dense)
        self.value = Dense(out_shape=(G, K), out_axes=("kv_heads", "head_dim"), **dense)
        self.out = Dense(
            (H, K),
            (D,),
            in_axes=("heads", "head_dim"),
            out_axes=("embed",),
            use_bias=cfg.use_bias,
            std=cfg.residual_init_std,
            dtype=cfg.dtype,
            rngs=rngs,
        )

    def _project(
        self, x_BxLxD: jax.Array, rope: tuple[jax.Array, jax.Array] | None
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        q_BxLxHxK = self.query(x_BxLxD)
        k_BxLxGxK = self.key(x_BxLxD)
        v_BxLxGxK = self.value(x_BxLxD)
        if rope is not None:
            q_BxLxHxK = apply_rope(q_BxLxHxK, *rope)
            k_BxLxGxK = apply_rope(k_BxLxGxK, *rope)
        return q_BxLxHxK, k_BxLxGxK, v_BxLxGxK

    def __call__(self, x_BxLxD: jax.Array, seen: jax.Array, rope: tuple[jax.Array, jax.Array] | None) -> jax.Array:
        """`seen` is `visibility(...)`: a [B, 1, L, L] mask for "xla", [B, L] segment ids otherwise."""
        cfg = self.cfg
        q_BxLxHxK, k_BxLxGxK, v_BxLxGxK = self._project(x_BxLxD, rope)
        chosen = kernel(cfg, x_BxLxD.shape[1])
        if chosen == "cudnn":
            y_BxLxHxK = attention_kernels.cudnn_attend(q_BxLxHxK, k_BxLxGxK, v_BxLxGxK, seen, cfg.causal)
        elif chosen == "splash":
            y_BxLxHxK = attention_kernels.splash_attend(
                q_BxLxHxK,
                k_BxLxGxK,
                v_BxLxGxK,
                seen,
                cfg.causal,
                interpret=cfg.interpret_kernels,
                batch_axes=cfg.kernel_batch_axes,
                head_axes=cfg.kernel_head_axes,
            )
        elif cfg.causal:
            y_BxLxHxK = attend_causal(q_BxLxHxK, k_BxLxGxK, v_BxLxGxK, seen)
        else:
            y_BxLxHxK = attend(q_BxLxHxK, k_BxLxGxK, v_BxLxGxK, seen)
        return self.out(y_BxLxHxK)

    def decode(
        self,
        x_BxLxD: jax.Array,
        cache: tuple[jax.Array, jax.Array],
        start: jax.Array,
        mask_Bx1xLxM: jax.Array,
        rope: tuple[jax.Array, jax.Array] | None,
    ) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        """Writes the L new keys and values into cache slots start.. and attends over the whole cache.

        Always the "xla" formula: one new token against the cache is a matrix-vector product that
        the fused kernels would not speed up.
        """
        q_BxLxHxK, k_BxLxGxK, v_BxLxGxK = self._project(x_BxLxD, rope)
        k_BxMxGxK, v_BxMxGxK = cache
        k_BxMxGxK = jax.lax.dynamic_update_slice_in_dim(k_BxMxGxK, k_BxLxGxK.astype(k_BxMxGxK.dtype), start, axis=1)
        v_BxMxGxK = jax.lax.dynamic_update_slice_in_dim(v_BxMxGxK, v_BxLxGxK.astype(v_BxMxGxK.dtype), start, axis=1)
        y_BxLxHxK = attend(q_BxLxHxK, k_BxMxGxK, v_BxMxGxK, mask_Bx1xLxM)
        return self.out(y_BxLxHxK), (k_BxMxGxK, v_BxMxGxK)
