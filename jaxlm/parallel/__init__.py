"""The mesh, logical-axis rules, shardings for state and batches, shard_map pieces, multi-host start-up.

Knows nothing of what a model computes: it maps logical axis names to mesh axes.
"""

from jaxlm.parallel.mesh import MESH_AXES, PRESETS, make_mesh, mesh_shape
from jaxlm.parallel.rules import Rules, make_rules

__all__ = ["MESH_AXES", "PRESETS", "Rules", "make_mesh", "make_rules", "mesh_shape"]
