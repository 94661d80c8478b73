"""Decoding speed of a gpt2_small-shaped model (124M, random weights, float32) on this machine's CPU.

    JAX_PLATFORMS=cpu python benchmarks/decode_speed.py [--new_tokens=256] [--prompt_len=32]

Four ways to greedily decode --new_tokens tokens after a random prompt (batch 1), each timed after a
warm-up run so compilation is not counted (cache and hf alternate, so both see the same load):
  cache      jaxlm.generate: one jitted program, prefill then one-token steps against a KV cache;
  recompute  a full forward pass over the whole prefix every step (jitted per prefix length, rounded
             up to a multiple of 32 so only a few shapes compile), as decoding without a cache does;
  window     jaxlm's sampler before the cache: a full forward pass over the model's whole window
             (max_len 1024) every step; each step costs the same, so --window_tokens of them are timed;
  hf         transformers' generate (PyTorch, KV cache) on the same weights exported with jaxlm.export,
             with torch using every core.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import pathlib
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from jaxlm.config import model_config  # noqa: E402
from jaxlm.export.convert import to_hf  # noqa: E402
from jaxlm.generate import decode as generate  # noqa: E402
from jaxlm.model.transformer import Transformer  # noqa: E402

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"
_BUCKET = 32


def gpt2_small(num_layers: int = 0):
    """(ModelConfig, graphdef, params) of configs/gpt2_small.py in float32, randomly initialised.

    `num_layers` > 0 replaces the recipe's 12 (a quick check of the script, not a measurement).
    """
    sys.path.insert(0, str(CONFIGS))
    import gpt2_small as recipe

    cfg = model_config(recipe.get_config(), vocab_size=recipe.get_config().model.vocab_size)
    cfg = dataclasses.replace(cfg, dtype="float32")  # the recipe's bfloat16 is slow on a CPU
    if num_layers:
        cfg = dataclasses.replace(cfg, num_layers=num_layers)
    graphdef, params = nnx.split(Transformer(cfg, rngs=nnx.Rngs(0)))
    return cfg, graphdef, nnx.to_pure_dict(params)


@functools.partial(jax.jit, static_argnums=0)
def _next_token(graphdef, params, window_1xL, last):
    model = nnx.merge(graphdef, params)
    length = window_1xL.shape[1]
    logits_1xLxV = model(window_1xL, jnp.arange(length)[None], jnp.ones_like(window_1xL))
    return jnp.argmax(logits_1xLxV[0, last]).astype(jnp.int32)


def recompute(graphdef, params, prompt: list[int], new_tokens: int) -> list[int]:
    """Greedy decoding by a full forward pass over the prefix for every new token."""
    ids = list(prompt)
    for _ in range(new_tokens):
        width = -(-len(ids) // _BUCKET) * _BUCKET
        window = jnp.asarray([ids + [0] * (width - len(ids))], jnp.int32)
        ids.append(int(_next_token(graphdef, params, window, len(ids) - 1)))
    return ids[len(prompt) :]


def timed(fn, repeats: int, warm: bool = True) -> tuple[float, object]:
    """Best wall time of `repeats` calls (after one warm-up call unless `warm` is False), and the last result."""
    result = fn() if warm else None
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--new_tokens", type=int, default=256)
    parser.add_argument("--prompt_len", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of the fast decoders (best is kept)")
    parser.add_argument("--window_tokens", type=int, default=16, help="steps timed for the window decoder")
    parser.add_argument("--layers", type=int, default=0, help="blocks instead of the recipe's 12 (smoke runs)")
    args = parser.parse_args()
    cfg, graphdef, params = gpt2_small(args.layers)
    prompt = np.random.default_rng(0).integers(5, cfg.vocab_size, args.prompt_len).tolist()
    n = args.new_tokens
    print(
        f"gpt2_small shape: {cfg.num_layers} layers, width {cfg.width}, vocab {cfg.vocab_size}; "
        f"prompt {args.prompt_len}, {n} new tokens, greedy, batch 1; {os.cpu_count()} CPU cores",
        flush=True,
    )

    import torch
    import transformers

    with tempfile.TemporaryDirectory() as directory:
        to_hf(cfg, params, directory)
        hf = transformers.AutoModelForCausalLM.from_pretrained(directory).eval()
    ids = torch.tensor([prompt])

    def hf_generate() -> list[int]:
        with torch.no_grad():
            out = hf.generate(
                ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n, do_sample=False
            )
        return out[0, len(prompt) :].tolist()

    def cache_generate() -> list[int]:
        return generate.generate(graphdef, params, [prompt], max_new_tokens=n, max_len=cfg.max_len)[0]

    start = time.perf_counter()
    cached = cache_generate()
    print(f"cache      compile + first run {time.perf_counter() - start:.1f} s", flush=True)
    theirs = hf_generate()
    # The machine is shared: alternate the two fast decoders so both see the same load; keep each one's best.
    cache_s = hf_s = float("inf")
    for _ in range(args.repeats):
        cache_s = min(cache_s, timed(cache_generate, 1, warm=False)[0])
        hf_s = min(hf_s, timed(hf_generate, 1, warm=False)[0])
    print(f"cache      {n / cache_s:8.1f} tokens/s ({cache_s:.2f} s)", flush=True)
    print(
        f"hf         {n / hf_s:8.1f} tokens/s ({hf_s:.2f} s), torch {torch.__version__} with "
        f"{torch.get_num_threads()} threads; same tokens as jaxlm: {theirs == cached}",
        flush=True,
    )

    recompute_s, recomputed = timed(lambda: recompute(graphdef, params, prompt, n), 1)
    assert recomputed == cached, "the two jaxlm decoders disagree"
    print(
        f"recompute  {n / recompute_s:8.1f} tokens/s ({recompute_s:.2f} s); cache is "
        f"{recompute_s / cache_s:.1f}x faster",
        flush=True,
    )

    window = jnp.zeros((1, cfg.max_len), jnp.int32).at[0, : len(prompt)].set(jnp.asarray(prompt))
    _next_token(graphdef, params, window, len(prompt) - 1).block_until_ready()
    start = time.perf_counter()
    for i in range(args.window_tokens):
        token = _next_token(graphdef, params, window, len(prompt) - 1 + i)
        window = window.at[0, len(prompt) + i].set(token)
    window_s = (time.perf_counter() - start) / args.window_tokens
    assert window[0, len(prompt) : len(prompt) + args.window_tokens].tolist() == cached[: args.window_tokens]
    print(
        f"window     {1 / window_s:8.1f} tokens/s ({window_s:.2f} s a token); cache is "
        f"{window_s * n / cache_s:.1f}x faster",
        flush=True,
    )
    print(f"load average (1, 5, 15 min) at the end: {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
