"""Config checks at start: every recipe builds, and each bad field is one line that names it."""

import glob
import os

import jax
import pytest
from flax import nnx

from jaxlm.config import ConfigError, base_config, check_vocab, load_recipe, model_config, validate
from jaxlm.data.errors import DataError
from jaxlm.data.select import train_source
from jaxlm.model.transformer import Transformer

CONFIG_FILES = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "configs", "*.py")))


def test_recipes_are_all_there():
    names = {os.path.basename(p) for p in CONFIG_FILES}
    assert {
        "default.py",
        "bert_tiny.py",
        "shakespeare_char.py",
        "gpt2_small.py",
        "llama_1b.py",
        "bert_base.py",
    } <= names


@pytest.mark.parametrize("path", CONFIG_FILES, ids=os.path.basename)
def test_each_recipe_validates_and_builds(path):
    config = load_recipe(path)
    validate(config)  # what compiles; a recipe for a real corpus leaves data.path to the user
    vocab = config.model.vocab_size if config.model.vocab_size != -1 else config.data.tokenizer.vocab_size
    model_cfg = model_config(config, vocab)
    # eval_shape: a 1B model costs no memory here.
    state = nnx.state(nnx.eval_shape(lambda: Transformer(model_cfg, rngs=nnx.Rngs(0))))
    count = sum(x.size for x in jax.tree.leaves(state))
    expected_millions = {
        "gpt2_small.py": 124,
        "llama_1b.py": 1100,
        "bert_base.py": 110,
        "gpt2_medium.py": 355,
        "gpt2_large.py": 774,
        "gpt2_xl.py": 1558,
        "llama_7b.py": 6738,
        "bert_large.py": 335,
    }
    name = os.path.basename(path)
    if name in expected_millions:
        assert abs(count / 1e6 - expected_millions[name]) / expected_millions[name] < 0.08, count


def test_gpt2_small_has_gpt2_small_shape():
    config = load_recipe(os.path.join(os.path.dirname(CONFIG_FILES[0]), "gpt2_small.py"))
    model = config.model
    assert (model.num_layers, model.width, model.num_heads, config.data.seq_len) == (12, 768, 12, 1024)


BAD_FIELDS = [
    ("train.decay_fraction", 0.0, "must be in (0, 1]"),
    ("train.z_loss", -1e-4, "must be >= 0 and finite"),
    ("train.wsd_decay", "cosine", "must be one of linear, 1-sqrt"),
    ("model.family", "gpt5", "must be one of gpt2, llama, bert"),
    ("model.num_heads", 5, "does not divide model.width=192"),
    ("model.num_kv_heads", 4, "must divide model.num_heads=6"),
    ("model.num_layers", 0, "must be a positive integer"),
    ("model.dtype", "float8", "must be one of float32, bfloat16, float16"),
    ("train.optimizer", "adam", "must be one of adamw, lamb, adafactor, muon, sgd"),
    ("train.muon_momentum", 1.0, "must be in [0, 1)"),
    ("train.ema_decay", 1.0, "must be in [0, 1) (0 = off)"),
    ("train.ema_decay", -0.5, "must be in [0, 1) (0 = off)"),
    ("train.loss_scale_init", 0.5, "must be >= 1 and finite"),
    ("train.loss_scale_init", float("inf"), "must be >= 1 and finite"),
    ("train.loss_scale_period", 0, "must be a positive integer"),
    ("model.remat", "some", "must be one of none, full, dots"),
    ("model.biases", "no", "must be one of family, none"),
    ("model.max_len", 16, "must be >= data.seq_len=128"),
    ("model.dropout", 1.5, "must be in [0, 1)"),
    ("data.source", "web", "must be one of builtin, text"),
    ("data.batch_size", 10, "is not divisible by train.grad_accum_steps=4"),
    ("data.seq_len", -1, "must be a positive integer"),
    ("data.val_fraction", 1.0, "must be in [0, 1)"),
    ("data.mask_prob", 0.0, "must be in (0, 1)"),
    ("data.tokenizer.kind", "wordpiece", "must be one of sentencepiece, char"),
    ("train.learning_rate", -1.0, "must be > 0"),
    ("train.learning_rate", float("nan"), "must be > 0 and finite"),
    ("train.learning_rate", float("inf"), "must be > 0 and finite"),
    ("train.end_learning_rate", float("nan"), "must be >= 0 and finite"),
    ("train.b1", 1.0, "must be in [0, 1)"),
    ("train.b2", 95.0, "must be in [0, 1)"),
    ("train.b2", -0.5, "must be in [0, 1)"),
    ("train.eps", 0.0, "must be > 0 and finite"),
    ("train.weight_decay", -0.1, "must be >= 0 and finite"),
    ("train.clip_norm", float("inf"), "must be >= 0 and finite"),
    ("train.warmup_steps", 10_000, "must be in [0, train.steps=450]"),
    ("train.decay", "step", "must be one of cosine, linear, constant"),
    ("train.clip_norm", -1.0, "must be >= 0"),
    ("train.cross_entropy", "fused", "must be one of plain, vocab_parallel"),
    ("train.stop_at", 500, "must be in [0, train.steps=450]"),
    ("checkpoint.every", -1, "must be >= 0"),
    ("checkpoint.keep", 0, "must be a positive integer"),
    ("checkpoint.keep_every", -5, "must be >= 0"),
    ("mesh.cpu_devices", -2, "must be an integer >= 0"),
]


