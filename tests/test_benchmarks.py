"""Every benchmark script runs and prints its figures, at toy sizes (the commands in RESULTS.md and README.md
must not rot). The figures themselves are measurements, reported in benchmarks/RESULTS.md, never asserted."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # whole runs in subprocesses
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAKESPEARE = os.path.join(os.path.dirname(ROOT), "shared", "data", "tinyshakespeare.txt")


def _run(script: str, *args: str) -> str:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env["XLA_FLAGS"] = os.environ.get("JAXLM_TEST_XLA_FLAGS", "")  # one device, as the benchmarks measure
    result = subprocess.run(
        [sys.executable, os.path.join("benchmarks", script), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, f"{script}\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    return result.stdout


def test_train_speed_against_the_torch_peer():
    out = _run(
        "train_speed.py",
        "--vs=torch",
        "--rounds=1",
        "--steps=2",
        "--warmup=1",
        "--config.model.num_layers=1",
        "--config.train.steps=10",
        "--config.train.warmup_steps=1",
    )
    assert "| figure | jaxlm | torch | jaxlm/torch |" in out
    for figure in ("step time (ms)", "tokens/s", "MFU (%)", "peak memory"):
        assert f"| {figure}" in out
    assert "XLA cost analysis" in out


def test_compile_time_per_depth():
    out = _run(
        "compile_time.py",
        "--layers=1,2",
        "--width=64",
        "--seq_len=32",
        "--batch_size=2",
        "--vocab_size=128",
        "--repeats=1",
    )
    assert "\n| 1 | " in out and "\n| 2 | " in out


def test_checkpoint_wait():
    out = _run("checkpoint_wait.py", "--config=configs/default.py", "--saves=1", "--notime_step")
    assert "loop blocked per save: median" in out and "on disk per checkpoint:" in out


def test_data_pipeline_throughput():
    out = _run("data_pipeline.py", "--megabytes=1", "--batch_tokens=200000", "--max_sentences=20000")
    assert "| synthetic_1mb | 1.0 |" in out and "tokenize+pack+MLM tok/s" in out


def test_decode_speed_cache_recompute_window_and_transformers():
    out = _run("decode_speed.py", "--layers=1", "--new_tokens=8", "--prompt_len=8", "--repeats=1", "--window_tokens=2")
    assert "same tokens as jaxlm: True" in out  # transformers' greedy decode agrees with jaxlm's
    assert "cache is " in out and "recompute " in out and "window " in out


@pytest.mark.skipif(not os.path.exists(SHAKESPEARE), reason=f"needs the shared data file {SHAKESPEARE}")
def test_nanogpt_reference_scores_both_ways():
    out = _run("nanogpt_reference.py", f"--data={SHAKESPEARE}", "--steps=5", "--estimates=2", "--seeds=0")
    assert "vocabulary 65" in out
    assert "seed 0 | whole validation split " in out and "nanoGPT's 20-batch estimate" in out
    assert "PyTorch: " in out and "20-batch estimates at or below 1.89" in out


@pytest.mark.skipif(not os.path.exists(SHAKESPEARE), reason=f"needs the shared data file {SHAKESPEARE}")
def test_nanogpt_reference_scores_a_jaxlm_run_as_jaxlm_does(tmp_path):
    """A jaxlm run, exported and read by transformers, scores its own whole-split val loss in PyTorch."""
    workdir = tmp_path / "run"
    subprocess.run(
        [
            sys.executable,
            "run_pretrain.py",
            "--config=configs/shakespeare_char.py",
            f"--config.data.path={SHAKESPEARE}",
            "--config.train.steps=20",
            "--config.eval.every=20",
            "--config.train.warmup_steps=2",
            "--config.sample.num_tokens=0",
            "--config.mesh.cpu_devices=1",
            f"--workdir={workdir}",
        ],
        cwd=ROOT,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        check=True,
        capture_output=True,
        timeout=600,
    )
    with open(workdir / "metrics.jsonl") as f:
        jaxlm_val_loss = [json.loads(line) for line in f if "val_loss" in line][-1]["val_loss"]
    out = _run(
        "nanogpt_reference.py", f"--data={SHAKESPEARE}", "--seeds=", f"--jaxlm_workdirs={workdir}", "--estimates=2"
    )
    line = next(line for line in out.splitlines() if line.startswith(f"jaxlm {workdir} (seed 0) |"))
    whole_split = float(line.split("whole validation split ")[1].split()[0])
    # The same windows but at the split's end, where jaxlm also scores the last 52 characters and the closing
    # eos: 2e-4 apart after 2,000 steps.
    assert whole_split == pytest.approx(jaxlm_val_loss, abs=2e-3)
    assert "jaxlm: " in out and "20-batch estimates at or below 1.89" in out


def test_nanogpt_reference_refuses_a_workdir_that_is_not_a_shakespeare_char_run(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps({"seed": 0, "model": {"family": "llama"}, "data": {"tokenizer": {"kind": "bpe"}}})
    )
    result = subprocess.run(
        [
            sys.executable,
            os.path.join("benchmarks", "nanogpt_reference.py"),
            "--seeds=",
            f"--jaxlm_workdirs={tmp_path}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert f"{tmp_path} is a llama run with a bpe tokenizer; give configs/shakespeare_char.py" in result.stderr


TOY = [
    "--",
    "--config.model.num_layers=1",
    "--config.model.width=32",
    "--config.model.num_heads=2",
    "--config.data.max_documents=40",
    "--config.eval.max_batches=1",
    "--config.sample.num_tokens=4",
]


def test_optimizers_compares_losses_lamb_at_8x_and_float16():
    out = _run(
        "optimizers.py",
        "--part=loss",
        "--optimizers=adamw,muon",
        *TOY,
        "--config.train.steps=4",
        "--config.train.warmup_steps=1",
    )
    assert "| muon |" in out
    out = _run("optimizers.py", "--part=lamb", "--lamb_steps=64", *TOY)
    assert "lamb, batch 96: val loss" in out and out.count("\n| ") >= 8
    out = _run("optimizers.py", "--part=fp16", *TOY, "--config.train.steps=4", "--config.train.warmup_steps=1")
    assert "float16 / float32 val loss" in out


def test_optimizers_reads_the_state_bytes_of_a_pod_recipe():
    pytest.importorskip("libtpu", reason="python -m jaxlm.aot needs libtpu (pip install -e '.[tpu]')")
    out = _run(
        "optimizers.py", "--part=state", "--recipe=gpt2_small", "--topology=v5e-8", "--optimizers=adamw,adafactor"
    )
    assert "| adafactor |" in out and "x |" in out


def test_finetune_compares_pretrained_scratch_and_tfidf():
    if not os.path.isdir(os.path.join(os.path.dirname(ROOT), "shared", "data", "fortunes")):
        pytest.skip("../shared/data/fortunes is absent")
    pytest.importorskip("sklearn")
    out = _run(
        "finetune.py",
        "--pretrain_steps=4",
        "--",
        "--config.train.steps=4",
        "--config.train.warmup_steps=1",
        "--config.eval.max_batches=1",
        "--config.eval.every=0",
    )
    assert "from scratch: the same model and tokenizer" in out and "TF-IDF char 2-5-grams" in out
