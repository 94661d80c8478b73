"""The run configuration: every field, its default and its meaning, and the checks of its values.

Recipes in `configs/` call `base_config()` and set only what differs, so this file is the one table
of what a field means. `validate(config)` checks that the values describe a run that can be built and
compiled (nothing is read from disk: a missing corpus is the data pipeline's to report); a bad value
raises `ConfigError` naming the field, which the commands print as one line with exit status 2.
`model_config` turns the model section into the model's own `ModelConfig`, resolving every -1.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import re

import ml_collections

from jaxlm.data.sources import DOCUMENT_UNITS, SOURCES
from jaxlm.data.tokenizer import MODEL_TYPES, TOKENIZER_KINDS
from jaxlm.errors import ConfigError
from jaxlm.model.config import ATTENTION_KERNELS, DTYPES, FAMILIES, REMAT, ModelConfig, default_mlp_dim

__all__ = [
    "ConfigError",
    "base_config",
    "check_vocab",
    "config_from_json",
    "data_arguments",
    "flatten",
    "labels",
    "load_recipe",
    "model_config",
    "objective",
    "optimizer_state_kind",
    "profile_range",
    "sibling_recipe",
    "validate",
]

# The choices of the sections this file's callers implement (jaxlm.train); the model's and the data's
# choices come from those packages.
BIASES = ("family", "none")
OPTIMIZERS = ("adamw", "lamb", "adafactor", "muon", "sgd")
DECAYS = ("cosine", "linear", "constant", "wsd", "rsqrt")
WSD_DECAYS = ("linear", "1-sqrt")
CROSS_ENTROPIES = ("plain", "vocab_parallel")
# The fields that decide which parameters a model has and their shapes: a checkpoint restores only into
# a run that agrees on all of them.
PARAMETER_FIELDS = (
    "model.family",
    "model.num_layers",
    "model.width",
    "model.num_heads",
    "model.num_kv_heads",
    "model.mlp_dim",
    "model.max_len",
    "model.vocab_size",
    "model.biases",
    "data.next_sentence",
    "finetune.task",
    "finetune.labels",
)
TASKS = ("", "classify")


def base_config() -> ml_collections.ConfigDict:  # long: the one table, a line per field
    """Every field a run reads, with defaults for a small causal model on the built-in corpus."""
    c = ml_collections.ConfigDict()
    c.seed = 0  # Seeds parameter init, data order, MLM masking and dropout.

    c.data = ml_collections.ConfigDict()
    c.data.source = "builtin"  # "builtin" (CPython's docs, offline), "text" or "jsonl" (files at data.path), "tfds".
    c.data.path = ""  # With source="text" or "jsonl": a file or glob (`~` and `**` work) of UTF-8 files.
    c.data.document = "file"  # With source="text": a document is a "file", a "line" or a blank-line "paragraph".
    c.data.label_field = "label"  # With finetune.task="classify": the JSONL field holding each text's label.
    c.data.text_field = "text"  # With source="jsonl" or "tfds": the field (TFDS: string feature) holding the text.
    c.data.tfds_name = ""  # With source="tfds": the dataset, e.g. "lm1b", "c4/en", "wikipedia/20230601.en".
    c.data.tfds_split = "train"  # With source="tfds": the split to train on (slices work: "train[:90%]").
    c.data.tfds_val_split = ""  # With source="tfds": a split to validate on; empty = hold out data.val_fraction.
    c.data.tfds_data_dir = ""  # With source="tfds": TFDS data_dir (a gs:// path works); empty = TFDS's default.
    c.data.val_path = ""  # With source="text" or "jsonl": files to validate on; empty = hold out data.val_fraction.
    c.data.max_documents = 0  # Read at most this many training documents (0 = all): bounds time and disk.
    c.data.seq_len = 128  # Tokens per row; rows pack several documents, kept apart by segment_ids.
    c.data.batch_size = 12  # Global batch size in rows. Must be divisible by train.grad_accum_steps and #hosts.
    c.data.val_fraction = 0.05  # Last fraction of the token stream held out for validation (0 = none).
    c.data.mask_prob = 0.15  # MLM only: fraction of tokens chosen for prediction (BERT: 0.15).
    c.data.next_sentence = False  # bert only: BERT's sentence pairs + next-sentence prediction (off, as RoBERTa).
    c.data.prefetch = 2  # Batches each host prepares ahead in a background thread (0 = none).
    c.data.tokenizer = ml_collections.ConfigDict()
    c.data.tokenizer.kind = "sentencepiece"  # "sentencepiece" (trained/loaded), "char", "hf" (a tokenizer.json).
    c.data.tokenizer.path = ""  # A sentencepiece .model to load; empty = train one and cache it in the workdir.
    c.data.tokenizer.model_type = "bpe"  # Sentencepiece algorithm when training: "bpe", "unigram" or "char".
    c.data.tokenizer.vocab_size = 2048  # Sentencepiece vocabulary size when training (specials included).
    c.data.tokenizer.max_sentences = 1_000_000  # Lines sampled (uniformly, one pass) to train sentencepiece on.

    c.model = ml_collections.ConfigDict()
    c.model.family = "llama"  # "gpt2", "llama" or "bert": sets norms, positions, FFN, attention and head.
    c.model.num_layers = 4  # Transformer blocks.
    c.model.width = 192  # Model width D (embedding size).
    c.model.num_heads = 6  # Attention heads H. Must divide width.
    c.model.num_kv_heads = -1  # Key/value heads for grouped-query attention; -1 = num_heads (plain MHA).
    c.model.biases = "family"  # "family" (gpt2, bert: yes; llama: no) or "none" (nanoGPT's bias=False).
    c.model.mlp_dim = -1  # FFN hidden width F; -1 = the family's rule (4*D, or 8/3*D rounded up for SwiGLU).
    c.model.max_len = -1  # Longest sequence the positions cover; -1 = data.seq_len.
    c.model.vocab_size = -1  # Embedding rows; -1 = the tokenizer's vocabulary. Must be >= the tokenizer's.
    c.model.dropout = 0.0  # Dropout rate on embeddings, attention output and FFN output.
    c.model.dtype = "float32"  # Compute dtype: "float32", "bfloat16" or "float16" (T4/V100 GPUs: with dynamic loss scaling); parameters stay float32.
    c.model.attention = "auto"  # Attention kernel: "auto" (splash on TPU when seq_len is a multiple of 128, cudnn on NVIDIA GPUs in bfloat16, else xla), "xla" (any device), "cudnn" (NVIDIA GPU flash attention, bfloat16), "splash" (TPU Pallas flash attention, seq_len a multiple of 128).
    c.model.remat = "none"  # Rematerialise each block in the backward pass: "none", "full" or "dots".
    c.model.scan_unroll = 1  # Blocks per layer-scan iteration: 1 keeps compile time flat in depth; num_layers unrolls all (faster small models).

    c.train = ml_collections.ConfigDict()
    c.train.steps = 450  # Optimizer steps.
    c.train.learning_rate = 3e-3  # Peak learning rate, reached after warmup.
    c.train.warmup_steps = 50  # Linear warmup from 0 to learning_rate.
    c.train.decay = "cosine"  # After warmup: "cosine", "linear", "constant", "wsd" (peak, then cool-down), "rsqrt".
    c.train.end_learning_rate = 3e-4  # Learning rate at the last step (cosine, linear and wsd).
    c.train.decay_fraction = 0.2  # With decay="wsd": the share of train.steps the final cool-down takes.
    c.train.wsd_decay = "linear"  # With decay="wsd": the cool-down's shape, "linear" or "1-sqrt".
    c.train.optimizer = "adamw"  # "adamw", "lamb" (BERT's at 32k batches), "adafactor" (T5's; factored second moments), "muon" (blocks' matrices; Adam for the rest), "sgd" (momentum b1).
    c.train.b1 = 0.9  # AdamW/LAMB beta1 (Muon: of its AdamW part; SGD: the momentum).
    c.train.b2 = 0.95  # AdamW/LAMB beta2 (Muon: of its AdamW part).
    c.train.eps = 1e-8  # AdamW/LAMB epsilon.
    c.train.muon_momentum = 0.95  # With optimizer="muon": the momentum of the orthogonalised updates.
    c.train.weight_decay = 0.1  # Decoupled (lr x it x param), on matrices only (not norms, biases, embeddings).
    c.train.decay_embeddings = False  # Also decay the embedding tables (nanoGPT does).
    c.train.clip_norm = 1.0  # Clip gradients to this global norm (0 = off).
    c.train.grad_accum_steps = 1  # Micro-batches per step, accumulated inside the jitted step.
    c.train.cross_entropy = "plain"  # "plain" (XLA decides) or "vocab_parallel" (shard_map; logits never gathered).
    c.train.stop_at = 0  # Save and stop after this step, keeping train.steps' schedule (time-limited jobs); 0 = off.
    c.train.ema_decay = 0.0  # Keep an average of the parameters (e.g. 0.999), evaluated beside them and exportable (--params=ema); 0 = off.
    c.train.loss_scale_init = 65536.0  # With model.dtype="float16": the first dynamic loss scale (halved on overflow).
    c.train.loss_scale_period = 2000  # With model.dtype="float16": good steps in a row before the scale doubles.
    c.train.z_loss = 0.0  # PaLM's z-loss weight on logsumexp(logits)^2 (PaLM: 1e-4); logged as z_squared; 0 = off.
    c.train.skip_nonfinite = False  # Skip a step whose loss, gradient or new state is not finite (else stop the run).

    c.eval = ml_collections.ConfigDict()
    c.eval.every = 200  # Evaluate every this many steps and at the end (0 = only at the end).
    c.eval.max_batches = 50  # Cap on validation batches per evaluation (0 = the whole split).

    c.log = ml_collections.ConfigDict()
    c.log.every = 25  # Print a progress line every this many steps.
    c.log.spike_sd = 6.0  # Name a logged loss this many running standard deviations above the running mean; 0 = off.
    c.log.wandb_project = ""  # Also log to this Weights & Biases project ("" = off; the wandb extra). WANDB_MODE=offline: local files only.
    c.log.wandb_entity = ""  # With log.wandb_project: the W&B user or team owning it; "" = your default entity.
    c.log.wandb_name = ""  # With log.wandb_project: the W&B run's name; "" = the workdir's folder name.
    c.log.profile_steps = ""  # "START:COUNT" ("10:5": steps 10-14): a jax.profiler trace in WORKDIR/profile; "" = off.
    c.log.profile_all_processes = False  # With log.profile_steps: trace on every process, not only process 0.

    c.sample = ml_collections.ConfigDict()
    c.sample.prompt = "The "  # Causal: text to continue at the end. MLM: a sentence with words to mask.
    c.sample.num_tokens = 64  # Causal: tokens to generate.
    c.sample.temperature = 0.8  # Causal: sampling temperature (0 = greedy).

    c.mesh = ml_collections.ConfigDict()
    c.mesh.preset = "dp"  # "dp", "fsdp", "tp" or "fsdp_tp": the default sizes of the three axes below.
    c.mesh.data = 0  # Devices that split the batch and replicate parameters; 0 = preset's, -1 = the rest.
    c.mesh.fsdp = 0  # Devices that split the batch and shard parameters and optimizer state (FSDP).
    c.mesh.tensor = 0  # Devices that split heads, FFN width and vocabulary (Megatron tensor parallelism).
    c.mesh.cpu_devices = 0  # CPU runs: split the host into this many JAX devices for the mesh (0 = JAX's default: 1).
    c.mesh.rules = ""  # Overrides of the logical->mesh axis rules, e.g. "vocab=,embed=fsdp+data".

    c.finetune = ml_collections.ConfigDict()
    c.finetune.task = ""  # "" = pretrain with the family's objective; "classify" = label each JSONL text (data.text_field -> data.label_field).
    c.finetune.init_from = ""  # With task="classify": a jaxlm run whose encoder (model section and tokenizer too) starts the classifier; "" = from scratch.
    c.finetune.labels = ""  # With "classify": label names in head order, "a,b,c"; "" = the training labels, sorted.

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.directory = ""  # Where checkpoints go; "" = <workdir>/checkpoints. May be gs://bucket/path.
    c.checkpoint.every = 200  # Save every this many steps, at the end and on SIGTERM/SIGINT (0 = end only).
    c.checkpoint.keep = 3  # Keep the newest this many checkpoints...
    c.checkpoint.keep_every = 0  # ...and every step divisible by this forever (0 = none).
    c.checkpoint.async_save = True  # Write to disk in the background while training goes on.
    c.checkpoint.restore_from = ""  # Start a new run from another run's checkpoint dir (or its workdir).
    c.checkpoint.params_only = True  # With restore_from: take the weights only (fresh optimizer, step 0).
    return c


def _fail(field: str, value, why: str) -> None:
    raise ConfigError(f"config.{field}={value!r}: {why}")


def _positive(config: ml_collections.ConfigDict, *fields: str) -> None:
    for field in fields:
        value = _get(config, field)
        if not isinstance(value, int) or value <= 0:
            _fail(field, value, "must be a positive integer")


def _get(config: ml_collections.ConfigDict, field: str):
    node = config
    for part in field.split("."):
        node = node[part]
    return node


_FLOAT32_MAX = 3.4028234663852886e38  # what the schedule computes in: a larger rate is inf on the device


def _number(config: ml_collections.ConfigDict, field: str, why: str, ok) -> None:
    """A real, finite number for which `ok` holds (NaN and infinities fail every bound)."""
    value = _get(config, field)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
        _fail(field, value, why)


def _choice(config: ml_collections.ConfigDict, field: str, choices: tuple[str, ...]) -> None:
    value = _get(config, field)
    if value not in choices:
        _fail(field, value, f"must be one of {', '.join(choices)}")


def validate(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError for the first field whose value the run cannot use (nothing is read from disk)."""
    _validate_data(config)
    _validate_model(config)
    _validate_training(config)
    _validate_finetune(config)
    _validate_log(config)
    _validate_profile(config)


