"""BERT's masked-LM corruption of packed rows, drawn from (seed, step, example) alone."""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

# The first word of the seed, kept apart from the data-order stream (numpy's SeedSequence gives
# [a, b] and [a, b, 0] the same state, so streams are told apart by a tag, not by length).
MASK_STREAM = 1
_MASK_SHARE, _RANDOM_SHARE = 0.8, 0.1  # Of the chosen tokens; the remaining 10% stay unchanged.


def mask_tokens(tokens_BxL: np.ndarray, *, seed: int, step: int, example_ids_B: np.ndarray, mask_prob: float,
                mask_id: int, vocab_size: int,
                special_ids: Collection[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inputs_BxL, targets_BxL, weights_BxL) of BERT's corruption: 80% mask / 10% random / 10% kept.

    Each non-special token is chosen with probability `mask_prob`; a chosen token becomes `mask_id`
    (80%), a uniformly random non-special id (10%) or stays (10%). Targets are the original ids and
    weights are 1.0 exactly where a token was chosen.
    Row b draws from `np.random.default_rng([MASK_STREAM, seed, step, example_ids_B[b]])`, so its
    corruption does not depend on the batch it sits in and a resumed run masks the same way. Negative
    values (step -1 for validation) are taken modulo 2**64, a stream no training step reaches.
    """
    tokens_BxL = np.asarray(tokens_BxL, np.int32)
    specials = np.array(sorted(special_ids), np.int64)
    candidates = np.setdiff1d(np.arange(vocab_size), specials)
    length = tokens_BxL.shape[1]
    choose_BxL, kind_BxL = np.empty(tokens_BxL.shape), np.empty(tokens_BxL.shape)
    replacement_BxL = np.empty(tokens_BxL.shape, np.int32)
    for b, example in enumerate(np.asarray(example_ids_B).tolist()):
        rng = np.random.default_rng([MASK_STREAM, seed % 2**64, step % 2**64, example % 2**64])
        choose_BxL[b], kind_BxL[b] = rng.random((2, length))
        replacement_BxL[b] = candidates[rng.integers(len(candidates), size=length)]
    chosen_BxL = (choose_BxL < mask_prob) & ~np.isin(tokens_BxL, specials)
    inputs_BxL = np.where(chosen_BxL & (kind_BxL < _MASK_SHARE), mask_id, tokens_BxL)
    randomized_BxL = chosen_BxL & (kind_BxL >= _MASK_SHARE) & (kind_BxL < _MASK_SHARE + _RANDOM_SHARE)
    inputs_BxL = np.where(randomized_BxL, replacement_BxL, inputs_BxL).astype(np.int32)
    return inputs_BxL, tokens_BxL.copy(), chosen_BxL.astype(np.float32)
