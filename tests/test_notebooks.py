"""The notebooks: committed without outputs, and each runs top to bottom headless on a tiny config."""

import os

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = ("quickstart", "bert_mlm")


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(os.path.join(ROOT, "notebooks", f"{name}.ipynb"), as_version=4)


def _text(cell) -> str:
    """What the cell printed to stdout and its result (stderr holds library warnings and bars)."""
    return "".join(
        (out.get("text", "") if out.get("name") == "stdout" else "")
        + "".join(out.get("data", {}).get("text/plain", ""))
        for out in cell.outputs
    )


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_without_outputs_with_a_parameters_cell(name):
    nb = _read(name)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert "parameters" in code[0].metadata.get("tags", [])


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_runs_headless(name, tmp_path, monkeypatch):
    monkeypatch.setenv("JAXLM_NOTEBOOK_TINY", "1")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("XLA_FLAGS", os.environ.get("JAXLM_TEST_XLA_FLAGS", ""))  # one device, as on a laptop
    nb = _read(name)
    # The kernel starts in tmp_path, so the run's folders land there.
    NotebookClient(nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "\n".join(_text(cell) for cell in nb.cells if cell.cell_type == "code")
    assert "1 x CPU" in outputs
    assert "step     30/30 | loss " in outputs and "eval     30/30 | val_loss " in outputs
    assert any(
        out.get("data", {}).get("image/png") for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
    ), "the loss plot is missing"
    assert "model.safetensors" in outputs and os.path.exists(tmp_path / "hf" / name / "config.json")
    if name == "quickstart":
        assert "sample |\nThe " in outputs
        # transformers generated from both prompts (printed as JSON strings, so the quote is always ")
        assert '\n"The ' in outputs and '\n"A class' in outputs
    else:
        assert "<mask> at 1 (was " in outputs
        assert len([line for line in _text(nb.cells[-1]).splitlines() if line.strip()]) == 5  # top 5 fills
