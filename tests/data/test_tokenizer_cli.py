"""Tests for jaxlm/tokenizer.py: `python -m jaxlm.tokenizer train` from each kind of source."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jaxlm.config import base_config, data_arguments
from jaxlm.data import pipeline
from jaxlm.data.sentencepiece_tokenizer import SentencePieceTokenizer
from jaxlm.tokenizer import main


def build_data(config, workdir=None):
    """The data pipeline as a run builds it from its whole config (caches in `workdir`)."""
    return pipeline.build_data(config.data, **data_arguments(config), cache_dir=workdir)


ROOT = Path(__file__).parents[2]


def test_module_trains_a_tokenizer_the_pipeline_loads(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "jaxlm.tokenizer",
            "train",
            "--input=builtin",
            "--vocab_size=600",
            "--model_type=unigram",
            "--max_sentences=3000",
            f"--output={tmp_path / 'tok'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = tmp_path / "tok" / "tokenizer.model"
    tokenizer = SentencePieceTokenizer.load(str(path))  # checks the special ids
    assert tokenizer.vocab_size == 600
    assert f"sha256 {tokenizer.fingerprint}" in out and f"--config.data.tokenizer.path={path}" in out
    assert "<pad>=0, <unk>=1, <s>=2, </s>=3, <mask>=4" in out
    config = base_config()
    config.data.tokenizer.path = str(path)
    data = build_data(config, workdir=None)
    assert data.tokenizer.fingerprint == tokenizer.fingerprint
    assert data.train.fingerprint_parts["tokenizer"] == tokenizer.fingerprint[:16]


def test_jsonl_and_line_inputs(tmp_path, capsys):
    lines = [f"record {i} says something about {'abc'[i % 3]}" for i in range(500)]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps({"body": line}) for line in lines), encoding="utf-8")
    (tmp_path / "a.txt").write_text("\n".join(lines), encoding="utf-8")
    assert (
        main(
            [
                "train",
                f"--input={tmp_path / 'a.jsonl'}",
                "--format=jsonl",
                "--text_field=body",
                "--vocab_size=300",
                f"--output={tmp_path / 'j'}",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                f"--input={tmp_path / '*.txt'}",
                "--format=line",
                "--vocab_size=300",
                f"--output={tmp_path / 't'}",
            ]
        )
        == 0
    )
    # The same lines train the same model, whichever way they were stored.
    assert (tmp_path / "j" / "tokenizer.model").read_bytes() == (tmp_path / "t" / "tokenizer.model").read_bytes()
    assert "1 file(s) at" in capsys.readouterr().out


def test_sample_is_bounded_and_seeded(tmp_path):
    (tmp_path / "a.txt").write_text("\n".join(f"{i} {i * 7} {i % 13}" for i in range(20_000)), encoding="utf-8")
    models = []
    for seed in (0, 0, 1):
        out = tmp_path / f"m{len(models)}"
        assert (
            main(
                [
                    "train",
                    f"--input={tmp_path / 'a.txt'}",
                    "--vocab_size=300",
                    "--max_sentences=500",
                    "--model_type=bpe",
                    f"--seed={seed}",
                    f"--output={out}",
                ]
            )
            == 0
        )
        models.append((out / "tokenizer.model").read_bytes())
    assert models[0] == models[1] and models[0] != models[2]


def test_char_model_type(tmp_path):
    assert (
        main(
            [
                "train",
                "--input=builtin",
                "--vocab_size=5000",
                "--model_type=char",
                "--max_documents=10",
                f"--output={tmp_path}",
            ]
        )
        == 0
    )
    tokenizer = SentencePieceTokenizer.load(str(tmp_path / "tokenizer.model"))
    assert len(tokenizer.encode("hello")) == 5 and tokenizer.decode(tokenizer.encode("héllo ☃")) == "héllo ☃"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--input=/no/such/file.txt"], "config.data.path='/no/such/file.txt': no such file"),
        (["--input=tfds:no_such_dataset_xyz"], "config.data.tfds_name='no_such_dataset_xyz': no such TFDS dataset"),
        (["--input=builtin", "--vocab_size=0"], "flag --vocab_size=0: 0 is not a positive integer"),
        (["--input=builtin", "--max_documents=1", "--vocab_size=9000"], "sentencepiece cannot train"),
    ],
)
def test_bad_input_exits_2_with_one_message(tmp_path, capsys, args, message):
    if not any(a.startswith("--vocab_size") for a in args):
        args = [*args, "--vocab_size=300"]
    assert main(["train", *args, f"--output={tmp_path}"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "tokenizer.model").exists()
