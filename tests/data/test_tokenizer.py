"""The tokenizer kinds (char_tokenizer.py, sentencepiece_tokenizer.py) and the chunk cache: fixed special ids,
round trips, loading, sampling the training sentences, encoding in bulk."""

import hashlib
import io
import re

import numpy as np
import pytest
import sentencepiece as spm

from jaxlm.data import chunk_cache
from jaxlm.data import sentencepiece_tokenizer as tokenizer_lib
from jaxlm.data.char_tokenizer import CharTokenizer
from jaxlm.data.errors import DataError
from jaxlm.data.sentencepiece_tokenizer import SentencePieceTokenizer
from jaxlm.data.sources import builtin_documents
from jaxlm.data.tokenizer import SPECIAL_PIECES

VARIED = [
    "Plain English, with punctuation: (yes) [no] {maybe}!",
    "  two leading spaces, three   inside, and trailing   ",
    "lines\nand\n\nblank lines\r\nand CRLF\n",
    "\tdef f(x):\n\t\treturn x  # tabs\n        eight spaces\n",
    "Ünïcödé, 中文, русский, ελληνικά, emoji 😀🚀, math ∑∫√",
    "<s> and </s> and <pad> as plain text, NUL \x00 and bell \x07",
    "",
    "\n\n\n",
    " ",
]


@pytest.fixture(scope="module")
def documents():
    return builtin_documents()


@pytest.fixture(scope="module")
def sp_tokenizer(documents):
    return SentencePieceTokenizer.train(documents, vocab_size=512, model_type="bpe")


def test_char_vocabulary_layout_and_exact_round_trip(documents):
    tokenizer = CharTokenizer.train(documents)
    chars = sorted(set("".join(documents)))
    assert tokenizer.vocab_size == 5 + len(chars)
    assert "\n" in tokenizer.chars
    specials = (tokenizer.pad_id, tokenizer.unk_id, tokenizer.bos_id, tokenizer.eos_id, tokenizer.mask_id)
    assert specials == (0, 1, 2, 3, 4)
    assert tokenizer.special_ids == frozenset(range(5))
    assert tokenizer.encode(chars[0] + chars[-1]) == [5, 4 + len(chars)]
    for document in documents:
        ids = tokenizer.encode(document)
        assert len(ids) == len(document) and min(ids) >= 5
        assert tokenizer.decode(ids) == document


def test_char_unknown_specials_and_pad_in_decode():
    tokenizer = CharTokenizer.train(["ab"])
    assert tokenizer.encode("abz") == [5, 6, 1]
    assert tokenizer.decode([0, 5, 2, 6, 3, 4, 1, 0, 99]) == "a<s>b</s><mask><unk><unk>"


def test_char_save_load(tmp_path):
    tokenizer = CharTokenizer.train(["héllo\nwörld"])
    loaded = CharTokenizer.load(tokenizer.save(str(tmp_path)))
    assert loaded.chars == tokenizer.chars
    assert loaded.encode("wörld\n") == tokenizer.encode("wörld\n")


def test_sentencepiece_specials_at_fixed_ids(sp_tokenizer, tmp_path):
    assert sp_tokenizer.vocab_size == 512
    # Read the saved model with sentencepiece itself, as the reference for the layout.
    processor = spm.SentencePieceProcessor(model_file=sp_tokenizer.save(str(tmp_path)))
    assert [processor.id_to_piece(i) for i in range(5)] == list(SPECIAL_PIECES)
    assert (processor.pad_id(), processor.unk_id(), processor.bos_id(), processor.eos_id()) == (0, 1, 2, 3)
    assert sp_tokenizer.encode("<mask>") == [4]
    assert sp_tokenizer.decode([0, 2, 4, 3, 0]) == "<s><mask></s>"


def test_sentencepiece_round_trip(sp_tokenizer, documents):
    for text in VARIED + documents:
        ids = sp_tokenizer.encode(text)
        assert sp_tokenizer.unk_id not in ids  # byte fallback covers every character
        assert sp_tokenizer.decode(ids) == text
    assert sp_tokenizer.encode("a\nb").count(sp_tokenizer.encode("\n")[0]) == 1
    # Merges make the corpus shorter than its characters.
    assert sum(map(len, map(sp_tokenizer.encode, documents))) < 0.7 * sum(map(len, documents))


