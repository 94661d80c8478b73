"""The Transformer: embeddings, a scanned stack of blocks, the final norm and the output head.

One story from token ids to logits for all three families (see config.FAMILY_ARCHITECTURES).
`decode` runs the causal families a few tokens at a time against a key/value cache. With
`cfg.num_labels > 0` a classification head (classifier.py) replaces the LM heads.
Shape letters: B batch, L length, D width, V vocab, N layers, M cache slots, G key/value heads,
K head dim, C labels.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jaxlm.model.attention import decode_mask, visibility
from jaxlm.model.block import Block
from jaxlm.model.classifier import SequenceHead, TokenHead
from jaxlm.model.config import REMAT, ModelConfig
from jaxlm.model.embeddings import Embed, rope_tables
from jaxlm.model.layers import ACTIVATIONS, Dense, dropout, make_norm, param

REMAT_POLICIES = {
    "full": None,  # save nothing inside a block; recompute it all in the backward pass
    "dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,  # keep matmul outputs
}
assert set(REMAT_POLICIES) == set(REMAT) - {"none"}, "config.REMAT names the policies implemented here"


def _stacked_blocks(cfg: ModelConfig, rngs: nnx.Rngs) -> Block:
    """N blocks as one Block whose parameters carry a leading "layers" axis, ready for lax.scan."""
    keys_N = jax.random.split(rngs.params(), cfg.num_layers)
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: Block(cfg, rngs=nnx.Rngs(0))))
    state = jax.vmap(lambda key: nnx.state(Block(cfg, rngs=nnx.Rngs(key))))(keys_N)
    state = jax.tree.map(
        lambda v: nnx.Param(v[...], axes=("layers", *v.axes)), state, is_leaf=lambda v: isinstance(v, nnx.Variable)
    )
    return nnx.merge(graphdef, state)


class KVCache(NamedTuple):
    """Every layer's keys and values for M slots, and the segment id of each filled slot (0 = empty).

    Keys and values are stacked [N, B, M, G, K] for the scanned blocks, or a tuple of N [B, M, G, K]
    (`init_cache(..., per_layer=True)`) for decoding with the layers apart (`Transformer.decode`).
    """

    key_NxBxMxGxK: jax.Array | tuple[jax.Array, ...]
    value_NxBxMxGxK: jax.Array | tuple[jax.Array, ...]
    segment_BxM: jax.Array


def unstack_layers(blocks: dict) -> tuple[dict, ...]:
    """Each block's parameters apart: pure dict leaves [N, ...] -> N pure dicts of leaves [...]."""
    num_layers = len(jax.tree.leaves(blocks)[0])
    return tuple(jax.tree.map(operator.itemgetter(n), blocks) for n in range(num_layers))


class MlmHead(nnx.Module):
    """BERT's MLM head: dense D->D, activation, LayerNorm; the tied decoder's bias lives here."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.activation = ACTIVATIONS[cfg.activation]
        self.transform = Dense(
            (cfg.width,),
            (cfg.width,),
            in_axes=("embed",),
            out_axes=("embed",),
            use_bias=True,
            std=cfg.init_std,
            dtype=cfg.dtype,
            rngs=rngs,
        )
        self.norm = make_norm(cfg.norm, cfg.width, cfg.norm_eps, rngs)
        self.decoder_bias = param(rngs, nnx.initializers.zeros, (cfg.vocab_size,), ("vocab",))

    def __call__(self, x_BxLxD: jax.Array, embed: Embed) -> jax.Array:
        h_BxLxD = self.norm(self.activation(self.transform(x_BxLxD)))
        return embed.attend(h_BxLxD) + self.decoder_bias[...].astype(h_BxLxD.dtype)


class NextSentenceHead(nnx.Module):
    """BERT's pooler (the first token's state, dense D->D, tanh) and its 2-way IsNext/NotNext classifier."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.pooler = Dense(
            (cfg.width,),
            (cfg.width,),
            in_axes=("embed",),
            out_axes=("embed",),
            use_bias=True,
            std=cfg.init_std,
            dtype=cfg.dtype,
            rngs=rngs,
        )
        self.classifier = Dense(
            (cfg.width,),
            (2,),
            in_axes=("embed",),
            out_axes=("classes",),
            use_bias=True,
            std=cfg.init_std,
            dtype=cfg.dtype,
            rngs=rngs,
        )

    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        """Logits [B, 2] (index 0 = IsNext, 1 = NotNext) from the [CLS] position."""
        return self.classifier(jnp.tanh(self.pooler(x_BxLxD[:, 0])))


