"""python -m jaxlm.plot WORKDIR [--out=PNG]: a run's training and validation loss against step, as a PNG.

    python -m jaxlm.plot runs/tiny                     # -> runs/tiny/loss.png
    python -m jaxlm.plot runs/tiny --out=/tmp/tiny.png

Reads <workdir>/metrics.jsonl. Exit status 2 when there is no run or no loss to draw.
"""

from __future__ import annotations

import os
import sys

from absl import flags

from jaxlm import cli
from jaxlm.plot.curves import read_metrics, write_png
from jaxlm.runs.layout import METRICS_FILE


@cli.command
def main(argv: list[str]) -> int:
    """Runs the command line on `argv` (without the program name); returns the exit status."""
    fv = cli.command_flags()
    flags.DEFINE_string("out", None, "The PNG to write (default: WORKDIR/loss.png).", flag_values=fv)
    [workdir] = cli.parse(fv, ["jaxlm.plot", *argv], usage=__doc__, positional=("workdir",))
    if not os.path.exists(os.path.join(workdir, METRICS_FILE)):
        cli.fail(f"{workdir}/{METRICS_FILE} does not exist; give the --workdir of a jaxlm run")
    train, val = read_metrics(workdir)
    if not train and not val:
        cli.fail(f"{workdir}/{METRICS_FILE} holds no loss yet")
    print(f"wrote {write_png(workdir, fv.out)} ({len(train)} train, {len(val)} validation points)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
