"""The device mesh, the logical-axis rules, explicit-collective pieces (shard_map) and multi-host start-up.

Knows nothing of what a model computes: it maps logical axis names to mesh axes. Import from the modules
(`jaxlm.parallel.mesh.make_mesh`, `jaxlm.parallel.rules.make_rules`).
"""
