"""python -m jaxlm.export: a run's checkpoint to a Hugging Face directory, or an HF directory to a run.

    python -m jaxlm.export --workdir=runs/default [--step=N] --out=hf/default
    python -m jaxlm.export --from_hf=hf/default --out=runs/imported

An entry point: it reads and writes checkpoints through jaxlm.train. Bad input is one line naming the
problem on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys

import jax
import ml_collections
import numpy as np

from jaxlm.export import convert, hf_config, hf_tokenizer, safetensors_io
from jaxlm.data.errors import DataError
from jaxlm.data.tokenizer import SentencePieceTokenizer
from jaxlm.export.errors import ExportError
from jaxlm.model import ModelConfig, model_config_from

# Run-config fields an imported model sets; the rest of the ModelConfig must be the family's default.
_RUN_MODEL_FIELDS = ("num_layers", "width", "num_heads", "num_kv_heads", "mlp_dim", "max_len", "vocab_size")
# ModelConfig fields a run config chooses freely (they change training, not the function computed).
_TRAINING_ONLY = ("dropout", "dtype", "remat", "init_std", "scaled_residual_init")


def open_run(workdir: str, step: int | None) -> tuple[ml_collections.ConfigDict, ModelConfig, dict, str, int]:
    """(run config, ModelConfig, float32 params, tokenizer file, step) of a trained run's checkpoint."""
    from jaxlm.train.checkpoint import CheckpointError, restore_params

    if "://" not in workdir and not os.path.isdir(workdir):  # gs:// and the like are Orbax's to read
        raise ExportError(f"--workdir={workdir}: no such directory; give the --workdir of a jaxlm run")
    try:
        config, params, step = restore_params(workdir, step)
    except CheckpointError as e:
        raise ExportError(str(e)) from e
    model_cfg = model_config_from(config, vocab_size=int(np.shape(params["token_embed"]["embedding"])[0]))
    tokenizer_path = hf_tokenizer.find(workdir, config.data.tokenizer.get("path", ""))
    return config, model_cfg, params, tokenizer_path, step


def _run_config(cfg: ModelConfig, family: str) -> ml_collections.ConfigDict:
    """A run config whose model is `cfg`, or an error naming what a run config cannot express."""
    from jaxlm.config import base_config

    config = base_config()
    config.model.family = family
    for field in _RUN_MODEL_FIELDS:
        config.model[field] = getattr(cfg, field)
    config.data.seq_len = min(config.data.seq_len, cfg.max_len)
    config.data.next_sentence = cfg.next_sentence_head  # BertForPreTraining: keep training both heads
    derived = model_config_from(config, cfg.vocab_size)
    differing = [f"{field}={getattr(cfg, field)!r} (a run has {getattr(derived, field)!r})"
                 for field in cfg.__dataclass_fields__
                 if field not in _TRAINING_ONLY and getattr(cfg, field) != getattr(derived, field)]
    if differing:
        raise ExportError(f"the imported model has {', '.join(differing)}, which a jaxlm run config cannot "
                          "set; use it from Python with jaxlm.export.from_hf instead")
    return config


def export_run(workdir: str, step: int | None, out: str, max_shard_bytes: int) -> str:
    """Writes the run's checkpoint as an HF directory; returns a summary line."""
    _, model_cfg, params, tokenizer_path, step = open_run(workdir, step)
    files = convert.to_hf(model_cfg, params, out, tokenizer_path=tokenizer_path, max_shard_bytes=max_shard_bytes)
    if os.path.basename(tokenizer_path) == SentencePieceTokenizer.FILENAME:
        # The sentencepiece model rides along, so an import can continue with the same tokenizer.
        shutil.copyfile(tokenizer_path, os.path.join(out, SentencePieceTokenizer.FILENAME))
        files.append(SentencePieceTokenizer.FILENAME)
    family = hf_config.family_of_config(model_cfg)
    return (f"exported {workdir} step {step} as {hf_config.architecture(model_cfg, family)} to {out} "
            f"({len(files)} files)")


