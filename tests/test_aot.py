"""Ahead-of-time compilation for TPU topologies on the CPU: names, per-chip memory, FLOPs, fit and exit codes.

Needs libtpu (the `tpu` extra), which compiles for a described TPU slice without one attached.
"""

import os
import subprocess
import sys

import jax
import pytest

pytest.importorskip("libtpu", reason="AOT compilation for TPU needs libtpu: pip install -e '.[tpu]'")

from jaxlm.aot import compile as aot_compile  # noqa: E402  (after the skip: compiling needs libtpu)
from jaxlm.aot import topology  # noqa: E402
from jaxlm.config import ConfigError, base_config  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..")


@pytest.mark.parametrize(
    "name,libtpu_name,cloud_name",
    [
        ("v5p-128", "v5p:4x4x4", "v5p-128"),
        ("v5e-16", "v5e:4x4", "v5litepod-16"),
        ("v5litepod-16", "v5e:4x4", "v5litepod-16"),
        ("v4-32", "v4:2x2x4", "v4-32"),
        ("v6e-8", "v6e:2x4", "v6e-8"),
        ("v5e:2x2", "v5e:2x2", "v5litepod-4"),
        ("v5p:4x4x12", "v5p:4x4x12", "v5p-384"),
    ],
)
def test_topology_names_map_to_libtpu_shapes(name, libtpu_name, cloud_name):
    parsed = topology.parse_topology(name)
    assert (parsed.libtpu_name, parsed.cloud_name) == (libtpu_name, cloud_name)


@pytest.mark.parametrize(
    "name,message",
    [
        ("v5p-12", "not a standard v5p slice"),
        ("v4-33", "not a standard v4 slice"),
        ("v5e:4x4x4", "v5e slices have 2 dimensions"),
        ("v7x-8", "expected a Cloud TPU name"),
    ],
)
def test_bad_topology_names_are_refused(name, message):
    with pytest.raises(topology.TopologyError, match=message):
        topology.parse_topology(name)


def test_devices_are_chips_v5p_as_megacore():
    # v5p-8 is 4 chips of 2 TensorCores; JAX runs each chip as one device.
    devices = topology.topology_devices(topology.parse_topology("v5p-8"))
    assert len(devices) == 4 and {d.platform for d in devices} == {"tpu"}
    assert devices[0].device_kind == "TPU v5"


def test_memory_total_counts_donated_outputs_once():
    memory = aot_compile.Memory(arguments=100, outputs=90, aliased=80, temporaries=50, generated_code=5, peak=0)
    assert memory.total == 100 + 90 - 80 + 50 + 5
    assert aot_compile.Memory(100, 90, 80, 50, 5, peak=400).total == 405  # XLA's peak wins when larger


def _small_config():
    config = base_config()  # 2.6M-parameter llama, 4 layers
    config.mesh.preset = "fsdp"
    config.data.batch_size, config.data.seq_len = 8, 64
    config.train.grad_accum_steps = 2
    return config


def test_small_config_compiles_for_v5e_2x2_and_reports_memory_and_flops():
    report = aot_compile.compile_step(_small_config(), topology.parse_topology("v5e:2x2"), "small")
    assert report.mesh == {"data": 1, "fsdp": 4, "tensor": 1}
    memory = report.memory
    assert memory is not None and report.fits and not report.compiler_error
    assert memory.arguments > 0 and memory.outputs > 0 and memory.generated_code > 0
    assert memory.aliased > 0  # the donated state is written in place
    assert 0 < memory.total < report.topology.hbm_bytes
    assert report.state_bytes <= memory.arguments  # the state shard is part of the arguments
    # XLA counts a loop body once: one of the 4 scanned blocks, one of the 2 micro-batches. Its count
    # of that slice, per chip, agrees with the analytic one within 25% (norms, softmax and AdamW are
    # the difference); the whole step's analytic count is several times larger.
    slice_per_chip = report.flops_xla_slice.total / report.topology.chips
    assert 0.9 < report.xla_flops / slice_per_chip < 1.25, (report.xla_flops, slice_per_chip)
    assert report.flops.total > 3 * report.flops_xla_slice.total
    text = aot_compile.describe(report)
    assert "fits" in text and "NOT" not in text and "v5litepod-4 (v5e:2x2" in text


