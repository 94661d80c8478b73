"""The README stays true: its config table is the generated one, the fields it names exist, and its
blocks marked `<!-- runnable -->` run."""

import importlib.util
import os
import re
import subprocess

import pytest

from jaxlm.config import base_config
from jaxlm.train.summary import flatten

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(ROOT, "README.md")) as _f:
    README = _f.read()
RUNNABLE = re.findall(r"<!-- runnable -->\n```bash\n(.*?)```", README, re.S)
# What a command block may use from the checkout; it runs in a temporary directory beside links to them.
LINKED = ("run_pretrain.py", "configs", "jaxlm", "tools", "README.md", "pyproject.toml")
EXPORTED_FILES = {"model.safetensors", "model.safetensors.index.json"}  # named like model.* fields, but files


def _config_table_tool():
    spec = importlib.util.spec_from_file_location("config_table", os.path.join(ROOT, "tools", "config_table.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_config_table_is_what_the_generator_makes():
    tool = _config_table_tool()
    with open(tool.CONFIG) as f:
        generated = tool.table(f.read())
    assert tool.with_table(README, generated) == README, "run python tools/config_table.py --write"
    assert generated.count("\n| `") == len(flatten(base_config()))  # one row per field


def test_every_config_field_the_readme_names_exists():
    fields = set(flatten(base_config()))
    groups = {field.split(".")[0] for field in fields}
    named = set(re.findall(r"--config\.([a-z_.]+)=", README))  # FIELD in --config.FIELD=VALUE is a placeholder
    named |= {name for name in re.findall(r"`([a-z_]+\.[\w.]+)(?:=[^`]*)?`", README) if name.split(".")[0] in groups}
    assert len(named) > 20, "the patterns found too little"
    assert sorted(named - fields - EXPORTED_FILES) == []


def test_there_are_runnable_blocks():
    assert len(RUNNABLE) >= 2


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.splitlines()[0][:40] for b in RUNNABLE])
def test_runnable_block(block, tmp_path):
    for name in LINKED:
        os.symlink(os.path.join(ROOT, name), tmp_path / name)
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)  # one device, as on a laptop
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, f"{block}\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
