"""Pretrain a Transformer LM: flags -> config -> jaxlm.train.run(config, workdir).

    python run_pretrain.py                                   # configs/default.py, offline
    python run_pretrain.py --config=configs/bert_tiny.py --config.train.steps=100 --workdir=runs/bert

Exit status: 0 done, 2 a bad config or input (the message names the field or file), 3 training
stopped (a non-finite loss).
"""

import os
import sys

from absl import app, flags
from ml_collections import config_flags

_CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")
config_flags.DEFINE_config_file("config", os.path.join(_CONFIGS, "default.py"),
                                "Recipe file; override fields with --config.FIELD=VALUE.")
flags.DEFINE_string("workdir", None, "Where the run writes its tokenizer, metrics and outputs "
                    "(default: runs/<config name>).")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from jaxlm.config import ConfigError
    from jaxlm.data import DataError
    from jaxlm.train import TrainingError, run

    config_path = flags.FLAGS["config"].config_filename
    workdir = flags.FLAGS.workdir or os.path.join(
        "runs", os.path.splitext(os.path.basename(config_path))[0])
    try:
        run(flags.FLAGS.config, workdir)
    except (ConfigError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except TrainingError as error:
        print(f"stopped: {error}", file=sys.stderr)
        sys.exit(3)


if __name__ == "__main__":
    app.run(main)
