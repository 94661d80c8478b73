"""Pretrain a Transformer LM: flags -> config -> jaxlm.train.run(config, workdir).

    python run_pretrain.py                                   # configs/default.py, offline
    python run_pretrain.py --config=configs/bert_tiny.py --config.train.steps=100 --workdir=runs/bert

Running the same command again on the same workdir resumes from its newest checkpoint.
Exit status: 0 done; 2 a bad config or input (the message names the field, file or checkpoint);
3 training stopped (a non-finite loss, a failed save); 4 stopped by SIGTERM/SIGINT after saving a
checkpoint (run the same command to continue).
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from jaxlm.config import exit_on_recipe_error, parse_flags_or_exit  # no jax yet: split_cpu comes first

_CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
try:
    config_flags.DEFINE_config_file("config", os.path.join(_CONFIGS, "default.py"),
                                    "Recipe file; override fields with --config.FIELD=VALUE.")
except Exception as error:  # config_flags reads the default recipe and its overrides here already
    exit_on_recipe_error(error)
flags.DEFINE_string("workdir", None, "Where the run writes its tokenizer, metrics and checkpoints "
                    "(default: runs/<config name>).")
flags.DEFINE_enum("distributed", "auto", ["auto", "on", "off"],
                  "Join a multi-process JAX job: auto = when --coordinator_address is given or the "
                  "environment shows a cluster (Cloud TPU, SLURM, Open MPI).")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for multi-process runs "
                    "outside a detected cluster.")
flags.DEFINE_integer("num_processes", None, "Processes in the job (with --coordinator_address).")
flags.DEFINE_integer("process_id", None, "This process's rank, 0..num_processes-1.")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)  # Orbax reports every save step at INFO
    from jaxlm.config import ConfigError, validate
    from jaxlm.parallel.distributed import initialize, split_cpu
    try:
        validate(flags.FLAGS.config)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    split_cpu(flags.FLAGS.config.mesh.cpu_devices)
    initialize(flags.FLAGS.distributed, flags.FLAGS.coordinator_address, flags.FLAGS.num_processes,
               flags.FLAGS.process_id)

    from jaxlm.data import DataError
    from jaxlm.train import CheckpointError, Preempted, TrainingError, WorkdirError, run

    config_path = flags.FLAGS["config"].config_filename
    workdir = flags.FLAGS.workdir or os.path.join(
        "runs", os.path.splitext(os.path.basename(config_path))[0])
    try:
        run(flags.FLAGS.config, workdir, recipe=config_path)
    except (ConfigError, DataError, CheckpointError, WorkdirError) as error:  # busy included
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except TrainingError as error:
        print(f"stopped: {error}", file=sys.stderr)
        sys.exit(3)
    except Preempted as error:
        print(f"preempted: {error}", file=sys.stderr)
        sys.exit(4)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags_or_exit)
