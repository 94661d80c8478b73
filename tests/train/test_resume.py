"""Runs that survive: exact resume after SIGKILL and SIGTERM, restore onto other meshes, corrupt
checkpoints, a NaN that never reaches disk, and one run per workdir. Each case runs
run_pretrain.py as a user would, in subprocesses."""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxlm.runs.lock import WorkdirLock
from jaxlm.runs.reader import restore_params

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
OBJECTIVES = {"causal": [], "mlm": [f"--config={ROOT}/configs/bert_tiny.py"]}


def _command(workdir, *flags):
    """The recipe flag first, then TINY, then the test's own flags (later ones win)."""
    recipe = [f for f in flags if f.startswith("--config=")]
    rest = [f for f in flags if not f.startswith("--config=")]
    return [sys.executable, os.path.join(ROOT, "run_pretrain.py"), *recipe, *TINY, *rest, f"--workdir={workdir}"]


def _env(devices=1):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices} {os.environ.get('JAXLM_TEST_XLA_FLAGS', '')}"
    return env


def _run(workdir, *flags, devices=1) -> subprocess.CompletedProcess:
    return subprocess.run(_command(workdir, *flags), capture_output=True, text=True, env=_env(devices), timeout=600)


def _losses(workdir) -> dict[int, float]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return {r["step"]: r["loss"] for r in map(json.loads, f) if "loss" in r}


def _final_params(workdir):
    return restore_params(str(workdir))[1]


def _assert_same_params(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)


def _resume_and_compare(workdir, flags, reference_losses, reference_params) -> int:
    """Runs the same command again; checks it continues exactly; returns the step it resumed from."""
    result = _run(workdir, *flags)
    assert result.returncode == 0, result.stderr
    k = _resume_line(result.stdout)
    losses = _losses(workdir)
    assert sorted(losses) == list(range(1, 25))  # the stopped run's later records were replaced
    assert [losses[s] for s in range(k + 1, 25)] == [reference_losses[s] for s in range(k + 1, 25)]
    _assert_same_params(_final_params(workdir), reference_params)
    return k


def _resume_line(stdout: str) -> int:
    line = next(line for line in stdout.splitlines() if line.startswith("resume | step "))
    return int(line.split()[3])


REFERENCE_FLAGS = ("--config.train.steps=24", "--config.checkpoint.every=6")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """A 24-step run of each objective, never stopped: the reference."""
    runs = {}
    for objective, flags in OBJECTIVES.items():
        workdir = tmp_path_factory.mktemp(f"full-{objective}")
        result = _run(workdir, *flags, *REFERENCE_FLAGS)
        assert result.returncode == 0, result.stderr
        runs[objective] = (workdir, _losses(workdir), _final_params(workdir))
    return runs


def _start_like_the_reference(objective, workdir, stderr):
    """The reference run's flags, and that run started in `workdir` with its stdout piped."""
    flags = [*OBJECTIVES[objective], *REFERENCE_FLAGS]
    return flags, subprocess.Popen(
        _command(workdir, *flags), stdout=subprocess.PIPE, text=True, env=_env(), stderr=stderr
    )


@pytest.mark.parametrize("objective", ["causal", "mlm"])
def test_sigkill_after_a_checkpoint_then_resume_is_exact(objective, uninterrupted, tmp_path):
    flags, process = _start_like_the_reference(objective, tmp_path, stderr=subprocess.DEVNULL)
    _, reference_losses, reference_params = uninterrupted[objective]
    for line in process.stdout:  # the first save line, then its commit marker on disk
        if line.startswith("save  | step 6"):
            break
    deadline = time.time() + 30
    while not os.path.exists(tmp_path / "checkpoints" / "6" / "commit_success.txt"):
        assert time.time() < deadline, "checkpoint 6 never completed"
        time.sleep(0.005)
    alive = process.poll() is None
    process.kill()
    process.wait()
    assert alive, "the run finished before it could be killed; make it longer"

    assert 6 <= _resume_and_compare(tmp_path, flags, reference_losses, reference_params) < 24


