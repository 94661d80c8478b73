"""python -m jaxlm.aot: compile a recipe's full train step for a TPU slice on this machine, and say whether it fits.

    python -m jaxlm.aot --config=configs/llama_7b.py --topology=v5p-128 [--config.FIELD=VALUE ...]

No TPU is needed, only libtpu (`pip install -e ".[tpu]"`): XLA:TPU compiles for a described slice while
JAX itself runs on the CPU (JAX_PLATFORMS defaults to "cpu" here). Prints per-chip memory, FLOPs per step
and whether the step fits the chip's HBM.
Exit status: 0 it fits; 1 it does not (the message names the config and the numbers); 2 a bad config,
override or topology name, or no libtpu.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from absl import flags

from jaxlm import cli


def _flags(argv: list[str]) -> flags.FlagValues:
    fv = cli.command_flags()
    cli.define_recipe(fv, argv, None)
    flags.DEFINE_string(
        "topology",
        None,
        "TPU slice: v5p-128, v5e-16 (= v5litepod-16), v4-32, v6e-8, or generation:shape such as v5e:4x4.",
        flag_values=fv,
    )
    flags.mark_flags_as_required(["config", "topology"], flag_values=fv)
    return fv


@cli.command
def main(argv: list[str]) -> int:
    """Runs the command line (argv[0] the program); returns the exit status."""
    fv = _flags(argv)
    cli.parse(fv, argv, usage=__doc__)
    if importlib.util.find_spec("libtpu") is None:
        cli.fail(cli.missing_extra(ModuleNotFoundError(name="libtpu"), "tpu", "python -m jaxlm.aot"))
    os.environ.setdefault("JAX_PLATFORMS", "cpu")  # before JAX starts: it runs on the CPU; libtpu only compiles
    from jaxlm.aot.compile import compile_step, describe, misfit_message
    from jaxlm.aot.topology import TopologyError, parse_topology
    from jaxlm.errors import ConfigError

    try:
        report = compile_step(fv.config, parse_topology(fv.topology), os.path.basename(fv["config"].config_filename))
    except (ConfigError, TopologyError) as error:
        cli.fail(str(error))
    print(describe(report))
    if not report.fits:
        print(misfit_message(report), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
