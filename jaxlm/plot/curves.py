"""A run's training and validation loss against step, with its learning rate, from its metrics.jsonl, as a
figure or a PNG.

Drawn with matplotlib's Agg canvas, so it needs no display and leaves pyplot's backend alone (notebooks
keep theirs).
"""

from __future__ import annotations

import json
import os

from jaxlm.runs.layout import METRICS_FILE


def _records(workdir: str) -> list[dict]:
    with open(os.path.join(workdir, METRICS_FILE)) as f:
        return [json.loads(line) for line in f if line.strip()]


def read_learning_rates(workdir: str) -> list[tuple[int, float]]:
    """(step, learning rate) of every logged step in <workdir>/metrics.jsonl: the schedule as it ran."""
    return [(r["step"], r["learning_rate"]) for r in _records(workdir) if "learning_rate" in r]


def read_metrics(workdir: str) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(step, train loss) and (step, validation loss) pairs from <workdir>/metrics.jsonl."""
    records = _records(workdir)
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    return train, val


def loss_figure(workdir: str):
    """A matplotlib Figure of the run's train and validation loss against step, and its learning rate on a
    second axis (a WSD run's cool-down, say, beside what it did to the loss)."""
    from matplotlib.figure import Figure

    train, val = read_metrics(workdir)
    figure = Figure(figsize=(7, 4), dpi=100)
    axes = figure.add_subplot()
    if train:
        axes.plot(*zip(*train), label="train loss", linewidth=1.2)
    if val:
        axes.plot(*zip(*val), "o-", label="validation loss", linewidth=1.2, markersize=4)
    axes.set_xlabel("step")
    axes.set_ylabel("loss (cross-entropy, nats)")
    axes.set_title(os.path.basename(os.path.normpath(workdir)))
    axes.grid(alpha=0.3)
    handles, labels = axes.get_legend_handles_labels()
    rates = read_learning_rates(workdir)
    if rates:
        rate_axes = axes.twinx()
        rate_axes.plot(*zip(*rates), "--", color="0.5", label="learning rate", linewidth=1.0)
        rate_axes.set_ylabel("learning rate")
        rate_axes.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        more_handles, more_labels = rate_axes.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    axes.legend(handles, labels)
    figure.tight_layout()
    return figure


def write_png(workdir: str, out: str | None = None) -> str:
    """Writes the loss curve as a PNG; returns its path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    out = out or os.path.join(workdir, "loss.png")
    figure = loss_figure(workdir)
    FigureCanvasAgg(figure)  # a Figure made without pyplot needs a canvas to draw on
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    figure.savefig(out, format="png")
    return out
