"""README's failure table, each row produced for real (tools/fault_sweep.py): a full tmpfs, a read-only
directory under setpriv, truncated files, a held lock, SIGTERM/SIGINT at chosen moments, a diverging run.

Each case checks the exit status, that the process ended within 30 s of its stop line with no traceback,
that the checkpoints written before the fault have the same bytes after it, and that the next run without
the fault resumes from the newest good step. tests/runs/test_checkpoint.py fakes the same failures in
process, for their messages.
"""

import importlib.util
import os
import sys

import pytest

pytestmark = pytest.mark.slow  # whole runs in subprocesses

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_spec = importlib.util.spec_from_file_location("fault_sweep", os.path.join(ROOT, "tools", "fault_sweep.py"))
fault_sweep = sys.modules["fault_sweep"] = importlib.util.module_from_spec(_spec)  # dataclasses look it up
_spec.loader.exec_module(fault_sweep)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return fault_sweep.Sweep(str(tmp_path_factory.mktemp("faults")))


@pytest.mark.parametrize("case", fault_sweep.CASES)
def test_fault_is_handled(sweep, case):
    outcome = getattr(sweep, case)()
    if outcome.skipped:
        pytest.skip(outcome.skipped)
    assert outcome.clean, outcome.line()
    assert outcome.intact, outcome.line()
    assert outcome.resumed is not False, outcome.line()
