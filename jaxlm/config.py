"""The run configuration: every field, its default and its meaning, and the checks made at start.

Recipes in `configs/` call `base_config()` and set only what differs, so this file is the one table
of what a field means. `validate(config)` runs before anything is built; a bad value raises
`ConfigError` naming the field, which `run_pretrain.py` prints as one line and exits with status 2.
"""

from __future__ import annotations

import importlib.util
import os

import ml_collections

FAMILIES = ("gpt2", "llama", "bert")


class ConfigError(ValueError):
    """A config field holds a value the run cannot use; the message names the field."""


def base_config() -> ml_collections.ConfigDict:
    """Every field a run reads, with defaults for a small causal model on the built-in corpus."""
    c = ml_collections.ConfigDict()
    c.seed = 0  # Seeds parameter init, data order, MLM masking and dropout.

    c.data = ml_collections.ConfigDict()
    c.data.source = "builtin"  # "builtin" (CPython's docs, offline), "text" or "jsonl" (files at data.path), "tfds".
    c.data.path = ""  # With source="text" or "jsonl": a file or glob (`~` and `**` work) of UTF-8 files.
    c.data.document = "file"  # With source="text": a document is a "file", a "line" or a blank-line "paragraph".
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
    c.data.tokenizer.kind = "sentencepiece"  # "sentencepiece" (trained or loaded) or "char" (one token per character).
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
    c.model.dtype = "float32"  # Compute dtype: "float32" or "bfloat16" (parameters stay float32).
    c.model.attention = "xla"  # Attention kernel: "xla" (any device), "cudnn" (NVIDIA GPU flash attention, bfloat16), "splash" (TPU Pallas flash attention, seq_len a multiple of 128).
    c.model.remat = "none"  # Rematerialise each block in the backward pass: "none", "full" or "dots".
    c.model.scan_unroll = 1  # Blocks per layer-scan iteration: 1 keeps compile time flat in depth; num_layers unrolls all (faster small models).

    c.train = ml_collections.ConfigDict()
    c.train.steps = 450  # Optimizer steps.
    c.train.learning_rate = 3e-3  # Peak learning rate, reached after warmup.
    c.train.warmup_steps = 50  # Linear warmup from 0 to learning_rate.
    c.train.decay = "cosine"  # After warmup: "cosine", "linear" or "constant".
    c.train.end_learning_rate = 3e-4  # Learning rate at the last step (cosine and linear).
    c.train.b1 = 0.9  # AdamW beta1.
    c.train.b2 = 0.95  # AdamW beta2.
    c.train.eps = 1e-8  # AdamW epsilon.
    c.train.weight_decay = 0.1  # Decoupled weight decay, on matrices only (not norms, biases, embeddings).
    c.train.decay_embeddings = False  # Also decay the embedding tables (nanoGPT does).
    c.train.clip_norm = 1.0  # Clip gradients to this global norm (0 = off).
    c.train.grad_accum_steps = 1  # Micro-batches per step, accumulated inside the jitted step.
    c.train.cross_entropy = "plain"  # "plain" (XLA decides) or "vocab_parallel" (shard_map; logits never gathered).
    c.train.stop_at = 0  # Save and stop after this step, keeping train.steps' schedule (time-limited jobs); 0 = off.
    c.train.skip_nonfinite = False  # Skip a step whose loss or gradient is not finite (else stop the run).

    c.eval = ml_collections.ConfigDict()
    c.eval.every = 200  # Evaluate every this many steps and at the end (0 = only at the end).
    c.eval.max_batches = 50  # Cap on validation batches per evaluation (0 = the whole split).

    c.log = ml_collections.ConfigDict()
    c.log.every = 25  # Print a progress line every this many steps.

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


def _choice(config: ml_collections.ConfigDict, field: str, choices: tuple[str, ...]) -> None:
    value = _get(config, field)
    if value not in choices:
        _fail(field, value, f"must be one of {', '.join(choices)}")


