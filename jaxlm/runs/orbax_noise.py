"""Quieting what Orbax prints about failures the Checkpointer already reports as one CheckpointError.

A save that fails in Orbax's background threads (a full disk, say) makes each thread log its traceback
at ERROR, and tensorstore's late callbacks into the closed event loops print "Event loop is closed" as
unraisable exceptions; a restore of a truncated file does the same with "Exception ignored in
<coroutine ...>", and asyncio logs "Task exception was never retrieved" for Orbax's failed write tasks.
Hundreds of lines, all saying what the CheckpointError's one line says. `quiet()` drops exactly those:
ERROR records logged from Orbax's modules, Orbax's note that a directory is read only (expected when
reading another run), asyncio's records of Orbax's tasks, and unraisable exceptions raised in asyncio's or
Orbax's code; everything else passes as before.
"""

from __future__ import annotations

import logging
import sys

_ORBAX = "/orbax/checkpoint/"
_installed = False


class _OrbaxFailureFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        from_orbax = _ORBAX in record.pathname.replace("\\", "/")
        if from_orbax and record.levelno >= logging.ERROR:
            return False
        return not (from_orbax and "Given directory is read only" in record.getMessage())


class _OrbaxTaskFilter(logging.Filter):
    """asyncio's "Task exception was never retrieved" for an Orbax write task whose failure the save reports."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_ORBAX in record.getMessage().replace("\\", "/") and "never retrieved" in record.getMessage())


def _unraisable_from(unraisable, previous) -> None:
    trace = unraisable.exc_traceback
    files = []
    while trace is not None:
        files.append(trace.tb_frame.f_code.co_filename.replace("\\", "/"))
        trace = trace.tb_next
    where = files + [getattr(getattr(unraisable.object, "cr_code", None), "co_filename", "")]
    if any(_ORBAX in path or "/asyncio/" in path for path in where if path):
        return
    previous(unraisable)


def quiet() -> None:
    """Installs the filter and the unraisable-exception hook, once per process."""
    global _installed
    if _installed:
        return
    _installed = True
    logging.getLogger("absl").addFilter(_OrbaxFailureFilter())
    logging.getLogger("asyncio").addFilter(_OrbaxTaskFilter())
    previous = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: _unraisable_from(unraisable, previous)
