"""BERT's masked-LM corruption of packed rows, drawn from (seed, step, example) alone."""

from __future__ import annotations

import functools
import math
from collections.abc import Collection

import numpy as np

# The first word hashed into every row's key, kept apart from the data-order stream (2) and pairing (3).
MASK_STREAM = 1
_MASK_SHARE, _RANDOM_SHARE = 0.8, 0.1  # Of the chosen tokens; the remaining 10% stay unchanged.
_GOLDEN = 0x9E3779B97F4A7C15  # splitmix64's increment: 2**64 / the golden ratio, odd
_MASK64 = 2**64 - 1


def _mix64(z: int | np.ndarray) -> int | np.ndarray:
    """splitmix64's finaliser, on a Python int in [0, 2**64) or elementwise on uint64: a bijection that
    spreads every input bit over all 64. Python ints are reduced by the mask; arrays wrap on their own."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def slot_bits(words: tuple[int, ...], rows_B: np.ndarray, length: int) -> np.ndarray:
    """64 random bits [B, L] for slot l of row b: a hash of (words..., rows_B[b], l), vectorised.

    A counter-based generator (splitmix64 over a hashed key): one numpy pass over the batch, where a
    `np.random.default_rng` per row costs about 50 us in seeding alone. Negative words and rows are
    taken modulo 2**64."""
    key = 0  # the words' part in Python ints: numpy's per-call cost would dominate on scalars
    for word in words:
        key = _mix64(((key ^ (int(word) % 2**64)) + _GOLDEN) & _MASK64)
    rows_B = np.array([row % 2**64 for row in np.asarray(rows_B).tolist()], np.uint64)
    key_B = _mix64((rows_B ^ key) + _GOLDEN)
    return _mix64(key_B[:, None] + _slot_offsets(length)[None, :])


@functools.lru_cache(maxsize=8)
def _slot_offsets(length: int) -> np.ndarray:
    """(l + 1) * golden for each slot l [L] uint64 (wrapping), added to a row's key before the last mix."""
    return np.arange(1, length + 1, dtype=np.uint64) * _GOLDEN


@functools.lru_cache(maxsize=8)
def _vocab_tables(vocab_size: int, special_ids: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(is_special [V] bool, the non-special ids [V - S] int32), built once per tokenizer."""
    is_special_V = np.zeros(vocab_size, bool)
    is_special_V[list(special_ids)] = True
    return is_special_V, np.flatnonzero(~is_special_V).astype(np.int32)


def mask_tokens(
    tokens_BxL: np.ndarray,
    *,
    seed: int,
    step: int,
    example_ids_B: np.ndarray,
    mask_prob: float,
    mask_id: int,
    vocab_size: int,
    special_ids: Collection[int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inputs_BxL, targets_BxL, weights_BxL) of BERT's corruption: 80% mask / 10% random / 10% kept.

    Each non-special token is chosen with probability `mask_prob`; a chosen token becomes `mask_id`
    (80%), a uniformly random non-special id (10%) or stays (10%). Targets are the original ids and
    weights are 1.0 exactly where a token was chosen.
    Slot l of row b draws from `slot_bits((MASK_STREAM, seed, step), example_ids_B[b], l)` alone, so a
    row's corruption does not depend on the batch it sits in and a resumed run masks the same way.
    Validation's step -1 is taken modulo 2**64, a stream no training step reaches.
    """
    tokens_BxL = np.asarray(tokens_BxL, np.int32)
    is_special_V, candidates = _vocab_tables(vocab_size, tuple(sorted(special_ids)))
    bits_BxL = slot_bits((MASK_STREAM, seed, step), example_ids_B, tokens_BxL.shape[1])
    # The top 24 bits k give u = k / 2**24, uniform in [0, 1); u < mask_prob chooses the token, and where
    # in [0, mask_prob) it falls picks mask / random / keep; u < x in float32 is k < _threshold(x).
    # The low 32 bits pick the random id (Lemire's multiply-shift: bias below len(candidates) / 2**32).
    k_BxL = bits_BxL >> np.uint64(40)
    chosen_BxL = (k_BxL < _threshold(mask_prob)) & ~is_special_V[tokens_BxL]
    masked_BxL = chosen_BxL & (k_BxL < _threshold(mask_prob * _MASK_SHARE))
    randomized = np.flatnonzero(
        chosen_BxL & ~masked_BxL & (k_BxL < _threshold(mask_prob * (_MASK_SHARE + _RANDOM_SHARE)))
    )
    inputs_BxL = tokens_BxL.copy()
    inputs_BxL[masked_BxL] = mask_id
    pick = ((bits_BxL.ravel()[randomized] & np.uint64(0xFFFFFFFF)) * np.uint64(len(candidates))) >> np.uint64(32)
    inputs_BxL.ravel()[randomized] = candidates[pick]
    return inputs_BxL, tokens_BxL.copy(), chosen_BxL.astype(np.float32)


def _threshold(probability: float) -> np.uint64:
    """The k in [0, 2**24] with (top 24 bits < k) exactly when u = bits / 2**24 < `probability` in float32.

    float32, because masks were drawn by comparing a float32 u with the Python float, which numpy does in
    float32: this keeps every run's masks bit for bit."""
    return np.uint64(min(max(math.ceil(float(np.float32(probability)) * 2**24), 0), 2**24))