def validate(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError for the first field whose value the run cannot use."""
    _choice(config, "model.family", FAMILIES)
    _choice(config, "data.source", ("builtin", "text", "jsonl", "tfds"))
    _choice(config, "data.document", ("file", "line", "paragraph"))
    _choice(config, "data.tokenizer.kind", ("sentencepiece", "char"))
    _choice(config, "data.tokenizer.model_type", ("bpe", "unigram", "char"))
    _choice(config, "model.dtype", ("float32", "bfloat16"))
    _choice(config, "model.remat", ("none", "full", "dots"))
    _choice(config, "model.attention", ("xla", "cudnn", "splash"))
    _choice(config, "model.biases", ("family", "none"))
    _choice(config, "train.decay", ("cosine", "linear", "constant"))
    _positive(config, "data.seq_len", "data.batch_size", "model.num_layers", "model.width",
              "model.num_heads", "model.scan_unroll", "train.steps", "train.grad_accum_steps",
              "log.every")
    if config.data.source in ("text", "jsonl") and not config.data.path:
        _fail("data.path", config.data.path, f'data.source="{config.data.source}" needs a file or glob to read')
    if config.data.source == "tfds" and not config.data.tfds_name:
        _fail("data.tfds_name", config.data.tfds_name, 'data.source="tfds" needs a TFDS dataset name, e.g. "lm1b"')
    if config.data.source in ("jsonl", "tfds") and not config.data.text_field:
        _fail("data.text_field", config.data.text_field, f'data.source="{config.data.source}" needs the text field')
    if not isinstance(config.data.max_documents, int) or config.data.max_documents < 0:
        _fail("data.max_documents", config.data.max_documents, "must be an integer >= 0 (0 = all)")
    if not isinstance(config.data.prefetch, int) or config.data.prefetch < 0:
        _fail("data.prefetch", config.data.prefetch, "must be an integer >= 0 (0 = none)")

    m = config.model
    if m.width % m.num_heads:
        _fail("model.num_heads", m.num_heads, f"does not divide model.width={m.width}")
    kv_heads = m.num_heads if m.num_kv_heads == -1 else m.num_kv_heads
    if not isinstance(kv_heads, int) or kv_heads <= 0 or m.num_heads % kv_heads:
        _fail("model.num_kv_heads", m.num_kv_heads, f"must divide model.num_heads={m.num_heads} (or be -1)")
    if m.family == "llama" and (m.width // m.num_heads) % 2:
        _fail("model.num_heads", m.num_heads, "RoPE needs an even head dimension width/num_heads")
    if m.mlp_dim != -1 and (not isinstance(m.mlp_dim, int) or m.mlp_dim <= 0):
        _fail("model.mlp_dim", m.mlp_dim, "must be a positive integer (or -1)")
    if m.max_len != -1 and (not isinstance(m.max_len, int) or m.max_len < config.data.seq_len):
        _fail("model.max_len", m.max_len, f"must be >= data.seq_len={config.data.seq_len} (or -1)")
    if m.vocab_size != -1 and (not isinstance(m.vocab_size, int) or m.vocab_size <= 0):
        _fail("model.vocab_size", m.vocab_size, "must be a positive integer (or -1 for the tokenizer's)")
    if not 0.0 <= m.dropout < 1.0:
        _fail("model.dropout", m.dropout, "must be in [0, 1)")
    if m.attention == "cudnn" and m.dtype != "bfloat16":
        _fail("model.attention", m.attention, "cuDNN flash attention needs model.dtype=bfloat16")
    if m.attention == "splash" and config.data.seq_len % 128:
        _fail("model.attention", m.attention,
              f"splash attention needs data.seq_len a multiple of 128, got {config.data.seq_len}")

    if config.data.batch_size % config.train.grad_accum_steps:
        _fail("data.batch_size", config.data.batch_size,
              f"is not divisible by train.grad_accum_steps={config.train.grad_accum_steps}")
    if not 0.0 <= config.data.val_fraction < 1.0:
        _fail("data.val_fraction", config.data.val_fraction, "must be in [0, 1)")
    if not 0.0 < config.data.mask_prob < 1.0:
        _fail("data.mask_prob", config.data.mask_prob, "must be in (0, 1)")
    if config.data.next_sentence and m.family != "bert":
        _fail("data.next_sentence", config.data.next_sentence,
              f'next-sentence prediction is a bert objective; model.family="{m.family}" is causal')
    if config.data.tokenizer.kind == "sentencepiece" and not config.data.tokenizer.path:
        _positive(config, "data.tokenizer.vocab_size", "data.tokenizer.max_sentences")

    t = config.train
    if t.learning_rate <= 0:
        _fail("train.learning_rate", t.learning_rate, "must be > 0")
    if not 0 <= t.warmup_steps <= t.steps:
        _fail("train.warmup_steps", t.warmup_steps, f"must be in [0, train.steps={t.steps}]")
    if t.end_learning_rate < 0:
        _fail("train.end_learning_rate", t.end_learning_rate, "must be >= 0")
    if t.weight_decay < 0:
        _fail("train.weight_decay", t.weight_decay, "must be >= 0")
    if t.clip_norm < 0:
        _fail("train.clip_norm", t.clip_norm, "must be >= 0 (0 = off)")
    if config.eval.every < 0:
        _fail("eval.every", config.eval.every, "must be >= 0 (0 = only at the end)")
    if config.eval.max_batches < 0:
        _fail("eval.max_batches", config.eval.max_batches, "must be >= 0 (0 = the whole split)")
    _choice(config, "train.cross_entropy", ("plain", "vocab_parallel"))
    if not 0 <= config.train.stop_at <= t.steps:
        _fail("train.stop_at", config.train.stop_at, f"must be in [0, train.steps={t.steps}] (0 = off)")
    if config.checkpoint.every < 0:
        _fail("checkpoint.every", config.checkpoint.every, "must be >= 0 (0 = only at the end)")
    _positive(config, "checkpoint.keep")
    if not isinstance(config.mesh.cpu_devices, int) or config.mesh.cpu_devices < 0:
        _fail("mesh.cpu_devices", config.mesh.cpu_devices, "must be an integer >= 0 (0 = JAX's default)")
    if config.checkpoint.keep_every < 0:
        _fail("checkpoint.keep_every", config.checkpoint.keep_every, "must be >= 0 (0 = none)")


def check_vocab(config: ml_collections.ConfigDict, tokenizer_vocab_size: int) -> None:
    """Raises ConfigError when the model's embedding cannot hold every id the tokenizer makes."""
    if config.model.vocab_size != -1 and config.model.vocab_size < tokenizer_vocab_size:
        _fail("model.vocab_size", config.model.vocab_size,
              f"is smaller than the tokenizer's vocabulary ({tokenizer_vocab_size}); "
              "set it to -1 or at least that size")


def objective(config: ml_collections.ConfigDict) -> str:
    """The training objective the model family implies: "mlm" for bert, "causal" otherwise."""
    return "mlm" if config.model.family == "bert" else "causal"


def parse_flags_or_exit(argv: list[str]) -> list[str]:
    """absl's flag parse for a command with a `--config` recipe flag (`app.run(main, flags_parser=...)`).

    A missing or broken recipe file or a bad `--config.FIELD=VALUE` override is one line on stderr and
    exit status 2, like any bad config, instead of a traceback from config_flags.
    """
    from absl import flags

    try:
        argv = flags.FLAGS(argv)
        flags.FLAGS.config.to_dict()  # config_flags loads the recipe lazily: fail here, not mid-run
        return argv
    except Exception as error:  # whatever a broken recipe file or override raises
        exit_on_recipe_error(error)


def exit_on_recipe_error(error: Exception) -> None:
    """One line naming a recipe or override that config_flags could not read; exit status 2."""
    import re
    import sys

    detail = " ".join(str(error).split())  # config_flags' messages span several indented lines
    unknown = re.fullmatch(r"\"?'(\w+)'\"?", detail)  # how it names a field an override sets that is not there
    detail = f"the recipe has no field '{unknown[1]}'" if unknown else f"{type(error).__name__}: {detail}"
    print(f"error: --config: cannot read the recipe or an override ({detail}); "
          "give a recipe file such as configs/default.py and overrides of its fields as --config.FIELD=VALUE",
          file=sys.stderr)
    sys.exit(2)


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
