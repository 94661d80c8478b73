"""Weights & Biases (log.wandb_project), offline: what a run writes reads back from W&B's own files as the
scalars of metrics.jsonl, the config as the run's config, and a resumed run continues the same W&B run."""

import glob
import json
import math
import os
import struct
import subprocess
import sys
import zlib

import pytest

from jaxlm import config as config_lib
from jaxlm.runs.checkpoint import Checkpointer
from jaxlm.train import wandb_sink
from jaxlm.train.writers import MetricWriter

wandb = pytest.importorskip("wandb")  # the [wandb] extra, in [test]
from wandb.proto import wandb_internal_pb2  # noqa: E402  (after the skip)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = [
    "--config.model.num_layers=1",
    "--config.model.width=32",
    "--config.model.num_heads=2",
    "--config.data.seq_len=32",
    "--config.data.batch_size=4",
    "--config.data.tokenizer.kind=char",
    "--config.train.steps=20",
    "--config.train.warmup_steps=2",
    "--config.log.every=5",
    "--config.eval.every=10",
    "--config.eval.max_batches=1",
    "--config.checkpoint.every=10",
    "--config.sample.num_tokens=4",
]


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """W&B offline, its caches and settings in the test's directory, not the user's home."""
    for variable, value in _offline_env(tmp_path).items():
        monkeypatch.setenv(variable, value)


def _offline_env(tmp_path) -> dict[str, str]:
    home = tmp_path / "wandb-home"
    return {
        "WANDB_MODE": "offline",
        "WANDB_CACHE_DIR": str(home / "cache"),
        "WANDB_CONFIG_DIR": str(home / "config"),
        "WANDB_DATA_DIR": str(home / "data"),
    }


# W&B's .wandb file: a LevelDB-style log of protobuf Records, in 32 KiB blocks after a 7-byte file header;
# each chunk has a header (CRC-32 of its type and bytes, length, type) and a record may span chunks.
_BLOCK, _HEADER = 32768, 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _records(path: str) -> list[wandb_internal_pb2.Record]:
    with open(path, "rb") as f:
        data = f.read()
    assert data[:_HEADER] == b":W&B" + struct.pack("<HB", 0xBEE1, 0), "not a W&B run file"
    records, parts, offset = [], [], _HEADER
    while offset + _HEADER <= len(data):
        if _BLOCK - offset % _BLOCK < _HEADER:  # a block's tail too short for a header is padding
            offset += _BLOCK - offset % _BLOCK
            continue
        crc, length, kind = struct.unpack("<IHB", data[offset : offset + _HEADER])
        chunk = data[offset + _HEADER : offset + _HEADER + length]
        if kind == 0 and length == 0:
            break
        assert zlib.crc32(bytes([kind]) + chunk) == crc, f"corrupt chunk at byte {offset} of {path}"
        parts.append(chunk)
        if kind in (_FULL, _LAST):
            records.append(wandb_internal_pb2.Record.FromString(b"".join(parts)))
            parts = []
        offset += _HEADER + length
    return records


def _key(item) -> str:
    return item.key or ".".join(item.nested_key)


def _wandb_runs(workdir) -> list[dict]:
    """Each W&B run folder under <workdir>/wandb (oldest first): its run id, config and history by step."""
    runs = []
    for path in sorted(glob.glob(os.path.join(workdir, "wandb", "offline-run-*", "run-*.wandb"))):
        run, history, config = None, {}, {}
        for record in _records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run = record.run
                config.update({_key(u): json.loads(u.value_json) for u in record.run.config.update})
            elif kind == "config":
                config.update({_key(u): json.loads(u.value_json) for u in record.config.update})
            elif kind == "history":
                row = {_key(item): json.loads(item.value_json) for item in record.history.item}
                history.setdefault(record.history.step.num, {}).update(
                    {name: value for name, value in row.items() if not name.startswith("_")}
                )
        config.pop("_wandb", None)
        runs.append(
            {"id": run.run_id, "project": run.project, "name": run.display_name, "config": config, "history": history}
        )
    return runs


def _scalars_by_step(records: list[dict]) -> dict[int, dict[str, float]]:
    """metrics.jsonl's finite numbers by step, a step's training and evaluation records together."""
    by_step = {}
    for record in records:
        by_step.setdefault(record["step"], {}).update(
            {name: value for name, value in record.items() if name != "step" and math.isfinite(value)}
        )
    return by_step


def test_the_writer_gives_wandb_the_finite_scalars_by_step_and_the_config(tmp_path, offline):
    settings = wandb_sink.WandbSettings(project="jaxlm-tests", entity="", name="", resume_id=None)
    writer = MetricWriter(str(tmp_path), 0, '{\n  "seed": 3,\n  "log": {"every": 5}\n}', wandb=settings)
    records = [
        {"step": 5, "loss": 4.0, "learning_rate": 1e-3, "mfu": 0.25},
        {"step": 10, "loss": float("nan"), "grad_norm": float("inf"), "learning_rate": 2e-3},
        {"step": 10, "val_loss": 3.25, "val_accuracy": 0.5},
    ]
    for record in records:
        writer.write(record)
    run_id = writer.wandb_run_id
    writer.close()
    wandb.teardown()  # finish() may return before W&B's service process has written the file; this waits for it
    [run] = _wandb_runs(tmp_path)
    assert run["id"] == run_id and run["project"] == "jaxlm-tests"
    assert run["name"] == tmp_path.name  # log.wandb_name="": the workdir's folder
    assert run["config"] == {"seed": 3, "log": {"every": 5}}
    assert run["history"] == {
        5: {"loss": 4.0, "learning_rate": 1e-3, "mfu": 0.25},
        10: {"learning_rate": 2e-3, "val_loss": 3.25, "val_accuracy": 0.5},  # NaN and inf: metrics.jsonl only
    }
    assert run["history"] == _scalars_by_step(records)


