"""Compile a recipe's full train step for a TPU topology on this machine, and say whether it fits.

    python -m jaxlm.aot --config=configs/llama_7b.py --topology=v5p-128 [--config.FIELD=VALUE ...]

No TPU is needed, only libtpu (`pip install -e ".[tpu]"`): XLA:TPU compiles for a described topology
(`jax.experimental.topologies`) while JAX itself runs on the CPU, so JAX_PLATFORMS defaults to "cpu"
here. Prints per-chip memory, FLOPs per step (XLA's count beside the analytic one, `jaxlm.flops`)
and whether the step fits the chip's HBM.
Exit status: 0 it fits; 1 it does not (the message names the config and the numbers); 2 a bad
config or topology name.
"""

from __future__ import annotations

import os

# Before jax is imported: JAX runs on the CPU; libtpu only compiles. libtpu reads the host's TPU type and
# worker names from the environment and warns at length when they are unset; any valid values quiet it.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TPU_ACCELERATOR_TYPE", "v5litepod-4")
os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
# libtpu takes a machine-wide lock (/tmp/libtpu_lockfile) meant for processes that drive real chips;
# compiling only, several processes (parallel tests, two checks at once) may share it.
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")

import dataclasses
import math
import re
import sys
import time

import jax
import ml_collections

from jaxlm.config import ConfigError, parse_flags_or_exit, validate
from jaxlm.flops import StepFlops, train_step_flops
from jaxlm.model import model_config_from
from jaxlm.parallel import make_mesh
from jaxlm.train.trainer import make_trainer, with_shardings

GIB = 2**30
HBM_GIB = {"v4": 32, "v5e": 16, "v5p": 95, "v6e": 32}  # per chip
_GENERATIONS = {"v4": "v4", "v5p": "v5p", "v5": "v5p", "v5e": "v5e", "v5litepod": "v5e", "v6e": "v6e"}
# Chips per dimension of the standard slices (Cloud TPU's shapes), by chip count.
_SLICE_SHAPES_3D = {4: (2, 2, 1), 8: (2, 2, 2), 16: (2, 2, 4), 32: (2, 4, 4), 64: (4, 4, 4), 128: (4, 4, 8),
                    256: (4, 8, 8), 512: (8, 8, 8), 1024: (8, 8, 16), 2048: (8, 16, 16), 4096: (16, 16, 16)}
_SLICE_SHAPES_2D = {1: (1, 1), 4: (2, 2), 8: (2, 4), 16: (4, 4), 32: (4, 8), 64: (8, 8), 128: (8, 16),
                    256: (16, 16)}


class TopologyError(ValueError):
    """A topology name that is not a TPU slice libtpu can describe."""


@dataclasses.dataclass(frozen=True)
class Topology:
    """A TPU slice: chip generation and chips along each dimension of its torus or mesh."""

    generation: str  # "v4", "v5e", "v5p" or "v6e"
    shape: tuple[int, ...]

    @property
    def chips(self) -> int:
        return math.prod(self.shape)

    @property
    def libtpu_name(self) -> str:
        """The name `get_topology_desc` takes, e.g. "v5p:4x4x4"."""
        return f"{self.generation}:{'x'.join(map(str, self.shape))}"

    @property
    def cloud_name(self) -> str:
        """Cloud TPU's name: TensorCores (2 a chip) for v4/v5p, chips for v5e/v6e."""
        if self.generation in ("v4", "v5p"):
            return f"{self.generation}-{2 * self.chips}"
        return f"{'v5litepod' if self.generation == 'v5e' else self.generation}-{self.chips}"

    @property
    def hbm_bytes(self) -> int:
        return HBM_GIB[self.generation] * GIB