@pytest.mark.parametrize("objective", ["causal", "mlm"])
def test_sigterm_saves_exits_4_and_resumes_exactly(objective, uninterrupted, tmp_path):
    flags, process = _start_like_the_reference(objective, tmp_path, stderr=subprocess.PIPE)
    _, reference_losses, reference_params = uninterrupted[objective]
    for line in process.stdout:
        if line.startswith("step      8/"):
            process.send_signal(signal.SIGTERM)
            break
    out, err = process.communicate(timeout=120)
    assert process.returncode == 4, err
    assert "preempted: stopped by a signal at step" in err
    stopped_at = int(err.split("at step ")[1].split("/")[0])
    assert 8 <= stopped_at < 24
    assert f"save  | step {stopped_at} " in out  # the signal's own save
    assert os.path.exists(tmp_path / "checkpoints" / str(stopped_at) / "commit_success.txt")
    assert _resume_and_compare(tmp_path, flags, reference_losses, reference_params) == stopped_at


def test_a_workdir_that_lost_its_tokenizer_resumes_with_the_checkpoints_own(uninterrupted, tmp_path):
    """The checkpoint carries the tokenizer: deleting <workdir>/tokenizer changes nothing of the resumed run."""
    flags = [*OBJECTIVES["causal"], *REFERENCE_FLAGS]
    _, reference_losses, reference_params = uninterrupted["causal"]
    assert _run(tmp_path, *flags, "--config.train.stop_at=12").returncode == 0
    shutil.rmtree(tmp_path / "tokenizer")
    assert _resume_and_compare(tmp_path, flags, reference_losses, reference_params) == 12


def test_restore_onto_other_meshes(tmp_path):
    """8 devices (fsdp) -> 4 devices (tensor) -> 1 device: the same losses within float32 rounding."""
    flags = ["--config.train.steps=12", "--config.checkpoint.every=4"]
    reference = tmp_path / "reference"
    assert _run(reference, *flags, "--config.mesh.preset=fsdp", devices=8).returncode == 0
    workdir = tmp_path / "moved"
    for devices, preset, stop_at in ((8, "fsdp", 4), (4, "tp", 8), (1, "dp", 12)):
        result = _run(
            workdir, *flags, f"--config.mesh.preset={preset}", f"--config.train.stop_at={stop_at}", devices=devices
        )
        assert result.returncode == 0, result.stderr
        assert f"{devices} x cpu" in result.stdout
    expected, got = _losses(reference), _losses(workdir)
    np.testing.assert_allclose([got[s] for s in range(1, 13)], [expected[s] for s in range(1, 13)], rtol=1e-5)


@pytest.fixture(scope="module")
def two_checkpoints_run(tmp_path_factory):
    """An 8-step run with checkpoints 4 and 8, made once; each test takes a copy (`two_checkpoints`)."""
    workdir = tmp_path_factory.mktemp("two-checkpoints")
    result = _run(workdir, "--config.train.steps=8", "--config.checkpoint.every=4")
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(workdir / "checkpoints")) == ["4", "8"]
    return workdir


@pytest.fixture
def two_checkpoints(two_checkpoints_run):
    """Copies the two-checkpoint run into a workdir of the test's own."""

    def copy(workdir):
        shutil.copytree(two_checkpoints_run, workdir, dirs_exist_ok=True)

    return copy


def test_truncated_newest_checkpoint_falls_back_to_the_previous(tmp_path, two_checkpoints):
    two_checkpoints(tmp_path)
    for path in glob.glob(str(tmp_path / "checkpoints" / "8" / "params" / "d" / "*")):
        with open(path, "r+b") as f:
            f.truncate(8)
    result = _run(tmp_path, "--config.train.steps=10", "--config.checkpoint.every=4")
    assert result.returncode == 0, result.stderr
    assert "checkpoint 8 cannot be restored" in result.stdout
    assert _resume_line(result.stdout) == 4


def test_checkpoint_without_commit_marker_is_skipped(tmp_path, two_checkpoints):
    two_checkpoints(tmp_path)
    os.remove(tmp_path / "checkpoints" / "8" / "commit_success.txt")
    result = _run(tmp_path, "--config.train.steps=10", "--config.checkpoint.every=4")
    assert result.returncode == 0, result.stderr
    assert "checkpoint 8 has no commit marker" in result.stdout
    assert _resume_line(result.stdout) == 4


