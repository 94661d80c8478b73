"""The code keeps its style: `ruff format --check` and `ruff check` (configured in pyproject.toml) pass."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUFF = os.path.join(os.path.dirname(sys.executable), "ruff")

pytestmark = pytest.mark.skipif(not os.path.exists(RUFF), reason="ruff is in the [test] extra")


@pytest.mark.parametrize("command", [["format", "--check"], ["check"]], ids=["format", "lint"])
def test_ruff(command):
    result = subprocess.run([RUFF, *command, "."], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, (
        f"ruff {' '.join(command)} . (fix with ruff format . / ruff check --fix .):\n"
        f"{result.stdout[-3000:]}{result.stderr[-1000:]}"
    )