def parse_topology(name: str) -> Topology:
    """A Cloud TPU name ("v5p-128", "v5e-16", "v5litepod-16", "v4-32", "v6e-8") or a raw one ("v5e:4x4")."""
    raw = re.fullmatch(r"(v4|v5p|v5|v5e|v5litepod|v6e):(\d+(?:x\d+)+)", name.strip().lower())
    if raw:
        generation = _GENERATIONS[raw.group(1)]
        shape = tuple(int(n) for n in raw.group(2).split("x"))
        rank = 3 if generation in ("v4", "v5p") else 2
        if len(shape) != rank or 0 in shape:
            raise TopologyError(f"topology {name!r}: {generation} slices have {rank} dimensions, "
                                f"e.g. {generation}:{'x'.join(['2'] * rank)}")
        return Topology(generation, shape)
    cloud = re.fullmatch(r"(v4|v5p|v5e|v5litepod|v6e)-(\d+)", name.strip().lower())
    if not cloud:
        raise TopologyError(f"topology {name!r}: expected a Cloud TPU name such as v5p-128, v5e-16, "
                            "v5litepod-16, v4-32, v6e-8, or generation:shape such as v5e:4x4 or v5p:4x4x8")
    generation, count = _GENERATIONS[cloud.group(1)], int(cloud.group(2))
    if generation in ("v4", "v5p"):
        chips, shapes, unit = count // 2, _SLICE_SHAPES_3D, "TensorCores, 2 a chip"
        known = count % 2 == 0 and chips in shapes
    else:
        chips, shapes, unit = count, _SLICE_SHAPES_2D, "chips"
        known = chips in shapes
    if not known:
        example = f"{generation}:4x4x12" if generation in ("v4", "v5p") else f"{generation}:4x8"
        sizes = ", ".join(f"{generation}-{(2 if generation in ('v4', 'v5p') else 1) * c}" for c in shapes)
        raise TopologyError(f"topology {name!r}: {count} {unit} is not a standard {generation} slice "
                            f"({sizes}); give its shape instead, e.g. {example}")
    return Topology(generation, shapes[chips])


def topology_devices(topology: Topology) -> list[jax.Device]:
    """Compile-only TPU devices of the slice, one per chip (v4 and v5p as megacore, as JAX runs them)."""
    from jax.experimental import topologies

    options = {}
    if topology.generation in ("v4", "v5p"):
        options["chip_config_name"] = "megacore"  # one device of both TensorCores, and the chip's whole HBM
    if topology.chips == 1:
        options["chips_per_host_bounds"] = (1, 1, 1)  # the default host has 2x2 chips
    try:
        return list(topologies.get_topology_desc(topology_name=topology.libtpu_name, platform="tpu",
                                                 **options).devices)
    except jax.errors.JaxRuntimeError as error:
        raise TopologyError(f"topology {topology.libtpu_name!r}: libtpu refused it: {error}") from error


@dataclasses.dataclass(frozen=True)
class Memory:
    """Per-chip bytes of the compiled step, from XLA's memory analysis."""

    arguments: int  # the train state shard and the batch shard
    outputs: int  # the new state shard and the metrics
    aliased: int  # outputs written over donated arguments (counted once)
    temporaries: int
    generated_code: int
    peak: int  # XLA's peak of live buffers over the program, 0 where a backend does not report it

    @property
    def total(self) -> int:
        """What the chip must hold: XLA's peak where reported, else the sum of the parts."""
        parts = self.arguments + self.outputs - self.aliased + self.temporaries
        return max(self.peak, parts) + self.generated_code


@dataclasses.dataclass(frozen=True)
class Report:
    """What compiling one config's train step for one topology showed."""

    config_name: str
    topology: Topology
    mesh: dict[str, int]
    remat: str
    dtype: str
    attention: str  # model.attention
    kernel_calls: int  # Pallas (Mosaic) kernel calls in the lowered step: splash attention is really in
    batch_size: int
    seq_len: int
    grad_accum_steps: int
    num_layers: int
    state_bytes: int  # per chip: parameters and optimizer state shards, known before compiling
    memory: Memory | None  # None when the compiler itself ran out of HBM
    compiler_error: str  # the compiler's out-of-memory message, "" when it compiled
    xla_flops: float  # per chip, as XLA's cost analysis counts them (each loop body once)
    flops: StepFlops  # the whole step, analytic
    flops_xla_slice: StepFlops  # analytic count of what XLA's cost analysis covers
    compile_seconds: float

    @property
    def fits(self) -> bool:
        return self.memory is not None and self.memory.total <= self.topology.hbm_bytes