def test_sentencepiece_documented_exceptions(sp_tokenizer):
    assert sp_tokenizer.decode(sp_tokenizer.encode("a\u2581b")) == "a b"


def test_sentencepiece_training_is_deterministic(documents, sp_tokenizer, tmp_path):
    again = SentencePieceTokenizer.train(documents, vocab_size=512, model_type="bpe")
    first = open(sp_tokenizer.save(str(tmp_path / "a")), "rb").read()
    second = open(again.save(str(tmp_path / "b")), "rb").read()
    assert first == second


def test_sentencepiece_unigram_round_trip(documents):
    tokenizer = SentencePieceTokenizer.train(documents[:20], vocab_size=400, model_type="unigram")
    assert tokenizer.vocab_size == 400
    for text in VARIED:
        assert tokenizer.decode(tokenizer.encode(text)) == text


def test_sentences_are_bounded_and_sampled(monkeypatch, documents):
    monkeypatch.setattr(tokenizer_lib, "_MAX_SENTENCE_CHARS", 100)
    long_line = "x" * 250
    assert list(tokenizer_lib._sentences(f"a\n\n{long_line}\nb")) == ["a", "x" * 100, "x" * 100, "x" * 50, "b"]

    everything = list(tokenizer_lib._sentences("\n".join(documents)))
    assert tokenizer_lib._sample_sentences(documents, 10**9, seed=0) == everything
    # A generator: the sample is drawn in one pass, never holding the corpus.
    sample = tokenizer_lib._sample_sentences(iter(documents), 300, seed=0)
    assert len(sample) == 300
    assert sample == tokenizer_lib._sample_sentences(documents, 300, seed=0)
    assert sample != tokenizer_lib._sample_sentences(documents, 300, seed=1)
    # An ordered subsequence of all sentences: each sampled one is found after the previous one.
    position = iter(everything)
    assert all(any(s == t for t in position) for s in sample)
    assert SentencePieceTokenizer.train(documents, vocab_size=400, seed=3, max_sentences=2000).vocab_size == 400


def test_sentence_sample_is_uniform():
    # 1,000 of 20,000 numbered lines, over 40 seeds: each tenth of the corpus should hold 10% of the
    # picks (40,000 picks; a standard error of 0.15%), and early and late lines alike.
    lines = [str(i) for i in range(20_000)]
    picks = np.concatenate([np.array(tokenizer_lib._sample_sentences(lines, 1000, seed), int) for seed in range(40)])
    assert len(picks) == 40_000 and len(np.unique(picks)) > 17_000
    tenths = np.bincount(picks // 2000, minlength=10) / len(picks)
    np.testing.assert_allclose(tenths, 0.1, atol=0.006)


def test_sentencepiece_vocab_too_large_names_the_field():
    with pytest.raises(DataError, match="config.data.tokenizer.vocab_size=5000"):
        SentencePieceTokenizer.train(["a small corpus\n"] * 3, vocab_size=5000)


def test_sentencepiece_load_errors_name_the_field(tmp_path):
    with pytest.raises(DataError, match="config.data.tokenizer.path"):
        SentencePieceTokenizer.load(str(tmp_path / "missing.model"))
    garbage = tmp_path / "garbage.model"
    garbage.write_bytes(b"not a model")
    with pytest.raises(DataError, match="config.data.tokenizer.path"):
        SentencePieceTokenizer.load(str(garbage))
    # A model with sentencepiece's default layout (unk=0, bos=1, eos=2, no pad, no mask).
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(builtin_documents()[0].split("\n")), model_writer=model, vocab_size=100, minloglevel=2
    )
    foreign = tmp_path / "foreign.model"
    foreign.write_bytes(model.getvalue())
    with pytest.raises(DataError, match="pad=0, unk=1, bos=2, eos=3"):
        SentencePieceTokenizer.load(str(foreign))


def test_char_load_errors_name_the_field(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"kind": "char", "chars": "ba"}', encoding="utf-8")
    for path in (str(tmp_path / "missing.json"), str(bad)):
        with pytest.raises(DataError, match="config.data.tokenizer.path"):
            CharTokenizer.load(path)


