"""Which formulation of a few ops the model traces: the one XLA:CPU runs fast, or the accelerators' one.

A handful of ops have two exact formulations (the same numbers): one shaped for XLA:CPU (2-D matmuls over
flattened rows, attention as batched matmuls over (batch, key/value head), causal attention by blocks of
queries), which made the CPU step 1.3-1.5x faster, and the plain einsum/dot_general one, which XLA:TPU and
XLA:GPU lay out themselves. The CPU shapes cost a TPU program memory (llama_7b on v5p-128: 47.15 GiB a
chip with the plain ones, 60.12 with the CPU ones), so they are used only where the program runs on CPUs.
`on_cpu()` is the one switch; every formulation that depends on it says so next to it.
"""

from __future__ import annotations

import jax


def target_platform() -> str:
    """The platform the program being traced will run on ("cpu", "tpu", "gpu").

    The devices of the context mesh when the program is traced under one (the trainer traces every step
    under its mesh, so a TPU slice compiled ahead of time on a CPU host gets the TPU formulation), else
    JAX's default backend (sampling, tests).
    """
    mesh = jax.sharding.get_abstract_mesh()
    if not mesh.empty and mesh.abstract_device is not None:
        return mesh.abstract_device.platform
    return jax.default_backend()


def on_cpu() -> bool:
    """Whether to trace the XLA:CPU formulations (see the module's docstring)."""
    return target_platform() == "cpu"
