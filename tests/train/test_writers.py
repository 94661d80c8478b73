"""metrics.jsonl and TensorBoard events, from the writer and from a real run: what is written reads back."""

import glob
import json
import os
import struct
import subprocess
import sys

import pytest
from tensorboardX.proto import event_pb2

from jaxlm.train.progress import parse_line
from jaxlm.train.writers import MetricWriter

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _events(tensorboard_dir: str) -> list[event_pb2.Event]:
    """Every event in the directory's files, read as TFRecords (length, crc, bytes, crc)."""
    events = []
    for path in sorted(glob.glob(os.path.join(tensorboard_dir, "events.out.tfevents.*"))):
        with open(path, "rb") as f:
            data = f.read()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            events.append(event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length]))
            offset += 12 + length + 4
    return events


def _scalars(tensorboard_dir: str) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} of the scalar summaries, the last write of a step winning."""
    scalars = {}
    for event in _events(tensorboard_dir):
        for value in event.summary.value:
            if value.HasField("simple_value"):
                scalars.setdefault(value.tag, {})[event.step] = value.simple_value
    return scalars


def _texts(tensorboard_dir: str) -> dict[str, str]:
    return {
        value.tag: value.tensor.string_val[0].decode()
        for event in _events(tensorboard_dir)
        for value in event.summary.value
        if value.metadata.plugin_data.plugin_name == "text"
    }


def test_records_become_jsonl_lines_and_scalars_and_the_config_text(tmp_path):
    writer = MetricWriter(str(tmp_path), 0, '{\n  "seed": 0\n}')
    writer.write({"step": 10, "loss": 4.0, "learning_rate": 1e-3, "mfu": 0.25})
    writer.write({"step": 20, "loss": 3.5, "learning_rate": 2e-3})
    writer.write({"step": 20, "val_loss": 3.25})
    writer.close()
    with open(tmp_path / "metrics.jsonl") as f:
        assert [json.loads(line)["step"] for line in f] == [10, 20, 20]
    scalars = _scalars(str(tmp_path / "tensorboard"))
    assert scalars == {
        "loss": {10: 4.0, 20: 3.5},
        "learning_rate": {10: pytest.approx(1e-3), 20: pytest.approx(2e-3)},
        "mfu": {10: 0.25},
        "val_loss": {20: 3.25},
    }
    assert '"seed": 0' in _texts(str(tmp_path / "tensorboard"))["config/text_summary"]


def test_a_resumed_run_drops_the_records_after_its_checkpoint(tmp_path):
    writer = MetricWriter(str(tmp_path), 0, "{}")
    for step in (5, 10, 15):
        writer.write({"step": step, "loss": float(step)})
    writer.close()
    writer = MetricWriter(str(tmp_path), 10, "{}")
    writer.write({"step": 15, "loss": 1.5})
    writer.close()
    with open(tmp_path / "metrics.jsonl") as f:
        assert [(r["step"], r["loss"]) for r in map(json.loads, f)] == [(5, 5.0), (10, 10.0), (15, 1.5)]
    # TensorBoard is told to hide the first run's step 15 (a purge event at step 11).
    purges = [e.step for e in _events(str(tmp_path / "tensorboard")) if e.HasField("session_log")]
    assert purges == [11]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 30-step causal run through run_pretrain.py, as CI sees it: stdout is a pipe, not a terminal."""
    workdir = tmp_path_factory.mktemp("run")
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAXLM_PEAK_FLOPS": "1e11"}
    env["XLA_FLAGS"] = os.environ.get("JAXLM_TEST_XLA_FLAGS", "")
    flags = [
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
        "--config.data.tokenizer.kind=char",
        f"--workdir={workdir}",
    ]
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "run_pretrain.py"), *flags],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    with open(workdir / "metrics.jsonl") as f:
        records = [json.loads(line) for line in f]
    return workdir, result.stdout, records


@pytest.mark.slow
def test_the_plain_lines_read_back_as_the_logged_metrics(tiny_run):
    _, stdout, records = tiny_run
    lines = [parse_line(line) for line in stdout.splitlines() if line.startswith(("step ", "eval "))]
    steps = [line for line in lines if line["kind"] == "step"]
    train = [r for r in records if "loss" in r]
    assert [int(line["step"]) for line in steps] == [r["step"] for r in train] == [10, 20, 30]
    for line, record in zip(steps, train):
        assert float(line["loss"]) == pytest.approx(record["loss"], abs=1e-4)
        assert float(line["lr"]) == pytest.approx(record["learning_rate"], rel=1e-2)
        assert float(line["mfu"].rstrip("%")) == pytest.approx(100 * record["mfu"], abs=0.05)
    evals = [line for line in lines if line["kind"] == "eval"]
    assert [(int(e["step"]), float(e["val_loss"])) for e in evals] == [
        (r["step"], pytest.approx(r["val_loss"], abs=1e-4)) for r in records if "val_loss" in r
    ]


@pytest.mark.slow
def test_the_start_summary_names_modules_memory_the_config_diff_and_the_workdir(tiny_run):
    workdir, stdout, _ = tiny_run
    heads = {line.split(" | ")[0].strip(): line for line in stdout.splitlines() if " | " in line}
    assert "blocks" in heads["params"] and "token_embed" in heads["params"]
    assert "parameters +" in heads["memory"] and "optimizer state per device" in heads["memory"]
    assert heads["config"].startswith("config | vs default.py: ") and "model.width 192 -> 32" in heads["config"]
    assert f"workdir {workdir}" in heads["jaxlm"]


@pytest.mark.slow
def test_the_run_writes_the_expected_tensorboard_scalars(tiny_run):
    workdir, _, records = tiny_run
    scalars = _scalars(str(workdir / "tensorboard"))
    for tag in ("loss", "val_loss", "learning_rate", "grad_norm", "tokens_per_second", "mfu"):
        assert tag in scalars, (tag, sorted(scalars))
    assert scalars["loss"] == {r["step"]: pytest.approx(r["loss"]) for r in records if "loss" in r}
    assert '"family": "llama"' in _texts(str(workdir / "tensorboard"))["config/text_summary"]
