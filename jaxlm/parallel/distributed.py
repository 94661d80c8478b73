"""Multi-host start-up: one JAX job over many processes, before any device is touched.

On Cloud TPU, SLURM, Open MPI and Kubernetes, `jax.distributed.initialize()` finds the coordinator
and the process's rank by itself; elsewhere the caller passes them (flags of run_pretrain.py).
"""

from __future__ import annotations

import os

import jax

from jaxlm.errors import ConfigError

# Environment variables that mean "this process is one of several", per cluster kind.
_CLUSTER_SIZE_VARS = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "JAX_NUM_PROCESSES")
_CLUSTER_HINT_VARS = ("TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS", "JAX_COORDINATOR_ADDRESS")


def cluster_detected() -> bool:
    """Whether the environment says this process is part of a multi-process job."""
    if any(int(os.environ.get(var, "1") or 1) > 1 for var in _CLUSTER_SIZE_VARS):
        return True
    hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
    return "," in hosts or any(os.environ.get(var) for var in _CLUSTER_HINT_VARS[1:])


def split_cpu(count: int) -> None:
    """Makes the CPU backend `count` devices (0: leave JAX's default); before any device is touched.

    A small model's step runs faster as data parallel over one device per core than as one device
    whose every small op is split over the cores (benchmarks/NOTES.md). No effect on GPU/TPU runs.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ConfigError(f"config.mesh.cpu_devices={count!r}: must be an integer >= 0 (0 = JAX's default)")
    if count:
        jax.config.update("jax_num_cpu_devices", count)


def initialize(
    mode: str = "auto",
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> bool:
    """Joins the multi-process job if there is one; returns whether it did.

    mode "off" never joins, "on" always does (auto-detecting what is not given), "auto" joins when
    a coordinator is given or the environment shows a cluster.
    """
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"--distributed={mode!r}: must be auto, on or off")
    explicit = coordinator_address is not None
    if mode == "off" or (mode == "auto" and not explicit and not cluster_detected()):
        return False
    # CPU processes need a collectives library to talk to each other; accelerators ignore this.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
    )
    return True
