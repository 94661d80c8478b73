"""Training: optimizer, loss, the jitted steps, checkpoints and the loop. The only room that imports the others."""

from jaxlm.train.checkpoint import CheckpointError, restore_params
from jaxlm.train.guards import WorkdirBusyError, WorkdirError
from jaxlm.train.loop import Preempted, RunResult, TrainingError, run

__all__ = ["CheckpointError", "Preempted", "RunResult", "TrainingError", "WorkdirBusyError", "WorkdirError",
           "restore_params", "run"]
