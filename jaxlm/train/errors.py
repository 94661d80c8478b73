"""How a training run ends early: the errors the command line turns into exit statuses 3 and 4."""


class TrainingError(RuntimeError):
    """The run cannot go on (a non-finite loss, a failed save); the message says what happened and what to try."""


class Preempted(RuntimeError):
    """SIGTERM or SIGINT stopped the run after it saved a checkpoint; the same command resumes it."""
