"""Writing a folder so that it appears complete or not at all: a failed export never leaves a partial model."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def staged_folder(out: str, replaces: Callable[[str], bool]) -> Iterator[str]:
    """A fresh folder beside `out` to write into. When the block completes, its files move into `out` (created
    if missing; files of the same names, and earlier files for which `replaces(name)` holds, replaced), with
    the permissions the umask gives new files. If the block fails, `out` is left as it was."""
    out = os.path.abspath(out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.", dir=os.path.dirname(out))
    try:
        yield staging
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)
        for name in os.listdir(staging):
            os.chmod(os.path.join(staging, name), 0o666 & ~umask)  # safetensors writes 0600
        if not os.path.exists(out):
            os.rename(staging, out)
            return
        for stale in os.listdir(out):  # an earlier export's weight shards would mix with these
            if replaces(stale):
                os.remove(os.path.join(out, stale))
        for name in os.listdir(staging):
            os.replace(os.path.join(staging, name), os.path.join(out, name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