def _vocab_size(config: ml_collections.ConfigDict) -> int:
    model_vocab = config.model.vocab_size
    return model_vocab if model_vocab != -1 else config.data.tokenizer.vocab_size


def _validate(config: ml_collections.ConfigDict) -> None:
    checked = ml_collections.ConfigDict(config.to_dict())
    if checked.data.source in ("text", "jsonl") and not checked.data.path:
        checked.data.path = "unread"  # no data is read ahead of time
    validate(checked)


def _shard_bytes(tree) -> int:
    """Bytes one chip holds of ShapeDtypeStructs that carry shardings (the largest shard of each)."""
    return sum(math.prod(x.sharding.shard_shape(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(tree))


def compile_step(config: ml_collections.ConfigDict, topology: Topology, config_name: str = "config"
                 ) -> Report:
    """Compiles the config's train step for the topology; raises ConfigError or TopologyError."""
    _validate(config)
    devices = topology_devices(topology)
    mesh = make_mesh(config.mesh, devices)
    model_cfg = model_config_from(config, _vocab_size(config))
    trainer = make_trainer(config, model_cfg, mesh)
    state = with_shardings(trainer.abstract_state, trainer.state_sharding)
    batch_size, seq_len, accum = config.data.batch_size, config.data.seq_len, config.train.grad_accum_steps
    start = time.perf_counter()
    lowered = trainer.train_step.lower(state, trainer.abstract_batch(batch_size, seq_len))
    kernel_calls = lowered.as_text().count("tpu_custom_call")
    memory, compiler_error, xla_flops = None, "", 0.0
    try:
        compiled = lowered.compile()
    except jax.errors.JaxRuntimeError as error:
        if "RESOURCE_EXHAUSTED" not in str(error):
            raise
        compiler_error = str(error).splitlines()[0]
    else:
        stats = compiled.memory_analysis()
        memory = Memory(arguments=stats.argument_size_in_bytes, outputs=stats.output_size_in_bytes,
                        aliased=stats.alias_size_in_bytes, temporaries=stats.temp_size_in_bytes,
                        generated_code=stats.generated_code_size_in_bytes,
                        peak=getattr(stats, "peak_memory_in_bytes", 0) or 0)
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        xla_flops = float(cost.get("flops", 0.0))
    seconds = time.perf_counter() - start
    # XLA's cost analysis walks a while loop's body once: one block of the scanned stack, one micro-batch.
    slice_flops = train_step_flops(model_cfg, batch_size // accum, seq_len, num_layers=1)
    return Report(config_name=config_name, topology=topology, mesh=dict(mesh.shape), remat=model_cfg.remat,
                  dtype=model_cfg.dtype, attention=model_cfg.attention, kernel_calls=kernel_calls, batch_size=batch_size, seq_len=seq_len, grad_accum_steps=accum,
                  num_layers=model_cfg.num_layers, state_bytes=_shard_bytes(state), memory=memory,
                  compiler_error=compiler_error, xla_flops=xla_flops,
                  flops=train_step_flops(model_cfg, batch_size, seq_len), flops_xla_slice=slice_flops,
                  compile_seconds=seconds)


def _gib(n: float) -> str:
    return f"{n / GIB:.2f} GiB"


def describe(report: Report) -> str:
    """The report as the lines the command prints."""
    t, chips = report.topology, report.topology.chips
    mesh = " x ".join(f"{axis}={size}" for axis, size in report.mesh.items())
    lines = [f"aot   | {report.config_name} on {t.cloud_name} ({t.libtpu_name}, {chips} chips, "
             f"{HBM_GIB[t.generation]} GiB HBM each) | mesh {mesh} | remat {report.remat} | {report.dtype} | "
             f"attention {report.attention}" + (f" ({report.kernel_calls} Pallas kernel calls)"
                                                 if report.kernel_calls else ""),
             f"step  | batch {report.batch_size} x {report.seq_len} tokens, {report.grad_accum_steps} "
             f"micro-batch(es), {report.num_layers} layers | compiled in {report.compile_seconds:.1f} s"]
    if report.memory is None:
        lines.append(f"memory| per chip: state {_gib(report.state_bytes)}; the compiler ran out of HBM: "
                     f"{report.compiler_error}")
    else:
        m = report.memory
        lines.append(f"memory| per chip: arguments {_gib(m.arguments)}, outputs {_gib(m.outputs)} "
                     f"({_gib(m.aliased)} of them over donated arguments), temporaries {_gib(m.temporaries)}, "
                     f"generated code {_gib(m.generated_code)}, peak {_gib(m.peak)} -> total {_gib(m.total)} "
                     f"of {_gib(t.hbm_bytes)} ({100 * m.total / t.hbm_bytes:.0f}%)")
        f, s = report.flops, report.flops_xla_slice
        ratio = report.xla_flops * chips / s.total if s.total else float("nan")
        lines.append(f"flops | analytic {f.total:.3e} per step ({f.matmul:.3e} matmuls + {f.attention:.3e} "
                     f"attention, full L x L), {f.total / chips:.3e} per chip")
        # Above 1: remat's recomputed forward. Below 1: sharded matmuls XLA:TPU turns into loops of its
        # own (collective matmuls), whose bodies it also counts once.
        lines.append(f"flops | XLA {report.xla_flops:.3e} per chip for one block and one micro-batch (it counts "
                     f"a loop body once); analytic for that slice {s.total / chips:.3e}: XLA/analytic "
                     f"{ratio:.2f}" + (f" (remat {report.remat}: recomputation included)" if report.remat != "none"
                                       else ""))
    verdict = "fits" if report.fits else "does NOT fit"
    lines.append(f"fit   | {verdict}")
    return "\n".join(lines)


def misfit_message(report: Report) -> str:
    """One line naming the config, the topology and the numbers, for a step that does not fit."""
    t = report.topology
    if report.memory is not None:
        needs = f"needs {_gib(report.memory.total)} per chip of {_gib(t.hbm_bytes)}"
    else:
        # XLA's message reads "... required for HLO temporaries (34.66G) exceeds available HBM (15.75G)."
        sizes = re.findall(r"\(([\d.]+)G\)", report.compiler_error)
        needs = (f"needs {sizes[0]} GiB per chip; the compiler can use {sizes[1]} GiB of the chip's "
                 f"{_gib(t.hbm_bytes)}" if len(sizes) == 2 else f"ran the compiler out of HBM "
                 f"({report.compiler_error})")
    knobs = [knob for knob, useful in (("mesh.preset=fsdp", report.mesh["fsdp"] < t.chips),
                                       ("model.remat=full", report.remat != "full"),
                                       ("model.dtype=bfloat16", report.dtype != "bfloat16")) if useful]
    knobs.append(f"train.grad_accum_steps above {report.grad_accum_steps}")
    return (f"error: {report.config_name} does not fit {t.cloud_name} ({t.libtpu_name}) with mesh "
            f"{' x '.join(f'{a}={n}' for a, n in report.mesh.items())}, remat {report.remat}: the train "
            f"step {needs} (state alone {_gib(report.state_bytes)}); try {', '.join(knobs)}, or a bigger slice")


def main(argv: list[str]) -> None:
    from absl import flags

    if len(argv) > 1:
        print(f"error: unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
        sys.exit(2)
    config_name = os.path.basename(flags.FLAGS["config"].config_filename)
    try:
        report = compile_step(flags.FLAGS.config, parse_topology(flags.FLAGS.topology), config_name)
    except (ConfigError, TopologyError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(describe(report))
    if not report.fits:
        print(misfit_message(report), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    from absl import app, flags
    from ml_collections import config_flags

    config_flags.DEFINE_config_file("config", None, "Recipe file; override fields with --config.FIELD=VALUE.")
    flags.DEFINE_string("topology", None, "TPU slice: v5p-128, v5e-16 (= v5litepod-16), v4-32, v6e-8, or "
                        "generation:shape such as v5e:4x4.")
    flags.mark_flags_as_required(["config", "topology"])
    app.run(main, flags_parser=parse_flags_or_exit)
