"""A clean stop on SIGTERM or SIGINT: the run finishes its step, saves a checkpoint and exits."""

from __future__ import annotations

import signal
import types

import jax
from jax.experimental import multihost_utils


class StopSignals:
    """Turns SIGTERM/SIGINT into a request to save and stop after the current step.

    With several processes, a signal reaches hosts at different steps, so the stop step comes from
    JAX's preemption sync point, which every host agrees on; one process watches its own flag.
    A second SIGINT interrupts at once, as usual.
    """

    def __init__(self):
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if jax.process_count() > 1:
            return self  # jax.distributed's preemption notifier owns SIGTERM; do not replace it
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: types.FrameType | None) -> None:
        if self.received == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum

    def requested(self, step: int) -> bool:
        """Whether the run should save and stop after `step`."""
        if jax.process_count() > 1:
            return multihost_utils.reached_preemption_sync_point(step)
        return self.received is not None

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
