"""The device mesh: three named axes whose sizes come from the config's preset and overrides.

`data` replicates the parameters and splits the batch; `fsdp` splits the batch and also the
parameters and optimizer state (gathered layer by layer when used); `tensor` splits attention
heads, the FFN hidden width and the vocabulary (Megatron-style). A size of 1 switches an axis off.
"""

from __future__ import annotations

import logging
import math

import jax
import ml_collections
import numpy as np
from jax.experimental import mesh_utils

from jaxlm.errors import ConfigError

MESH_AXES = ("data", "fsdp", "tensor")

# Axis sizes of each preset; -1 takes all the devices the other axes leave.
PRESETS = {
    "dp": {"data": -1, "fsdp": 1, "tensor": 1},
    "fsdp": {"data": 1, "fsdp": -1, "tensor": 1},
    "tp": {"data": 1, "fsdp": 1, "tensor": -1},
    "fsdp_tp": {"data": 1, "fsdp": -1, "tensor": 2},
}


def mesh_shape(mesh_config: ml_collections.ConfigDict, num_devices: int) -> dict[str, int]:
    """Axis sizes for `num_devices`: the preset's, overridden by mesh.data/fsdp/tensor where not 0."""
    if mesh_config.preset not in PRESETS:
        raise ConfigError(f"config.mesh.preset={mesh_config.preset!r}: must be one of {', '.join(PRESETS)}")
    sizes = dict(PRESETS[mesh_config.preset])
    for axis in MESH_AXES:
        value = mesh_config[axis]
        if not isinstance(value, int) or value < -1:
            raise ConfigError(
                f"config.mesh.{axis}={value!r}: must be a positive size, -1 (the rest) or 0 (the preset's)"
            )
        if value != 0:
            sizes[axis] = value
    fill = [axis for axis in MESH_AXES if sizes[axis] == -1]
    if len(fill) > 1:
        raise ConfigError(
            f"config.mesh: only one axis may be -1, got {', '.join(fill)} "
            f"(preset {mesh_config.preset!r}); give the others a size"
        )
    fixed = math.prod(size for size in sizes.values() if size != -1)
    if fill:
        if num_devices % fixed:
            raise ConfigError(
                f"config.mesh: the fixed axis sizes multiply to {fixed}, which does not "
                f"divide the {num_devices} devices; {_describe(sizes)}"
            )
        sizes[fill[0]] = num_devices // fixed
    if math.prod(sizes.values()) != num_devices:
        raise ConfigError(
            f"config.mesh: {_describe(sizes)} makes {math.prod(sizes.values())} devices, "
            f"but this job has {num_devices}; make the product {num_devices} or set one "
            "axis to -1"
        )
    return sizes


def _describe(sizes: dict[str, int]) -> str:
    return " x ".join(f"{axis}={sizes[axis]}" for axis in MESH_AXES)


def make_mesh(mesh_config: ml_collections.ConfigDict, devices: list[jax.Device] | None = None) -> jax.sharding.Mesh:
    """The mesh over `devices` (default: every device of the job, all hosts)."""
    devices = list(devices if devices is not None else jax.devices())
    sizes = mesh_shape(mesh_config, len(devices))
    shape = tuple(sizes[axis] for axis in MESH_AXES)
    try:
        # Physical-topology aware ordering (TPU ICI rings, hosts contiguous along the first axes).
        device_array = mesh_utils.create_device_mesh(shape, devices, allow_split_physical_axes=True)
    except (ValueError, NotImplementedError, AssertionError) as error:
        # mesh_utils refuses shapes it cannot lay onto the physical torus (and some device kinds);
        # a plain reshape is still a correct mesh, only with slower collectives, so say so and go on.
        logging.warning("mesh %s: no topology-aware layout (%s); using device order", sizes, error)
        device_array = np.asarray(devices).reshape(shape)
    return jax.sharding.Mesh(device_array, MESH_AXES)