def _validate_data(config: ml_collections.ConfigDict) -> None:
    d = config.data
    _choice(config, "data.source", SOURCES)
    _choice(config, "data.document", DOCUMENT_UNITS)
    _choice(config, "data.tokenizer.kind", TOKENIZER_KINDS)
    _choice(config, "data.tokenizer.model_type", MODEL_TYPES)
    _positive(config, "data.seq_len", "data.batch_size")
    if not isinstance(d.max_documents, int) or d.max_documents < 0:
        _fail("data.max_documents", d.max_documents, "must be an integer >= 0 (0 = all)")
    if not isinstance(d.prefetch, int) or d.prefetch < 0:
        _fail("data.prefetch", d.prefetch, "must be an integer >= 0 (0 = none)")
    if not 0.0 <= d.val_fraction < 1.0:
        _fail("data.val_fraction", d.val_fraction, "must be in [0, 1)")
    if not 0.0 < d.mask_prob < 1.0:
        _fail("data.mask_prob", d.mask_prob, "must be in (0, 1)")
    if d.next_sentence and config.model.family != "bert":
        _fail(
            "data.next_sentence",
            d.next_sentence,
            f'next-sentence prediction is a bert objective; model.family="{config.model.family}" is causal',
        )
    if d.tokenizer.kind == "sentencepiece" and not d.tokenizer.path:
        _positive(config, "data.tokenizer.vocab_size", "data.tokenizer.max_sentences")
    _check_fields_of_source(config)
    if d.tokenizer.kind == "hf" and not config.finetune.task:
        # Packing and masking still assume jaxlm's special ids 0..4; a classifier's rows do not.
        _fail(
            "data.tokenizer.kind",
            "hf",
            'is for finetune.task="classify" so far; pretraining needs sentencepiece or char',
        )


