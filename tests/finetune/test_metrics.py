"""The downstream metrics equal their references: scikit-learn, scipy, seqeval (or seqeval's numbers recorded)."""

import csv
import io
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


def test_drop_ignored_and_tags_from_ids_leave_out_minus_100():
    labels = np.array([[-100, 1, -100, 2, -100], [-100, 0, 0, -100, -100]])
    predictions = np.array([[7, 1, 7, 1, 7], [7, 0, 2, 7, 7]])
    p, y = metrics.drop_ignored(predictions, labels)
    np.testing.assert_array_equal(p, [1, 1, 0, 2])
    np.testing.assert_array_equal(y, [1, 2, 0, 0])
    assert metrics.accuracy(p, y) == 0.5
    names = ["O", "B-PER", "I-PER"]
    assert metrics.tags_from_ids(predictions, labels, names) == (
        [["B-PER", "B-PER"], ["O", "I-PER"]],
        [["B-PER", "I-PER"], ["O", "O"]],
    )


# Entity F1: chunks as seqeval's default mode reads them, one case per tagging scheme.
@pytest.mark.parametrize(
    "tags, want",
    [
        (["B-PER", "I-PER", "O", "B-LOC"], [("PER", 0, 1), ("LOC", 3, 3)]),  # seqeval's docstring example
        (["I-PER", "I-PER", "B-PER", "I-LOC"], [("PER", 0, 1), ("PER", 2, 2), ("LOC", 3, 3)]),  # IOB1
        (["O", "I-MISC", "I-MISC", "O"], [("MISC", 1, 2)]),  # an I after O opens an entity (conlleval)
        (["B-PER", "B-PER", "I-PER"], [("PER", 0, 0), ("PER", 1, 2)]),  # IOB2: B splits
        (["I-PER", "E-PER", "E-PER", "O", "I-LOC"], [("PER", 0, 1), ("PER", 2, 2), ("LOC", 4, 4)]),  # IOE
        (["S-LOC", "B-PER", "I-PER", "E-PER", "S-PER"], [("LOC", 0, 0), ("PER", 1, 3), ("PER", 4, 4)]),  # IOBES
        (["B-PER", "I-LOC", "I-LOC"], [("PER", 0, 0), ("LOC", 1, 2)]),  # a type change ends and opens
        (["B-ORG-X", "I-ORG-X"], [("ORG-X", 0, 1)]),  # the type is everything after the first dash
        (["O", "O"], []),
        ([], []),
    ],
)
def test_entities_follow_seqeval_chunking(tags, want):
    assert metrics.entities(tags) == want


