"""Pretrain a Transformer LM: flags -> config -> jaxlm.train.loop.run(config, workdir).

    python run_pretrain.py                                   # configs/default.py, offline
    python run_pretrain.py --config=configs/bert_tiny.py --config.train.steps=100 --workdir=runs/bert

Every --config.FIELD, its default and its meaning is listed in jaxlm/config.py (and README's Configs table).
Running the same command again on the same workdir resumes from its newest checkpoint.
Exit status: 0 done; 2 a bad config or input (the message names the field, file or checkpoint);
3 training stopped (a non-finite loss, a failed save); 4 stopped by SIGTERM/SIGINT after saving a
checkpoint (run the same command to continue).
"""

import os
import sys

from absl import flags

from jaxlm import cli  # absl and ml_collections only: no jax before the CPU is split into devices

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


def _flags(argv: list[str]) -> flags.FlagValues:
    fv = cli.command_flags()
    cli.define_recipe(fv, argv, os.path.join(CONFIGS, "default.py"))
    flags.DEFINE_string(
        "workdir",
        None,
        "Where the run writes its tokenizer, metrics and checkpoints (default: runs/<recipe name>).",
        flag_values=fv,
    )
    flags.DEFINE_enum(
        "distributed",
        "auto",
        ["auto", "on", "off"],
        "Join a multi-process JAX job: auto = when --coordinator_address is given or the "
        "environment shows a cluster (Cloud TPU, SLURM, Open MPI).",
        flag_values=fv,
    )
    flags.DEFINE_string(
        "coordinator_address",
        None,
        "host:port of process 0, for multi-process runs outside a detected cluster.",
        flag_values=fv,
    )
    flags.DEFINE_integer("num_processes", None, "Processes in the job (with --coordinator_address).", flag_values=fv)
    flags.DEFINE_integer("process_id", None, "This process's rank, 0..num_processes-1.", flag_values=fv)
    return fv


@cli.command
def main(argv: list[str]) -> int:
    """Runs the command line (argv[0] the program); returns the exit status."""
    fv = _flags(argv)
    cli.parse(fv, argv, usage=__doc__)
    config, recipe = fv.config, fv["config"].config_filename
    from jaxlm.config import ConfigError, load_recipe
    from jaxlm.parallel.distributed import initialize, split_cpu

    try:
        split_cpu(config.mesh.cpu_devices)
    except ConfigError as error:
        cli.fail(str(error))
    initialize(fv.distributed, fv.coordinator_address, fv.num_processes, fv.process_id)

    from jaxlm.data.errors import DataError
    from jaxlm.runs.checkpoint import CheckpointError
    from jaxlm.runs.lock import WorkdirError
    from jaxlm.train.errors import Preempted, TrainingError
    from jaxlm.train.loop import run

    name = os.path.splitext(os.path.basename(recipe))[0]
    # The recipe as written, before overrides: the start summary lists what the command line changed.
    reference = (os.path.basename(recipe), load_recipe(recipe))
    try:
        run(config, fv.workdir or os.path.join("runs", name), reference=reference)
    except (ConfigError, DataError, CheckpointError, WorkdirError) as error:  # a busy workdir included
        cli.fail(str(error))
    except TrainingError as error:
        print(f"stopped: {error}", file=sys.stderr)
        return 3
    except Preempted as error:
        print(f"preempted: {error}", file=sys.stderr)
        return 4
    except KeyboardInterrupt:  # a second Ctrl-C: the user wants out now, not after a save
        print(
            "interrupted: a second Ctrl-C stopped the run without saving; run the same command to continue "
            "from the newest complete checkpoint",
            file=sys.stderr,
        )
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
