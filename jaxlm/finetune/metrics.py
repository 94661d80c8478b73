"""Downstream metrics as GLUE and seqeval define them, on host NumPy arrays (no JAX), and GLUE's submission TSV.

Classification metrics take predicted and gold class ids of equal length (padding already dropped:
`drop_ignored`); the correlations take floats. Each equals its reference to float64 rounding: accuracy,
F1 and Matthews as scikit-learn's `accuracy_score`, `f1_score`, `matthews_corrcoef`; Pearson and Spearman
as scipy's `pearsonr`, `spearmanr`; entity F1 as seqeval's default (conlleval) mode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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


# Entity-level F1, seqeval's default mode (conlleval's chunking). Chunks follow from consecutive (prefix, type)
# pairs alone, so IOB1, IOB2, IOE and IOBES tags all read correctly, and a stray I or E opens an entity.
def _split_tag(tag: str) -> tuple[str, str]:
    # seqeval's parse: the first character is the prefix, the type follows the first "-" ("_" when none).
    if not tag:
        raise ValueError("an empty tag: expected O or a tag such as B-PER")
    return tag[0], tag[1:].split("-", maxsplit=1)[-1] or "_"


def entities(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(type, first, last) of each entity in one sentence's tags: `["B-PER", "I-PER", "O"]` -> `[("PER", 0, 1)]`."""
    found = []
    prev, prev_type, start = "O", "_", 0
    for i, tag in enumerate([*tags, "O"]):  # the trailing O closes an entity open at the end
        now, type_ = _split_tag(tag)
        retyped = prev_type != type_
        # Prefixes are one character, so `in "ES"` is membership; "." is exempt from the type rule (conlleval).
        closes = prev in "ES" or (prev in "BI" and now in "BSO") or (prev not in "O." and retyped)
        opens = now in "BS" or (prev in "ESO" and now in "IE") or (now not in "O." and retyped)
        if closes:
            found.append((prev_type, start, i - 1))
        if opens:
            start = i
        prev, prev_type = now, type_
    return found


def entity_f1(predicted_tags: Sequence[Sequence[str]], gold_tags: Sequence[Sequence[str]]) -> dict[str, float]:
    """Micro precision, recall and F1 over entities (seqeval's default): one counts when type, start and end match."""
    if len(predicted_tags) != len(gold_tags):
        raise ValueError(f"{len(predicted_tags)} predicted sentences for {len(gold_tags)} gold ones")
    predicted, gold = set(), set()
    for n, (p, g) in enumerate(zip(predicted_tags, gold_tags)):
        if len(p) != len(g):
            raise ValueError(f"sentence {n}: {len(p)} predicted tags for {len(g)} gold tags")
        predicted.update((n, *e) for e in entities(p))
        gold.update((n, *e) for e in entities(g))
    tp = len(predicted & gold)
    precision = tp / len(predicted) if predicted else 0.0  # seqeval's zero_division: 0
    recall = tp / len(gold) if gold else 0.0
    f = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f}


def tags_from_ids(
    predictions: ArrayLike, labels: ArrayLike, label_names: Sequence[str], ignore_index: int = IGNORE_INDEX
) -> tuple[list[list[str]], list[list[str]]]:
    """Per-sentence predicted and gold tag names from `[batch, length]` ids, ignored positions left out."""
    p, y = np.asarray(predictions), np.asarray(labels)
    if p.shape != y.shape or p.ndim != 2:
        raise ValueError(f"predictions of shape {p.shape} for labels of shape {y.shape}; both [batch, length]")
    keep = y != ignore_index
    predicted = [[label_names[i] for i in row[k]] for row, k in zip(p, keep)]
    gold = [[label_names[i] for i in row[k]] for row, k in zip(y, keep)]
    return predicted, gold


METRICS: dict[str, Callable[[ArrayLike, ArrayLike], float]] = {
    "accuracy": accuracy,
    "f1": f1,
    "macro_f1": macro_f1,
    "matthews": matthews,
    "pearson": pearson,
    "spearman": spearman,
}

# What the GLUE leaderboard reports per task, in its order ("F1 / Accuracy" for MRPC and QQP).
GLUE_METRICS: dict[str, tuple[str, ...]] = {
    "cola": ("matthews",),
    "sst2": ("accuracy",),
    "mrpc": ("f1", "accuracy"),
    "qqp": ("f1", "accuracy"),
    "stsb": ("pearson", "spearman"),
    "mnli": ("accuracy",),
    "mnli_matched": ("accuracy",),
    "mnli_mismatched": ("accuracy",),
    "qnli": ("accuracy",),
    "rte": ("accuracy",),
    "wnli": ("accuracy",),
}


