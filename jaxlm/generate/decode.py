"""Decoding from a causal model with a key/value cache: greedy, temperature, top-k and top-p sampling.

`generate` runs a batch of prompts of different lengths through one jitted program: the prompts,
left-padded to a common length, fill the key/value cache in one pass (prefill); then each step feeds
one token per row and reads one row of logits. A row stops at EOS or at the end of the model's window.
Shape letters: B batch, P padded prompt length, S new tokens, V vocab.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxlm.model.config import ModelConfig
from jaxlm.model.transformer import Transformer, unstack_layers

# Prompt lengths are padded up to a multiple of this, so nearby lengths share one compiled program.
_PROMPT_BUCKET = 16


def inference_graphdef(model_cfg: ModelConfig) -> nnx.GraphDef:
    """The model's graph for sampling and fill-mask, with "xla" attention whatever the run trained with.

    The fused training kernels need a training accelerator and (splash) lengths in tiles of 128, while a
    prompt is any length and decoding reads one token at a time; the parameters are the same either way.
    """
    model_cfg = dataclasses.replace(model_cfg, attention="xla")
    return nnx.split(nnx.eval_shape(lambda: Transformer(model_cfg, rngs=nnx.Rngs(0))))[0]


def _choose(
    logits_BxV: jax.Array,
    key: jax.Array,
    temperature: jax.Array,
    top_p: jax.Array,
    *,
    greedy: bool,
    top_k: int,
    use_top_p: bool,
) -> jax.Array:
    """Next token ids [B]: argmax, or a draw from the tempered logits cut to the top-k and top-p set."""
    logits_BxV = logits_BxV.astype(jnp.float32)
    if greedy:
        return jnp.argmax(logits_BxV, axis=-1).astype(jnp.int32)
    logits_BxV = logits_BxV / temperature
    if top_k:
        kth_Bx1 = jax.lax.top_k(logits_BxV, top_k)[0][:, -1:]
        logits_BxV = jnp.where(logits_BxV < kth_Bx1, -jnp.inf, logits_BxV)
    if use_top_p:
        # The nucleus: most likely tokens first, kept while the mass before them is below top_p.
        sorted_BxV = jnp.sort(logits_BxV, axis=-1)[:, ::-1]
        probs_BxV = jax.nn.softmax(sorted_BxV, axis=-1)
        kept_BxV = jnp.cumsum(probs_BxV, axis=-1) - probs_BxV < top_p
        cutoff_Bx1 = jnp.min(jnp.where(kept_BxV, sorted_BxV, jnp.inf), axis=-1, keepdims=True)
        logits_BxV = jnp.where(logits_BxV < cutoff_Bx1, -jnp.inf, logits_BxV)
    return jax.random.categorical(key, logits_BxV, axis=-1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("graphdef", "steps", "greedy", "top_k", "use_top_p"))
def _decode(
    graphdef: nnx.GraphDef,
    params: dict,
    layers: tuple[dict, ...],
    prompt_BxP: jax.Array,
    lengths_B: jax.Array,
    limits_B: jax.Array,
    key: jax.Array,
    temperature: jax.Array,
    top_p: jax.Array,
    eos_id: jax.Array,
    *,
    steps: int,
    greedy: bool,
    top_k: int,
    use_top_p: bool,
) -> jax.Array:
    """New tokens [B, S]; row b is valid up to its first EOS and its limit (later entries are junk).

    `layers` holds the blocks' parameters one layer each (`unstack_layers`); `params`' stacked blocks
    are not read."""
    model = nnx.merge(graphdef, params)
    decode = functools.partial(model.decode, layers=layers)
    B, P = prompt_BxP.shape
    choose = functools.partial(
        _choose, temperature=temperature, top_p=top_p, greedy=greedy, top_k=top_k, use_top_p=use_top_p
    )
    # Left padding puts every row's last prompt token in the same column; pads are segment 0.
    pads_B = P - lengths_B
    slots_P = jnp.arange(P)
    segments_BxP = (slots_P[None] >= pads_B[:, None]).astype(jnp.int32)
    positions_BxP = jnp.maximum(slots_P[None] - pads_B[:, None], 0)
    cache = model.init_cache(B, P + steps - 1, per_layer=True)  # the last new token is never fed back
    logits_BxPxV, cache = decode(prompt_BxP, positions_BxP, segments_BxP, cache, jnp.int32(0))
    key, draw = jax.random.split(key)
    token_B = choose(logits_BxPxV[:, -1], draw)
    out_BxS = jnp.zeros((B, steps), jnp.int32).at[:, 0].set(token_B)
    done_B = (token_B == eos_id) | (limits_B <= 1)

    def unfinished(carry):
        i, _, done_B, _, _ = carry
        return (i < steps) & ~jnp.all(done_B)

    def step(carry):
        """Feeds token i-1 (slot P+i-1) and records token i."""
        i, out_BxS, done_B, cache, key = carry
        # A finished row keeps decoding junk; its position is held inside the window.
        positions_Bx1 = jnp.minimum(lengths_B + i - 1, lengths_B + limits_B - 1)[:, None]
        logits_Bx1xV, cache = decode(
            jax.lax.dynamic_slice_in_dim(out_BxS, i - 1, 1, axis=1),
            positions_Bx1,
            jnp.ones((B, 1), jnp.int32),
            cache,
            P + i - 1,
        )
        key, draw = jax.random.split(key)
        token_B = choose(logits_Bx1xV[:, 0], draw)
        out_BxS = jax.lax.dynamic_update_slice_in_dim(out_BxS, token_B[:, None], i, axis=1)
        done_B = done_B | (token_B == eos_id) | (i + 1 >= limits_B)
        return i + 1, out_BxS, done_B, cache, key

    return jax.lax.while_loop(unfinished, step, (jnp.int32(1), out_BxS, done_B, cache, key))[1]


def generate(
    graphdef: nnx.GraphDef,
    params: dict,
    prompts: list[list[int]],
    *,
    max_new_tokens: int,
    max_len: int,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
    eos_id: int = -1,
) -> list[list[int]]:
    """Each prompt's continuation (new ids only, EOS excluded): up to max_new_tokens, EOS or max_len.

    temperature 0 is greedy; top_k 0 and top_p 1 turn those filters off. Every prompt must be
    non-empty and shorter than max_len, the model's window.
    """
    assert prompts and all(0 < len(p) < max_len for p in prompts), (
        f"prompts must be non-empty and shorter than max_len={max_len}"
    )
    assert temperature >= 0 and top_k >= 0 and 0 < top_p <= 1, (temperature, top_k, top_p)
    lengths_B = np.array([len(p) for p in prompts], np.int32)
    limits_B = np.minimum(max_new_tokens, max_len - lengths_B)
    steps = int(limits_B.max())
    if steps <= 0:
        return [[] for _ in prompts]
    P = min(-(-int(lengths_B.max()) // _PROMPT_BUCKET) * _PROMPT_BUCKET, max_len)
    prompt_BxP = np.zeros((len(prompts), P), np.int32)
    for row, prompt in zip(prompt_BxP, prompts):
        row[P - len(prompt) :] = prompt
    # Decoding runs the layers apart (see Transformer.decode): a copy of the blocks' weights for this call.
    # The stacked blocks go unused in the program, and jit leaves unused arguments out of it.
    layers = unstack_layers(params["blocks"])
    out_BxS = _decode(
        graphdef,
        params,
        layers,
        jnp.asarray(prompt_BxP),
        jnp.asarray(lengths_B),
        jnp.asarray(limits_B),
        jax.random.key(seed),
        jnp.float32(max(temperature, 1e-6)),
        jnp.float32(top_p),
        jnp.int32(eos_id),
        steps=steps,
        greedy=temperature == 0.0,
        top_k=top_k,
        use_top_p=top_p < 1.0,
    )
    results = []
    for row, limit in zip(np.asarray(out_BxS).tolist(), limits_B):
        row = row[:limit]
        results.append(row[: row.index(eos_id)] if eos_id in row else row)
    return results


def sample(
    graphdef: nnx.GraphDef,
    params: dict,
    prompt_ids: list[int],
    *,
    num_tokens: int,
    max_len: int,
    temperature: float,
    seed: int,
    eos_id: int,
) -> list[int]:
    """The prompt's continuation (new ids only), up to num_tokens, the window's end, or EOS.

    An empty prompt starts after an EOS, as the first document after another does in training.
    """
    prompt_ids = (prompt_ids or [eos_id])[-(max_len - 1) :]
    return generate(
        graphdef,
        params,
        [prompt_ids],
        max_new_tokens=num_tokens,
        max_len=max_len,
        temperature=temperature,
        seed=seed,
        eos_id=eos_id,
    )[0]
