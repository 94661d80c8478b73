"""Logical-axis rules: which mesh axes each logical axis name of a parameter or batch is split over.

One table serves every preset: an axis of size 1 splits nothing, so data, FSDP and tensor
parallelism, and their mixes, are mesh shapes rather than code paths. `mesh.rules` overrides entries,
e.g. "vocab=,embed=fsdp" keeps the vocabulary whole and splits the embedding width over fsdp.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
from jax.sharding import PartitionSpec

from jaxlm.errors import ConfigError
from jaxlm.parallel.mesh import MESH_AXES

MeshAxes = tuple[str, ...]  # the mesh axes one array dimension is split over; () = whole

DEFAULT_RULES: dict[str, MeshAxes] = {
    "batch": ("data", "fsdp"),  # examples of a batch
    "embed": ("fsdp",),  # model width D of parameters: FSDP shards every matrix along it
    "heads": ("tensor",),  # query heads H
    "kv_heads": ("tensor",),  # key/value heads G (kept whole when tensor does not divide G)
    "mlp": ("tensor",),  # FFN hidden width F
    "vocab": ("tensor",),  # vocabulary V of the embedding, LM head and logits
    "layers": (),  # the stacked-blocks axis stays whole: scan walks it
    "head_dim": (),
    "positions": (),
    "types": (),
    "classes": (),  # the 2 labels of BERT's next-sentence classifier
    "labels": (),  # the num_labels outputs of a classification head
    "length": (),
}


@dataclasses.dataclass(frozen=True)
class Rules:
    """Logical name -> mesh axes, refusing a mesh axis used twice within one array."""

    table: dict[str, MeshAxes]

    def spec(
        self, logical_axes: Sequence[str], shape: Sequence[int] | None = None, mesh: jax.sharding.Mesh | None = None
    ) -> PartitionSpec:
        """The PartitionSpec of an array with these logical axes.

        With `shape` and `mesh`, a dimension that its mesh axes do not divide stays whole (for
        example 4 key/value heads on an 8-way tensor axis): correct, only less split.
        """
        used: set[str] = set()
        entries = []
        for i, name in enumerate(logical_axes):
            if name not in self.table:
                raise KeyError(f"no sharding rule for logical axis {name!r}; add it to mesh.rules")
            axes = tuple(axis for axis in self.table[name] if axis not in used)
            if shape is not None and mesh is not None:
                ways = 1
                for axis in axes:
                    ways *= mesh.shape[axis]
                if shape[i] % ways:
                    axes = ()
            used.update(axes)
            entries.append(axes[0] if len(axes) == 1 else (axes or None))
        return PartitionSpec(*entries)


def make_rules(overrides: str = "") -> Rules:
    """The default table with `overrides` ("name=axis+axis,name=" where empty means whole) applied."""
    table = dict(DEFAULT_RULES)
    for item in filter(None, (part.strip() for part in overrides.split(","))):
        name, sep, value = item.partition("=")
        axes = tuple(filter(None, value.split("+")))
        unknown = [axis for axis in axes if axis not in MESH_AXES]
        if not sep or unknown:
            raise ConfigError(
                f"config.mesh.rules={overrides!r}: {item!r} must read "
                f"logical=mesh_axis[+mesh_axis] with mesh axes from {', '.join(MESH_AXES)}"
            )
        table[name.strip()] = axes
    return Rules(table)