# Data fields that only one kind of source reads: set with another source they would be ignored.
_SOURCE_FIELDS = {
    "data.path": ("text", "jsonl"),
    "data.val_path": ("text", "jsonl"),
    "data.tfds_name": ("tfds",),
    "data.tfds_val_split": ("tfds",),
    "data.tfds_data_dir": ("tfds",),
}


def _check_fields_of_source(config: ml_collections.ConfigDict) -> None:
    """A field of another source (a corpus path with the builtin corpus, say) is an error, never ignored."""
    source = config.data.source
    for field, sources in _SOURCE_FIELDS.items():
        value = _get(config, field)
        if value and source not in sources:
            wanted = " or ".join(f'"{name}"' for name in sources)
            _fail(
                field,
                value,
                f'is read only with data.source={wanted}, and data.source="{source}"; add '
                f"--config.data.source={sources[0]} to train on it, or leave {field} out",
            )


def _validate_model(config: ml_collections.ConfigDict) -> None:
    m, seq_len = config.model, config.data.seq_len
    _choice(config, "model.family", FAMILIES)
    _choice(config, "model.dtype", DTYPES)
    _choice(config, "model.remat", REMAT)
    _choice(config, "model.attention", ("auto", *ATTENTION_KERNELS))
    _choice(config, "model.biases", BIASES)
    _positive(config, "model.num_layers", "model.width", "model.num_heads", "model.scan_unroll")
    if m.width % m.num_heads:
        _fail("model.num_heads", m.num_heads, f"does not divide model.width={m.width}")
    kv_heads = m.num_heads if m.num_kv_heads == -1 else m.num_kv_heads
    if not isinstance(kv_heads, int) or kv_heads <= 0 or m.num_heads % kv_heads:
        _fail("model.num_kv_heads", m.num_kv_heads, f"must divide model.num_heads={m.num_heads} (or be -1)")
    if m.family == "llama" and (m.width // m.num_heads) % 2:
        _fail("model.num_heads", m.num_heads, "RoPE needs an even head dimension width/num_heads")
    if m.mlp_dim != -1 and (not isinstance(m.mlp_dim, int) or m.mlp_dim <= 0):
        _fail("model.mlp_dim", m.mlp_dim, "must be a positive integer (or -1)")
    if m.max_len != -1 and (not isinstance(m.max_len, int) or m.max_len < seq_len):
        _fail("model.max_len", m.max_len, f"must be >= data.seq_len={seq_len} (or -1)")
    if m.vocab_size != -1 and (not isinstance(m.vocab_size, int) or m.vocab_size <= 0):
        _fail("model.vocab_size", m.vocab_size, "must be a positive integer (or -1 for the tokenizer's)")
    if not 0.0 <= m.dropout < 1.0:
        _fail("model.dropout", m.dropout, "must be in [0, 1)")
    if m.attention == "cudnn" and m.dtype != "bfloat16":
        _fail("model.attention", m.attention, "cuDNN flash attention needs model.dtype=bfloat16")
    if m.attention == "splash" and seq_len % 128:
        _fail("model.attention", m.attention, f"splash attention needs data.seq_len a multiple of 128, got {seq_len}")


def _validate_training(config: ml_collections.ConfigDict) -> None:
    t = config.train
    _choice(config, "train.decay", DECAYS)
    _choice(config, "train.optimizer", OPTIMIZERS)
    _number(config, "train.muon_momentum", "must be in [0, 1)", lambda x: 0 <= x < 1)
    _number(config, "train.ema_decay", "must be in [0, 1) (0 = off)", lambda x: 0 <= x < 1)
    _number(config, "train.loss_scale_init", "must be >= 1 and finite in float32", lambda x: 1 <= x <= _FLOAT32_MAX)
    _positive(config, "train.loss_scale_period")
    _choice(config, "train.wsd_decay", WSD_DECAYS)
    _number(config, "train.decay_fraction", "must be in (0, 1]", lambda x: 0 < x <= 1)
    _choice(config, "train.cross_entropy", CROSS_ENTROPIES)
    _positive(config, "train.steps", "train.grad_accum_steps", "log.every", "checkpoint.keep")
    if config.data.batch_size % t.grad_accum_steps:
        _fail(
            "data.batch_size",
            config.data.batch_size,
            f"is not divisible by train.grad_accum_steps={t.grad_accum_steps}",
        )
    _number(config, "train.learning_rate", "must be > 0 and finite in float32", lambda x: 0 < x <= _FLOAT32_MAX)
    if not 0 <= t.warmup_steps <= t.steps:
        _fail("train.warmup_steps", t.warmup_steps, f"must be in [0, train.steps={t.steps}]")
    _number(config, "train.end_learning_rate", "must be >= 0 and finite", lambda x: x >= 0)
    _number(config, "train.b1", "must be in [0, 1)", lambda x: 0 <= x < 1)
    _number(config, "train.b2", "must be in [0, 1)", lambda x: 0 <= x < 1)
    _number(config, "train.eps", "must be > 0 and finite", lambda x: x > 0)
    _number(config, "train.weight_decay", "must be >= 0 and finite", lambda x: x >= 0)
    _number(config, "train.clip_norm", "must be >= 0 and finite (0 = off)", lambda x: x >= 0)
    _number(config, "train.z_loss", "must be >= 0 and finite (0 = off)", lambda x: x >= 0)
    _number(config, "log.spike_sd", "must be >= 0 and finite (0 = off)", lambda x: x >= 0)
    if not 0 <= t.stop_at <= t.steps:
        _fail("train.stop_at", t.stop_at, f"must be in [0, train.steps={t.steps}] (0 = off)")
    for field, meaning in (
        ("eval.every", "0 = only at the end"),
        ("eval.max_batches", "0 = the whole split"),
        ("checkpoint.every", "0 = only at the end"),
        ("checkpoint.keep_every", "0 = none"),
    ):
        if _get(config, field) < 0:
            _fail(field, _get(config, field), f"must be >= 0 ({meaning})")
    if not isinstance(config.mesh.cpu_devices, int) or config.mesh.cpu_devices < 0:
        _fail("mesh.cpu_devices", config.mesh.cpu_devices, "must be an integer >= 0 (0 = JAX's default)")


def _validate_finetune(config: ml_collections.ConfigDict) -> None:
    f = config.finetune
    _choice(config, "finetune.task", TASKS)
    if not f.task:
        for field in ("finetune.init_from", "finetune.labels"):
            if _get(config, field):
                _fail(
                    field,
                    _get(config, field),
                    'is read only with finetune.task="classify"; set that too, or leave it out',
                )
        return
    if config.data.source != "jsonl":
        _fail(
            "data.source", config.data.source, 'finetune.task="classify" reads labelled JSONL: set data.source="jsonl"'
        )
    if config.data.next_sentence:
        _fail("data.next_sentence", True, "is a pretraining objective; a classifier has no next-sentence head")
    if config.train.cross_entropy != "plain":
        _fail(
            "train.cross_entropy",
            config.train.cross_entropy,
            'a classifier has a few outputs, not a vocabulary: use "plain"',
        )
    if config.checkpoint.restore_from:
        _fail("checkpoint.restore_from", config.checkpoint.restore_from, "a classifier starts from finetune.init_from")
    names = [name.strip() for name in f.labels.split(",")] if f.labels else []
    if names and (len(names) < 2 or len(set(names)) != len(names) or not all(names)):
        _fail("finetune.labels", f.labels, "must name two or more distinct labels, comma-separated")


def optimizer_state_kind(config: ml_collections.ConfigDict) -> dict[str, str]:
    """The fields that decide the optimizer state's structure, as a run would describe them: a checkpoint's
    optimizer state restores only into a run that agrees on all (the learning rate or the betas may change)."""
    t = config.train
    return {
        "train.optimizer": t.optimizer,
        "train.ema_decay": "an average of the parameters (> 0)" if t.ema_decay > 0 else "no average (0)",
        "model.dtype": "float16, with loss scaling" if config.model.dtype == "float16" else "no loss scaling",
    }


def _validate_log(config: ml_collections.ConfigDict) -> None:
    """A W&B entity or run name without a project would be ignored: an error instead."""
    for field in ("log.wandb_entity", "log.wandb_name"):
        if _get(config, field) and not config.log.wandb_project:
            _fail(field, _get(config, field), "is read only with log.wandb_project set; set that too, or leave it out")


_PROFILE_STEPS = re.compile(r"(\d+):(\d+)")


def profile_range(profile_steps: str) -> tuple[int, int] | None:
    """(first, last) step of log.profile_steps "START:COUNT", or None when it is "" or malformed."""
    found = _PROFILE_STEPS.fullmatch(profile_steps.strip()) if isinstance(profile_steps, str) else None
    if found is None:
        return None
    start, count = int(found.group(1)), int(found.group(2))
    return start, start + count - 1


def _validate_profile(config: ml_collections.ConfigDict) -> None:
    log, steps = config.log, config.train.steps
    if log.profile_steps == "":
        if log.profile_all_processes:
            _fail("log.profile_all_processes", True, 'traces nothing without log.profile_steps (e.g. "10:5")')
        return
    steps_range = profile_range(log.profile_steps)
    if steps_range is None:
        _fail(
            "log.profile_steps",
            log.profile_steps,
            'must be "START:COUNT" with whole numbers, e.g. "10:5" (or "" = off)',
        )
    first, last = steps_range
    if first < 1:
        _fail("log.profile_steps", log.profile_steps, "START must be >= 1 (steps count from 1)")
    if last < first:
        _fail("log.profile_steps", log.profile_steps, "COUNT must be >= 1")
    if last > steps:
        _fail("log.profile_steps", log.profile_steps, f"steps {first}..{last} run past train.steps={steps}")


def check_vocab(config: ml_collections.ConfigDict, tokenizer_vocab_size: int) -> None:
    """Raises ConfigError when the model's embedding cannot hold every id the tokenizer makes."""
    if config.model.vocab_size != -1 and config.model.vocab_size < tokenizer_vocab_size:
        _fail(
            "model.vocab_size",
            config.model.vocab_size,
            f"is smaller than the tokenizer's vocabulary ({tokenizer_vocab_size}); set it to -1 or at least that size",
        )


def objective(config: ml_collections.ConfigDict) -> str:
    """What the run trains: "classify" for a fine-tuning classifier, else the family's objective: "mlm" for bert,
    "causal" otherwise."""
    if config.finetune.task:
        return config.finetune.task
    return "mlm" if config.model.family == "bert" else "causal"


def labels(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    """The classifier's label names, in head order (empty for pretraining, or before the data fills them in)."""
    if not config.finetune.task:
        return ()
    return tuple(name.strip() for name in config.finetune.labels.split(",") if name.strip())


def data_arguments(config: ml_collections.ConfigDict) -> dict:
    """What the data pipeline takes from outside the data section: objective, seed, validation batches."""
    return {"objective": objective(config), "seed": config.seed, "max_val_batches": config.eval.max_batches}


def model_config(config: ml_collections.ConfigDict, vocab_size: int) -> ModelConfig:
    """The ModelConfig of a run whose tokenizer has `vocab_size` ids: every -1 of the model section resolved.

    num_kv_heads -1 = num_heads; mlp_dim -1 = the family's rule; max_len -1 = data.seq_len; vocab_size -1
    = the tokenizer's. `data.next_sentence` adds BERT's pooler and next-sentence head.
    """
    m = config.model
    family = ModelConfig.for_family(
        m.family, vocab_size=1, width=1, num_layers=1, num_heads=1, num_kv_heads=1, mlp_dim=1, max_len=1
    )
    resolved = dataclasses.replace(
        family,
        vocab_size=vocab_size if m.vocab_size == -1 else m.vocab_size,
        width=m.width,
        num_layers=m.num_layers,
        num_heads=m.num_heads,
        num_kv_heads=m.num_heads if m.num_kv_heads == -1 else m.num_kv_heads,
        mlp_dim=default_mlp_dim(family.ffn, m.width) if m.mlp_dim == -1 else m.mlp_dim,
        max_len=config.data.seq_len if m.max_len == -1 else m.max_len,
        dropout=m.dropout,
        dtype=m.dtype,
        remat=m.remat,
        attention=m.attention,
        scan_unroll=m.scan_unroll,
        next_sentence_head=bool(config.data.next_sentence),
        num_labels=len(labels(config)),
    )
    if m.biases == "none":  # nanoGPT's bias=False
        resolved = dataclasses.replace(resolved, use_bias=False)
    return resolved


def flatten(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, object]:
    """{"model.width": 192, ...}: every leaf field of a config by its dotted name."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, ml_collections.ConfigDict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def config_from_json(text: str) -> ml_collections.ConfigDict:
    """A config saved as JSON (config.json, a checkpoint's), with today's defaults for fields it predates."""
    config = base_config()
    _merge(config, json.loads(text))
    return config


def _merge(config: ml_collections.ConfigDict, saved: dict) -> None:
    for key, value in saved.items():
        if isinstance(value, dict) and isinstance(config.get(key), ml_collections.ConfigDict):
            _merge(config[key], value)
        else:
            config[key] = value


def load_recipe(path: str) -> ml_collections.ConfigDict:
    """The config a recipe file's get_config() returns."""
    spec = importlib.util.spec_from_file_location("jaxlm_recipe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def sibling_recipe(recipe_file: str, name: str) -> ml_collections.ConfigDict:
    """The recipe `name` (e.g. "gpt2_small.py") beside `recipe_file`: bigger recipes are a base plus the fields
    they change, so the change is all a reader sees."""
    return load_recipe(os.path.join(os.path.dirname(os.path.abspath(recipe_file)), name))
