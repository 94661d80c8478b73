"""Giving freed heap back to the OS after a compile (jaxlm/train/host_memory.py)."""

import ctypes.util
import sys

import pytest

from jaxlm.train.host_memory import release_free_heap


def _resident_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or "libc" not in (ctypes.util.find_library("c") or ""),
    reason="malloc_trim is glibc's; elsewhere release_free_heap does nothing",
)
def test_freed_heap_stays_resident_until_released():
    release_free_heap()  # what earlier tests in this process freed would otherwise take the new blocks
    before = _resident_mib()
    blocks = [bytes(2000) + bytes([i % 256]) for i in range(100_000)]  # ~200 MiB of malloc'd blocks
    pin = bytes(3000)  # allocated after them, so the freed blocks are not at the heap's top
    del blocks
    freed = _resident_mib()
    assert freed > before + 150, "glibc returned the blocks by itself; the test shows nothing"
    assert release_free_heap()
    assert _resident_mib() < freed - 150
    del pin
