"""run_pretrain.py end to end, as a user runs it: a tiny run per objective, and bad input."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [
    "--config.model.num_layers=1",
    "--config.model.width=32",
    "--config.model.num_heads=2",
    "--config.data.seq_len=32",
    "--config.data.batch_size=4",
    "--config.train.steps=30",
    "--config.train.warmup_steps=5",
    "--config.log.every=10",
    "--config.eval.every=15",
    "--config.eval.max_batches=2",
    "--config.sample.num_tokens=8",
]


def _run(*flags: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env["XLA_FLAGS"] = os.environ.get("JAXLM_TEST_XLA_FLAGS", "")  # one device, as on a laptop
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "run_pretrain.py"), *flags],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def _losses(workdir) -> list[float]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [r["loss"] for r in map(json.loads, f) if "loss" in r]


@pytest.mark.slow
def test_causal_run_trains_evaluates_and_samples(tmp_path):
    result = _run(*TINY, "--config.data.tokenizer.kind=char", f"--workdir={tmp_path}")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "llama (causal)" in out and "step     30/30" in out and "eval     30/30" in out
    assert "sample |\nThe " in out
    losses = _losses(tmp_path)
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert os.path.exists(tmp_path / "tokenizer") and os.path.exists(tmp_path / "config.json")


@pytest.mark.slow
def test_masked_lm_run_ends_with_a_fill_mask_demo(tmp_path):
    """Also on a CPU split into two devices (mesh.cpu_devices), the batch spread over both."""
    result = _run(
        f"--config={ROOT}/configs/bert_tiny.py",
        *TINY,
        "--config.mesh.cpu_devices=2",
        "--config.data.tokenizer.vocab_size=400",
        f"--workdir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr
    assert "bert (mlm)" in result.stdout and "<mask> at 1 (was " in result.stdout
    assert "2 x cpu in 1 process(es) | mesh data 2 x fsdp 1 x tensor 1" in result.stdout
    assert len(_losses(tmp_path)) == 3


def test_bad_config_field_exits_2_with_one_line(tmp_path):
    result = _run("--config.model.num_heads=5", f"--workdir={tmp_path}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: config.model.num_heads=5: does not divide model.width=192"
    )


def test_missing_corpus_exits_2_naming_the_path(tmp_path):
    missing = tmp_path / "nope.txt"
    result = _run("--config.data.source=text", f"--config.data.path={missing}", f"--workdir={tmp_path / 'run'}")
    assert result.returncode == 2
    assert "config.data.path" in result.stderr and str(missing) in result.stderr


def test_a_missing_recipe_or_an_unknown_field_exits_2_with_one_line(tmp_path):
    missing = _run(f"--config={tmp_path / 'nope.py'}")
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    assert missing.stderr.strip() == (
        f"error: --config={tmp_path / 'nope.py'}: no such recipe file; give one such as configs/default.py"
    )
    unknown = _run("--config.model.no_such_field=3")
    assert unknown.returncode == 2 and len(unknown.stderr.strip().splitlines()) == 1
    assert unknown.stderr.startswith(
        "error: --config.model.no_such_field: the recipe has no field "
        "model.no_such_field (every field is in jaxlm/config.py)"
    )
    typo = _run("--config.train.stepz=3")
    assert typo.returncode == 2 and "the recipe has no field train.stepz; did you mean train.steps?" in typo.stderr


def test_a_workdir_that_is_a_file_exits_2_naming_it(tmp_path):
    (tmp_path / "taken").write_text("not a folder")
    result = _run(f"--workdir={tmp_path / 'taken'}")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: workdir {tmp_path / 'taken'} is a file, not a folder; give the path of a folder (it is "
        "created if missing)"
    )
    assert (tmp_path / "taken").read_text() == "not a folder"


@pytest.mark.slow
def test_diverging_loss_stops_with_exit_3_naming_the_step(tmp_path):
    result = _run(
        *TINY,
        "--config.data.tokenizer.kind=char",
        "--config.train.learning_rate=1e30",
        "--config.train.warmup_steps=0",
        "--config.train.clip_norm=0.0",
        f"--workdir={tmp_path}",
    )
    assert result.returncode == 3, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("stopped: loss is nan at step 10") and "train.learning_rate" in last


def test_a_mesh_larger_than_the_job_exits_2_naming_the_numbers(tmp_path):
    result = _run("--config.mesh.tensor=4", f"--workdir={tmp_path}")
    assert result.returncode == 2
    assert (
        "config.mesh: the fixed axis sizes multiply to 4, which does not divide the 1 devices; "
        "data=-1 x fsdp=1 x tensor=4"
    ) in result.stderr


def test_cpu_devices_are_split_before_the_mesh_is_made(tmp_path):
    result = _run("--config.mesh.cpu_devices=3", "--config.mesh.tensor=2", f"--workdir={tmp_path}")
    assert result.returncode == 2
    assert "which does not divide the 3 devices" in result.stderr


@pytest.mark.slow
def test_a_relative_workdir_saves_and_resumes(tmp_path):
    """The README's first command uses runs/default, relative to where the user stands."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env["XLA_FLAGS"] = os.environ.get("JAXLM_TEST_XLA_FLAGS", "")
    command = [
        sys.executable,
        os.path.join(ROOT, "run_pretrain.py"),
        *TINY,
        "--config.data.tokenizer.kind=char",
        "--config.train.steps=10",
        "--config.checkpoint.every=5",
        "--workdir=runs/relative",
    ]
    first = subprocess.run(
        [*command, "--config.train.stop_at=5"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600
    )
    assert first.returncode == 0, first.stderr
    assert os.path.exists(tmp_path / "runs" / "relative" / "checkpoints" / "5" / "commit_success.txt")
    second = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert second.returncode == 0, second.stderr
    assert "resume | step 5" in second.stdout


@pytest.mark.slow
def test_a_finished_run_run_again_says_so_without_training(tmp_path):
    flags = [*TINY, "--config.data.tokenizer.kind=char", "--config.train.warmup_steps=1"]
    flags += ["--config.train.steps=4", f"--workdir={tmp_path}"]
    assert _run(*flags).returncode == 0
    again = _run(*flags)
    assert again.returncode == 0, again.stderr
    assert f"already finished: {tmp_path} has step 4 of train.steps=4; nothing to do" in again.stdout
    assert "compiled train step" not in again.stdout and "step " not in again.stdout.split("done  |")[0]
    earlier_stop = _run(*flags[:-2], "--config.train.steps=8", "--config.train.stop_at=3", f"--workdir={tmp_path}")
    assert earlier_stop.returncode == 0, earlier_stop.stderr
    assert "train.stop_at=3, and" in earlier_stop.stdout and "already at step 4; nothing to do" in earlier_stop.stdout
