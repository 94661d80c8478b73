"""Decoding from a trained model: KV-cache sampling for causal models, fill-mask for masked ones.

`generate` runs a batch of prompts of different lengths through one jitted program: the prompts,
left-padded to a common length, fill the key/value cache in one pass (prefill); then each step feeds
one token per row and reads one row of logits. Greedy, temperature, top-k and top-p sampling; a row
stops at EOS or at the end of the model's window. `python -m jaxlm.generate --workdir=DIR` samples from
(or, for bert, fills the masks of) a trained run.
Shape letters: B batch, P padded prompt length, S new tokens, V vocab, K top-k.
"""

from __future__ import annotations

import dataclasses
import functools
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxlm.model import ModelConfig, Transformer
from jaxlm.model.transformer import unstack_layers

# Prompt lengths are padded up to a multiple of this, so nearby lengths share one compiled program.
_PROMPT_BUCKET = 16


def inference_graphdef(model_cfg: ModelConfig) -> nnx.GraphDef:
    """The model's graph for sampling and fill-mask, with "xla" attention whatever the run trained with.

    The fused training kernels need a training accelerator and (splash) lengths in tiles of 128, while a
    prompt is any length and decoding reads one token at a time; the parameters are the same either way.
    """
    model_cfg = dataclasses.replace(model_cfg, attention="xla")
    return nnx.split(nnx.eval_shape(lambda: Transformer(model_cfg, rngs=nnx.Rngs(0))))[0]


def _choose(logits_BxV: jax.Array, key: jax.Array, temperature: jax.Array, top_p: jax.Array, *,
            greedy: bool, top_k: int, use_top_p: bool) -> jax.Array:
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
def _decode(graphdef: nnx.GraphDef, params: dict, layers: tuple[dict, ...], prompt_BxP: jax.Array,
            lengths_B: jax.Array, limits_B: jax.Array, key: jax.Array, temperature: jax.Array, top_p: jax.Array,
            eos_id: jax.Array, *, steps: int, greedy: bool, top_k: int, use_top_p: bool) -> jax.Array:
    """New tokens [B, S]; row b is valid up to its first EOS and its limit (later entries are junk).

    `layers` holds the blocks' parameters one layer each (`unstack_layers`); `params`' stacked blocks
    are not read."""
    model = nnx.merge(graphdef, params)
    decode = functools.partial(model.decode, layers=layers)
    B, P = prompt_BxP.shape
    choose = functools.partial(_choose, temperature=temperature, top_p=top_p, greedy=greedy,
                               top_k=top_k, use_top_p=use_top_p)
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
        logits_Bx1xV, cache = decode(jax.lax.dynamic_slice_in_dim(out_BxS, i - 1, 1, axis=1),
                                     positions_Bx1, jnp.ones((B, 1), jnp.int32), cache, P + i - 1)
        key, draw = jax.random.split(key)
        token_B = choose(logits_Bx1xV[:, 0], draw)
        out_BxS = jax.lax.dynamic_update_slice_in_dim(out_BxS, token_B[:, None], i, axis=1)
        done_B = done_B | (token_B == eos_id) | (i + 1 >= limits_B)
        return i + 1, out_BxS, done_B, cache, key

    return jax.lax.while_loop(unfinished, step, (jnp.int32(1), out_BxS, done_B, cache, key))[1]


