"""Where a run's wall time goes: train steps, waiting for data, evaluation, checkpoints, compiling, start-up.

Goodput, in MaxText's sense, is the share of the wall time spent in train steps. The loop charges each
stretch of time to one category as it ends (`Clock.charge`), so the categories add up to the wall time by
construction and a step costs two `perf_counter` calls, never a wait on the device.
"""

from __future__ import annotations

import time

from jaxlm.train.progress import format_duration

# The order of the end-of-run line; "steps" is the productive time, the rest is overhead.
CATEGORIES = (
    "steps",  # dispatching train steps and waiting for the devices to finish them
    "data",  # waiting for the next batch and putting it on the devices
    "eval",  # evaluation, and putting the validation batches on the devices
    "checkpoints",  # saving, and waiting for asynchronous saves to finish
    "compile",  # compiling the train step
    "startup",  # before the loop: data and tokenizer, model init, restoring a checkpoint
    "profile",  # starting and writing a jax.profiler trace (log.profile_steps)
    "other",  # logs and metric writers, the rest of the loop's own work
)


class Clock:
    """Wall time by category, from when it was made to the last `charge`."""

    def __init__(self):
        self.seconds = dict.fromkeys(CATEGORIES, 0.0)
        self._last = time.perf_counter()

    def charge(self, category: str) -> None:
        """Counts the time since the previous charge (or since the clock started) as `category`."""
        now = time.perf_counter()
        self.seconds[category] += now - self._last
        self._last = now

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    @property
    def goodput(self) -> float:
        """The share of the wall time spent in train steps, 0..1."""
        return self.seconds["steps"] / self.total if self.total > 0 else 0.0

    def record(self, step: int) -> dict:
        """A metrics.jsonl record of the breakdown at `step`: time_<category>_s, time_total_s and goodput."""
        return {
            "step": step,
            "goodput": self.goodput,
            "time_total_s": self.total,
            **{f"time_{name}_s": seconds for name, seconds in self.seconds.items()},
        }

    def line(self) -> str:
        """`time  | 41.2 s: steps 35.0 s (85% goodput), data 1.1 s, ...`: the categories that took any time."""
        rest = [f"{name} {_duration(s)}" for name, s in self.seconds.items() if name != "steps" and s >= 0.05]
        steps = f"steps {_duration(self.seconds['steps'])} ({self.goodput:.0%} goodput)"
        return f"time  | {_duration(self.total)}: " + ", ".join([steps, *rest])


def _duration(seconds: float) -> str:
    """41.2 s under a minute, else 1:05 or 2:01:05."""
    return f"{seconds:.1f} s" if seconds < 60 else format_duration(seconds)
