"""Where things live in a run's workdir, and the rule for remote (gs://, s3://) paths.

<workdir>/config.json        the resolved config
<workdir>/tokenizer/         the tokenizer the data pipeline trained (and its settings): TOKENIZER_DIR
<workdir>/data_cache/        the tokenized corpus: CORPUS_DIR
<workdir>/metrics.jsonl      one JSON line per logged step and evaluation
<workdir>/tensorboard/       the same numbers as TensorBoard events
<workdir>/wandb/             Weights & Biases' own files, with log.wandb_project (W&B names the folder)
<workdir>/profile/           jax.profiler traces of log.profile_steps (TensorBoard's profile plugin reads it)
<workdir>/checkpoints/<step> Orbax checkpoints (or config.checkpoint.directory)
<workdir>/bad_checkpoints/   checkpoints that failed to restore, set aside
<workdir>/.lock              held by the run using the workdir
"""

from __future__ import annotations

import json
import os

from etils import epath

from jaxlm.data.caches import CORPUS_DIR, TOKENIZER_DIR  # noqa: F401  (part of the layout)

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
PROFILE_DIR = "profile"
CHECKPOINTS_DIR = "checkpoints"
BAD_CHECKPOINTS_DIR = "bad_checkpoints"
LOCK_FILE = ".lock"


def is_remote(path: str) -> bool:
    """Whether `path` is a URL (gs://bucket/run) that only Orbax's own I/O reads and writes."""
    return "://" in path


def absolute(path: str) -> str:
    """A local path made absolute (Orbax writes only to absolute paths); a remote one as it is."""
    return path if is_remote(path) else os.path.abspath(path)


def data_cache(workdir: str | None) -> str | None:
    """Where the data pipeline may cache (the workdir itself), or None when the workdir is remote or absent."""
    return workdir if workdir and not is_remote(workdir) else None


def checkpoints_dir(workdir: str, configured: str = "") -> str:
    """Where a run writes its checkpoints: `configured` (config.checkpoint.directory), else <workdir>/checkpoints."""
    return absolute(configured or os.path.join(workdir, CHECKPOINTS_DIR))


def find_checkpoints(path: str) -> str:
    """The checkpoints directory of a workdir (its config's checkpoint.directory, else <path>/checkpoints),
    or `path` itself when it already is one."""
    config_file = epath.Path(path) / CONFIG_FILE
    if config_file.exists():
        elsewhere = json.loads(config_file.read_text()).get("checkpoint", {}).get("directory")
        if elsewhere:
            return absolute(elsewhere)
    nested = os.path.join(path, CHECKPOINTS_DIR)
    return absolute(nested if epath.Path(nested).exists() else path)