def test_fingerprint_names_the_saved_tokenizer(sp_tokenizer, documents, tmp_path):
    assert sp_tokenizer.fingerprint == hashlib.sha256(open(sp_tokenizer.save(str(tmp_path)), "rb").read()).hexdigest()
    assert SentencePieceTokenizer.train(documents, vocab_size=512).fingerprint == sp_tokenizer.fingerprint
    assert SentencePieceTokenizer.train(documents, vocab_size=520).fingerprint != sp_tokenizer.fingerprint
    char = CharTokenizer.train(["abc"])
    assert CharTokenizer.load(char.save(str(tmp_path))).fingerprint == char.fingerprint
    assert CharTokenizer.train(["abd"]).fingerprint != char.fingerprint


def test_sentencepiece_char_model(documents):
    tokenizer = SentencePieceTokenizer.train(documents[:20], vocab_size=5000, model_type="char")
    chars = set("".join(documents[:20]))
    # Specials (<pad> <unk> <s> </s> <mask> "\n"), 256 byte pieces and a piece per character but the
    # rarest (sentencepiece covers 99.95% of characters; bytes cover the rest): vocab_size only caps it.
    assert 0.8 * len(chars) < tokenizer.vocab_size - 6 - 256 <= len(chars)
    assert tokenizer.encode("<mask>") == [4]
    for text in VARIED:
        assert tokenizer.decode(tokenizer.encode(text)) == text
    assert len(tokenizer.encode("the cat")) == 7
    assert tokenizer._newline_id is not None
    assert tokenizer.encode_batch(documents[:20]) == [tokenizer.encode(d) for d in documents[:20]]
    capped = SentencePieceTokenizer.train(documents[:20], vocab_size=300, model_type="char")
    assert capped.vocab_size == 300 and capped.decode(capped.encode(VARIED[4])) == VARIED[4]


def test_encode_batch_equals_encode(sp_tokenizer, documents, tmp_path):
    texts = VARIED + documents[:30] + ["\n".join(documents[:5])]
    unigram = SentencePieceTokenizer.train(documents[:20], vocab_size=400, model_type="unigram")
    for tokenizer in (sp_tokenizer, unigram, CharTokenizer.train(documents)):
        assert tokenizer.encode_batch(texts) == [tokenizer.encode(text) for text in texts]
    assert sp_tokenizer._newline_id == sp_tokenizer.encode("\n")[0]  # lines are encoded apart
    assert unigram._newline_id is None  # unigram ties would break differently line by line
    # A model trained elsewhere adds a dummy "▁" at the start of each text: lines must not be cut apart.
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(documents[0].split("\n")),
        model_writer=model,
        vocab_size=150,
        model_type="bpe",
        pad_id=0,
        unk_id=1,
        bos_id=2,
        eos_id=3,
        user_defined_symbols=["<mask>", "\n"],
        minloglevel=2,
    )
    (tmp_path / "foreign.model").write_bytes(model.getvalue())
    foreign = SentencePieceTokenizer.load(str(tmp_path / "foreign.model"))
    assert foreign._newline_id is None
    assert foreign.encode_batch(texts) == [foreign.encode(text) for text in texts]


def _flat(tokenizer, texts):
    ids = [i for text in texts for i in tokenizer.encode(text)]
    return np.array(ids, np.int32), np.array([len(tokenizer.encode(text)) for text in texts], np.int64)


def test_encode_flat_from_cached_chunks_equals_encode(sp_tokenizer, documents, monkeypatch):
    """Chunks (a newline, or spaces and what follows up to the next space) encode apart exactly."""
    texts = VARIED + documents[:40] + ["\n".join(documents[:5]), "<mask> a<mask>b  <mask>", "▁ literal ▁▁x "]
    assert sp_tokenizer._chunk_cache is not None
    for attempt in ("cold", "warm"):
        ids, lengths = sp_tokenizer.encode_flat(texts)
        want_ids, want_lengths = _flat(sp_tokenizer, texts)
        np.testing.assert_array_equal(ids, want_ids, err_msg=attempt)
        np.testing.assert_array_equal(lengths, want_lengths, err_msg=attempt)
    # A full cache encodes the chunks it cannot hold each time, with the same result.
    small = SentencePieceTokenizer.train(documents[:20], vocab_size=400, model_type="bpe")
    monkeypatch.setattr(chunk_cache, "_CHUNK_CACHE_LIMIT", 7)
    for _ in range(2):
        ids, lengths = small.encode_flat(texts)
        np.testing.assert_array_equal(ids, _flat(small, texts)[0])
        np.testing.assert_array_equal(lengths, _flat(small, texts)[1])
    assert len(small._chunk_cache._index) == 7


