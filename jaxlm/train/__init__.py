"""Training: optimizer, loss, the jitted steps and the loop. The only room that imports the others."""

from jaxlm.train.loop import RunResult, TrainingError, run

__all__ = ["RunResult", "TrainingError", "run"]
