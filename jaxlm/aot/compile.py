"""Compiling a run config's whole train step for a TPU slice on any machine, and what XLA reports of it.

XLA:TPU compiles for a described slice while JAX itself runs on the CPU: per-chip memory (arguments,
outputs, temporaries, peak), FLOPs (XLA's count beside the analytic one, `jaxlm.model.flops`) and
whether the step fits the chip's HBM.
"""

from __future__ import annotations

import dataclasses
import re
import time

import jax
import ml_collections

from jaxlm import config as config_lib
from jaxlm.aot.topology import GIB, HBM_GIB, Topology, topology_devices
from jaxlm.model.flops import StepFlops, train_step_flops
from jaxlm.parallel.mesh import make_mesh
from jaxlm.train.partition import per_device_bytes
from jaxlm.train.trainer import make_trainer, with_shardings


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
    optimizer: str  # train.optimizer
    attention: str  # model.attention
    kernel_calls: int  # Pallas (Mosaic) kernel calls in the lowered step: splash attention is really in
    batch_size: int
    seq_len: int
    grad_accum_steps: int
    num_layers: int
    state_bytes: int  # per chip: parameters and optimizer state shards, known before compiling
    optimizer_bytes: int  # per chip: the optimizer state's share of state_bytes
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


def compile_step(config: ml_collections.ConfigDict, topology: Topology, config_name: str = "config") -> Report:
    """Compiles the config's train step for the topology; raises ConfigError or TopologyError."""
    config_lib.validate(config)
    devices = topology_devices(topology)
    mesh = make_mesh(config.mesh, devices)
    model_cfg = config_lib.model_config(config, _vocab_size(config))
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
        memory = Memory(
            arguments=stats.argument_size_in_bytes,
            outputs=stats.output_size_in_bytes,
            aliased=stats.alias_size_in_bytes,
            temporaries=stats.temp_size_in_bytes,
            generated_code=stats.generated_code_size_in_bytes,
            peak=getattr(stats, "peak_memory_in_bytes", 0) or 0,
        )
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        xla_flops = float(cost.get("flops", 0.0))
    seconds = time.perf_counter() - start
    # XLA's cost analysis walks a while loop's body once: one block of the scanned stack, one micro-batch.
    slice_flops = train_step_flops(model_cfg, batch_size // accum, seq_len, num_layers=1)
    return Report(
        config_name=config_name,
        topology=topology,
        mesh=dict(mesh.shape),
        remat=model_cfg.remat,
        dtype=model_cfg.dtype,
        optimizer=config.train.optimizer,
        attention=trainer.model_cfg.attention,  # the kernel "auto" chose for the slice
        kernel_calls=kernel_calls,
        batch_size=batch_size,
        seq_len=seq_len,
        grad_accum_steps=accum,
        num_layers=model_cfg.num_layers,
        state_bytes=per_device_bytes(trainer.abstract_state, trainer.state_sharding),
        optimizer_bytes=per_device_bytes(trainer.abstract_state.opt_state, trainer.state_sharding.opt_state),
        memory=memory,
        compiler_error=compiler_error,
        xla_flops=xla_flops,
        flops=train_step_flops(model_cfg, batch_size, seq_len),
        flops_xla_slice=slice_flops,
        compile_seconds=seconds,
    )


def _gib(n: float) -> str:
    return f"{n / GIB:.2f} GiB"


def describe(report: Report) -> str:
    """The report as the lines the command prints."""
    t, chips = report.topology, report.topology.chips
    mesh = " x ".join(f"{axis}={size}" for axis, size in report.mesh.items())
    lines = [
        f"aot   | {report.config_name} on {t.cloud_name} ({t.libtpu_name}, {chips} chips, "
        f"{HBM_GIB[t.generation]} GiB HBM each) | mesh {mesh} | remat {report.remat} | {report.dtype} | "
        f"attention {report.attention}"
        + (f" ({report.kernel_calls} Pallas kernel calls)" if report.kernel_calls else ""),
        f"step  | batch {report.batch_size} x {report.seq_len} tokens, {report.grad_accum_steps} "
        f"micro-batch(es), {report.num_layers} layers | compiled in {report.compile_seconds:.1f} s",
        f"state | per chip: parameters {_gib(report.state_bytes - report.optimizer_bytes)} + {report.optimizer} "
        f"state {_gib(report.optimizer_bytes)}",
    ]
    if report.memory is None:
        lines.append(
            f"memory| per chip: state {_gib(report.state_bytes)}; the compiler ran out of HBM: {report.compiler_error}"
        )
    else:
        m = report.memory
        lines.append(
            f"memory| per chip: arguments {_gib(m.arguments)}, outputs {_gib(m.outputs)} "
            f"({_gib(m.aliased)} of them over donated arguments), temporaries {_gib(m.temporaries)}, "
            f"generated code {_gib(m.generated_code)}, peak {_gib(m.peak)} -> total {_gib(m.total)} "
            f"of {_gib(t.hbm_bytes)} ({100 * m.total / t.hbm_bytes:.0f}%)"
        )
        f, s = report.flops, report.flops_xla_slice
        ratio = report.xla_flops * chips / s.total if s.total else float("nan")
        lines.append(
            f"flops | analytic {f.total:.3e} per step ({f.matmul:.3e} matmuls + {f.attention:.3e} "
            f"attention, full L x L), {f.total / chips:.3e} per chip"
        )
        # Above 1: remat's recomputed forward. Below 1: sharded matmuls XLA:TPU turns into loops of its
        # own (collective matmuls), whose bodies it also counts once.
        lines.append(
            f"flops | XLA {report.xla_flops:.3e} per chip for one block and one micro-batch (it counts "
            f"a loop body once); analytic for that slice {s.total / chips:.3e}: XLA/analytic "
            f"{ratio:.2f}" + (f" (remat {report.remat}: recomputation included)" if report.remat != "none" else "")
        )
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
        needs = (
            f"needs {sizes[0]} GiB per chip; the compiler can use {sizes[1]} GiB of the chip's {_gib(t.hbm_bytes)}"
            if len(sizes) == 2
            else f"ran the compiler out of HBM ({report.compiler_error})"
        )
    knobs = [
        knob
        for knob, useful in (
            ("mesh.preset=fsdp", report.mesh["fsdp"] < t.chips),
            ("model.remat=full", report.remat != "full"),
            ("model.dtype=bfloat16", report.dtype != "bfloat16"),
        )
        if useful
    ]
    knobs.append(f"train.grad_accum_steps above {report.grad_accum_steps}")
    return (
        f"error: {report.config_name} does not fit {t.cloud_name} ({t.libtpu_name}) with mesh "
        f"{' x '.join(f'{a}={n}' for a, n in report.mesh.items())}, remat {report.remat}: the train "
        f"step {needs} (state alone {_gib(report.state_bytes)}); try {', '.join(knobs)}, or a bigger slice"
    )
