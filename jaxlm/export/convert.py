"""A whole Hugging Face directory out of (ModelConfig, params, tokenizer), and back into jaxlm.

A classifier (ModelConfig.num_labels > 0) goes out as *ForSequenceClassification or *ForTokenClassification
with its label names in config.json, and comes back the same way (`hf_labels` reads the names).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Sequence

import jax
import numpy as np
from flax import nnx

from jaxlm.data.tokenizer import Tokenizer
from jaxlm.export import hf_config, hf_tokenizer, mapping, safetensors_io, staging
from jaxlm.export.errors import ExportError
from jaxlm.model.config import ModelConfig
from jaxlm.model.transformer import Transformer

log = logging.getLogger(__name__)


def _write_json(path: str, content: dict) -> None:
    with open(path, "w") as f:
        json.dump(content, f, indent=2)


def _shapes(cfg: ModelConfig) -> dict:
    """Our parameter tree for `cfg`, as shape structs (no memory)."""
    return nnx.to_pure_dict(nnx.state(nnx.eval_shape(lambda: Transformer(cfg, rngs=nnx.Rngs(0)))))


def _check_shapes(cfg: ModelConfig, params: dict) -> None:
    """Every parameter the config implies is there with its shape (a wrong config is caught here)."""
    expected = _shapes(cfg)
    flat_expected = dict(jax.tree_util.tree_leaves_with_path(expected))
    flat_given = dict(jax.tree_util.tree_leaves_with_path(params))
    for path, leaf in flat_expected.items():
        name = jax.tree_util.keystr(path, simple=True, separator="/")
        if path not in flat_given:
            raise ExportError(f"parameter {name} is missing from the params the config describes")
        if tuple(np.shape(flat_given[path])) != tuple(leaf.shape):
            raise ExportError(
                f"parameter {name}: shape {tuple(np.shape(flat_given[path]))}, but the config "
                f"implies {tuple(leaf.shape)}"
            )


def _with_zero_biases(cfg: ModelConfig, params: dict) -> dict:
    """`params` of a bias-free model, with zero biases added where the family's HF class has them."""
    full = _shapes(dataclasses.replace(cfg, use_bias=True))
    given = {jax.tree_util.keystr(path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(params)}
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: given.get(jax.tree_util.keystr(path), np.zeros(leaf.shape, np.float32)), full
    )


def to_hf(
    cfg: ModelConfig,
    params: dict,
    out_dir: str,
    *,
    tokenizer: Tokenizer | None = None,
    max_shard_bytes: int = safetensors_io.DEFAULT_MAX_SHARD_BYTES,
    labels: Sequence[str] | None = None,
) -> list[str]:
    """Writes an HF model folder (config, weights, generation config, tokenizer); returns the file names.

    A classifier's `labels` name its outputs in order (config.json's id2label/label2id; None: HF's
    LABEL_0, ...). The files are written beside `out_dir` and moved into it only when all are written.
    """
    family = hf_config.family_of_config(cfg)
    _check_shapes(cfg, params)
    hf = hf_config.to_hf_config(cfg, family, labels)  # refuses wrong labels before anything is written
    with staging.staged_folder(out_dir, replaces=safetensors_io.is_weights_file) as folder:
        return _write_folder(cfg, family, hf, params, folder, tokenizer, max_shard_bytes)


def _write_folder(
    cfg: ModelConfig,
    family: str,
    hf: dict,
    params: dict,
    out_dir: str,
    tokenizer: Tokenizer | None,
    max_shard_bytes: int,
) -> list[str]:
    _write_json(os.path.join(out_dir, "config.json"), hf)
    written = ["config.json"]
    generation = hf_config.generation_config(cfg, family)
    if generation is not None:
        _write_json(os.path.join(out_dir, "generation_config.json"), generation)
        written.append("generation_config.json")
    params = jax.tree.map(lambda x: np.asarray(x, np.float32), params)
    if not cfg.use_bias and family != "llama":
        params = _with_zero_biases(cfg, params)
    written += safetensors_io.write(mapping.params_to_hf(family, params, cfg.num_layers), out_dir, max_shard_bytes)
    if tokenizer is not None:
        written += hf_tokenizer.write(tokenizer, out_dir, family, cfg.max_len)
    return written


def _read_config(hf_dir: str) -> dict:
    config_path = os.path.join(hf_dir, "config.json")
    if not os.path.exists(config_path):
        raise ExportError(f"{hf_dir}: no config.json; give a directory written by save_pretrained")
    with open(config_path) as f:
        return json.load(f)


def hf_labels(hf_dir: str) -> tuple[str, ...]:
    """The label names of the HF classifier in `hf_dir`, in output order; () for a language model."""
    return hf_config.labels_of(_read_config(hf_dir))


def from_hf(hf_dir: str, *, seed: int = 0) -> tuple[ModelConfig, dict]:
    """(ModelConfig, float32 params) of an HF directory holding one of hf_config.IMPORTABLE.

    A classifier comes back as one (num_labels, labels_per; `hf_labels` gives the names). Parameters
    jaxlm has and the file lacks (BertModel has no MLM head) are initialised from `seed`.
    """
    cfg, family, tied = hf_config.from_hf_config(_read_config(hf_dir))
    tensors = safetensors_io.read(hf_dir)
    mapping.resolve_tied_output(family, tensors, tied)
    params, taken_fresh = mapping.params_from_hf(
        family,
        tensors,
        _shapes(cfg),
        cfg.num_layers,
        fresh=lambda: nnx.to_pure_dict(nnx.state(Transformer(cfg, rngs=nnx.Rngs(seed)))),
    )
    if taken_fresh:
        log.warning(
            "%s: %d parameters are not in the checkpoint and start freshly initialised: %s",
            hf_dir,
            len(taken_fresh),
            ", ".join(taken_fresh),
        )
    return cfg, params