def test_nan_stops_the_run_and_never_reaches_disk(tmp_path):
    result = _run(
        tmp_path,
        "--config.train.steps=30",
        "--config.checkpoint.every=2",
        "--config.train.learning_rate=1e6",
        "--config.train.clip_norm=0",
        "--config.train.warmup_steps=0",
        "--config.log.every=10",
    )
    assert result.returncode == 3, result.stderr
    assert "training diverged; the last good checkpoint is step" in result.stderr
    bad_step = int(result.stderr.split(" at step ")[1].split(":")[0])
    saved = sorted(int(s) for s in os.listdir(tmp_path / "checkpoints"))
    assert saved and max(saved) < bad_step
    params = _final_params(tmp_path)
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(params))


def test_skip_nonfinite_keeps_going(tmp_path):
    result = _run(
        tmp_path,
        "--config.train.steps=6",
        "--config.checkpoint.every=3",
        "--config.train.learning_rate=1e6",
        "--config.train.clip_norm=0",
        "--config.train.warmup_steps=0",
        "--config.train.skip_nonfinite=True",
    )
    assert result.returncode == 0, result.stderr
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(_final_params(tmp_path)))


def test_a_second_run_on_a_busy_workdir_refuses(tmp_path):
    with WorkdirLock(str(tmp_path)):  # this test process plays the first run
        result = _run(tmp_path, "--config.train.steps=6")
    assert result.returncode == 2
    assert f"{tmp_path} is in use by pid {os.getpid()}" in result.stderr


def test_restore_from_starts_a_new_run_from_weights(tmp_path, two_checkpoints):
    two_checkpoints(tmp_path / "first")
    result = _run(
        tmp_path / "second", "--config.train.steps=6", f"--config.checkpoint.restore_from={tmp_path / 'first'}"
    )
    assert result.returncode == 0, result.stderr
    assert "start | weights from" in result.stdout and "step 8" in result.stdout
    bad = _run(
        tmp_path / "third",
        "--config.train.steps=6",
        "--config.model.width=64",
        f"--config.checkpoint.restore_from={tmp_path / 'first'}",
    )
    assert bad.returncode == 2 and "there but (2, 64, 4, 16) in this run's model" in bad.stderr


def test_restore_from_takes_the_checkpoints_tokenizer_and_refuses_another(tmp_path, two_checkpoints):
    two_checkpoints(tmp_path / "first")
    source = f"--config.checkpoint.restore_from={tmp_path / 'first'}"
    with open(tmp_path / "first" / "tokenizer" / "tokenizer.json") as f:
        chars = json.load(f)["chars"]
    shutil.rmtree(tmp_path / "first" / "tokenizer")  # the checkpoint carries its own copy
    same = _run(tmp_path / "second", "--config.train.steps=6", source)
    assert same.returncode == 0, same.stderr
    assert "tokenizer | the one checkpoint.restore_from's step 8 was trained with (tokenizer.json)" in same.stdout
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"kind": "char", "chars": chars[1:]}))  # one piece less: every id shifts
    refused = _run(tmp_path / "third", "--config.train.steps=6", source, f"--config.data.tokenizer.path={other}")
    assert refused.returncode == 2, refused.stderr
    assert "first': its step 8 was trained with another tokenizer than data.tokenizer.path=" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not os.listdir(tmp_path / "third" / "checkpoints")


def test_restore_from_an_unreadable_checkpoint_names_it_and_the_older_ones(tmp_path, two_checkpoints):
    two_checkpoints(tmp_path / "first")
    for path in glob.glob(str(tmp_path / "first" / "checkpoints" / "8" / "params" / "*")):
        if os.path.isfile(path):
            with open(path, "r+b") as f:
                f.truncate(8)
    result = _run(
        tmp_path / "second", "--config.train.steps=6", f"--config.checkpoint.restore_from={tmp_path / 'first'}"
    )
    assert result.returncode == 2
    assert "checkpoint 8 in " in result.stderr and "cannot be read" in result.stderr
    moved = tmp_path / "first" / "checkpoints" / "8"
    assert f"move {moved} out of that folder to start from step 4" in result.stderr
    assert "Traceback" not in result.stderr
