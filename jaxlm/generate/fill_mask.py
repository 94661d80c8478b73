"""Fill-mask with a masked LM: the likeliest tokens at each masked position of a text, as lines to print.

A text marks what to fill with `<mask>` (the tokenizer's mask piece) or BERT's `[MASK]`; both mean
the mask token. `python -m jaxlm.generate` prints these lines for a bert run, and the end of a bert
training run prints them for `sample.prompt` with every seventh piece masked.
"""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
from flax import nnx

from jaxlm.data.tokenizer import MASK_ID, SPECIAL_PIECES, Tokenizer

MASK = SPECIAL_PIECES[MASK_ID]  # "<mask>"
MASK_SPELLINGS = (MASK, "[MASK]")


@functools.partial(jax.jit, static_argnames=("graphdef", "top_k"))
def _top_k_predictions(
    graphdef: nnx.GraphDef, params: dict, ids_1xL: jax.Array, *, top_k: int
) -> tuple[jax.Array, jax.Array]:
    model = nnx.merge(graphdef, params)
    length = ids_1xL.shape[1]
    logits_1xLxV = model(ids_1xL, jnp.arange(length)[None], jnp.ones_like(ids_1xL))
    probs_LxV = jax.nn.softmax(logits_1xLxV[0].astype(jnp.float32), axis=-1)
    return jax.lax.top_k(probs_LxV, top_k)


def fill_mask(graphdef: nnx.GraphDef, params: dict, ids: list[int], *, top_k: int = 3) -> list[list[tuple[int, float]]]:
    """For every position of ids, the top_k (id, probability) predictions of a masked LM."""
    probs_LxK, ids_LxK = _top_k_predictions(graphdef, params, jnp.array([ids], jnp.int32), top_k=top_k)
    return [
        [(int(i), float(p)) for i, p in zip(row_ids, row_probs)]
        for row_ids, row_probs in zip(ids_LxK.tolist(), probs_LxK.tolist())
    ]


def encode_masked(tokenizer: Tokenizer, text: str, max_len: int) -> list[int]:
    """<s> text </s> as ids, each `<mask>` or `[MASK]` the mask id, cut to `max_len` (as bert's rows are).

    The text between masks is encoded apart, so the masks are mask ids whatever the tokenizer makes of
    their spelling (a char tokenizer spells "<mask>" out).
    """
    parts = re.split("|".join(map(re.escape, MASK_SPELLINGS)), text)
    ids = tokenizer.encode(parts[0])
    for part in parts[1:]:
        ids += [tokenizer.mask_id, *tokenizer.encode(part)]
    return [tokenizer.bos_id, *ids[: max_len - 2], tokenizer.eos_id]


def fill_lines(
    graphdef: nnx.GraphDef,
    params: dict,
    tokenizer: Tokenizer,
    ids: list[int],
    *,
    top_k: int,
    was: dict[int, int] | None = None,
) -> list[str]:
    """`  <mask> at i (was 'x'): 'a' 0.412, 'b' 0.108, ...` for each mask id in `ids`; `was` gives the
    token a position held before it was masked, when known."""
    predictions = fill_mask(graphdef, params, ids, top_k=top_k)
    lines = []
    for i, token in enumerate(ids):
        if token != tokenizer.mask_id:
            continue
        original = f" (was {tokenizer.decode([was[i]])!r})" if was and i in was else ""
        guesses = ", ".join(f"{tokenizer.decode([t])!r} {p:.3f}" for t, p in predictions[i])
        lines.append(f"  {MASK} at {i}{original}: {guesses}")
    return lines


def demo_lines(graphdef: nnx.GraphDef, params: dict, tokenizer: Tokenizer, text: str, max_len: int) -> list[str]:
    """`text` with every seventh piece masked (at least one), and the model's top 3 for each mask."""
    ids = encode_masked(tokenizer, text, max_len)
    masked = list(range(1, len(ids) - 1))[::7] or [1]  # the same positions on every run
    corrupted = [tokenizer.mask_id if i in masked else t for i, t in enumerate(ids)]
    shown = " ".join(MASK if i in masked else tokenizer.decode([t]) for i, t in enumerate(ids[1:-1], start=1))
    return [
        f"input:  {shown}",
        *fill_lines(graphdef, params, tokenizer, corrupted, top_k=3, was={i: ids[i] for i in masked}),
    ]
