"""Decoding from a trained model: sampling for causal models, fill-mask for masked ones.

This first version recomputes the whole window for each new token (no KV cache): simple and exact,
fine for the short samples a training run prints. Shape letters: B batch, L length, V vocab.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx


@functools.partial(jax.jit, static_argnames=("graphdef", "max_len", "temperature"))
def _sample_window(graphdef: nnx.GraphDef, params: dict, window_1xL: jax.Array, start: jax.Array,
                   stop: jax.Array, key: jax.Array, *, max_len: int, temperature: float) -> jax.Array:
    model = nnx.merge(graphdef, params)
    positions_1xL = jnp.arange(max_len)[None]
    segments_1xL = jnp.ones((1, max_len), jnp.int32)  # one document; the causal mask hides the future

    def next_token(i, carry):
        window_1xL, key = carry
        logits_V = model(window_1xL, positions_1xL, segments_1xL)[0, i - 1].astype(jnp.float32)
        key, draw = jax.random.split(key)
        token = (jnp.argmax(logits_V) if temperature == 0.0
                 else jax.random.categorical(draw, logits_V / temperature))
        return window_1xL.at[0, i].set(token.astype(window_1xL.dtype)), key

    window_1xL, _ = jax.lax.fori_loop(start, stop, next_token, (window_1xL, key))
    return window_1xL


def sample(graphdef: nnx.GraphDef, params: dict, prompt_ids: list[int], *, num_tokens: int,
           max_len: int, temperature: float, seed: int, eos_id: int) -> list[int]:
    """The prompt's continuation (new ids only), up to num_tokens, the window's end, or EOS.

    An empty prompt starts after an EOS, as the first document after another does in training.
    """
    prompt_ids = (prompt_ids or [eos_id])[-(max_len - 1):]
    stop = min(len(prompt_ids) + num_tokens, max_len)
    window_1xL = jnp.zeros((1, max_len), jnp.int32).at[0, :len(prompt_ids)].set(jnp.array(prompt_ids))
    window_1xL = _sample_window(graphdef, params, window_1xL, jnp.int32(len(prompt_ids)),
                                jnp.int32(stop), jax.random.key(seed), max_len=max_len,
                                temperature=float(temperature))
    new_ids = [int(t) for t in window_1xL[0, len(prompt_ids):stop]]
    return new_ids[:new_ids.index(eos_id)] if eos_id in new_ids else new_ids


@functools.partial(jax.jit, static_argnames=("graphdef", "top_k"))
def _top_k_predictions(graphdef: nnx.GraphDef, params: dict, ids_1xL: jax.Array, *, top_k: int
                       ) -> tuple[jax.Array, jax.Array]:
    model = nnx.merge(graphdef, params)
    length = ids_1xL.shape[1]
    logits_1xLxV = model(ids_1xL, jnp.arange(length)[None], jnp.ones_like(ids_1xL))
    probs_LxV = jax.nn.softmax(logits_1xLxV[0].astype(jnp.float32), axis=-1)
    return jax.lax.top_k(probs_LxV, top_k)


def fill_mask(graphdef: nnx.GraphDef, params: dict, ids: list[int], *, top_k: int = 3
              ) -> list[list[tuple[int, float]]]:
    """For every position of ids, the top_k (id, probability) predictions of a masked LM."""
    probs_LxK, ids_LxK = _top_k_predictions(graphdef, params, jnp.array([ids], jnp.int32), top_k=top_k)
    return [[(int(i), float(p)) for i, p in zip(row_ids, row_probs)]
            for row_ids, row_probs in zip(ids_LxK.tolist(), probs_LxK.tolist())]
