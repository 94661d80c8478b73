"""Test-wide setup: 8 fake CPU devices, and a compilation cache shared by every test and subprocess.

- 8 fake CPU devices, so sharding strategies can be checked against one device, and XLA:CPU's code left
  unoptimised (compiles in half the time).
- JAX's persistent compilation cache in a folder of this test run, set in the environment before JAX is
  imported, so the tests and the runs they start as subprocesses (which inherit the environment) compile
  each small program once instead of once per process. Nothing outlives the run.
The `slow` mark (pyproject.toml) is on the end-to-end tests: `pytest -m "not slow"` is the quick loop;
README's test command (and CI) runs everything.
"""

import os
import shutil
import tempfile

# Compile fast, run slow: the tests compile hundreds of small programs and run each for a few steps, so
# LLVM's optimisation of the generated CPU code (about half of every compile) buys them nothing. Runs the
# tests start as subprocesses take the same flags from JAXLM_TEST_XLA_FLAGS, with their own device count.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0"
os.environ["JAXLM_TEST_XLA_FLAGS"] = TEST_XLA_FLAGS
# Must happen before jax is imported anywhere.
os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8 " + TEST_XLA_FLAGS
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _CACHE = tempfile.mkdtemp(prefix="jaxlm-tests-xla-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
    # Cache every program, however small or quick to compile: the tests compile many small ones.
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"


def pytest_unconfigure(config):
    if _CACHE:
        shutil.rmtree(_CACHE, ignore_errors=True)


def pytest_collection_modifyitems(items):
    """The slow tests first, so that with several workers (-n 2) the longest ones start at once, not last."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