def test_a_resumed_online_run_skips_the_steps_wandb_already_has(tmp_path, monkeypatch):
    """Online, a resumed W&B run starts after the newest step its earlier part logged (which may be past the
    checkpoint); W&B would refuse the earlier steps with a warning each, so the sink leaves them out."""
    logged = []

    class FakeRun:  # what wandb.init returns for a resumed run on the server: no server here
        id, starting_step = "abc123", 8

        def log(self, scalars, step):
            logged.append((step, scalars))

        def finish(self):
            pass

    calls = []
    monkeypatch.setattr(wandb, "init", lambda **kwargs: calls.append(kwargs) or FakeRun())
    settings = wandb_sink.WandbSettings(project="p", entity="team", name="mine", resume_id="abc123")
    run = wandb_sink.WandbRun(settings, str(tmp_path), '{"seed": 0}')
    for step in (5, 8, 10):
        run.log(step, {"loss": float(step)})
    run.close()
    assert logged == [(8, {"loss": 8.0}), (10, {"loss": 10.0})]
    [kwargs] = calls
    assert (kwargs["id"], kwargs["resume"], kwargs["entity"], kwargs["name"]) == ("abc123", "allow", "team", "mine")
    assert kwargs["dir"] == str(tmp_path) and kwargs["config"] == {"seed": 0}


def _run(workdir, *flags, env=None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "JAX_PLATFORMS": "cpu", **_offline_env(workdir.parent), **(env or {})}
    environment["XLA_FLAGS"] = os.environ.get("JAXLM_TEST_XLA_FLAGS", "")
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "run_pretrain.py"), *TINY, *flags, f"--workdir={workdir}"],
        capture_output=True,
        text=True,
        env=environment,
        cwd=workdir.parent,
        timeout=600,
    )


def _saved_run_ids(workdir) -> dict[int, str | None]:
    checkpointer = Checkpointer(str(workdir / "checkpoints"), read_only=True)
    try:
        return {step: checkpointer.meta(step).wandb_run_id for step in checkpointer.complete_steps()}
    finally:
        checkpointer.close()


@pytest.mark.slow
def test_a_stopped_and_resumed_run_logs_metrics_jsonl_into_one_wandb_run(tmp_path):
    workdir = tmp_path / "run"
    project = "--config.log.wandb_project=jaxlm-tests"
    first = _run(workdir, project, "--config.train.stop_at=10")
    assert first.returncode == 0, first.stderr
    [started] = _wandb_runs(workdir)
    assert f"; W&B run {started['id']}" in first.stdout
    assert _saved_run_ids(workdir) == {10: started["id"]}

    second = _run(workdir, project)
    assert second.returncode == 0, second.stderr
    assert "resume | step 10 " in second.stdout
    before, after = _wandb_runs(workdir)
    assert before == started and after["id"] == started["id"]  # the same W&B run, continued
    assert _saved_run_ids(workdir) == {10: started["id"], 20: started["id"]}

    with open(workdir / "metrics.jsonl") as f:
        logged = _scalars_by_step([json.loads(line) for line in f])
    assert sorted(before["history"]) == [5, 10] and sorted(after["history"]) == [15, 20]
    assert {**before["history"], **after["history"]} == logged
    with open(workdir / "config.json") as f:
        assert after["config"] == json.load(f)
    assert not os.path.exists(tmp_path / "wandb")  # nothing in the current directory


@pytest.mark.slow
def test_wandb_that_cannot_start_its_run_stops_the_run_in_one_line(tmp_path):
    """Online with no API key (and a home with none): the one-line error, exit 2, no step taken."""
    env = {"WANDB_MODE": "online", "HOME": str(tmp_path), "WANDB_API_KEY": ""}
    result = _run(tmp_path / "run", "--config.log.wandb_project=jaxlm-tests", env=env)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: config.log.wandb_project='jaxlm-tests': W&B could not start its run ("), last
    assert last.endswith("or set WANDB_MODE=offline to keep W&B's files in the workdir"), last
    assert not os.path.exists(tmp_path / "run" / "metrics.jsonl") and "\nstep " not in result.stdout


def test_without_wandb_installed_a_project_stops_the_run_before_it_starts(tmp_path):
    """wandb made unimportable in the run's process: one line naming the extra, exit 2, no workdir made."""
    code = (
        "import runpy, sys; sys.modules['wandb'] = None; sys.argv = sys.argv[1:]; "
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    workdir = tmp_path / "run"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            os.path.join(ROOT, "run_pretrain.py"),
            "--config.log.wandb_project=p",
            f"--workdir={workdir}",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: config.log.wandb_project='p': logging to Weights & Biases needs the Python package 'wandb', which "
        'jaxlm\'s optional [wandb] extra installs: pip install -e ".[wandb]" (from the checkout)'
    ]
    assert not workdir.exists()


@pytest.mark.parametrize("field", ["log.wandb_entity", "log.wandb_name"])
def test_a_wandb_field_without_a_project_is_an_error(field):
    config = config_lib.base_config()
    section, name = field.split(".")
    config[section][name] = "mine"
    with pytest.raises(config_lib.ConfigError, match=rf"config\.{field}='mine': is read only with log.wandb_project"):
        config_lib.validate(config)
    config.log.wandb_project = "p"
    config_lib.validate(config)
