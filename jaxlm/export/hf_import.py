"""A Hugging Face model folder in as a jaxlm run: a params-only checkpoint that a new run can start from.

The weights become step 0 of `<out>/checkpoints` (no optimizer state: whoever continues builds a fresh
one), beside a config.json whose model fields describe them. A jaxlm export carries its sentencepiece
model, which the checkpoint keeps and `<out>/tokenizer/` holds, so a run continuing from the import
uses the same ids.
"""

from __future__ import annotations

import logging
import os

import ml_collections

from jaxlm import config as config_lib
from jaxlm.data.errors import DataError
from jaxlm.data.hf_tokenizer import HFTokenizer
from jaxlm.data.sentencepiece_tokenizer import SentencePieceTokenizer
from jaxlm.export import convert, hf_config
from jaxlm.export.errors import ExportError
from jaxlm.model.config import ModelConfig
from jaxlm.runs import layout
from jaxlm.runs.checkpoint import Checkpointer, now_iso
from jaxlm.runs.meta import CheckpointMeta, TokenizerRecord

# The model fields a run config sets freely for an imported model; the rest of the ModelConfig must be
# what the family and those fields give.
_SIZE_FIELDS = tuple(
    field.split(".")[1]
    for field in config_lib.PARAMETER_FIELDS
    if field.startswith("model.") and field not in ("model.family", "model.biases")
)
# ModelConfig fields a run config chooses freely (they change training or the kernel, not the function computed).
_TRAINING_ONLY = ("dropout", "classifier_dropout", "dtype", "remat", "init_std", "scaled_residual_init", "attention")


def run_config(cfg: ModelConfig, family: str) -> ml_collections.ConfigDict:
    """A run config whose model is `cfg`, or an ExportError naming what a run config cannot express."""
    config = config_lib.base_config()
    config.model.family = family
    for field in _SIZE_FIELDS:
        config.model[field] = getattr(cfg, field)
    config.data.seq_len = min(config.data.seq_len, cfg.max_len)
    config.data.next_sentence = cfg.next_sentence_head  # BertForPreTraining: keep training both heads
    derived = config_lib.model_config(config, cfg.vocab_size)
    differing = [
        f"{field}={getattr(cfg, field)!r} (a run has {getattr(derived, field)!r})"
        for field in cfg.__dataclass_fields__
        if field not in _TRAINING_ONLY and getattr(cfg, field) != getattr(derived, field)
    ]
    if differing:
        raise ExportError(
            f"the imported model has {', '.join(differing)}, which a jaxlm run config cannot "
            "set; use it from Python with jaxlm.export.convert.from_hf instead"
        )
    return config


def import_hf(hf_dir: str, out: str) -> str:
    """Writes an HF folder's weights as a params-only step-0 checkpoint of a run at `out`; returns what was
    written and the command that continues pretraining from it."""
    if not os.path.isdir(hf_dir):
        raise ExportError(f"--from_hf={hf_dir}: no such directory; give a directory written by save_pretrained")
    checkpoints = os.path.join(out, layout.CHECKPOINTS_DIR)
    if os.path.exists(checkpoints):
        raise ExportError(f"--out={out} already holds checkpoints; give a new directory")
    model_cfg, params = convert.from_hf(hf_dir)
    family = hf_config.family_of_config(model_cfg)
    config = run_config(model_cfg, family)
    tokenizer = _carried_tokenizer(hf_dir)
    if tokenizer is not None:
        config.data.tokenizer.kind = "hf" if isinstance(tokenizer, HFTokenizer) else "sentencepiece"
        config.data.tokenizer.path = tokenizer.save(os.path.abspath(os.path.join(out, layout.TOKENIZER_DIR)))
    checkpointer = Checkpointer(checkpoints)
    meta = CheckpointMeta(
        step=0,
        config_json=config.to_json_best_effort(),
        saved_at=now_iso(),
        params_only=True,
        tokenizer=TokenizerRecord.of(tokenizer) if tokenizer else None,
        imported_from=os.path.abspath(hf_dir),
    )
    try:
        checkpointer.save(0, params, None, meta)
        checkpointer.wait()
    finally:
        checkpointer.close()
    with open(os.path.join(out, layout.CONFIG_FILE), "w") as f:
        f.write(config.to_json_best_effort(indent=2))
    if config.data.tokenizer.kind == "hf":  # its own ids: a classifier can take them, pretraining not yet
        command = (
            f"python run_pretrain.py --config.finetune.task=classify --config.finetune.init_from={out} "
            "--config.data.source=jsonl --config.data.path=TRAIN.jsonl --config.data.val_path=VALIDATION.jsonl "
            f"--workdir={out.rstrip('/')}_classifier"
        )
        return f"imported {hf_dir} ({family}) into {checkpoints}/0; fine-tune a classifier from it with\n  {command}"
    command = continue_command(config, out)
    return f"imported {hf_dir} ({family}) into {checkpoints}/0; continue pretraining with\n  {command}"


def _carried_tokenizer(hf_dir: str) -> SentencePieceTokenizer | HFTokenizer | None:
    """The tokenizer an HF folder brings: a jaxlm export's sentencepiece model, else the folder's own
    tokenizer.json (its ids and special tokens as the model was trained with them), else None."""
    try:
        return SentencePieceTokenizer.load(os.path.join(hf_dir, SentencePieceTokenizer.FILENAME))
    except DataError:
        pass
    path = os.path.join(hf_dir, "tokenizer.json")
    if os.path.exists(path):
        try:
            return HFTokenizer.load(path)
        except DataError as error:
            logging.warning("%s: its tokenizer.json is not usable (%s)", hf_dir, error)
    logging.warning(
        "%s has no tokenizer jaxlm can read; a run continuing from it must bring a tokenizer with the same ids "
        "(config.data.tokenizer.path)",
        hf_dir,
    )
    return None


def continue_command(config: ml_collections.ConfigDict, imported: str) -> str:
    """A run_pretrain.py command that starts a new run (its own workdir) from the import at `imported`."""
    flags = [
        f"--workdir={imported.rstrip('/')}_pretrain",
        f"--config.checkpoint.restore_from={imported}",
        *(f"--config.model.{field}={config.model[field]}" for field in ("family", *_SIZE_FIELDS)),
    ]
    if config.data.next_sentence:
        flags.append("--config.data.next_sentence=True")
    if config.data.tokenizer.path:
        if config.data.tokenizer.kind != "sentencepiece":
            flags.append(f"--config.data.tokenizer.kind={config.data.tokenizer.kind}")
        flags.append(f"--config.data.tokenizer.path={config.data.tokenizer.path}")
    return "python run_pretrain.py " + " ".join(flags)
