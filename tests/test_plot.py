"""python -m jaxlm.plot: a PNG of the loss curves from metrics.jsonl, and one-line errors."""

import json
import os
import struct
import subprocess
import sys

from jaxlm.plot.curves import loss_figure, read_learning_rates, read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _workdir(tmp_path, records):
    with open(tmp_path / "metrics.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    return tmp_path


def _plot(*args):
    return subprocess.run(
        [sys.executable, "-m", "jaxlm.plot", *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


RECORDS = [
    {"step": 10, "loss": 4.2, "accuracy": 0.1, "learning_rate": 1e-3},
    {"step": 20, "loss": 3.9, "learning_rate": 5e-4},
    {"step": 20, "val_loss": 3.8},
    {"step": 30, "loss": 3.5},
    {"step": 30, "val_loss": 3.4, "val_perplexity": 30.0},
]


def test_read_metrics_splits_train_and_validation_losses(tmp_path):
    train, val = read_metrics(str(_workdir(tmp_path, RECORDS)))
    assert train == [(10, 4.2), (20, 3.9), (30, 3.5)] and val == [(20, 3.8), (30, 3.4)]


def test_the_figure_draws_the_learning_rate_beside_the_losses(tmp_path):
    workdir = str(_workdir(tmp_path, RECORDS))
    assert read_learning_rates(workdir) == [(10, 1e-3), (20, 5e-4)]
    loss_axes, rate_axes = loss_figure(workdir).axes
    assert [line.get_label() for line in loss_axes.get_lines()] == ["train loss", "validation loss"]
    (rate_line,) = rate_axes.get_lines()
    assert list(rate_line.get_xdata()) == [10, 20] and list(rate_line.get_ydata()) == [1e-3, 5e-4]


def test_the_command_writes_a_png_of_the_requested_name(tmp_path):
    workdir = _workdir(tmp_path, RECORDS)
    result = _plot(workdir, f"--out={tmp_path / 'plots' / 'curve.png'}")
    assert result.returncode == 0, result.stderr
    assert "3 train, 2 validation points" in result.stdout
    with open(tmp_path / "plots" / "curve.png", "rb") as f:
        png = f.read()
    assert png.startswith(PNG_SIGNATURE) and png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (700, 400) and len(png) > 10_000  # a drawn figure, not an empty canvas


def test_the_default_output_is_loss_png_in_the_workdir(tmp_path):
    assert _plot(_workdir(tmp_path, RECORDS)).returncode == 0
    assert os.path.getsize(tmp_path / "loss.png") > 0


def test_a_directory_without_metrics_exits_2_naming_it(tmp_path):
    result = _plot(tmp_path)
    assert result.returncode == 2 and f"{tmp_path}/metrics.jsonl does not exist" in result.stderr
