"""What keeps a run's workdir safe: one run at a time, and a clean stop on SIGTERM or SIGINT."""

from __future__ import annotations

import fcntl
import os
import signal
import types

import jax
from jax.experimental import multihost_utils


class WorkdirError(RuntimeError):
    """The workdir cannot be used: not a folder, not writable, or held by another run."""


class WorkdirBusyError(WorkdirError):
    """Another run holds the workdir's lock."""


def make_workdir(workdir: str) -> None:
    """Creates the workdir (and its parents) unless it exists; WorkdirError names what is in the way."""
    try:
        os.makedirs(workdir, exist_ok=True)
    except FileExistsError as error:
        raise WorkdirError(f"workdir {workdir} is a file, not a folder; give the path of a folder (it is "
                           "created if missing)") from error
    except NotADirectoryError as error:
        raise WorkdirError(f"workdir {workdir}: a part of that path is a file, not a folder; give the path "
                           "of a folder (it is created if missing)") from error
    except OSError as error:
        raise WorkdirError(f"workdir {workdir}: cannot create it ({error.strerror}); give a folder you can "
                           "write to") from error


class WorkdirLock:
    """An exclusive lock on <workdir>/.lock for the life of the run.

    The operating system drops it when the process dies, even by SIGKILL, so a crash never
    leaves a stale lock behind. Remote workdirs (gs://...) are not locked.
    """

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, ".lock")
        self._file = None

    def __enter__(self) -> WorkdirLock:
        if "://" in self.path:
            return self
        self._file = open(self.path, "a+")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "another process"
            self._file.close()
            raise WorkdirBusyError(
                f"{os.path.dirname(self.path)} is in use by {holder}; wait for that run to finish, "
                "stop it, or pass another --workdir") from None
        self._file.truncate(0)
        self._file.write(f"pid {os.getpid()} on {os.uname().nodename}\n")
        self._file.flush()
        return self

    def __exit__(self, *exc) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()


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
