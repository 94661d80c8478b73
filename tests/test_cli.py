"""Every command line: --help answers at once (exit 0, no JAX loaded), bad flags and arguments are one line, exit 2."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS = {  # how to start it, and a flag it needs (absent: a missing required flag is a usage error too)
    "run_pretrain.py": ["run_pretrain.py"],
    "jaxlm.export": ["-m", "jaxlm.export"],
    "jaxlm.generate": ["-m", "jaxlm.generate"],
    "jaxlm.aot": ["-m", "jaxlm.aot"],
    "jaxlm.plot": ["-m", "jaxlm.plot"],
    "jaxlm.tokenizer": ["-m", "jaxlm.tokenizer"],
}
# Runs a command as `python ...` would, then says whether JAX was imported: --help must not pay for it.
_PROBE = """
import runpy, sys
target, *argv = sys.argv[1:]
sys.argv = [target, *argv]
try:
    if target.endswith(".py"):
        runpy.run_path(target, run_name="__main__")
    else:
        runpy.run_module(target, run_name="__main__", alter_sys=True)
except SystemExit as stop:
    code = stop.code
print("jax imported:", "jax" in sys.modules)
sys.exit(code)
"""


def _run(command: str, *args: str, probe: bool = False) -> subprocess.CompletedProcess:
    start = COMMANDS[command]
    target = start[-1]
    argv = [sys.executable, "-c", _PROBE, target, *args] if probe else [sys.executable, *start, *args]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_exits_0_before_loading_jax(command):
    result = _run(command, "--help", probe=True)
    assert result.returncode == 0, result.stderr
    assert "flags:" in result.stdout and "jax imported: False" in result.stdout, result.stdout
    assert f"{command.removesuffix('.py').replace('.', ' -m ', 0)}" in result.stdout


def test_run_pretrain_help_says_where_every_config_field_is():
    result = _run("run_pretrain.py", "--help")
    assert result.returncode == 0 and "jaxlm/config.py" in result.stdout and "--config.FIELD" in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_an_unknown_flag_is_one_line_and_exit_2(command):
    result = _run(command, "--no_such_flag=1")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == "error: Unknown command line flag 'no_such_flag'; see --help"


@pytest.mark.parametrize(
    "command, args, message",
    [
        ("run_pretrain.py", ["stray"], "error: expected no arguments besides flags, got stray; see --help"),
        ("jaxlm.export", ["--out=x", "stray"], "error: expected no arguments besides flags, got stray; see --help"),
        ("jaxlm.plot", [], "error: expected WORKDIR, got none; see --help"),
        (
            "jaxlm.tokenizer",
            ["prepare", "--input=x", "--vocab_size=9", "--output=y"],
            "error: unknown command 'prepare'; the one command is: python -m jaxlm.tokenizer train --input=...",
        ),
        ("jaxlm.generate", [], "error: --workdir is required; see --help"),
        (
            "jaxlm.generate",
            ["--workdir=w", "--top_p=2"],
            "error: flag --top_p=2: 2.0 is not a number in the range [0, 1]; see --help",
        ),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(command, args, message):
    result = _run(command, *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == message


def test_jax_starts_quietly_on_a_machine_without_an_accelerator():
    """With libtpu installed (the `tpu` extra) and no TPU, JAX's start would print libtpu's probe errors;
    commands start JAX on the CPU instead when the machine has no accelerator device."""
    pytest.importorskip("libtpu", reason="the noise comes from libtpu; without it there is nothing to quiet")
    from jaxlm import cli

    if any(__import__("glob").glob(pattern) for pattern in cli._ACCELERATOR_DEVICES):
        pytest.skip("this machine has an accelerator: JAX is left to find it")
    env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
    code = "from jaxlm import cli; cli._cpu_when_no_accelerator(); import jax; print(jax.devices()[0].platform)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "cpu", result.stderr
    assert "TPU" not in result.stderr and "libtpu" not in result.stderr, result.stderr
