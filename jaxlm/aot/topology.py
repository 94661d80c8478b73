"""TPU slices by name: Cloud TPU's names ("v5p-128", "v5e-16") and raw shapes ("v5e:4x4"), their HBM, and the
compile-only devices libtpu describes for them (no TPU attached)."""

from __future__ import annotations

import dataclasses
import math
import os
import re

import jax

GIB = 2**30
HBM_GIB = {"v4": 32, "v5e": 16, "v5p": 95, "v6e": 32}  # per chip
_GENERATIONS = {"v4": "v4", "v5p": "v5p", "v5": "v5p", "v5e": "v5e", "v5litepod": "v5e", "v6e": "v6e"}
# Chips per dimension of the standard slices (Cloud TPU's shapes), by chip count.
_SLICE_SHAPES_3D = {
    4: (2, 2, 1),
    8: (2, 2, 2),
    16: (2, 2, 4),
    32: (2, 4, 4),
    64: (4, 4, 4),
    128: (4, 4, 8),
    256: (4, 8, 8),
    512: (8, 8, 8),
    1024: (8, 8, 16),
    2048: (8, 16, 16),
    4096: (16, 16, 16),
}
_SLICE_SHAPES_2D = {1: (1, 1), 4: (2, 2), 8: (2, 4), 16: (4, 4), 32: (4, 8), 64: (8, 8), 128: (8, 16), 256: (16, 16)}


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
            raise TopologyError(
                f"topology {name!r}: {generation} slices have {rank} dimensions, "
                f"e.g. {generation}:{'x'.join(['2'] * rank)}"
            )
        return Topology(generation, shape)
    cloud = re.fullmatch(r"(v4|v5p|v5e|v5litepod|v6e)-(\d+)", name.strip().lower())
    if not cloud:
        raise TopologyError(
            f"topology {name!r}: expected a Cloud TPU name such as v5p-128, v5e-16, "
            "v5litepod-16, v4-32, v6e-8, or generation:shape such as v5e:4x4 or v5p:4x4x8"
        )
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
        raise TopologyError(
            f"topology {name!r}: {count} {unit} is not a standard {generation} slice "
            f"({sizes}); give its shape instead, e.g. {example}"
        )
    return Topology(generation, shapes[chips])


def topology_devices(topology: Topology) -> list[jax.Device]:
    """Compile-only TPU devices of the slice, one per chip (v4 and v5p as megacore, as JAX runs them)."""
    from jax.experimental import topologies

    # libtpu reads the host's TPU type and worker names from the environment and warns at length when they are
    # unset; any valid values quiet it. It also takes a machine-wide lock (/tmp/libtpu_lockfile) meant for
    # processes that drive real chips; compiling only, several processes may share it.
    for name, value in (
        ("TPU_ACCELERATOR_TYPE", "v5litepod-4"),
        ("TPU_WORKER_HOSTNAMES", "localhost"),
        ("ALLOW_MULTIPLE_LIBTPU_LOAD", "1"),
    ):
        os.environ.setdefault(name, value)
    options = {}
    if topology.generation in ("v4", "v5p"):
        options["chip_config_name"] = "megacore"  # one device of both TensorCores, and the chip's whole HBM
    if topology.chips == 1:
        options["chips_per_host_bounds"] = (1, 1, 1)  # the default host has 2x2 chips
    try:
        return list(topologies.get_topology_desc(topology_name=topology.libtpu_name, platform="tpu", **options).devices)
    except jax.errors.JaxRuntimeError as error:
        raise TopologyError(f"topology {topology.libtpu_name!r}: libtpu refused it: {error}") from error
