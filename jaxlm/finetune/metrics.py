"""Downstream metrics as GLUE defines them, on host NumPy arrays (no JAX).

Classification metrics take predicted and gold class ids of equal length (padding already dropped:
`drop_ignored`); the correlations take floats. Each equals its reference to float64 rounding: accuracy,
F1 and Matthews as scikit-learn's `accuracy_score`, `f1_score`, `matthews_corrcoef`; Pearson and Spearman
as scipy's `pearsonr`, `spearmanr`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

IGNORE_INDEX = -100  # the label of positions that carry no loss and no metric (Hugging Face's convention)


def _pair(predictions: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p, y = np.asarray(predictions).reshape(-1), np.asarray(labels).reshape(-1)
    if p.shape != y.shape:
        raise ValueError(f"{p.size} predictions for {y.size} labels")
    if p.size == 0:
        raise ValueError("no examples to score")
    return p, y


def drop_ignored(
    predictions: ArrayLike, labels: ArrayLike, ignore_index: int = IGNORE_INDEX
) -> tuple[np.ndarray, np.ndarray]:
    """Flattened predictions and labels where the label is not `ignore_index` (padding, non-first word pieces)."""
    p, y = np.asarray(predictions), np.asarray(labels)
    if p.shape != y.shape:
        raise ValueError(f"predictions of shape {p.shape} for labels of shape {y.shape}")
    keep = y != ignore_index
    return p[keep], y[keep]


def accuracy(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Fraction of predictions equal to their label."""
    p, y = _pair(predictions, labels)
    return float(np.mean(p == y))


def _f1_of(tp: int, fp: int, fn: int) -> float:
    # 0 when the class is absent from both sides, as scikit-learn's zero_division="warn" (without the warning).
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def f1(predictions: ArrayLike, labels: ArrayLike, positive: int = 1) -> float:
    """F1 of the `positive` class (GLUE's MRPC and QQP; scikit-learn's binary `f1_score`)."""
    p, y = _pair(predictions, labels)
    p, y = p == positive, y == positive
    return _f1_of(int(np.sum(p & y)), int(np.sum(p & ~y)), int(np.sum(~p & y)))


def macro_f1(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Unweighted mean of per-class F1 over the classes seen in labels or predictions (`average="macro"`)."""
    p, y = _pair(predictions, labels)
    return float(np.mean([f1(p, y, positive=c) for c in np.union1d(p, y)]))


def matthews(predictions: ArrayLike, labels: ArrayLike) -> float:
    """Matthews correlation (GLUE's CoLA), multi-class as Gorodkin's R_K; 0 when either side is one class."""
    p, y = _pair(predictions, labels)
    classes, ids = np.unique(np.concatenate([y, p]), return_inverse=True)
    confusion = np.zeros((classes.size, classes.size), np.float64)  # rows gold, columns predicted
    np.add.at(confusion, (ids[: y.size], ids[y.size :]), 1.0)
    gold, pred, n = confusion.sum(axis=1), confusion.sum(axis=0), float(y.size)
    cov_gold_pred = np.trace(confusion) * n - gold @ pred
    cov_pred = n * n - pred @ pred
    cov_gold = n * n - gold @ gold
    if cov_pred * cov_gold == 0:  # a constant side has no correlation; scikit-learn returns 0, not nan
        return 0.0
    return float(cov_gold_pred / np.sqrt(cov_pred * cov_gold))


def pearson(x: ArrayLike, y: ArrayLike) -> float:
    """Pearson correlation (GLUE's STS-B); nan when either side is constant or holds a nan, as scipy's."""
    a, b = _pair(x, y)
    if a.size < 2:
        raise ValueError("a correlation needs at least 2 examples")
    a, b = a.astype(np.float64), b.astype(np.float64)
    if np.isnan(a).any() or np.isnan(b).any() or (a == a[0]).all() or (b == b[0]).all():
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    # Normalise before the dot product (as scipy does) so large scores cannot overflow.
    r = (a / np.linalg.norm(a)) @ (b / np.linalg.norm(b))
    return float(np.clip(r, -1.0, 1.0))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing the mean of the ranks they span (scipy's rankdata, method="average")."""
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    new_value = np.concatenate([[True], sorted_x[1:] != sorted_x[:-1]])
    starts = np.flatnonzero(new_value)
    ends = np.append(starts[1:], x.size)  # one past each run of equal values
    group = np.cumsum(new_value) - 1
    ranks = np.empty(x.size, np.float64)
    ranks[order] = (starts[group] + ends[group] + 1) / 2
    return ranks


def spearman(x: ArrayLike, y: ArrayLike) -> float:
    """Spearman rank correlation (GLUE's STS-B): Pearson of average ranks; nan as `pearson`."""
    a, b = _pair(x, y)
    a, b = a.astype(np.float64), b.astype(np.float64)
    if np.isnan(a).any() or np.isnan(b).any():  # ranks would hide a nan
        return float("nan")
    return pearson(_average_ranks(a), _average_ranks(b))