def _glue_task(task: str, table: dict) -> str:
    if task not in table:
        raise ValueError(f"unknown GLUE task {task!r}; known: {', '.join(table)}")
    return task


def task_metrics(task: str, predictions: ArrayLike, labels: ArrayLike) -> dict[str, float]:
    """The metrics GLUE reports for `task`, from class ids (scores for stsb): e.g. mrpc -> f1, accuracy."""
    return {name: METRICS[name](predictions, labels) for name in GLUE_METRICS[_glue_task(task, GLUE_METRICS)]}


def glue_score(task: str, metrics: dict[str, float]) -> float:
    """The task's one GLUE score: the unweighted mean of its reported metrics (as the leaderboard averages)."""
    return float(np.mean([metrics[name] for name in GLUE_METRICS[_glue_task(task, GLUE_METRICS)]]))


# GLUE's submission files, one per task (`ax`, the diagnostic set, is predicted with the MNLI classifier).
GLUE_SUBMISSION_FILES: dict[str, str] = {
    "cola": "CoLA.tsv",
    "sst2": "SST-2.tsv",
    "mrpc": "MRPC.tsv",
    "qqp": "QQP.tsv",
    "stsb": "STS-B.tsv",
    "mnli": "MNLI-m.tsv",  # TFDS glue/mnli's test_matched split
    "mnli_matched": "MNLI-m.tsv",
    "mnli_mismatched": "MNLI-mm.tsv",
    "qnli": "QNLI.tsv",
    "rte": "RTE.tsv",
    "wnli": "WNLI.tsv",
    "ax": "AX.tsv",
}

_NLI = ("entailment", "neutral", "contradiction")
# The labels GLUE's grader reads (its tasks' original files): 0/1 for the binary tasks, words for the NLI ones.
# TFDS (and Hugging Face datasets) name the binary classes instead, in the order of 0 and 1: those names
# translate to the digits.
_GLUE_LABELS: dict[str, tuple[str, ...]] = {
    "cola": ("unacceptable", "acceptable"),
    "sst2": ("negative", "positive"),
    "mrpc": ("not_equivalent", "equivalent"),
    "qqp": ("not_duplicate", "duplicate"),
    "wnli": ("not_entailment", "entailment"),
    "mnli": _NLI,
    "mnli_matched": _NLI,
    "mnli_mismatched": _NLI,
    "ax": _NLI,
    "qnli": ("entailment", "not_entailment"),
    "rte": ("entailment", "not_entailment"),
}
_DIGIT_TASKS = frozenset({"cola", "sst2", "mrpc", "qqp", "wnli"})


def _glue_label(task: str, name: str) -> str:
    """`name` as GLUE's grader spells it for `task`."""
    names = _GLUE_LABELS[task]
    if task in _DIGIT_TASKS:
        if name in ("0", "1"):
            return name
        if name.lower() in names:
            return str(names.index(name.lower()))
        raise ValueError(f"label {name!r} is not a GLUE label for {task}: 0, 1 (or {', '.join(names)})")
    if name.lower() not in names:
        raise ValueError(f"label {name!r} is not a GLUE label for {task}: {', '.join(names)}")
    return name.lower()


def glue_submission_tsv(
    task: str,
    predictions: ArrayLike,
    label_names: Sequence[str] | None = None,
    indices: ArrayLike | None = None,
) -> str:
    """GLUE's submission file for `task`: a header `index<TAB>prediction`, then one row per test example.

    predictions: class ids into `label_names` (the run's label set), or scores for stsb (written to 3 decimals).
    indices: each prediction's row in GLUE's test file (TFDS's `idx`: TFDS reads examples out of order);
    default 0, 1, ... Rows come out sorted by index.
    """
    _glue_task(task, GLUE_SUBMISSION_FILES)
    p = np.asarray(predictions).reshape(-1)
    idx = np.arange(p.size) if indices is None else np.asarray(indices).reshape(-1)
    if idx.shape != p.shape:
        raise ValueError(f"{idx.size} indices for {p.size} predictions")
    if np.unique(idx).size != idx.size:
        raise ValueError("repeated indices: each test example needs exactly one prediction")
    if task == "stsb":
        cells = [f"{float(v):.3f}" for v in p]
    else:
        if label_names is None:
            raise ValueError(f"{task} needs label_names to spell its predictions")
        spelled = [_glue_label(task, name) for name in label_names]
        cells = [spelled[int(i)] for i in p]
    rows = [f"{int(idx[k])}\t{cells[k]}" for k in np.argsort(idx, kind="stable")]
    return "\n".join(["index\tprediction", *rows]) + "\n"