def generate(graphdef: nnx.GraphDef, params: dict, prompts: list[list[int]], *, max_new_tokens: int,
             max_len: int, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0,
             eos_id: int = -1) -> list[list[int]]:
    """Each prompt's continuation (new ids only, EOS excluded): up to max_new_tokens, EOS or max_len.

    temperature 0 is greedy; top_k 0 and top_p 1 turn those filters off. Every prompt must be
    non-empty and shorter than max_len, the model's window.
    """
    assert prompts and all(0 < len(p) < max_len for p in prompts), \
        f"prompts must be non-empty and shorter than max_len={max_len}"
    assert temperature >= 0 and top_k >= 0 and 0 < top_p <= 1, (temperature, top_k, top_p)
    lengths_B = np.array([len(p) for p in prompts], np.int32)
    limits_B = np.minimum(max_new_tokens, max_len - lengths_B)
    steps = int(limits_B.max())
    if steps <= 0:
        return [[] for _ in prompts]
    P = min(-(-int(lengths_B.max()) // _PROMPT_BUCKET) * _PROMPT_BUCKET, max_len)
    prompt_BxP = np.zeros((len(prompts), P), np.int32)
    for row, prompt in zip(prompt_BxP, prompts):
        row[P - len(prompt):] = prompt
    # Decoding runs the layers apart (see Transformer.decode): a copy of the blocks' weights for this call.
    # The stacked blocks go unused in the program, and jit leaves unused arguments out of it.
    layers = unstack_layers(params["blocks"])
    out_BxS = _decode(graphdef, params, layers, jnp.asarray(prompt_BxP), jnp.asarray(lengths_B),
                      jnp.asarray(limits_B), jax.random.key(seed), jnp.float32(max(temperature, 1e-6)),
                      jnp.float32(top_p), jnp.int32(eos_id), steps=steps, greedy=temperature == 0.0,
                      top_k=top_k, use_top_p=top_p < 1.0)
    results = []
    for row, limit in zip(np.asarray(out_BxS).tolist(), limits_B):
        row = row[:limit]
        results.append(row[:row.index(eos_id)] if eos_id in row else row)
    return results


def sample(graphdef: nnx.GraphDef, params: dict, prompt_ids: list[int], *, num_tokens: int,
           max_len: int, temperature: float, seed: int, eos_id: int) -> list[int]:
    """The prompt's continuation (new ids only), up to num_tokens, the window's end, or EOS.

    An empty prompt starts after an EOS, as the first document after another does in training.
    """
    prompt_ids = (prompt_ids or [eos_id])[-(max_len - 1):]
    return generate(graphdef, params, [prompt_ids], max_new_tokens=num_tokens, max_len=max_len,
                    temperature=temperature, seed=seed, eos_id=eos_id)[0]


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


def _main(argv: list[str]) -> int:
    """python -m jaxlm.generate: continue prompts (causal) or fill <mask>s (bert) with a trained run."""
    import argparse
    import logging

    # Entry point only: it opens the run's checkpoint through the export room's run reader.
    from jaxlm.data.tokenizer import CharTokenizer, SentencePieceTokenizer
    from jaxlm.export import ExportError
    from jaxlm.export.__main__ import open_run

    parser = argparse.ArgumentParser(prog="python -m jaxlm.generate", description=_main.__doc__)
    parser.add_argument("--workdir", required=True, help="a jaxlm run")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: the newest)")
    parser.add_argument("--prompt", action="append", default=None,
                        help="text to continue (repeat for a batch); bert: text with <mask> pieces")
    parser.add_argument("--num_tokens", type=int, default=64, help="new tokens per prompt at most")
    parser.add_argument("--temperature", type=float, default=0.8, help="0 = greedy")
    parser.add_argument("--top_k", type=int, default=0, help="sample from the k likeliest tokens (0 = all)")
    parser.add_argument("--top_p", type=float, default=1.0, help="sample from the smallest set with this mass")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.getLogger("absl").setLevel(logging.ERROR)  # Orbax's notes on read-only restores
    if args.temperature < 0 or args.top_k < 0 or not 0 < args.top_p <= 1 or args.num_tokens < 1:
        print("error: need --temperature >= 0, --top_k >= 0, 0 < --top_p <= 1 and --num_tokens >= 1",
              file=sys.stderr)
        return 2
    try:
        _, model_cfg, params, tokenizer_path, step = open_run(args.workdir, args.step)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    tokenizer = (SentencePieceTokenizer if tokenizer_path.endswith(".model") else CharTokenizer).load(tokenizer_path)
    graphdef = inference_graphdef(model_cfg)
    prompts = args.prompt or [""]
    if not model_cfg.causal:
        for text in prompts:
            ids = [tokenizer.bos_id, *tokenizer.encode(text)[:model_cfg.max_len - 2], tokenizer.eos_id]
            predictions = fill_mask(graphdef, params, ids, top_k=5)
            masks = [i for i, t in enumerate(ids) if t == tokenizer.mask_id]
            print(f"{text!r}: no <mask> to fill" if not masks else text)
            for i in masks:
                print(f"  <mask> at {i}: " + ", ".join(f"{tokenizer.decode([t])!r} {p:.3f}" for t, p in predictions[i]))
        return 0
    encoded = [(tokenizer.encode(text) or [tokenizer.eos_id])[-(model_cfg.max_len - 1):] for text in prompts]
    outputs = generate(graphdef, params, encoded, max_new_tokens=args.num_tokens, max_len=model_cfg.max_len,
                       temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed,
                       eos_id=tokenizer.eos_id)
    for text, new_ids in zip(prompts, outputs):
        print(f"--- step {step} | {text!r}\n{text}{tokenizer.decode(new_ids)}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
