"""Fused attention kernels chosen by `model.attention`: cuDNN flash attention (GPU), Pallas splash (TPU).

Both compute what `attention.attend` computes from the same inputs (segment ids instead of a mask
matrix), so a config switch changes speed and memory, never the model. The kernels never build the
[B, H, L, L] score matrix in memory, which is what makes long contexts fit.
Shape letters as in attention.py: B batch, L length, H query heads, G key/value heads, K head dim.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

SPLASH_BLOCK = 128  # the TPU lane width: splash tiles must be multiples of it


def choose_kernel(requested: str, platform: str, length: int, dtype: str, head_dim: int) -> str:
    """The attention kernel to run: `requested`, or for "auto" the fused kernel of `platform` where it applies.

    TPU: splash when the length is a multiple of 128. NVIDIA GPU: cuDNN flash attention when computing in
    bfloat16 with a head dimension cuDNN takes (a multiple of 8, at most 128). Elsewhere "xla".
    """
    if requested != "auto":
        return requested
    if platform == "tpu" and length % SPLASH_BLOCK == 0:
        return "splash"
    if platform == "gpu" and dtype == "bfloat16" and head_dim % 8 == 0 and head_dim <= 128:
        return "cudnn"
    return "xla"


def segment_mask(segment_ids_BxL: jax.Array) -> jax.Array:
    """[B, 1, L, L] bool: a token sees only tokens of its own packed document."""
    return (segment_ids_BxL[:, :, None] == segment_ids_BxL[:, None, :])[:, None]


def cudnn_attend(
    q_BxLxHxK: jax.Array,
    k_BxLxGxK: jax.Array,
    v_BxLxGxK: jax.Array,
    segment_ids_BxL: jax.Array,
    causal: bool,
    implementation: str = "cudnn",
) -> jax.Array:
    """cuDNN flash attention through `jax.nn.dot_product_attention`, [B, L, H, K].

    The causal part is cuDNN's own mask type (it skips the upper triangle); the segment rule goes in
    as a boolean mask. `implementation="xla"` runs the same call on any device, which is how the CPU
    tests check this wiring.
    """
    return jax.nn.dot_product_attention(
        q_BxLxHxK,
        k_BxLxGxK,
        v_BxLxGxK,
        mask=segment_mask(segment_ids_BxL),
        is_causal=causal,
        implementation=implementation,
    )


@functools.cache
def _splash_kernel(num_heads: int, length: int, causal: bool, interpret: bool):
    # Imported here: the Pallas TPU module is only needed (and only imports cleanly) when used.
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as kernel
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as masks

    head_mask = masks.CausalMask((length, length)) if causal else masks.FullMask((length, length))
    block = min(512, length)
    sizes = dict(
        block_q=block,
        block_kv=block,
        block_kv_compute=block,
        block_q_dkv=block,
        block_kv_dkv=block,
        block_kv_dkv_compute=block,
        block_q_dq=block,
        block_kv_dq=block,
    )
    return kernel.make_splash_mha(
        masks.MultiHeadMask([head_mask] * num_heads),
        block_sizes=kernel.BlockSizes(**sizes),
        head_shards=1,
        q_seq_shards=1,
        interpret=interpret,
    ), kernel.SegmentIds


def kernel_split(mesh_sizes: dict[str, int], axes: tuple[str, ...], size: int) -> tuple[str, ...] | None:
    """The mesh axes of `axes` (sizes > 1) that split a dimension of `size` inside the kernel, or None (whole)."""
    used = tuple(axis for axis in axes if mesh_sizes.get(axis, 1) > 1)
    return used if used and size % math.prod(mesh_sizes[axis] for axis in used) == 0 else None


def splash_attend(
    q_BxLxHxK: jax.Array,
    k_BxLxGxK: jax.Array,
    v_BxLxGxK: jax.Array,
    segment_ids_BxL: jax.Array,
    causal: bool,
    interpret: bool = False,
    *,
    batch_axes: tuple[str, ...] = (),
    head_axes: tuple[str, ...] = (),
) -> jax.Array:
    """Pallas splash attention (TPU), [B, L, H, K]; L must be a multiple of 128.

    Grouped key/value heads are repeated to H first, so every head shard holds the keys its queries
    use. On a mesh (the trainer traces under it) the kernel runs per device inside shard_map, the batch
    split over `batch_axes` and the heads over `head_axes` (the mesh axes the run's rules give the
    logical "batch" and "heads"), since XLA cannot partition a custom kernel itself. A dimension those
    axes do not divide stays whole. `interpret=True` runs the kernel in the Pallas interpreter on any
    device (tests).
    """
    B, L, H, K = q_BxLxHxK.shape
    if L % SPLASH_BLOCK:
        raise ValueError(f"splash attention needs a length that is a multiple of {SPLASH_BLOCK}, got {L}")
    repeats = H // k_BxLxGxK.shape[2]
    k_BxLxHxK = jnp.repeat(k_BxLxGxK, repeats, axis=2)
    v_BxLxHxK = jnp.repeat(v_BxLxGxK, repeats, axis=2)
    q_BxLxHxK = q_BxLxHxK * jnp.asarray(K**-0.5, q_BxLxHxK.dtype)

    def local(q_bxLxhxK, k_bxLxhxK, v_bxLxhxK, segment_ids_bxL):
        kernel, segment_ids = _splash_kernel(q_bxLxhxK.shape[2], L, causal, interpret)

        def one_example(q_LxhxK, k_LxhxK, v_LxhxK, segments_L):
            y_hxLxK = kernel(
                q_LxhxK.transpose(1, 0, 2),
                k_LxhxK.transpose(1, 0, 2),
                v_LxhxK.transpose(1, 0, 2),
                segment_ids=segment_ids(q=segments_L, kv=segments_L),
            )
            return y_hxLxK.transpose(1, 0, 2)

        return jax.vmap(one_example)(q_bxLxhxK, k_bxLxhxK, v_bxLxhxK, segment_ids_bxL)

    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or mesh.size == 1:
        return local(q_BxLxHxK, k_BxLxHxK, v_BxLxHxK, segment_ids_BxL).astype(q_BxLxHxK.dtype)
    sizes = dict(zip(mesh.axis_names, mesh.axis_sizes))
    batch, heads = kernel_split(sizes, batch_axes, B), kernel_split(sizes, head_axes, H)
    qkv_spec = PartitionSpec(batch, None, heads, None)
    y_BxLxHxK = jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(qkv_spec, qkv_spec, qkv_spec, PartitionSpec(batch, None)),
        out_specs=qkv_spec,
        check_vma=False,
    )(q_BxLxHxK, k_BxLxHxK, v_BxLxHxK, segment_ids_BxL)
    return y_BxLxHxK.astype(q_BxLxHxK.dtype)
