"""The exported HF tokenizer gives jaxlm's ids on varied text, through AutoTokenizer."""

import pytest

from jaxlm.data.char_tokenizer import CharTokenizer
from jaxlm.data.sentencepiece_tokenizer import SentencePieceTokenizer
from jaxlm.data.sources import builtin_documents
from jaxlm.data.tokenizer import BOS_ID, EOS_ID
from jaxlm.export import hf_tokenizer
from jaxlm.export.errors import ExportError

transformers = pytest.importorskip("transformers")

SAMPLES = [
    "Hello, world!",
    "  two  spaces,\tone tab,\n\nblank lines\n",
    "   ",
    "\n",
    "trailing space ",
    "digits 0123456789, 3.14159, -42, 1e-10, 2026-11-23",
    "naïve café façade — “quotes” ‘too’",
    "東京 (Tokyo), Ελληνικά, русский, עברית, हिन्दी",
    "emoji 🙂🚀 and symbols ∑∫≠ ★",
    "mix\u00a0nbsp\u2003em-space",
    "a <mask> b<mask>c",
    "def f(x):\n    return x ** 2  # square\n",
    "URLs: https://example.com/a?b=c&d=e",
    "ALL CAPS and CamelCase and snake_case_words",
    "\u2581 literal sentencepiece space",
]


@pytest.fixture(scope="module")
def corpus():
    return builtin_documents()[:40]


def _texts(corpus):
    return SAMPLES + [doc[:300] for doc in corpus[:: max(1, len(corpus) // 25)]]


def _hf_tokenizer(tokenizer, family, directory):
    hf_tokenizer.write(tokenizer, str(directory), family, max_len=1024)
    return transformers.AutoTokenizer.from_pretrained(str(directory))


@pytest.mark.parametrize("model_type,vocab_size", [("bpe", 1000), ("char", 400)])
def test_sentencepiece_export_gives_the_same_ids_and_text(model_type, vocab_size, corpus, tmp_path):
    ours = SentencePieceTokenizer.train(corpus, vocab_size, model_type)
    theirs = _hf_tokenizer(ours, "llama", tmp_path)
    for text in _texts(corpus):
        ids = ours.encode(text)
        assert theirs(text)["input_ids"] == ids, text
        assert theirs.decode(ids) == ours.decode(ids), text
    assert ours.encode("a <mask> b").count(ours.mask_id) == 1  # the sample exercises the user-defined piece
    assert len(ours.encode("🙂")) == 4  # ...and byte fallback (one piece per UTF-8 byte)


def test_char_tokenizer_export_gives_the_same_ids(corpus, tmp_path):
    ours = CharTokenizer.train(corpus)
    theirs = _hf_tokenizer(ours, "gpt2", tmp_path)
    for text in _texts(corpus):
        if "<mask>" not in text:  # a char tokenizer spells it out; HF matches the special token
            assert theirs(text)["input_ids"] == ours.encode(text), text


def test_bert_tokenizer_frames_a_text_as_its_training_rows_do(corpus, tmp_path):
    ours = SentencePieceTokenizer.train(corpus, 1000, "bpe")
    theirs = _hf_tokenizer(ours, "bert", tmp_path)
    text = "The <mask> sat on the mat."
    assert theirs(text)["input_ids"] == [BOS_ID, *ours.encode(text), EOS_ID]
    assert theirs.mask_token_id == ours.mask_id and theirs.pad_token_id == ours.pad_id


def test_a_foreign_sentencepiece_model_is_refused(corpus, tmp_path):
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_prefix=str(tmp_path / "tokenizer"), vocab_size=300, minloglevel=2
    )  # default normalisation: NFKC, dummy prefix
    with pytest.raises(ExportError, match="normalization_rule_name='nmt_nfkc'"):
        foreign = SentencePieceTokenizer((tmp_path / "tokenizer.model").read_bytes(), "a foreign model")
        hf_tokenizer.write(foreign, str(tmp_path), "llama", 128)
