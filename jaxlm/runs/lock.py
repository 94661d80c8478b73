"""One run per workdir: creating it, and an exclusive lock held for the life of the run."""

from __future__ import annotations

import fcntl
import os

from jaxlm.runs.layout import LOCK_FILE, is_remote


class WorkdirError(RuntimeError):
    """The workdir cannot be used: not a folder, not writable, or held by another run."""


class WorkdirBusyError(WorkdirError):
    """Another run holds the workdir's lock."""


def make_workdir(workdir: str) -> None:
    """Creates the workdir (and its parents) unless it exists; WorkdirError names what is in the way."""
    try:
        os.makedirs(workdir, exist_ok=True)
    except FileExistsError as error:
        raise WorkdirError(
            f"workdir {workdir} is a file, not a folder; give the path of a folder (it is created if missing)"
        ) from error
    except NotADirectoryError as error:
        raise WorkdirError(
            f"workdir {workdir}: a part of that path is a file, not a folder; give the path "
            "of a folder (it is created if missing)"
        ) from error
    except OSError as error:
        raise WorkdirError(
            f"workdir {workdir}: cannot create it ({error.strerror}); give a folder you can write to"
        ) from error


class WorkdirLock:
    """An exclusive lock on <workdir>/.lock for the life of the run.

    The operating system drops it when the process dies, even by SIGKILL, so a crash never
    leaves a stale lock behind. Remote workdirs (gs://...) are not locked.
    """

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, LOCK_FILE)
        self._file = None

    def __enter__(self) -> WorkdirLock:
        if is_remote(self.path):
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
                "stop it, or pass another --workdir"
            ) from None
        self._file.truncate(0)
        self._file.write(f"pid {os.getpid()} on {os.uname().nodename}\n")
        self._file.flush()
        return self

    def __exit__(self, *exc) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
