"""Giving the heap that XLA's compilers freed back to the operating system.

Compiling a step on the CPU builds large LLVM modules; glibc keeps their freed pages in the
process, so every later allocation (the next compile, the runtime's buffers) grows the resident
set instead of reusing them. Trimming after each compile cut a small recipe's peak RSS by about
a fifth (benchmarks/NOTES.md). Elsewhere than glibc (macOS, musl) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def release_free_heap() -> bool:
    """Returns freed heap pages to the OS (glibc's malloc_trim); whether any were released."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
