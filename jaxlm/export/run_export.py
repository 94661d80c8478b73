"""A run's checkpoint out to a Hugging Face folder: config.json, safetensors weights and the run's tokenizer."""

from __future__ import annotations

from jaxlm import config as config_lib
from jaxlm.export import convert, hf_config, safetensors_io
from jaxlm.export.errors import ExportError
from jaxlm.runs.reader import open_run


def export_run(
    path: str,
    step: int | None,
    out: str,
    max_shard_bytes: int = safetensors_io.DEFAULT_MAX_SHARD_BYTES,
    params: str = "raw",
) -> str:
    """Writes the checkpoint of `step` (None: the newest) of the run at `path` as a Hugging Face folder `out`;
    returns a summary line. `params="ema"` writes the run's average of the parameters. Raises CheckpointError
    or ExportError naming what is wrong."""
    run = open_run(path, step, params=params)
    if run.tokenizer is None:
        raise ExportError(
            f"{path}: the checkpoint carries no tokenizer and its workdir has none; export needs "
            "the tokenizer the model was trained with"
        )
    labels = config_lib.labels(run.config) or None  # a classifier's label names, for id2label
    files = convert.to_hf(
        run.model_cfg, run.params, out, tokenizer=run.tokenizer, max_shard_bytes=max_shard_bytes, labels=labels
    )
    family = hf_config.family_of_config(run.model_cfg)
    which = " (the average of its parameters)" if params == "ema" else ""
    return (
        f"exported {path} step {run.step}{which} as {hf_config.architecture(run.model_cfg, family)} to {out} "
        f"({len(files)} files)"
    )