def test_splash_attention_compiles_into_the_tpu_step():
    """The Pallas kernel itself (not the interpreter) is lowered into the step for a real slice."""
    config = _small_config()
    config.model.attention, config.data.seq_len = "splash", 128
    report = aot_compile.compile_step(config, topology.parse_topology("v5e:2x2"), "small")
    assert report.fits and report.kernel_calls >= 2  # forward and backward kernels
    assert "attention splash (" in aot_compile.describe(report)
    config.model.attention = "xla"
    assert aot_compile.compile_step(config, topology.parse_topology("v5e:2x2"), "small").kernel_calls == 0


def test_mesh_that_does_not_divide_the_slice_is_a_config_error():
    config = _small_config()
    config.mesh.tensor = 3
    with pytest.raises(ConfigError, match="mesh"):
        aot_compile.compile_step(config, topology.parse_topology("v5e:2x2"))


def _run_aot(*args):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run(
        [sys.executable, "-m", "jaxlm.aot", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_a_model_too_big_for_the_slice_says_so_and_exits_1():
    # 2 blocks 8192 wide, replicated on every chip (dp): ~2.1B parameters and AdamW do not fit 16 GiB.
    result = _run_aot(
        "--config=configs/default.py",
        "--topology=v5e:2x2",
        "--config.model.num_layers=2",
        "--config.model.width=8192",
        "--config.model.num_heads=64",
        "--config.model.vocab_size=32000",
        "--config.data.batch_size=8",
    )
    assert result.returncode == 1, result.stderr
    assert "does NOT fit" in result.stdout
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: default.py does not fit v5litepod-4 (v5e:2x2) with mesh data=4")
    assert "GiB per chip" in error and "state alone 23.88 GiB" in error


@pytest.mark.parametrize(
    "args,message",
    [
        (["--config=configs/default.py", "--topology=v5e-3"], "not a standard v5e slice"),
        (["--config=configs/nope.py", "--topology=v5e-4"], "nope.py"),
        (["--config=configs/default.py", "--topology=v5e-4", "--config.model.num_heads=5"], "config.model.num_heads=5"),
    ],
)
def test_bad_config_or_topology_exits_2(args, message):
    result = _run_aot(*args)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_a_step_compiled_for_a_tpu_slice_traces_the_accelerator_formulation():
    """The model reads the platform off the mesh the trainer traces under, not off this CPU host."""
    import numpy as np

    from jaxlm.model import platform

    devices = topology.topology_devices(topology.parse_topology("v5e:2x2"))
    mesh = jax.sharding.Mesh(np.asarray(devices), ("data",))
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
        assert platform.target_platform() == "tpu" and not platform.on_cpu()
    assert platform.on_cpu()  # outside it, this host's CPU


@pytest.mark.slow  # one real pod recipe, compiled for its slice: a minute or two
def test_the_fastest_pod_recipe_still_fits_in_what_readme_records():
    """A change that grows a pod recipe's per-chip memory (as the CPU-shaped formulations once grew llama_7b's
    by 13 GiB) fails here, not on the pod: llama_7b, the quickest of README's table to compile, may need at
    most 2% more than README's figure, which benchmarks/aot_table.py --write records."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("aot_table", os.path.join(ROOT, "benchmarks", "aot_table.py"))
    aot_table = sys.modules["aot_table"] = importlib.util.module_from_spec(spec)  # dataclasses look it up there
    spec.loader.exec_module(aot_table)
    with open(os.path.join(ROOT, "README.md")) as f:
        recorded = aot_table.readme_totals(f.read())["llama_7b"]
    row = aot_table.compile_recipe(ROOT, "llama_7b")
    assert row.total_gib <= recorded * 1.02, f"llama_7b needs {row.total_gib:.2f} GiB a chip; README records {recorded}"
