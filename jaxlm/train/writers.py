"""Where a run's numbers go: <workdir>/metrics.jsonl for scripts, <workdir>/tensorboard/ (and Weights & Biases,
when `log.wandb_project` is set) for people.

Process 0 writes them all; the other processes of a job hold a writer that does nothing.
"""

from __future__ import annotations

import json
import math
import os

import jax

from jaxlm.runs import layout
from jaxlm.train.wandb_sink import WandbRun, WandbSettings


class MetricWriter:
    """One JSON object per logged step or evaluation, and the same numbers as TensorBoard scalars.

    A resumed run keeps the records up to its checkpoint's step and drops the later ones, which
    the run it continues logged before it stopped and which it is about to log again; TensorBoard
    hides them the same way (tensorboardX's purge_step). With `wandb` settings, the same scalars go to that
    W&B run too, and the config as its config.
    """

    def __init__(self, workdir: str, start_step: int, config_json: str, wandb: WandbSettings | None = None):
        self.path = os.path.join(workdir, layout.METRICS_FILE)
        self.tensorboard_dir = os.path.join(workdir, layout.TENSORBOARD_DIR)
        self._board = None
        self._wandb: WandbRun | None = None
        if jax.process_index() != 0:
            return
        if wandb is not None:  # first: the one that may fail (no login, no network), before a file is touched
            self._wandb = WandbRun(wandb, workdir, config_json)
        kept = []
        if start_step and os.path.exists(self.path):
            with open(self.path) as f:
                kept = [line for line in f if line.strip() and json.loads(line)["step"] <= start_step]
        with open(self.path, "w") as f:
            f.writelines(kept)
        from tensorboardX import SummaryWriter  # imports torch when it is installed: only where needed

        self._board = SummaryWriter(self.tensorboard_dir, purge_step=start_step + 1 if start_step else None)
        # Indented, so TensorBoard's markdown shows the JSON as a code block.
        self._board.add_text(
            "config", "\n".join("    " + line for line in config_json.splitlines()), global_step=start_step
        )

    @property
    def wandb_run_id(self) -> str | None:
        """The id of the W&B run this writer logs to (process 0, W&B on); else None."""
        return self._wandb.id if self._wandb is not None else None

    def write(self, record: dict) -> None:
        """Appends the record (it has a "step") to metrics.jsonl; its numbers become scalars by name."""
        if self._board is None:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        # A NaN or inf (a diverging step, with train.skip_nonfinite) stays in metrics.jsonl only: a chart
        # cannot draw it, and tensorboardX warns on stderr for each one.
        scalars = {
            tag: value
            for tag, value in record.items()
            if tag != "step" and isinstance(value, (int, float)) and math.isfinite(value)
        }
        for tag, value in scalars.items():
            self._board.add_scalar(tag, value, global_step=record["step"])
        if self._wandb is not None:
            self._wandb.log(record["step"], scalars)

    def flush(self) -> None:
        if self._board is not None:
            self._board.flush()

    def close(self) -> None:
        if self._board is not None:
            self._board.close()
            self._board = None
        if self._wandb is not None:
            self._wandb.close()
            self._wandb = None
