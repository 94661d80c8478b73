"""Tests for jaxlm/data/masking.py: BERT's 15% / 80-10-10 statistics, specials and determinism."""

import numpy as np
import pytest

from jaxlm.data.masking import MASK_STREAM, _threshold, mask_tokens, slot_bits

VOCAB, MASK, SPECIALS = 1000, 4, frozenset(range(5))


def _rows(num_rows=2000, length=128, seed=0):
    """Random non-special tokens with specials sprinkled in and padded tails."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(5, VOCAB, size=(num_rows, length)).astype(np.int32)
    tokens[rng.random(tokens.shape) < 0.05] = 2
    tokens[rng.random(tokens.shape) < 0.05] = 3
    tokens[:, -10:] = 0
    return tokens


def _mask(tokens, step=0, example_ids=None, seed=0, mask_prob=0.15):
    example_ids = np.arange(len(tokens)) if example_ids is None else example_ids
    return mask_tokens(
        tokens,
        seed=seed,
        step=step,
        example_ids_B=example_ids,
        mask_prob=mask_prob,
        mask_id=MASK,
        vocab_size=VOCAB,
        special_ids=SPECIALS,
    )


def test_bert_statistics():
    tokens = _rows()
    inputs, targets, weights = _mask(tokens)
    assert inputs.dtype == targets.dtype == np.int32 and weights.dtype == np.float32
    np.testing.assert_array_equal(targets, tokens)
    chosen = weights == 1
    assert set(np.unique(weights)) == {0.0, 1.0}
    special = np.isin(tokens, list(SPECIALS))
    assert not (chosen & special).any()
    # Unchosen tokens are untouched.
    np.testing.assert_array_equal(inputs[~chosen], tokens[~chosen])
    # About 230k eligible tokens: the standard error of 15% is 0.0007, so 0.005 is a wide margin.
    assert chosen.sum() / (~special).sum() == pytest.approx(0.15, abs=0.005)
    masked = (inputs == MASK)[chosen].mean()
    kept = (inputs == tokens)[chosen].mean()
    replaced = 1 - masked - kept
    assert masked == pytest.approx(0.8, abs=0.01)
    assert replaced == pytest.approx(0.1 * (1 - 1 / (VOCAB - 5)), abs=0.01)
    assert kept == pytest.approx(0.1, abs=0.01)
    # Random replacements are uniform over the non-special ids and never special.
    replacements = inputs[chosen & (inputs != MASK) & (inputs != tokens)]
    assert replacements.min() >= 5 and replacements.max() < VOCAB
    # About 3,100 replacements: each fifth of the id range holds 20% with a standard error of 0.7%.
    fifths = np.histogram(replacements, bins=np.linspace(5, VOCAB, 6))[0] / len(replacements)
    np.testing.assert_allclose(fifths, 0.2, atol=0.025)


def test_mask_prob_is_honoured():
    _, _, weights = _mask(_rows(500), mask_prob=0.4)
    eligible = ~np.isin(_rows(500), list(SPECIALS))
    assert weights.sum() / eligible.sum() == pytest.approx(0.4, abs=0.01)


def test_deterministic_per_seed_step_and_example():
    tokens = _rows(8)
    first = _mask(tokens, step=3)
    for a, b in zip(first, _mask(tokens, step=3)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[2], _mask(tokens, step=4)[2])
    assert not np.array_equal(first[2], _mask(tokens, step=3, seed=1)[2])
    assert not np.array_equal(first[2], _mask(tokens, step=-1)[2])
    # A row masks the same whatever batch it sits in: only its example id matters.
    alone = _mask(tokens[5:6], step=3, example_ids=np.array([5]))
    for a, b in zip(first, alone):
        np.testing.assert_array_equal(a[5:6], b)
    swapped = _mask(tokens[[5, 2]], step=3, example_ids=np.array([5, 2]))
    np.testing.assert_array_equal(swapped[0], first[0][[5, 2]])


@pytest.mark.parametrize("mask_prob", [0.15, 0.45, 0.7, 0.9, 0.123456789, 1.0])
def test_choice_is_a_float32_compare_of_the_slot_bits(mask_prob):
    """Slot l of row b is chosen when u = (its top 24 bits) / 2**24 < mask_prob in float32, masked when
    u < 0.8 mask_prob, kept as it is from 0.9 mask_prob: the definition masks have always had."""
    tokens = np.full((64, 512), 100, np.int32)
    inputs, _, weights = _mask(tokens, step=3, seed=5, mask_prob=mask_prob)
    u = (slot_bits((MASK_STREAM, 5, 3), np.arange(64), 512) >> np.uint64(40)).astype(np.float32) * np.float32(2**-24)
    chosen = u < np.float32(mask_prob)
    kept = chosen & ~(u < np.float32(mask_prob * (0.8 + 0.1)))
    np.testing.assert_array_equal(weights == 1, chosen)
    np.testing.assert_array_equal(inputs == MASK, u < np.float32(mask_prob * 0.8))  # random ids are never MASK
    assert (inputs[~chosen | kept] == 100).all()


def test_thresholds_split_the_24_bit_values_where_float32_does():
    """k < _threshold(p) exactly when k / 2**24 < p in float32, at the edge itself, for many p."""
    for p in [*np.random.default_rng(0).random(3000).tolist(), 0.15, 0.45, 0.7, 0.95, 0.0, 1.0]:
        edge = int(_threshold(p))
        for k in (edge - 1, edge):
            if 0 <= k < 2**24:
                assert (np.float32(k) * np.float32(2**-24) < np.float32(p)) == (k < edge), (p, k)
