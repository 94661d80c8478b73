"""A jax.profiler trace of a few train steps (log.profile_steps), for TensorBoard's profile plugin, XProf or Perfetto.

The trace of steps FIRST..LAST goes to <log_dir>/plugins/profile/steps_FIRST-LAST/<host>.xplane.pb (with
<host>.trace.json.gz), the layout the profile plugin lists under `tensorboard --logdir <log_dir>`. It starts
before step FIRST fetches its batch, so the host's wait for data is in it, and stops once step LAST has finished
on the devices, so their work is in it too.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

import jax

from jaxlm.train.goodput import Clock

_NO_ANNOTATION = contextlib.nullcontext()


class Profiler:
    """Traces steps first..last of `steps_range` when this invocation runs them; does nothing otherwise."""

    def __init__(
        self,
        steps_range: tuple[int, int] | None,
        log_dir: str,
        *,
        first_step: int,
        last_step: int,
        traced: bool,
        session_suffix: str = "",
        say: Callable[[str], None] = print,
    ):
        """`first_step` is the step the run starts after (its checkpoint's), `last_step` the last it runs;
        `traced` whether this process traces; `session_suffix` tells processes that trace side by side apart."""
        self.log_dir, self.say = log_dir, say
        self.first = self.last = 0  # step 0 is never run: inactive
        self.tracing = False
        if steps_range is None or not traced:
            return
        first, last = steps_range
        if first <= first_step:
            say(f"profile | no trace: this run resumes from step {first_step}, past step {first} where it would start")
            return
        if first > last_step:
            say(f"profile | no trace: this run stops at step {last_step}, before step {first} where it would start")
            return
        self.first, self.last = first, min(last, last_step)
        self.session = f"steps_{self.first}-{self.last}{session_suffix}"

    @property
    def directory(self) -> str:
        """Where the trace's files go."""
        return os.path.join(self.log_dir, "plugins", "profile", self.session)

    def before_step(self, step: int, clock: Clock) -> None:
        """Starts the trace when `step` is the first traced step."""
        if step != self.first:
            return
        options = jax.profiler.ProfileOptions()
        options.session_id = self.session  # the run's folder name in the plugin, in place of a timestamp
        # No create_perfetto_trace: Perfetto's JSON importer skips the "metadata" that jax's copy leaves out, so
        # it reads <host>.trace.json.gz as it is; the copy cost 12 of the 19 s a trace of 25 small steps took.
        jax.profiler.start_trace(self.log_dir, profiler_options=options)
        self.tracing = True
        clock.charge("profile")

    def annotate(self, step: int) -> contextlib.AbstractContextManager:
        """Marks a traced step's dispatch as step `step`, for XProf's step-time views."""
        return jax.profiler.StepTraceAnnotation("train", step_num=step) if self.tracing else _NO_ANNOTATION

    def after_step(self, step: int, outputs, clock: Clock) -> None:
        """Stops the trace once `step`, the last traced one, has finished on the devices (`outputs` are its)."""
        if step != self.last or not self.tracing:
            return
        jax.block_until_ready(outputs)
        clock.charge("steps")
        self._stop()
        clock.charge("profile")
        self.say(
            f"profile | steps {self.first}..{self.last} -> {self.directory}; open it with tensorboard --logdir "
            f"{self.log_dir} (Profile tab), XProf or Perfetto (README: Profiling a run)"
        )

    def close(self) -> None:
        """Stops a trace an error or a signal interrupted, keeping what it holds; quiet when none is running."""
        if not self.tracing:
            return
        try:
            self._stop()
            self.say(f"profile | stopped early: the trace in {self.directory} ends where the run did")
        except Exception as error:  # the error that stopped the run is the one to report, not this one
            self.say(f"profile | stopped early, and writing the trace failed: {error}")

    def _stop(self) -> None:
        self.tracing = False
        jax.profiler.stop_trace()
