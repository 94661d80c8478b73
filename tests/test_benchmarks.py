"""Every benchmark script runs and prints its figures, at toy sizes (the commands in RESULTS.md and README.md
must not rot). The figures themselves are measurements, reported in benchmarks/RESULTS.md, never asserted."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAKESPEARE = os.path.join(os.path.dirname(ROOT), "shared", "data", "tinyshakespeare.txt")


def _run(script: str, *args: str) -> str:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)  # one device, as the benchmarks measure
    result = subprocess.run([sys.executable, os.path.join("benchmarks", script), *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{script}\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    return result.stdout


def test_train_speed_against_the_torch_peer():
    out = _run("train_speed.py", "--vs=torch", "--rounds=1", "--steps=2", "--warmup=1",
               "--config.model.num_layers=1", "--config.train.steps=10", "--config.train.warmup_steps=1")
    assert "| figure | jaxlm | torch | jaxlm/torch |" in out
    for figure in ("step time (ms)", "tokens/s", "MFU (%)", "peak memory"):
        assert f"| {figure}" in out
    assert "XLA cost analysis" in out


def test_compile_time_per_depth():
    out = _run("compile_time.py", "--layers=1,2", "--width=64", "--seq_len=32", "--batch_size=2",
               "--vocab_size=128", "--repeats=1")
    assert "\n| 1 | " in out and "\n| 2 | " in out


def test_checkpoint_wait():
    out = _run("checkpoint_wait.py", "--config=configs/default.py", "--saves=1", "--notime_step")
    assert "loop blocked per save: median" in out and "on disk per checkpoint:" in out


def test_data_pipeline_throughput():
    out = _run("data_pipeline.py", "--megabytes=1", "--batch_tokens=200000", "--max_sentences=20000")
    assert "| synthetic_1mb | 1.0 |" in out and "tokenize+pack+MLM tok/s" in out


def test_decode_speed_cache_recompute_window_and_transformers():
    out = _run("decode_speed.py", "--layers=1", "--new_tokens=8", "--prompt_len=8", "--repeats=1",
               "--window_tokens=2")
    assert "same tokens as jaxlm: True" in out  # transformers' greedy decode agrees with jaxlm's
    assert "cache is " in out and "recompute " in out and "window " in out


@pytest.mark.skipif(not os.path.exists(SHAKESPEARE), reason=f"needs the shared data file {SHAKESPEARE}")
def test_nanogpt_reference_scores_both_ways():
    out = _run("nanogpt_reference.py", f"--data={SHAKESPEARE}", "--steps=5", "--estimates=2", "--seeds=0")
    assert "vocabulary 65" in out
    assert "seed 0 | whole validation split " in out and "nanoGPT's 20-batch estimate" in out