@pytest.mark.parametrize("field,value,message", BAD_FIELDS, ids=[f"{f}={v}" for f, v, _ in BAD_FIELDS])
def test_each_bad_field_is_named_in_one_line(field, value, message):
    config = base_config()
    if field == "data.batch_size":
        config.train.grad_accum_steps = 4
    section, _, name = field.rpartition(".")
    node = config
    for part in section.split("."):
        node = node[part]
    node[name] = value
    with pytest.raises(ConfigError) as error:
        validate(config)
    text = str(error.value)
    assert text.startswith(f"config.{field}={value!r}: ") and message in text and "\n" not in text


def test_text_source_needs_a_path():
    """A missing path is the data pipeline's to report (the config compiles); it names the field."""
    config = base_config()
    config.data.source = "text"
    validate(config)
    with pytest.raises(DataError, match="config.data.path"):
        train_source(config.data)


def test_model_vocab_smaller_than_the_tokenizer_is_refused():
    config = base_config()
    config.model.vocab_size = 100
    with pytest.raises(
        ConfigError,
        match=r"config.model.vocab_size=100: is smaller than the "
        r"tokenizer's vocabulary \(2048\)",
    ):
        check_vocab(config, 2048)
    config.model.vocab_size = 4096
    check_vocab(config, 2048)


def test_default_config_is_valid():
    validate(base_config())


@pytest.mark.parametrize(
    "fields, named, message",
    [
        ({"data.source": "jsonl"}, "data.path=''", 'data.source="jsonl" needs a file or glob'),
        ({"data.source": "tfds"}, "data.tfds_name=''", 'data.source="tfds" needs a TFDS dataset name'),
        (
            {"data.source": "tfds", "data.tfds_name": "lm1b", "data.text_field": ""},
            "data.text_field=''",
            "needs the field holding the text",
        ),
    ],
)
def test_what_a_source_needs_is_named_when_it_is_opened(fields, named, message):
    config = base_config()
    config.update_from_flattened_dict(fields)
    validate(config)
    with pytest.raises(DataError) as error:
        train_source(config.data)
    assert str(error.value).startswith(f"config.{named}: ") and message in str(error.value)


@pytest.mark.parametrize(
    "fields, named, message",
    [
        ({"data.document": "sentence"}, "data.document='sentence'", "must be one of file, line, paragraph"),
        ({"data.max_documents": -1}, "data.max_documents=-1", "must be an integer >= 0"),
        ({"data.prefetch": -1}, "data.prefetch=-1", "must be an integer >= 0"),
        (
            {"data.tokenizer.model_type": "word"},
            "data.tokenizer.model_type='word'",
            "must be one of bpe, unigram, char",
        ),
        ({"data.tokenizer.max_sentences": 0}, "data.tokenizer.max_sentences=0", "must be a positive integer"),
        # A corpus path with the builtin corpus was once ignored, and the run trained on Python's docs.
        (
            {"data.path": "/no/such.txt"},
            "data.path='/no/such.txt'",
            'read only with data.source="text" or "jsonl", and data.source="builtin"; add --config.data.source=text',
        ),
        ({"data.source": "tfds", "data.tfds_name": "lm1b", "data.val_path": "v.txt"}, "data.val_path='v.txt'", "tfds"),
        ({"data.source": "text", "data.path": "a.txt", "data.tfds_name": "lm1b"}, "data.tfds_name='lm1b'", '"tfds"'),
    ],
)
def test_data_source_fields_are_checked(fields, named, message):
    config = base_config()
    config.update_from_flattened_dict(fields)
    with pytest.raises(ConfigError) as error:
        validate(config)
    assert str(error.value).startswith(f"config.{named}: ") and message in str(error.value)


def test_data_sources_that_validate():
    for fields in (
        {"source": "jsonl", "path": "a.jsonl"},
        {"source": "tfds", "tfds_name": "lm1b"},
        {"source": "text", "path": "a.txt", "document": "paragraph", "max_documents": 10},
    ):
        config = base_config()
        config.data.update(fields)
        validate(config)
