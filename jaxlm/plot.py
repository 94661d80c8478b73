"""python -m jaxlm.plot WORKDIR [--out=PNG]: the run's training and validation loss against step.

Reads <workdir>/metrics.jsonl and writes a PNG (default <workdir>/loss.png) with matplotlib's Agg
canvas, so it needs no display and leaves pyplot's backend alone (notebooks keep theirs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def read_metrics(workdir: str) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(step, train loss) and (step, validation loss) pairs from <workdir>/metrics.jsonl."""
    path = os.path.join(workdir, "metrics.jsonl")
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    return train, val


def loss_figure(workdir: str):
    """A matplotlib Figure of the run's train and validation loss against step."""
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
    axes.legend()
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


def main(argv: list[str]) -> int:
    """Runs the command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m jaxlm.plot", description=__doc__.split("\n")[0])
    parser.add_argument("workdir", help="a jaxlm run's --workdir")
    parser.add_argument("--out", default=None, help="the PNG to write (default: WORKDIR/loss.png)")
    args = parser.parse_args(argv)
    if not os.path.exists(os.path.join(args.workdir, "metrics.jsonl")):
        print(f"error: {args.workdir}/metrics.jsonl does not exist; give the --workdir of a jaxlm run",
              file=sys.stderr)
        return 2
    train, val = read_metrics(args.workdir)
    if not train and not val:
        print(f"error: {args.workdir}/metrics.jsonl holds no loss yet", file=sys.stderr)
        return 2
    print(f"wrote {write_png(args.workdir, args.out)} ({len(train)} train, {len(val)} validation points)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