def _identity_bpe_with(documents, tmp_path, piece):
    """A BPE model trained elsewhere, normalizing nothing as ours do, with one extra user-defined `piece`."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(documents[0].split("\n")),
        model_writer=model,
        vocab_size=300,
        model_type="bpe",
        pad_id=0,
        unk_id=1,
        bos_id=2,
        eos_id=3,
        user_defined_symbols=["<mask>", "\n", piece],
        minloglevel=2,
        normalization_rule_name="identity",
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
    )
    (tmp_path / "extra.model").write_bytes(model.getvalue())
    return SentencePieceTokenizer.load(str(tmp_path / "extra.model"))


def test_encode_flat_without_chunks_where_they_would_not_be_exact(documents, tmp_path):
    texts = VARIED + documents[:10]
    unigram = SentencePieceTokenizer.train(documents[:20], vocab_size=400, model_type="unigram")
    # A model trained elsewhere may hold pieces with spaces inside ("▁of▁the"): chunks could split them.
    spaces = _identity_bpe_with(documents, tmp_path, "▁of▁the")
    for tokenizer in (unigram, spaces, CharTokenizer.train(documents)):
        assert getattr(tokenizer, "_chunk_cache", None) is None
        ids, lengths = tokenizer.encode_flat(texts)
        np.testing.assert_array_equal(ids, _flat(tokenizer, texts)[0])
        np.testing.assert_array_equal(lengths, _flat(tokenizer, texts)[1])
    assert spaces._newline_id is not None  # lines still split: no piece but "\n" holds a newline


def test_lines_not_split_where_a_piece_spans_a_newline(documents, tmp_path):
    spanning = _identity_bpe_with(documents, tmp_path, "e\nT")
    assert spanning._newline_id is None and spanning._chunk_cache is None
    texts = ["one line\nThe next", "e\nT", "plain"]
    assert spanning.encode_batch(texts) == [spanning.encode(text) for text in texts]


# The chunks `_chunk_starts` must find: a newline, or spaces ("▁" counted as one) and what follows up to the
# next space or newline.
CHUNK = re.compile("\n|[ \u2581]*[^ \u2581\n]*")


@pytest.mark.parametrize("text", VARIED + ["▁ literal ▁▁x ", "a▁b▁▁c ▁\n▁", "x", "ab", "▁", "\n", "a\n b  c"])
def test_chunk_starts_are_the_regex_chunks(text):
    data = text.encode("utf-8")
    starts = tokenizer_lib._chunk_starts(np.frombuffer(data, np.uint8), np.array([0]))
    chunks = [data[a:b].decode("utf-8") for a, b in zip(starts, [*starts[1:], len(data)])]
    assert chunks == [chunk for chunk in CHUNK.findall(text) if chunk]


def test_chunk_starts_begin_a_chunk_at_each_text():
    data = b"ab cd" + b"ef" + b" gh"
    starts = tokenizer_lib._chunk_starts(np.frombuffer(data, np.uint8), np.array([0, 5, 7, 10]))
    np.testing.assert_array_equal(starts, [0, 2, 5, 7])


def _lookup(cache, chunks, encode):
    data = b"".join(chunks)
    return cache.lookup(data, np.cumsum([0] + [len(c) for c in chunks[:-1]]), encode)


def test_chunk_cache_keeps_no_key_whose_encoding_failed():
    cache = chunk_cache.ChunkCache()
    encode = lambda keys: [[len(key)] * len(key) for key in keys]  # noqa: E731
    ids, lengths = _lookup(cache, [b"ab", b"c", b"ab"], encode)
    np.testing.assert_array_equal(ids, [2, 2, 1, 2, 2])
    np.testing.assert_array_equal(lengths, [2, 1, 2])

    def broken(keys):
        raise RuntimeError("sentencepiece failed")

    with pytest.raises(RuntimeError):
        _lookup(cache, [b"c", b"dde", b"ff"], broken)
    assert list(cache._index) == [b"ab", b"c"]
    ids, lengths = _lookup(cache, [b"ff", b"dde", b"c"], encode)
    np.testing.assert_array_equal(ids, [2, 2, 3, 3, 3, 1])
    np.testing.assert_array_equal(lengths, [2, 3, 1])
    assert cache.lookup(b"", np.zeros(0, np.int64), broken)[0].size == 0  # nothing to encode: encode not called