class Transformer(nnx.Module):
    """Token ids [B, L] -> logits [B, L, V] (or label logits); causal or bidirectional, packed-segment aware."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        assert not (cfg.num_labels and cfg.next_sentence_head), "a classifier has no next-sentence head"
        self.cfg = cfg
        lm = cfg.num_labels == 0
        embed = dict(std=cfg.init_std, dtype=cfg.dtype, rngs=rngs)
        self.token_embed = Embed(cfg.vocab_size, cfg.width, axis="vocab", **embed)
        self.position_embed = (
            Embed(cfg.max_len, cfg.width, axis="positions", **embed) if cfg.positions == "learned" else None
        )
        self.type_embed = Embed(cfg.type_vocab_size, cfg.width, axis="types", **embed) if cfg.type_vocab_size else None
        # Post-LN (BERT) normalises the embeddings; pre-LN families normalise after the last block.
        self.embed_norm = (
            make_norm(cfg.norm, cfg.width, cfg.norm_eps, rngs, cfg.use_bias) if cfg.norm_position == "post" else None
        )
        self.blocks = _stacked_blocks(cfg, rngs)
        self.final_norm = (
            make_norm(cfg.norm, cfg.width, cfg.norm_eps, rngs, cfg.use_bias) if cfg.norm_position == "pre" else None
        )
        self.lm_head = (
            Dense(
                (cfg.width,),
                (cfg.vocab_size,),
                in_axes=("embed",),
                out_axes=("vocab",),
                use_bias=False,
                std=cfg.init_std,
                dtype=cfg.dtype,
                rngs=rngs,
            )
            if lm and cfg.head == "lm" and not cfg.tied_embeddings
            else None
        )
        self.mlm_head = MlmHead(cfg, rngs=rngs) if lm and cfg.head == "mlm" else None
        self.next_sentence_head = NextSentenceHead(cfg, rngs=rngs) if cfg.next_sentence_head else None
        self.sequence_head = SequenceHead(cfg, rngs=rngs) if not lm and cfg.labels_per == "sequence" else None
        self.token_head = TokenHead(cfg, rngs=rngs) if not lm and cfg.labels_per == "token" else None

    def encode(
        self,
        inputs_BxL: jax.Array,
        positions_BxL: jax.Array,
        segment_ids_BxL: jax.Array,
        token_types_BxL: jax.Array | None = None,
        dropout_key: jax.Array | None = None,
    ) -> jax.Array:
        """The final hidden states [B, L, D] (before the output head)."""
        cfg = self.cfg
        keys = jax.random.split(dropout_key) if dropout_key is not None else (None, None)
        x_BxLxD = dropout(self._embed(inputs_BxL, positions_BxL, token_types_BxL), cfg.dropout, keys[0])

        seen = visibility(segment_ids_BxL, cfg)
        rope = self._rope(positions_BxL)
        block_keys_N = (
            jax.random.split(keys[1], cfg.num_layers)
            if keys[1] is not None
            else jnp.zeros((cfg.num_layers,), dtype=bool)
        )
        graphdef, stacked_state = nnx.split(self.blocks)

        def one_block(x_BxLxD, layer):
            state, key = layer
            block_key = key if dropout_key is not None else None
            return nnx.merge(graphdef, state)(x_BxLxD, seen, rope, block_key), None

        if cfg.remat != "none":
            one_block = jax.checkpoint(one_block, policy=REMAT_POLICIES[cfg.remat])
        # Unrolling drops the loop's per-layer slicing and stacking of residuals, which costs small
        # models more than their matmuls on the CPU (benchmarks/NOTES.md); compile time grows with it.
        x_BxLxD, _ = jax.lax.scan(
            one_block, x_BxLxD, (stacked_state, block_keys_N), unroll=min(cfg.scan_unroll, cfg.num_layers)
        )
        if self.final_norm is not None:
            x_BxLxD = self.final_norm(x_BxLxD)
        return x_BxLxD

    def __call__(
        self,
        inputs_BxL: jax.Array,
        positions_BxL: jax.Array,
        segment_ids_BxL: jax.Array,
        token_types_BxL: jax.Array | None = None,
        dropout_key: jax.Array | None = None,
    ) -> jax.Array:
        """Logits [B, L, V] in the compute dtype; a classifier's are [B, C] (one sequence a row) or [B, L, C]."""
        if self.cfg.num_labels == 0:
            x_BxLxD = self.encode(inputs_BxL, positions_BxL, segment_ids_BxL, token_types_BxL, dropout_key)
            return self._head(x_BxLxD)
        encoder_key, head_key = jax.random.split(dropout_key) if dropout_key is not None else (None, None)
        x_BxLxD = self.encode(inputs_BxL, positions_BxL, segment_ids_BxL, token_types_BxL, encoder_key)
        if self.sequence_head is not None:
            return self.sequence_head(x_BxLxD, segment_ids_BxL, head_key)
        return self.token_head(x_BxLxD, head_key)

    def with_next_sentence(
        self,
        inputs_BxL: jax.Array,
        positions_BxL: jax.Array,
        segment_ids_BxL: jax.Array,
        token_types_BxL: jax.Array,
        dropout_key: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """(logits [B, L, V], next-sentence logits [B, 2]) of sentence-pair rows; BERT's two pretraining heads."""
        assert self.next_sentence_head is not None, "the model was built without next_sentence_head"
        x_BxLxD = self.encode(inputs_BxL, positions_BxL, segment_ids_BxL, token_types_BxL, dropout_key)
        return self._head(x_BxLxD), self.next_sentence_head(x_BxLxD)

    def _embed(self, inputs_BxL: jax.Array, positions_BxL: jax.Array, token_types_BxL: jax.Array | None) -> jax.Array:
        x_BxLxD = self.token_embed(inputs_BxL)
        if self.position_embed is not None:
            x_BxLxD = x_BxLxD + self.position_embed(positions_BxL)
        if self.type_embed is not None:
            types_BxL = token_types_BxL if token_types_BxL is not None else jnp.zeros_like(inputs_BxL)
            x_BxLxD = x_BxLxD + self.type_embed(types_BxL)
        if self.embed_norm is not None:
            x_BxLxD = self.embed_norm(x_BxLxD)
        return x_BxLxD

    def _rope(self, positions_BxL: jax.Array) -> tuple[jax.Array, jax.Array] | None:
        if self.cfg.positions != "rope":
            return None
        return rope_tables(positions_BxL, self.cfg.head_dim, self.cfg.rope_theta)

    def _head(self, x_BxLxD: jax.Array) -> jax.Array:
        if self.mlm_head is not None:
            return self.mlm_head(x_BxLxD, self.token_embed)
        if self.lm_head is not None:
            return self.lm_head(x_BxLxD)
        return self.token_embed.attend(x_BxLxD)

    def init_cache(self, batch: int, slots: int, *, per_layer: bool = False) -> KVCache:
        """An empty cache of `slots` key/value slots per row, in the compute dtype; per_layer: one array each."""
        cfg = self.cfg
        segment_BxM = jnp.zeros((batch, slots), jnp.int32)
        if per_layer:
            shape = (batch, slots, cfg.num_kv_heads, cfg.head_dim)
            empty = tuple(jnp.zeros(shape, cfg.dtype) for _ in range(cfg.num_layers))
            return KVCache(empty, empty, segment_BxM)
        shape = (cfg.num_layers, batch, slots, cfg.num_kv_heads, cfg.head_dim)
        return KVCache(jnp.zeros(shape, cfg.dtype), jnp.zeros(shape, cfg.dtype), segment_BxM)

    def decode(
        self,
        inputs_BxL: jax.Array,
        positions_BxL: jax.Array,
        segment_ids_BxL: jax.Array,
        cache: KVCache,
        start: jax.Array,
        layers: Sequence[dict] | None = None,
    ) -> tuple[jax.Array, KVCache]:
        """Logits [B, L, V] of L new tokens placed in cache slots start..start+L-1, and the new cache.

        Same numbers as `__call__` on the whole sequence so far (prefill: the prompt with start 0; then
        one token per step). Segment 0 marks padding, as in training batches.
        `layers` (from `unstack_layers`, with a per-layer cache) runs the blocks one by one on their own
        parameters instead of scanning over the stack (whose parameters are then unused): a scan step
        copies its layer's weights out of the stack, which doubles a one-token step's memory traffic on
        XLA:CPU (2x slower; benchmarks/RESULTS.md). Compile time then grows with depth.
        """
        assert self.cfg.causal, "decoding with a cache needs a causal model"
        assert self.cfg.num_labels == 0, "decoding needs the language-model head, not a classifier"
        segment_BxM = jax.lax.dynamic_update_slice_in_dim(cache.segment_BxM, segment_ids_BxL, start, axis=1)
        mask_Bx1xLxM = decode_mask(segment_BxM, segment_ids_BxL, start)
        rope = self._rope(positions_BxL)
        x_BxLxD = self._embed(inputs_BxL, positions_BxL, None)
        graphdef, stacked_state = nnx.split(self.blocks)

        def one_block(x_BxLxD, layer):
            state, k_BxMxGxK, v_BxMxGxK = layer
            block = nnx.merge(graphdef, state)
            return block.decode(x_BxLxD, (k_BxMxGxK, v_BxMxGxK), start, mask_Bx1xLxM, rope)

        if layers is None:
            x_BxLxD, (k_NxBxMxGxK, v_NxBxMxGxK) = jax.lax.scan(
                one_block, x_BxLxD, (stacked_state, cache.key_NxBxMxGxK, cache.value_NxBxMxGxK)
            )
        else:
            keys, values = [], []
            for layer in zip(layers, cache.key_NxBxMxGxK, cache.value_NxBxMxGxK, strict=True):
                x_BxLxD, (k_BxMxGxK, v_BxMxGxK) = one_block(x_BxLxD, layer)
                keys.append(k_BxMxGxK)
                values.append(v_BxMxGxK)
            k_NxBxMxGxK, v_NxBxMxGxK = tuple(keys), tuple(values)
        if self.final_norm is not None:
            x_BxLxD = self.final_norm(x_BxLxD)
        return self._head(x_BxLxD), KVCache(k_NxBxMxGxK, v_NxBxMxGxK, segment_BxM)
