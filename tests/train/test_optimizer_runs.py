"""Whole runs with each optimizer, the parameter average and float16 loss scaling, as a user starts them:
SIGKILL then resume is bitwise, a checkpoint refuses another optimizer by name, float16 learns through
overflows, and the average exports."""

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
    "--config.data.batch_size=8",
    "--config.data.tokenizer.kind=char",
    "--config.train.warmup_steps=5",
    "--config.log.every=1",
    "--config.eval.every=0",
    "--config.eval.max_batches=1",
    "--config.sample.num_tokens=4",
]
STEPS = ("--config.train.steps=16", "--config.checkpoint.every=4")
# Every optimizer once, and the average and the loss scale each with two of them.
SETUPS = {
    "lamb+ema": ["--config.train.optimizer=lamb", "--config.train.ema_decay=0.9"],
    "adafactor+fp16": ["--config.train.optimizer=adafactor", "--config.model.dtype=float16"],
    "muon+ema+fp16": ["--config.train.optimizer=muon", "--config.train.ema_decay=0.9", "--config.model.dtype=float16"],
    "sgd": ["--config.train.optimizer=sgd", "--config.train.learning_rate=0.1"],
}


def _command(workdir, *flags):
    return [sys.executable, os.path.join(ROOT, "run_pretrain.py"), *TINY, *flags, f"--workdir={workdir}"]


def _env():
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count=1 {os.environ.get('JAXLM_TEST_XLA_FLAGS', '')}"
    return env


def _run(workdir, *flags) -> subprocess.CompletedProcess:
    return subprocess.run(_command(workdir, *flags), capture_output=True, text=True, env=_env(), timeout=600)


def _records(workdir) -> dict[int, dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return {r["step"]: r for r in map(json.loads, f) if "loss" in r}


def _kill_after_first_checkpoint(workdir, flags) -> None:
    process = subprocess.Popen(
        _command(workdir, *flags), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_env()
    )
    for line in process.stdout:
        if line.startswith("save  | step 4"):
            break
    deadline = time.time() + 30
    while not os.path.exists(os.path.join(workdir, "checkpoints", "4", "commit_success.txt")):
        assert time.time() < deadline, "checkpoint 4 never completed"
        time.sleep(0.005)
    alive = process.poll() is None
    process.kill()
    process.wait()
    assert alive, "the run finished before it could be killed; make it longer"


@pytest.mark.parametrize("setup", list(SETUPS))
def test_sigkill_then_resume_is_bitwise_with_each_optimizer(setup, tmp_path):
    flags = [*STEPS, *SETUPS[setup]]
    reference = _run(tmp_path / "reference", *flags)
    assert reference.returncode == 0, reference.stderr
    _kill_after_first_checkpoint(tmp_path / "killed", flags)
    resumed = _run(tmp_path / "killed", *flags)
    assert resumed.returncode == 0, resumed.stderr
    assert "resume | step" in resumed.stdout
    want, got = _records(tmp_path / "reference"), _records(tmp_path / "killed")
    assert sorted(got) == list(range(1, 17))
    for key in ("loss", "grad_norm", "loss_scale", "overflow_steps"):  # every logged figure, bit for bit
        assert [got[s].get(key) for s in got] == [want[s].get(key) for s in got], key
    for params in ("raw", "ema") if "ema" in setup else ("raw",):
        a, b = open_run(str(tmp_path / "reference"), params=params), open_run(str(tmp_path / "killed"), params=params)
        for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
            np.testing.assert_array_equal(x, y)


def test_a_checkpoint_refuses_another_optimizer_by_name_and_keeps_its_files(tmp_path):
    first = _run(tmp_path, "--config.train.steps=8", "--config.train.stop_at=4")
    assert first.returncode == 0, first.stderr
    before = sorted(os.listdir(tmp_path / "checkpoints"))
    for flag, named in (
        ("--config.train.optimizer=lamb", "train.optimizer: adamw"),
        ("--config.train.ema_decay=0.99", "train.ema_decay: no average (0)"),
        ("--config.model.dtype=float16", "model.dtype: no loss scaling"),
    ):
        result = _run(tmp_path, "--config.train.steps=8", flag)
        assert result.returncode == 2, result.stderr
        assert named in result.stderr and "restore_from" in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert sorted(os.listdir(tmp_path / "checkpoints")) == before  # nothing set aside or lost
    # The learning rate may change on resume: the state has the same structure.
    assert _run(tmp_path, "--config.train.steps=8", "--config.train.learning_rate=1e-3").returncode == 0


def test_float16_learns_through_the_overflows_of_a_too_large_scale(tmp_path):
    # 2**24 times the loss overflows float16's 65504 in the backward pass: the first steps are skipped while
    # the scale halves to one that fits, then the run learns.
    result = _run(
        tmp_path,
        "--config.model.dtype=float16",
        "--config.train.loss_scale_init=16777216",
        "--config.train.loss_scale_period=1000",
        "--config.train.steps=40",
        "--config.train.learning_rate=1e-2",
    )
    assert result.returncode == 0, result.stderr
    records = _records(tmp_path)
    last = records[40]
    assert last["overflow_steps"] > 0
    assert last["loss_scale"] == 2.0**24 / 2 ** last["overflow_steps"]  # halved once per overflow, never grown
    assert not np.isfinite(records[1]["grad_norm"])  # the first step overflowed
    assert np.mean([records[s]["loss"] for s in range(36, 41)]) < records[1]["loss"] - 0.5
    assert "scale " in result.stdout  # the progress line shows it


def test_the_average_exports_and_differs_from_the_raw_parameters(tmp_path):
    pytest.importorskip("safetensors")
    result = _run(tmp_path / "run", "--config.train.steps=8", "--config.train.ema_decay=0.5")
    assert result.returncode == 0, result.stderr
    assert "ema_loss" in result.stdout  # evaluated beside the raw parameters
    export = subprocess.run(
        [
            sys.executable,
            "-m",
            "jaxlm.export",
            f"--workdir={tmp_path / 'run'}",
            "--params=ema",
            f"--out={tmp_path / 'hf'}",
        ],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert export.returncode == 0, export.stderr
    assert "the average of its parameters" in export.stdout
    from jaxlm.export.convert import from_hf

    _, imported = from_hf(str(tmp_path / "hf"))[:2]
    average, raw = open_run(str(tmp_path / "run"), params="ema"), open_run(str(tmp_path / "run"))
    for x, y in zip(jax.tree.leaves(imported), jax.tree.leaves(average.params)):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(y, r) for y, r in zip(jax.tree.leaves(average.params), jax.tree.leaves(raw.params)))