def test_entity_f1_on_seqeval_readme_example():
    gold = [["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    predicted = [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    assert metrics.entity_f1(predicted, gold) == {"precision": 0.5, "recall": 0.5, "f1": 0.5}


def test_entity_f1_by_hand():
    # Gold: PER(0,1), LOC(3,3) | ORG(0,0). Predicted: PER(0,1) right, LOC(3,3) typed MISC, ORG(0,0) right,
    # an extra PER(2,2) in sentence 2. Entities never span sentences: "I-ORG" opening sentence 2 is its own.
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "O"]]
    predicted = [["B-PER", "I-PER", "O", "B-MISC"], ["I-ORG", "O", "B-PER"]]
    scores = metrics.entity_f1(predicted, gold)
    assert scores["precision"] == pytest.approx(2 / 4)
    assert scores["recall"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(2 * (1 / 2) * (2 / 3) / (1 / 2 + 2 / 3))
    assert metrics.entity_f1([["O"]], [["O"]]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}  # seqeval: 0
    with pytest.raises(ValueError, match="sentence 0: 2 predicted tags for 1 gold"):
        metrics.entity_f1([["O", "O"]], [["O"]])


_TAGS = ["O", "O", "O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC", "I-MISC"]


def _random_tags(seed: int) -> tuple[list[list[str]], list[list[str]]]:
    """Predicted and gold tags over mixed schemes; predictions keep each gold tag with probability 0.7."""
    rng = np.random.default_rng(seed)
    gold, predicted = [], []
    for _ in range(50):
        ids = rng.integers(0, len(_TAGS), int(rng.integers(1, 15)))
        noisy = np.where(rng.random(ids.size) < 0.7, ids, rng.integers(0, len(_TAGS), ids.size))
        gold.append([_TAGS[i] for i in ids])
        predicted.append([_TAGS[i] for i in noisy])
    return predicted, gold


# seqeval 1.2.2's precision, recall and f1 on _random_tags(seed), recorded: seqeval's sdist does not build in an
# isolated pip install, so it is not in the test extra; with seqeval installed the test compares live as well.
_SEQEVAL_RECORDED = {
    0: (0.7108433734939759, 0.6579925650557621, 0.6833976833976834),
    1: (0.7448559670781894, 0.724, 0.7342799188640975),
    2: (0.7408906882591093, 0.7261904761904762, 0.7334669338677355),
    3: (0.7407407407407407, 0.7258064516129032, 0.7331975560081466),
    4: (0.7087719298245614, 0.7137809187279152, 0.7112676056338028),
}


@pytest.mark.parametrize("seed", SEEDS)
def test_entity_f1_equals_seqeval(seed):
    predicted, gold = _random_tags(seed)
    scores = metrics.entity_f1(predicted, gold)
    want = dict(zip(["precision", "recall", "f1"], _SEQEVAL_RECORDED[seed]))
    assert scores == pytest.approx(want, rel=1e-12)
    try:
        import seqeval.metrics
    except ImportError:
        return
    assert scores["precision"] == pytest.approx(seqeval.metrics.precision_score(gold, predicted), rel=1e-12)
    assert scores["recall"] == pytest.approx(seqeval.metrics.recall_score(gold, predicted), rel=1e-12)
    assert scores["f1"] == pytest.approx(seqeval.metrics.f1_score(gold, predicted), rel=1e-12)


def test_glue_metrics_per_task():
    p, y = _classes(0, 2)
    assert metrics.task_metrics("mrpc", p, y) == {"f1": metrics.f1(p, y), "accuracy": metrics.accuracy(p, y)}
    assert metrics.task_metrics("cola", p, y) == {"matthews": metrics.matthews(p, y)}
    assert list(metrics.task_metrics("stsb", [0.1, 2.0, 4.5], [0.0, 2.5, 5.0])) == ["pearson", "spearman"]
    assert set(metrics.GLUE_METRICS) == {
        "cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "mnli_matched", "mnli_mismatched", "qnli", "rte", "wnli",
    }  # fmt: skip
    for task in ("sst2", "mnli", "mnli_matched", "mnli_mismatched", "qnli", "rte", "wnli"):
        assert metrics.GLUE_METRICS[task] == ("accuracy",)
    assert metrics.glue_score("mrpc", {"f1": 0.9, "accuracy": 0.8}) == pytest.approx(0.85)
    with pytest.raises(ValueError, match="unknown GLUE task 'mprc'"):
        metrics.task_metrics("mprc", p, y)


def _read_tsv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text), delimiter="\t"))


def test_glue_submission_tsv_spells_labels_as_glue_does():
    # TFDS's names for CoLA's classes become GLUE's 0/1; rows are sorted by the test file's index.
    text = metrics.glue_submission_tsv("cola", [1, 0, 1], ["unacceptable", "acceptable"], indices=[2, 0, 1])
    assert text == "index\tprediction\n0\t0\n1\t1\n2\t1\n"
    assert metrics.glue_submission_tsv("sst2", [0, 1], ["0", "1"]) == "index\tprediction\n0\t0\n1\t1\n"
    assert metrics.glue_submission_tsv("wnli", [0, 1], ["not_entailment", "entailment"]).endswith("0\t0\n1\t1\n")
    rows = _read_tsv(
        metrics.glue_submission_tsv("mnli_mismatched", [2, 0, 1], ["entailment", "neutral", "contradiction"])
    )
    assert rows == [
        {"index": "0", "prediction": "contradiction"},
        {"index": "1", "prediction": "entailment"},
        {"index": "2", "prediction": "neutral"},
    ]
    rows = _read_tsv(metrics.glue_submission_tsv("rte", [1, 0], ["Entailment", "Not_Entailment"]))
    assert [r["prediction"] for r in rows] == ["not_entailment", "entailment"]
    assert metrics.glue_submission_tsv("stsb", [3.14159, 0.5]) == "index\tprediction\n0\t3.142\n1\t0.500\n"
    assert set(metrics.GLUE_SUBMISSION_FILES) >= set(metrics.GLUE_METRICS)


def test_glue_submission_tsv_refuses_what_glue_cannot_read():
    with pytest.raises(ValueError, match="'positive' is not a GLUE label for rte"):
        metrics.glue_submission_tsv("rte", [0], ["positive", "negative"])
    with pytest.raises(ValueError, match="needs label_names"):
        metrics.glue_submission_tsv("qnli", [0])
    with pytest.raises(ValueError, match="repeated indices"):
        metrics.glue_submission_tsv("sst2", [0, 1], ["0", "1"], indices=[4, 4])
    with pytest.raises(ValueError, match="unknown GLUE task"):
        metrics.glue_submission_tsv("squad", [0], ["0"])