def import_hf(hf_dir: str, out: str) -> str:
    """Writes an HF directory's weights as step 0 of a jaxlm checkpoint in `out`; returns a summary line."""
    from jaxlm.train.checkpoint import Checkpointer, now_iso
    from jaxlm.train.optimizer import make_optimizer

    if not os.path.isdir(hf_dir):
        raise ExportError(f"--from_hf={hf_dir}: no such directory; give a directory written by save_pretrained")
    model_cfg, params = convert.from_hf(hf_dir)
    family = hf_config.family_of_config(model_cfg)
    config = _run_config(model_cfg, family)
    checkpoints = os.path.join(out, "checkpoints")
    if os.path.exists(checkpoints):
        raise ExportError(f"--out={out} already holds checkpoints; give a new directory")
    sentencepiece = os.path.join(hf_dir, SentencePieceTokenizer.FILENAME)
    try:  # a jaxlm export carries its sentencepiece model; continuing needs the same ids
        SentencePieceTokenizer.load(sentencepiece)
        config.data.tokenizer.path = os.path.abspath(os.path.join(out, "tokenizer", SentencePieceTokenizer.FILENAME))
        os.makedirs(os.path.dirname(config.data.tokenizer.path), exist_ok=True)
        shutil.copyfile(sentencepiece, config.data.tokenizer.path)
    except DataError:
        logging.warning("%s has no jaxlm sentencepiece model; a run continuing from it must bring a tokenizer "
                        "with the same ids (config.data.tokenizer.path)", hf_dir)
    optimizer, _ = make_optimizer(config.train, params)
    checkpointer = Checkpointer(checkpoints, ml_collections.ConfigDict(
        {"keep": 1, "keep_every": 0, "async_save": False}))
    meta = {"config": config.to_json_best_effort(), "saved_at": now_iso(), "imported_from": os.path.abspath(hf_dir)}
    checkpointer.save(0, params, jax.tree.map(np.asarray, optimizer.init(params)), meta)
    checkpointer.wait()
    checkpointer.close()
    with open(os.path.join(out, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2))
    flags = " ".join(f"--config.model.{field}={config.model[field]}" for field in ("family", *_RUN_MODEL_FIELDS))
    if config.data.next_sentence:
        flags += " --config.data.next_sentence=True"
    return (f"imported {hf_dir} ({family}) into {checkpoints}/0; continue pretraining with\n"
            f"  python run_pretrain.py --config.checkpoint.restore_from={out} {flags}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m jaxlm.export", description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", help="a jaxlm run to export")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: the newest)")
    parser.add_argument("--from_hf", help="an HF model directory to import instead")
    parser.add_argument("--out", required=True, help="the HF directory (export) or run workdir (import) to write")
    parser.add_argument("--max_shard_mb", type=float, default=safetensors_io.DEFAULT_MAX_SHARD_BYTES / 2**20,
                        help="split the weights into shards of at most this size, with an index file")
    return parser


def main(argv: list[str]) -> int:
    """Runs the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    jax.config.update("jax_platforms", "cpu")  # conversion needs no accelerator, and a pod's may be busy
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("absl").setLevel(logging.ERROR)  # Orbax's notes on read-only restores
    if (args.workdir is None) == (args.from_hf is None):
        print("error: give exactly one of --workdir (export a run) and --from_hf (import)", file=sys.stderr)
        return 2
    if "://" not in args.out and os.path.exists(args.out) and not os.path.isdir(args.out):
        print(f"error: --out={args.out} is a file, not a folder; give a folder (it is created if missing)",
              file=sys.stderr)
        return 2
    try:
        if args.workdir is not None:
            print(export_run(args.workdir, args.step, args.out, int(args.max_shard_mb * 2**20)))
        else:
            print(import_hf(args.from_hf, args.out))
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # an unwritable --out, a full disk: name the file, keep the traceback out
        print(f"error: {e.filename or args.out}: {e.strerror or e}; check the path and free space and run "
              "the same command again", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
