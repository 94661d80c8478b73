"""The dependency rules hold: import-linter's contracts in pyproject.toml pass, and they catch a wrong arrow."""

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINT_IMPORTS = os.path.join(os.path.dirname(sys.executable), "lint-imports")

pytestmark = pytest.mark.skipif(not os.path.exists(LINT_IMPORTS), reason="import-linter is in the [test] extra")


def _lint(root: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": root}  # the jaxlm package under `root`, not the installed one
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache", os.path.join(root, "pyproject.toml")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_contract_is_kept():
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 8 kept, 0 broken." in result.stdout


@pytest.mark.parametrize(
    "module, wrong_import, contract",
    [
        ("model/attention_kernels.py", "from jaxlm.parallel.rules import DEFAULT_RULES", "The model imports nothing"),
        ("data/sources.py", "from jaxlm.model.config import ModelConfig", "The data pipeline knows no model"),
        ("runs/reader.py", "from jaxlm.train.step import TrainState", "Reading and writing runs imports no training"),
        ("generate/decode.py", "from jaxlm.train import loop", "Export and generation read runs, never training"),
        ("train/loop.py", "from jaxlm.export import __main__", "Nothing imports a command line"),
        ("finetune/metrics.py", "from jaxlm.errors import ConfigError", "The downstream metrics import nothing"),
    ],
)
def test_a_wrong_arrow_breaks_its_contract(module, wrong_import, contract, tmp_path):
    shutil.copytree(os.path.join(ROOT, "jaxlm"), tmp_path / "jaxlm", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(os.path.join(ROOT, "pyproject.toml"), tmp_path)
    path = tmp_path / "jaxlm" / module
    path.write_text(path.read_text() + f"\n{wrong_import}  # noqa\n")
    result = _lint(str(tmp_path))
    assert result.returncode != 0
    broken = [line for line in result.stdout.splitlines() if line.endswith(" BROKEN")]
    assert any(line.startswith(contract) for line in broken), result.stdout
