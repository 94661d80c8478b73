"""Ahead-of-time compilation of a run's train step for TPU slices, on a machine without a TPU.

`python -m jaxlm.aot --config=RECIPE --topology=SLICE` is the command line; `compile.compile_step` and
`topology.parse_topology` are the library. Import from the modules.
"""
