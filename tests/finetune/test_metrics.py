"""The downstream metrics equal their references: scikit-learn and scipy."""

import math
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import scipy.stats
import sklearn.metrics

from jaxlm.finetune import metrics

SEEDS = range(5)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_metrics_load_without_jax():
    """The metrics run on the host beside any trainer (or none): importing them must not pull in JAX."""
    code = "import sys, jaxlm.finetune.metrics; assert 'jax' not in sys.modules, 'jax was imported'"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def _classes(seed: int, num_classes: int, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Gold class ids and predictions that agree with them about 60% of the time."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, n)
    predictions = np.where(rng.random(n) < 0.6, labels, rng.integers(0, num_classes, n))
    return predictions, labels


@pytest.mark.parametrize("num_classes", [2, 3, 5])
@pytest.mark.parametrize("seed", SEEDS)
def test_classification_metrics_equal_scikit_learn(seed, num_classes):
    p, y = _classes(seed, num_classes)
    assert metrics.accuracy(p, y) == pytest.approx(sklearn.metrics.accuracy_score(y, p), rel=1e-12)
    assert metrics.matthews(p, y) == pytest.approx(sklearn.metrics.matthews_corrcoef(y, p), rel=1e-12)
    assert metrics.macro_f1(p, y) == pytest.approx(sklearn.metrics.f1_score(y, p, average="macro"), rel=1e-12)
    per_class = sklearn.metrics.f1_score(y, p, average=None, labels=range(num_classes))
    for c in range(num_classes):
        assert metrics.f1(p, y, positive=c) == pytest.approx(per_class[c], rel=1e-12)
    if num_classes == 2:
        assert metrics.f1(p, y) == pytest.approx(sklearn.metrics.f1_score(y, p), rel=1e-12)
        assert metrics.f1(p, y, positive=0) == pytest.approx(sklearn.metrics.f1_score(y, p, pos_label=0), rel=1e-12)


@pytest.mark.parametrize(
    "predictions, labels",
    [
        ([1, 1, 1, 1], [1, 1, 1, 1]),  # one class everywhere
        ([0, 0, 0, 0], [0, 0, 0, 0]),  # no positives at all: F1 has no examples to count
        ([0, 0, 0, 0], [0, 1, 0, 1]),  # a constant prediction
        ([0, 1, 0, 1], [1, 1, 1, 1]),  # constant labels
        ([1, 0, 1, 0], [0, 1, 0, 1]),  # all wrong
        ([1], [1]),
    ],
)
def test_degenerate_cases_equal_scikit_learn(predictions, labels):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn warns where it returns 0 by convention; we return it quietly
        want_f1 = sklearn.metrics.f1_score(labels, predictions, zero_division="warn")
        want_mcc = sklearn.metrics.matthews_corrcoef(labels, predictions)
    assert metrics.accuracy(predictions, labels) == sklearn.metrics.accuracy_score(labels, predictions)
    assert metrics.f1(predictions, labels) == want_f1
    assert metrics.matthews(predictions, labels) == want_mcc


def test_macro_f1_counts_a_class_only_predicted():
    p, y = [0, 2, 1, 1, 2], [0, 1, 1, 1, 0]
    assert metrics.macro_f1(p, y) == pytest.approx(sklearn.metrics.f1_score(y, p, average="macro"), rel=1e-12)


def test_unequal_or_empty_inputs_are_refused():
    with pytest.raises(ValueError, match="3 predictions for 2 labels"):
        metrics.accuracy([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="no examples"):
        metrics.f1([], [])
    with pytest.raises(ValueError, match="at least 2"):
        metrics.pearson([1.0], [2.0])


@pytest.mark.parametrize("seed", SEEDS)
def test_correlations_equal_scipy(seed):
    rng = np.random.default_rng(seed)
    y = rng.uniform(0, 5, 100)
    x = y + rng.normal(0, 1.5, 100)
    assert metrics.pearson(x, y) == pytest.approx(scipy.stats.pearsonr(x, y).statistic, rel=1e-12)
    assert metrics.spearman(x, y) == pytest.approx(scipy.stats.spearmanr(x, y).statistic, rel=1e-12)
    # STS-B's gold scores repeat (steps of 0.2): ties take the mean of their ranks.
    y_tied, x_tied = np.round(y * 5) / 5, np.round(x)
    assert metrics.spearman(x_tied, y_tied) == pytest.approx(scipy.stats.spearmanr(x_tied, y_tied).statistic, rel=1e-12)
    assert metrics.pearson(x_tied, y_tied) == pytest.approx(scipy.stats.pearsonr(x_tied, y_tied).statistic, rel=1e-12)


def test_average_ranks_equal_scipy():
    x = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, 5.0])
    np.testing.assert_array_equal(metrics._average_ranks(x), scipy.stats.rankdata(x))


def test_constant_or_nan_input_correlates_to_nan_as_scipy():
    """A constant side has no correlation: nan (scipy's value, without its warning), not an error."""
    x, constant = [1.0, 2.0, 3.0], [2.0, 2.0, 2.0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert math.isnan(scipy.stats.pearsonr(x, constant).statistic)
        assert math.isnan(scipy.stats.spearmanr(x, constant).statistic)
    for fn in (metrics.pearson, metrics.spearman):
        assert math.isnan(fn(x, constant))
        assert math.isnan(fn(constant, x))
        assert math.isnan(fn(x, [1.0, float("nan"), 3.0]))
